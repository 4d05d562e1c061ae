package federation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// Limits of the fetch endpoints.
const (
	// DefaultMissingEventsLimit and MaxMissingEventsLimit bound
	// /get_missing_events (the Matrix spec's default is 10).
	DefaultMissingEventsLimit = 10
	MaxMissingEventsLimit     = 20
	// DefaultBackfillLimit and MaxBackfillLimit bound /backfill.
	DefaultBackfillLimit = 10
	MaxBackfillLimit     = 100
	// maxIDList bounds the event ID lists a request may name.
	maxIDList = 100
)

// transaction is the transaction-shaped answer of /event and /backfill.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

func (a *API) transaction(evs []*storage.StoredEvent) transaction {
	return transaction{Origin: a.cfg.ServerName, OriginServerTS: a.now().UnixMilli(), PDUs: pdus(evs)}
}

// pdus returns the events' federation JSON (never nil).
func pdus(evs []*storage.StoredEvent) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(evs))
	for _, ev := range evs {
		out = append(out, json.RawMessage(ev.Event.JSON()))
	}
	return out
}

// eventIDs returns the events' IDs (never nil).
func eventIDs(evs []*storage.StoredEvent) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Event.EventID())
	}
	return out
}

// authorize checks that origin is in `servers` of roomID's current commit
// (SPEC-NOTES §12; before the epoch-0 commit, the virtual genesis commit's
// servers: the room ID's domain). Unknown rooms are 404 M_NOT_FOUND, other
// servers 403 M_FORBIDDEN.
func (a *API) authorize(ctx context.Context, origin, roomID string) error {
	cs, err := a.cfg.Store.CurrentState(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return matrixerr.NotFound("unknown room %s", roomID)
	}
	if err != nil {
		return fmt.Errorf("federation: loading the state of %s: %w", roomID, err)
	}
	servers := []string{roomversion.Domain(roomID)}
	if cs.CommitID != "" {
		commit, err := a.cfg.Store.Event(ctx, cs.CommitID)
		if err != nil {
			return fmt.Errorf("federation: loading the current commit of %s: %w", roomID, err)
		}
		fm, err := commit.Event.FederationMap()
		if err != nil {
			return fmt.Errorf("federation: reading the federation map of %s: %w", cs.CommitID, err)
		}
		servers = fm.Federation.Servers
	}
	if !slices.Contains(servers, origin) {
		return matrixerr.Forbidden("%s is not in servers of the current commit of %s", origin, roomID)
	}
	return nil
}

// usable reports whether a stored event may be served: known and not
// rejected.
func usable(ev *storage.StoredEvent) bool { return ev != nil && !ev.Rejected }

// roomEvent loads an event of roomID that may be served, 404 M_NOT_FOUND
// otherwise (unknown, rejected or of another room).
func (a *API) roomEvent(ctx context.Context, roomID, eventID string) (*storage.StoredEvent, error) {
	ev, err := a.cfg.Store.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, matrixerr.NotFound("unknown event %s", eventID)
	}
	if err != nil {
		return nil, fmt.Errorf("federation: loading %s: %w", eventID, err)
	}
	if !usable(ev) || (roomID != "" && ev.Event.RoomID().String() != roomID) {
		return nil, matrixerr.NotFound("unknown event %s", eventID)
	}
	return ev, nil
}

// authChain returns the auth events of ids, recursively (ids themselves
// only when another event names them), in store order. Auth events not
// stored are left out.
func (a *API) authChain(ctx context.Context, evs []*storage.StoredEvent) ([]*storage.StoredEvent, error) {
	seen := map[string]bool{}
	var out []*storage.StoredEvent
	next := []string{}
	for _, ev := range evs {
		next = append(next, ev.Event.AuthEventIDs()...)
	}
	for len(next) > 0 {
		var want []string
		for _, id := range next {
			if !seen[id] {
				seen[id] = true
				want = append(want, id)
			}
		}
		if len(want) == 0 {
			break
		}
		got, err := a.cfg.Store.Events(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("federation: loading auth events: %w", err)
		}
		next = next[:0]
		for _, ev := range got {
			if !usable(ev) {
				continue
			}
			out = append(out, ev)
			next = append(next, ev.Event.AuthEventIDs()...)
		}
	}
	slices.SortFunc(out, func(x, y *storage.StoredEvent) int { return cmp.Compare(x.NID, y.NID) })
	return out, nil
}

