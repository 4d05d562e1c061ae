package roomserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// ClientEvent is a room event as a client gets it (the client API formats
// it, SPEC-NOTES §11).
type ClientEvent struct {
	Event *roomversion.Event
	// TransactionID is set for the requesting device's own events.
	TransactionID string
	// LostFork marks a message soft-failed because its fork lost
	// (de.bwi.mls.lost_fork).
	LostFork bool
	// SoftFailCase and SoftFailReason are set, for GET /event only, on a
	// soft-failed event (de.bwi.mls.soft_failed).
	SoftFailCase   string
	SoftFailReason string
}

// softFailCase splits a stored soft-fail reason ("soft-fail (c): ...")
// into its case and reason.
func softFailCase(reason string) (string, string) {
	if rest, ok := strings.CutPrefix(reason, "soft-fail ("); ok && len(rest) > 3 && rest[1] == ')' {
		return rest[:1], strings.TrimPrefix(rest[2:], ": ")
	}
	return "", reason
}

// deliverable tells whether a stored event goes to clients in /sync and
// /messages: accepted events, and messages soft-failed under (c) marked as
// lost to a fork (SPEC-NOTES §4).
func deliverable(se *storage.StoredEvent) (ok, lostFork bool) {
	if se.Rejected {
		return false, false
	}
	if !se.SoftFailed {
		return true, false
	}
	c, _ := softFailCase(se.SoftFailReason)
	if c == "c" && se.Event.Kind() == roomversion.EventEncrypted {
		return true, true
	}
	return false, false
}

// clientEvent wraps a stored event for deviceID's user. Events read with
// RoomEvents carry their client transaction; others are looked up.
func (s *Server) clientEvent(ctx context.Context, se *storage.StoredEvent, userID, deviceID string, fromRoomEvents bool) (ClientEvent, error) {
	ce := ClientEvent{Event: se.Event}
	_, ce.LostFork = deliverable(se)
	if fromRoomEvents {
		if t := se.Txn; t != nil && t.UserID == userID && t.DeviceID == deviceID {
			ce.TransactionID = t.TxnID
		}
		return ce, nil
	}
	if se.Event.Origin() == s.cfg.ServerName && deviceID != "" {
		txn, err := s.st.EventClientTxn(ctx, se.Event.EventID())
		switch {
		case err == nil:
			if txn.UserID == userID && txn.DeviceID == deviceID {
				ce.TransactionID = txn.TxnID
			}
		case !errors.Is(err, storage.ErrNotFound):
			return ce, fmt.Errorf("reading the transaction of %s: %w", se.Event.EventID(), err)
		}
	}
	return ce, nil
}

// State returns the room's state for a joined user: the create event and
// the current commit (if any).
func (s *Server) State(ctx context.Context, userID, roomID string) ([]ClientEvent, error) {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return nil, err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	out := []ClientEvent{{Event: r.mem.Create()}}
	if c := r.mem.Commit(); c != nil {
		out = append(out, ClientEvent{Event: c})
	}
	return out, nil
}

// StateEvent returns one state event (create or commit, empty state key).
func (s *Server) StateEvent(ctx context.Context, userID, roomID, typ, stateKey string) (ClientEvent, error) {
	evs, err := s.State(ctx, userID, roomID)
	if err != nil {
		return ClientEvent{}, err
	}
	if typ == "m.room.member" {
		return ClientEvent{}, matrixerr.Forbidden(membershipMessage)
	}
	for _, e := range evs {
		if e.Event.Type() == typ && e.Event.StateKeyEquals(stateKey) {
			return e, nil
		}
	}
	return ClientEvent{}, matrixerr.NotFound("no state event %s with state key %q in %s", typ, stateKey, roomID)
}

// Event returns one event of the room for a joined user: a rejected or
// unknown event is 404; a soft-failed one comes with its case and reason
// (SPEC-NOTES §11).
func (s *Server) Event(ctx context.Context, userID, deviceID, roomID, eventID string) (ClientEvent, error) {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return ClientEvent{}, err
	}
	se, err := s.st.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (se.Rejected || se.Event.RoomID().String() != roomID)) {
		return ClientEvent{}, matrixerr.NotFound("unknown event %s in %s", eventID, roomID)
	}
	if err != nil {
		return ClientEvent{}, fmt.Errorf("reading event %s: %w", eventID, err)
	}
	ce, err := s.clientEvent(ctx, se, userID, deviceID, false)
	if err != nil {
		return ClientEvent{}, err
	}
	if se.SoftFailed {
		ce.SoftFailCase, ce.SoftFailReason = softFailCase(se.SoftFailReason)
	}
	return ce, nil
}

