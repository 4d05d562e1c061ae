package userapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
)

// SendToDeviceRequest is the body of PUT /sendToDevice/{eventType}/{txnId}:
// user ID -> device ID (or "*" for all) -> content.
type SendToDeviceRequest struct {
	Messages map[string]map[string]json.RawMessage `json:"messages"`
}

// maxTxnID limits transaction IDs (bytes).
const maxTxnID = 255

// txnStreamPrefix names the per-device sync-position rows that mark a
// to-device transaction as done (see SendToDevice).
const txnStreamPrefix = "userapi.sendToDevice.txn:"

// txnLock serialises one sending device's to-device transactions in this
// process.
type txnLock struct {
	mu   sync.Mutex
	refs int
}

func (s *Service) lockTxn(key string) func() {
	s.txnMu.Lock()
	l := s.txnLocks[key]
	if l == nil {
		l = &txnLock{}
		s.txnLocks[key] = l
	}
	l.refs++
	s.txnMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.txnMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.txnLocks, key)
		}
		s.txnMu.Unlock()
	}
}

// MessageID returns the deterministic federation message_id of a
// to-device transaction: URL-safe unpadded base64 of SHA-256 over sender,
// device and transaction ID, so a retried transaction carries the same ID
// and the receiving server drops the copy.
func MessageID(sender, deviceID, txnID string) string {
	h := sha256.New()
	for _, p := range []string{sender, deviceID, txnID} {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// SendToDevice delivers to-device messages (PUT
// /sendToDevice/{eventType}/{txnId}) from the caller's device: local
// recipients get them in their inbox ("*" meaning every device; unknown
// users and devices are skipped, as the Matrix spec says) and their /sync
// is woken; remote ones go through Remote with MessageID as message_id
// (while Remote is nil, a remote recipient is 403 M_FORBIDDEN before
// anything is delivered). Contents are opaque JSON objects (welcomes
// included, SPEC-NOTES §9).
//
// It is idempotent per (user, device, txnId): the transaction is marked
// done in the sending device's sync positions after delivery, and a
// replayed one delivers nothing. Within one process transactions of a
// device run one at a time; two processes racing on the same transaction
// could both deliver (storage has no atomic to-device transaction record).
func (s *Service) SendToDevice(ctx context.Context, userID, deviceID, eventType, txnID string, req SendToDeviceRequest) error {
	if eventType == "" || len(eventType) > 255 {
		return matrixerr.InvalidParam("eventType: 1 to 255 bytes")
	}
	if txnID == "" || len(txnID) > maxTxnID {
		return matrixerr.InvalidParam("txnId: 1 to %d bytes", maxTxnID)
	}
	remote := map[string]map[string]map[string]json.RawMessage{}
	users := make([]string, 0, len(req.Messages))
	for user, devs := range req.Messages {
		if err := checkUserID("messages", user); err != nil {
			return err
		}
		for dev, content := range devs {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(content, &obj); err != nil || obj == nil {
				return matrixerr.BadJSON("messages[%q][%q]: content must be a JSON object", user, dev)
			}
		}
		if !s.isLocal(user) {
			if s.cfg.Remote == nil {
				return matrixerr.Forbidden("messages[%q]: this server does not reach other servers (no federation)", user)
			}
			srv := serverOf(user)
			if remote[srv] == nil {
				remote[srv] = map[string]map[string]json.RawMessage{}
			}
			remote[srv][user] = devs
			continue
		}
		users = append(users, user)
	}
	sort.Strings(users)

	unlock := s.lockTxn(userID + "\x00" + deviceID)
	defer unlock()
	stream := txnStreamPrefix + txnID
	done, err := s.cfg.Store.SyncPosition(ctx, userID, deviceID, stream)
	if err != nil {
		return fmt.Errorf("reading to-device transaction %s of %s/%s: %w", txnID, userID, deviceID, err)
	}
	if done != 0 {
		return nil
	}
	for _, user := range users {
		if err := s.deliverLocal(ctx, userID, eventType, user, req.Messages[user]); err != nil {
			return err
		}
	}
	msgID := MessageID(userID, deviceID, txnID)
	srvs := make([]string, 0, len(remote))
	for srv := range remote {
		srvs = append(srvs, srv)
	}
	sort.Strings(srvs)
	for _, srv := range srvs {
		if err := s.cfg.Remote.SendToDevice(ctx, srv, userID, eventType, msgID, remote[srv]); err != nil {
			return fmt.Errorf("sending to-device messages to %s: %w", srv, err)
		}
	}
	if err := s.cfg.Store.SetSyncPosition(ctx, userID, deviceID, stream, 1); err != nil {
		return fmt.Errorf("recording to-device transaction %s of %s/%s: %w", txnID, userID, deviceID, err)
	}
	return nil
}

// deliverLocal puts one sender's messages into a local user's inboxes.
func (s *Service) deliverLocal(ctx context.Context, sender, eventType, user string, devs map[string]json.RawMessage) error {
	known, err := s.cfg.Store.Devices(ctx, user)
	if err != nil {
		return fmt.Errorf("listing devices of %s: %w", user, err)
	}
	ids := make([]string, 0, len(known))
	for _, d := range known {
		ids = append(ids, d.DeviceID)
	}
	targets := map[string]json.RawMessage{}
	for dev, content := range devs {
		if dev == "*" {
			for _, id := range ids {
				if _, explicit := devs[id]; !explicit {
					targets[id] = content
				}
			}
		} else if slices.Contains(ids, dev) {
			targets[dev] = content
		}
	}
	if len(targets) == 0 {
		return nil
	}
	order := make([]string, 0, len(targets))
	for dev := range targets {
		order = append(order, dev)
	}
	sort.Strings(order)
	for _, dev := range order {
		msg := storage.ToDeviceMessage{Sender: sender, Type: eventType, Content: slices.Clone([]byte(targets[dev]))}
		if _, err := s.cfg.Store.SendToDevice(ctx, user, dev, msg); err != nil {
			return fmt.Errorf("delivering to-device message to %s/%s: %w", user, dev, err)
		}
	}
	s.notify(ctx, user)
	return nil
}