// stateAt returns the room state before ev: none before the create event.
func (a *API) stateAt(ctx context.Context, ev *storage.StoredEvent) ([]*storage.StoredEvent, error) {
	if ev.Event.Kind() == roomversion.EventCreate {
		return nil, nil
	}
	st, err := a.cfg.Store.StateAtEvent(ctx, ev.Event.EventID())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, matrixerr.NotFound("no state stored at %s", ev.Event.EventID())
	}
	if err != nil {
		return nil, fmt.Errorf("federation: loading the state at %s: %w", ev.Event.EventID(), err)
	}
	ids := []string{st.CreateID}
	if st.CommitID != "" {
		ids = append(ids, st.CommitID)
	}
	evs, err := a.cfg.Store.Events(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("federation: loading the state at %s: %w", ev.Event.EventID(), err)
	}
	if len(evs) != len(ids) {
		return nil, fmt.Errorf("federation: state events of %s missing from storage", ev.Event.EventID())
	}
	return evs, nil
}

// walk goes back through prev events breadth first from start (included
// when withStart), skipping the IDs in stop and events that are unknown,
// rejected or of another room, up to limit events.
func (a *API) walk(ctx context.Context, roomID string, start, stop []string, withStart bool, limit int) ([]*storage.StoredEvent, error) {
	seen := map[string]bool{}
	for _, id := range stop {
		seen[id] = true
	}
	var queue []string
	if withStart {
		queue = append(queue, start...)
	} else {
		starts, err := a.cfg.Store.Events(ctx, start)
		if err != nil {
			return nil, fmt.Errorf("federation: loading events: %w", err)
		}
		for _, ev := range starts {
			seen[ev.Event.EventID()] = true
			if usable(ev) && ev.Event.RoomID().String() == roomID {
				queue = append(queue, ev.Event.PrevEventIDs()...)
			}
		}
	}
	var out []*storage.StoredEvent
	for len(queue) > 0 && len(out) < limit {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		ev, err := a.cfg.Store.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("federation: loading %s: %w", id, err)
		}
		if !usable(ev) || ev.Event.RoomID().String() != roomID {
			continue
		}
		out = append(out, ev)
		queue = append(queue, ev.Event.PrevEventIDs()...)
	}
	return out, nil
}

// getEvent answers GET /v1/event/{eventId}.
func (a *API) getEvent(rq *request) (any, error) {
	ev, err := a.roomEvent(rq.Context(), "", rq.vars["eventId"])
	if err != nil {
		return nil, err
	}
	if err := a.authorize(rq.Context(), rq.origin, ev.Event.RoomID().String()); err != nil {
		return nil, err
	}
	return a.transaction([]*storage.StoredEvent{ev}), nil
}