// MessagesRequest is GET /messages. Tokens are positions between events
// ("t<NID>": after event NID), or a /sync token (its events position).
type MessagesRequest struct {
	UserID, DeviceID, RoomID string
	From, To                 string
	Backward                 bool
	Limit                    int
}

// MessagesResponse is a page of /messages.
type MessagesResponse struct {
	Chunk []ClientEvent
	Start string
	// End is "" when there is nothing further in that direction.
	End string
}

// maxMessagesLimit caps a /messages page.
const maxMessagesLimit = 1000

// Messages pages through a joined room's timeline in either direction.
func (s *Server) Messages(ctx context.Context, req MessagesRequest) (MessagesResponse, error) {
	if err := s.requireJoined(ctx, req.RoomID, req.UserID); err != nil {
		return MessagesResponse{}, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, maxMessagesLimit)
	var from, to int64
	var err error
	if req.From != "" {
		if from, err = parseEventsToken(req.From); err != nil {
			return MessagesResponse{}, matrixerr.InvalidParam("from: %v", err)
		}
	} else if req.Backward {
		pos, err := s.st.MaxStreamPositions(ctx)
		if err != nil {
			return MessagesResponse{}, fmt.Errorf("reading stream positions: %w", err)
		}
		from = pos.Events
	}
	if req.To != "" {
		if to, err = parseEventsToken(req.To); err != nil {
			return MessagesResponse{}, matrixerr.InvalidParam("to: %v", err)
		}
	}
	var evs []*storage.StoredEvent
	if req.Backward {
		// Before the gap at from: NID <= from, and > to.
		evs, err = s.st.RoomEvents(ctx, req.RoomID, from+1, to, limit, true)
	} else {
		evs, err = s.st.RoomEvents(ctx, req.RoomID, from, to, limit, false)
	}
	if err != nil {
		return MessagesResponse{}, fmt.Errorf("reading messages of %s: %w", req.RoomID, err)
	}
	resp := MessagesResponse{Start: eventsToken(from), Chunk: []ClientEvent{}}
	for _, se := range evs {
		if ok, _ := deliverable(se); !ok {
			continue
		}
		ce, err := s.clientEvent(ctx, se, req.UserID, req.DeviceID, true)
		if err != nil {
			return MessagesResponse{}, err
		}
		resp.Chunk = append(resp.Chunk, ce)
	}
	if len(evs) == limit {
		last := evs[len(evs)-1].NID
		if req.Backward {
			resp.End = eventsToken(last - 1)
		} else {
			resp.End = eventsToken(last)
		}
	}
	return resp, nil
}

// eventsToken is the /messages token of the gap after event NID n.
func eventsToken(n int64) string { return "t" + strconv.FormatInt(n, 10) }

// parseEventsToken reads a /messages token or the events position of a
// /sync token.
func parseEventsToken(tok string) (int64, error) {
	if rest, ok := strings.CutPrefix(tok, "t"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("malformed token %q", tok)
		}
		return n, nil
	}
	st, err := parseSyncToken(tok)
	if err != nil {
		return 0, err
	}
	return st.Events, nil
}

// PendingCommitStatus is the pending-commit status endpoint's answer.
type PendingCommitStatus struct {
	Status        string
	CommitEventID string
	// Lost is true when commits applied it but none is on the room's
	// current mainline (its fork lost state resolution).
	Lost       bool
	Windows    []storage.Window
	ReceivedAt time.Time
}

// PendingCommitStatus reports a pending commit's state to a joined user
// (SPEC-NOTES §11): waiting, applied (with the commit that applied it),
// stale or expired.
func (s *Server) PendingCommitStatus(ctx context.Context, userID, roomID, eventID string) (PendingCommitStatus, error) {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return PendingCommitStatus{}, err
	}
	st, err := s.queue.Status(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && st.RoomID != roomID) {
		return PendingCommitStatus{}, matrixerr.NotFound("no pending commit %s queued here for %s", eventID, roomID)
	}
	if err != nil {
		return PendingCommitStatus{}, fmt.Errorf("reading the status of %s: %w", eventID, err)
	}
	return statusOf(st), nil
}

func statusOf(st commitqueue.Status) PendingCommitStatus {
	return PendingCommitStatus{Status: string(st.Status), CommitEventID: st.CommitEventID, Lost: st.Lost, Windows: st.Windows, ReceivedAt: st.ReceivedAt}
}
