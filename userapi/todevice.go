package userapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

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
// It is idempotent per (user, device, txnId): the store records the
// transaction and appends every local message in one database transaction
// (storage.ToDevice.SendToDeviceTxn), so of concurrent or replayed
// requests with one transaction ID, in any process sharing the database,
// exactly one delivers; the others deliver nothing, local or remote.
// Remote deliveries follow the local ones; if one fails the error is
// returned and the transaction stays recorded (a retry delivers nothing),
// so Remote must accept the messages durably.
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

	var local []storage.ToDeviceDelivery
	var woken []string
	for _, user := range users {
		msgs, err := s.localDeliveries(ctx, userID, eventType, user, req.Messages[user])
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			local = append(local, msgs...)
			woken = append(woken, user)
		}
	}
	txn := storage.ClientTxn{UserID: userID, DeviceID: deviceID, TxnID: txnID}
	isNew, err := s.cfg.Store.SendToDeviceTxn(ctx, txn, local)
	if err != nil {
		return fmt.Errorf("running to-device transaction %s of %s/%s: %w", txnID, userID, deviceID, err)
	}
	if !isNew {
		return nil
	}
	for _, user := range woken {
		s.notify(ctx, user)
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
	return nil
}

// localDeliveries resolves one sender's messages for a local user to the
// user's devices ("*": every device not named explicitly), by device ID.
func (s *Service) localDeliveries(ctx context.Context, sender, eventType, user string, devs map[string]json.RawMessage) ([]storage.ToDeviceDelivery, error) {
	known, err := s.cfg.Store.Devices(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", user, err)
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
	order := make([]string, 0, len(targets))
	for dev := range targets {
		order = append(order, dev)
	}
	sort.Strings(order)
	out := make([]storage.ToDeviceDelivery, 0, len(order))
	for _, dev := range order {
		out = append(out, storage.ToDeviceDelivery{UserID: user, DeviceID: dev, Message: storage.ToDeviceMessage{
			Sender: sender, Type: eventType, Content: slices.Clone([]byte(targets[dev]))}})
	}
	return out, nil
}

// ReceiveToDevice delivers an m.direct_to_device EDU received from origin
// (SPEC-NOTES §12): sender must be a user of origin, every recipient a
// local user (others are refused: a server only delivers to its own
// users). The EDU is delivered at most once per (sender, message_id): the
// store records it with the deliveries in one transaction, so a retried
// federation transaction delivers nothing. It reports whether it was new.
func (s *Service) ReceiveToDevice(ctx context.Context, origin, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) (bool, error) {
	if err := checkUserID("sender", sender); err != nil {
		return false, err
	}
	if serverOf(sender) != origin {
		return false, matrixerr.Forbidden("sender %s is not a user of %s", sender, origin)
	}
	if eventType == "" || len(eventType) > 255 {
		return false, matrixerr.BadJSON("type: 1 to 255 bytes")
	}
	if messageID == "" || len(messageID) > maxTxnID {
		return false, matrixerr.BadJSON("message_id: 1 to %d bytes", maxTxnID)
	}
	users := make([]string, 0, len(messages))
	for user, devs := range messages {
		if err := checkUserID("messages", user); err != nil {
			return false, err
		}
		if !s.isLocal(user) {
			return false, matrixerr.Forbidden("messages[%q]: not a user of this server", user)
		}
		for dev, content := range devs {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(content, &obj); err != nil || obj == nil {
				return false, matrixerr.BadJSON("messages[%q][%q]: content must be a JSON object", user, dev)
			}
		}
		users = append(users, user)
	}
	sort.Strings(users)
	var local []storage.ToDeviceDelivery
	var woken []string
	for _, user := range users {
		msgs, err := s.localDeliveries(ctx, sender, eventType, user, messages[user])
		if err != nil {
			return false, err
		}
		if len(msgs) > 0 {
			local = append(local, msgs...)
			woken = append(woken, user)
		}
	}
	// A remote sender has no device here: the transaction is keyed by the
	// sender and the EDU's message_id.
	isNew, err := s.cfg.Store.SendToDeviceTxn(ctx, storage.ClientTxn{UserID: sender, DeviceID: "", TxnID: messageID}, local)
	if err != nil {
		return false, fmt.Errorf("delivering to-device message %s from %s: %w", messageID, sender, err)
	}
	if isNew {
		for _, user := range woken {
			s.notify(ctx, user)
		}
	}
	return isNew, nil
}