// stateRequest reads /state and /state_ids: the room, authorization and
// the event_id query parameter; it returns the state before that event and
// its auth chain.
func (a *API) stateRequest(rq *request) (state, chain []*storage.StoredEvent, err error) {
	roomID := rq.vars["roomId"]
	if err := a.authorize(rq.Context(), rq.origin, roomID); err != nil {
		return nil, nil, err
	}
	eventID := rq.URL.Query().Get("event_id")
	if eventID == "" {
		return nil, nil, matrixerr.MissingParam("event_id is required")
	}
	ev, err := a.roomEvent(rq.Context(), roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	if state, err = a.stateAt(rq.Context(), ev); err != nil {
		return nil, nil, err
	}
	if chain, err = a.authChain(rq.Context(), state); err != nil {
		return nil, nil, err
	}
	return state, chain, nil
}

// getState answers GET /v1/state/{roomId}?event_id=.
func (a *API) getState(rq *request) (any, error) {
	state, chain, err := a.stateRequest(rq)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdus": pdus(state), "auth_chain": pdus(chain)}, nil
}

// getStateIDs answers GET /v1/state_ids/{roomId}?event_id=.
func (a *API) getStateIDs(rq *request) (any, error) {
	state, chain, err := a.stateRequest(rq)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdu_ids": eventIDs(state), "auth_chain_ids": eventIDs(chain)}, nil
}

// getEventAuth answers GET /v1/event_auth/{roomId}/{eventId}.
func (a *API) getEventAuth(rq *request) (any, error) {
	roomID := rq.vars["roomId"]
	if err := a.authorize(rq.Context(), rq.origin, roomID); err != nil {
		return nil, err
	}
	ev, err := a.roomEvent(rq.Context(), roomID, rq.vars["eventId"])
	if err != nil {
		return nil, err
	}
	chain, err := a.authChain(rq.Context(), []*storage.StoredEvent{ev})
	if err != nil {
		return nil, err
	}
	return map[string]any{"auth_chain": pdus(chain)}, nil
}

// missingEventsRequest is the body of /get_missing_events.
type missingEventsRequest struct {
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
	Limit          *int     `json:"limit"`
	MinDepth       int64    `json:"min_depth"`
}

// getMissingEvents answers POST /v1/get_missing_events/{roomId}: the prev
// events of latest_events, breadth first, not going past earliest_events,
// up to limit (default 10, at most 20), oldest first.
func (a *API) getMissingEvents(rq *request) (any, error) {
	roomID := rq.vars["roomId"]
	if err := a.authorize(rq.Context(), rq.origin, roomID); err != nil {
		return nil, err
	}
	var body missingEventsRequest
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	if len(body.LatestEvents) == 0 {
		return nil, matrixerr.BadJSON("latest_events: required, non-empty")
	}
	if len(body.LatestEvents) > maxIDList || len(body.EarliestEvents) > maxIDList {
		return nil, matrixerr.BadJSON("earliest_events, latest_events: at most %d IDs each", maxIDList)
	}
	limit := DefaultMissingEventsLimit
	if body.Limit != nil {
		if *body.Limit < 0 {
			return nil, matrixerr.BadJSON("limit: must not be negative")
		}
		limit = min(max(*body.Limit, 1), MaxMissingEventsLimit)
	}
	evs, err := a.walk(rq.Context(), roomID, body.LatestEvents, body.EarliestEvents, false, limit)
	if err != nil {
		return nil, err
	}
	slices.Reverse(evs)
	return map[string]any{"events": pdus(evs)}, nil
}

// getBackfill answers GET /v1/backfill/{roomId}?v=&limit=: the events v
// and their prev events, breadth first, up to limit (default 10, at most
// 100), newest first.
func (a *API) getBackfill(rq *request) (any, error) {
	roomID := rq.vars["roomId"]
	if err := a.authorize(rq.Context(), rq.origin, roomID); err != nil {
		return nil, err
	}
	v := rq.URL.Query()["v"]
	if len(v) == 0 {
		return nil, matrixerr.MissingParam("v is required")
	}
	if len(v) > maxIDList {
		return nil, matrixerr.InvalidParam("v: at most %d IDs", maxIDList)
	}
	limit, err := rq.queryInt("limit", DefaultBackfillLimit)
	if err != nil {
		return nil, err
	}
	limit = min(max(limit, 1), MaxBackfillLimit)
	evs, err := a.walk(rq.Context(), roomID, v, nil, true, limit)
	if err != nil {
		return nil, err
	}
	return a.transaction(evs), nil
}
