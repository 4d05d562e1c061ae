package roomserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// SendRequest is an event a local client sends: PUT /send (StateKey nil)
// or PUT /state (StateKey set).
type SendRequest struct {
	UserID   string
	DeviceID string
	// TxnID makes /send idempotent per device; "" for /state.
	TxnID    string
	RoomID   string
	Type     string
	StateKey *string
	// Content is the event content as the client sent it (JSON).
	Content []byte
	// CommitID is the commit the client's MLS state is at
	// (de.bwi.mls.commit_id, SPEC-NOTES §11), "" if not named.
	CommitID string
}

// membershipMessage is the refusal of member state and member APIs.
const membershipMessage = "membership of MLS rooms is managed inside MLS"

// SendEvent builds, checks, stores and distributes a local client's event
// and returns its event ID. Refusals (*matrixerr.Error): 403 for events the
// room version or the auth rules do not allow (naming the rule), for a
// commit on a server not at powers[0] and for senders not joined; 400
// M_BAD_JSON for content that does not parse; 409 DE.BWI.MLS.WRONG_EPOCH
// when the client's MLS state is not where the event needs the room to be.
// A transaction ID seen before from the device returns the first event's
// ID. Nothing of a refused request is stored.
func (s *Server) SendEvent(ctx context.Context, req SendRequest) (string, error) {
	if req.TxnID != "" {
		id, err := s.st.ClientTxnEvent(ctx, req.UserID, req.DeviceID, req.TxnID)
		if err == nil {
			// A retry: the first attempt may have stored the event and
			// died before queueing it for the other servers, so queue it
			// again (they take an event they hold as a no-op).
			return id, s.resend(ctx, req.RoomID, id)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("looking up transaction %s: %w", req.TxnID, err)
		}
	}
	if err := s.requireJoined(ctx, req.RoomID, req.UserID); err != nil {
		return "", err
	}
	r, err := s.lockRoom(ctx, req.RoomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	v := r.info.Version

	kind, err := eventKind(v, req.Type, req.StateKey)
	if err != nil {
		return "", err
	}
	authCommit, err := s.chooseAuthCommit(r, kind, req)
	if err != nil {
		return "", err
	}
	if kind == roomversion.EventCommit {
		if err := s.mayCommit(r); err != nil {
			return "", err
		}
	}
	auth := []string{r.mem.Create().EventID()}
	if authCommit != nil {
		auth = append(auth, authCommit.EventID())
	}
	prev, err := s.prevEvents(ctx, r.id)
	if err != nil {
		return "", err
	}
	b := &roomversion.Builder{Version: v, RoomID: r.id, Type: req.Type, StateKey: req.StateKey,
		Content: req.Content, AuthEvents: auth, PrevEvents: prev, Origin: s.cfg.ServerName, Timestamp: s.now()}
	ev, err := authrules.BuildEvent(ctx, b, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return "", refusal(err)
	}
	if err := authrules.Check(ev, authCommit, r.mem); err != nil {
		return "", refusal(err)
	}
	sf, err := authrules.CheckSoftFail(ev, r.mem)
	if err != nil {
		return "", fmt.Errorf("soft-fail check of %s: %w", ev.EventID(), err)
	}
	if sf != nil {
		return "", matrixerr.Forbidden("the event would be soft-failed: %s", sf)
	}

	before := r.current
	opts := storage.StoreEventOptions{StateBefore: before}
	if kind != roomversion.EventEncrypted {
		opts.ExpectCurrent = &before
	}
	if kind == roomversion.EventCommit {
		opts.CurrentState = &storage.RoomState{CreateID: before.CreateID, CommitID: ev.EventID()}
	}
	if req.TxnID != "" {
		opts.Txn = &storage.ClientTxn{UserID: req.UserID, DeviceID: req.DeviceID, TxnID: req.TxnID}
	}
	if _, err := s.st.StoreEvent(ctx, ev, opts); err != nil {
		switch {
		case errors.Is(err, storage.ErrDuplicateTxn):
			id, lerr := s.st.ClientTxnEvent(ctx, req.UserID, req.DeviceID, req.TxnID)
			if lerr != nil {
				return "", fmt.Errorf("looking up transaction %s: %w", req.TxnID, lerr)
			}
			return id, nil
		case errors.Is(err, storage.ErrStateChanged):
			// Another process changed the room's commit meanwhile.
			if rerr := s.refresh(ctx, r); rerr != nil {
				return "", rerr
			}
			return "", r.wrongEpoch("the room's current commit changed while the event was being stored")
		}
		return "", fmt.Errorf("storing %s: %w", ev.EventID(), err)
	}
	r.mem.Add(ev)
	if kind == roomversion.EventCommit {
		r.mem.SetCurrent(ev)
		r.current = *opts.CurrentState
	}
	if err := s.afterStore(ctx, r, ev, authCommit); err != nil {
		// Stored but not queued: the client's retry queues it (resend).
		return "", err
	}
	if kind == roomversion.EventPendingCommit {
		if _, err := s.queue.Receive(ctx, ev, s.now()); err != nil {
			// Stored; a later Tick finds it in storage.
			s.cfg.Logger.Error("queueing a pending commit", slog.String("event_id", ev.EventID()), slog.Any("error", err))
		}
	}
	return ev.EventID(), nil
}

// eventKind maps a client's event type (and state key) to the room
// version's kinds, refusing the rest with 403.
func eventKind(v roomversion.Version, typ string, stateKey *string) (roomversion.EventKind, error) {
	isState := stateKey != nil
	switch {
	case typ == "m.room.member":
		return 0, matrixerr.Forbidden(membershipMessage)
	case typ == v.CommitType() && isState:
		return roomversion.EventCommit, nil
	case typ == v.PendingCommitType() && !isState:
		return roomversion.EventPendingCommit, nil
	case typ == roomversion.EventTypeEncrypted && !isState:
		return roomversion.EventEncrypted, nil
	case typ == v.CommitType():
		return 0, matrixerr.Forbidden("rule 9.1: %s is a state event: send it with PUT /rooms/{roomId}/state/%s/", typ, typ)
	case isState && (typ == v.PendingCommitType() || typ == roomversion.EventTypeEncrypted):
		return 0, matrixerr.Forbidden("rule 2: %s is not a state event", typ)
	case isState:
		return 0, matrixerr.Forbidden("rule 2: state events other than %s are not allowed in MLS rooms (SPEC-NOTES §2)", v.CommitType())
	}
	return 0, matrixerr.Forbidden("event type %s is not allowed in MLS rooms: only %s and %s are sent with /send (SPEC-NOTES §2)",
		typ, roomversion.EventTypeEncrypted, v.PendingCommitType())
}

// refusal turns an error of building or checking an event into the client's
// answer: auth rules 403 naming the rule, event-format errors 400 M_BAD_JSON
// (413 M_TOO_LARGE for size).
func refusal(err error) error {
	var ae *authrules.Error
	if errors.As(err, &ae) {
		return matrixerr.Forbidden("auth rule %s: %s", ae.Rule, ae.Reason)
	}
	var re *roomversion.Error
	if errors.As(err, &re) {
		if re.Kind == roomversion.KindTooLarge {
			return matrixerr.TooLarge("%s", re.Error())
		}
		return matrixerr.BadJSON("%s", re.Error())
	}
	return err
}

// chooseAuthCommit picks the commit the new event names in its auth events
// (SPEC-NOTES §4, §11): the commit the client names, or else the current
// commit for commits and pending commits, and for messages the mainline
// commit whose epoch + 1 is the message's epoch. A commit that does not fit
// is the 409 of §11.
func (s *Server) chooseAuthCommit(r *room, kind roomversion.EventKind, req SendRequest) (*roomversion.Event, error) {
	cur := r.mem.Commit()
	epoch, haveEpoch := contentEpoch(r.id, kind, req.Content)
	if req.CommitID != "" {
		named := r.mem.Event(req.CommitID)
		if named == nil || named.Kind() != roomversion.EventCommit {
			return nil, r.wrongEpoch("de.bwi.mls.commit_id %s is not a commit of this room", req.CommitID)
		}
		switch kind {
		case roomversion.EventEncrypted:
			m := r.onMainline(named)
			if m == nil {
				return nil, r.wrongEpoch("commit %s is not on the room's mainline (lost to a fork)", req.CommitID)
			}
			return m, nil
		default:
			if cur == nil || r.onMainline(named) != cur {
				return nil, r.wrongEpoch("commit %s is not the room's current commit", req.CommitID)
			}
			return cur, nil
		}
	}
	if !haveEpoch {
		// The content does not parse; building the event reports why.
		return cur, nil
	}
	switch kind {
	case roomversion.EventCommit:
		if cur == nil {
			if epoch != 0 {
				return nil, r.wrongEpoch("the room has no commit yet: the first commit has epoch 0, not %d", epoch)
			}
			return nil, nil
		}
		if epoch != cur.Epoch()+1 {
			return nil, r.wrongEpoch("a commit in epoch %d does not follow the current commit (epoch %d)", epoch, cur.Epoch())
		}
		return cur, nil
	case roomversion.EventPendingCommit:
		if cur == nil {
			return nil, r.wrongEpoch("the room has no commit yet: the epoch-0 commit is sent as %s", r.info.Version.CommitType())
		}
		if epoch != cur.Epoch()+1 {
			return nil, r.wrongEpoch("a pending commit in epoch %d does not follow the current commit (epoch %d)", epoch, cur.Epoch())
		}
		return cur, nil
	default:
		if epoch == 0 || cur == nil {
			return nil, r.wrongEpoch("no commit of the room starts epoch %d", epoch)
		}
		m := r.mem.MainlineAt(epoch - 1)
		if m == nil {
			return nil, r.wrongEpoch("no commit on the room's mainline starts epoch %d", epoch)
		}
		return m, nil
	}
}

// contentEpoch reads the MLS epoch of an MLS event's content when the
// content is a PrivateMessage of the room's group with the content type
// the event type needs; otherwise building the event reports what is wrong
// (before any epoch question).
func contentEpoch(roomID string, kind roomversion.EventKind, content []byte) (uint64, bool) {
	var c struct {
		Ciphertext string `json:"ciphertext"`
	}
	if json.Unmarshal(content, &c) != nil || c.Ciphertext == "" {
		return 0, false
	}
	enc := base64.RawURLEncoding
	if kind == roomversion.EventEncrypted {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(c.Ciphertext)
	if err != nil {
		return 0, false
	}
	h, err := mls.ParseHeader(b)
	if err != nil || h.WireFormat != mls.WireFormatPrivateMessage || string(h.GroupID) != roomID {
		return 0, false
	}
	isCommit := h.ContentType == mls.ContentTypeCommit
	if isCommit != (kind == roomversion.EventCommit || kind == roomversion.EventPendingCommit) {
		return 0, false
	}
	return h.Epoch, true
}

// mayCommit checks that this server may accept a commit from its client:
// it is powers[0] of the current commit, or for the epoch-0 commit the
// room's own server (SPEC-NOTES §11).
func (s *Server) mayCommit(r *room) error {
	fed, err := r.federation()
	if err != nil {
		return err
	}
	if len(fed.Powers) == 0 || fed.Powers[0] != s.cfg.ServerName {
		return matrixerr.Forbidden("this server (%s) is not powers[0] of the room's current commit: send %s with PUT /rooms/{roomId}/send/%s/{txnId} instead",
			s.cfg.ServerName, r.info.Version.PendingCommitType(), r.info.Version.PendingCommitType())
	}
	return nil
}

// prevEvents returns the room's forward extremities, at most MaxPrevEvents.
func (s *Server) prevEvents(ctx context.Context, roomID string) ([]string, error) {
	prev, err := s.st.ForwardExtremities(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("reading forward extremities of %s: %w", roomID, err)
	}
	if len(prev) > s.cfg.MaxPrevEvents {
		prev = prev[:s.cfg.MaxPrevEvents]
	}
	return prev, nil
}

// resend queues a stored local event for the servers of its room again.
func (s *Server) resend(ctx context.Context, roomID, eventID string) error {
	if s.cfg.Remote == nil {
		return nil
	}
	se, err := s.st.Event(ctx, eventID)
	if err != nil {
		return fmt.Errorf("reading %s to send it again: %w", eventID, err)
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	return s.afterStore(ctx, r, se.Event, r.mem.AuthCommit(se.Event))
}

// afterStore wakes /sync and queues a stored local event for the servers
// of the room (SPEC-NOTES §8): every server in servers of the current
// commit but this one, and for a commit those of the commit it replaces
// too. An error means the event is stored but not queued.
func (s *Server) afterStore(ctx context.Context, r *room, ev, authCommit *roomversion.Event) error {
	s.notify(ctx, r.id)
	if s.cfg.Remote == nil {
		return nil
	}
	var dests []string
	add := func(c *roomversion.Event) {
		if c == nil {
			return
		}
		m, err := c.FederationMap()
		if err != nil {
			return
		}
		for _, srv := range m.Federation.Servers {
			if srv != s.cfg.ServerName && !slices.Contains(dests, srv) {
				dests = append(dests, srv)
			}
		}
	}
	add(r.mem.Commit())
	if ev.Kind() == roomversion.EventCommit {
		add(authCommit)
	}
	if len(dests) == 0 {
		return nil
	}
	if err := s.cfg.Remote.SendEvent(ctx, ev, dests); err != nil {
		return fmt.Errorf("queueing %s for %v: %w", ev.EventID(), dests, err)
	}
	return nil
}
