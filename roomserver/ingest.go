package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

// Fetcher fetches events from another server (federation implements it).
type Fetcher interface {
	// Event fetches one event (federation format) from server.
	Event(ctx context.Context, server, eventID string) (json.RawMessage, error)
	// EventAuth fetches the auth chain of an event of roomID from server.
	EventAuth(ctx context.Context, server, roomID, eventID string) ([]json.RawMessage, error)
	// MissingEvents fetches from server up to limit events of roomID that
	// are ancestors (through prev events) of latest but not of earliest.
	MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error)
}

// PDUResult is the outcome of one received PDU, as /send reports it.
type PDUResult struct {
	// EventID is the PDU's event ID ("" when it is not even JSON).
	EventID string
	// Error is "" when the event was accepted (soft-failed events are
	// accepted: Matrix reports them as success); otherwise why not.
	Error string
	// SoftFailed marks an accepted event that was soft-failed
	// (SPEC-NOTES §4).
	SoftFailed bool
	// Rejected marks an event refused for what it is: not an event of the
	// room version (format, content hash, sender/depth), no valid origin
	// signature, or failing the auth rules. Only those failing the auth
	// rules are stored (as rejected). An event refused for another reason
	// (unknown room, missing events that could not be fetched) has Error
	// set and Rejected false: it may be sent again.
	Rejected bool
}

// refusal of one PDU: reported in its PDUResult, not as ReceivePDUs' error.
type pduRefusal struct {
	msg      string
	rejected bool
}

func (e *pduRefusal) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &pduRefusal{msg: fmt.Sprintf(format, args...)}
}

func rejectPDU(format string, args ...any) error {
	return &pduRefusal{msg: fmt.Sprintf(format, args...), rejected: true}
}

// ReceivePDUs takes in the PDUs of a federation transaction from origin
// (SPEC-NOTES §8, §12), one at a time, and reports each one's outcome in
// order. For each PDU:
//
//   - its room must be one this server holds or to which a local user is
//     invited (no unsolicited rooms); a room not held yet is started from
//     its create event, fetched from origin;
//   - it is parsed for the room's version (content hash, event format) and
//     its origin's signature verified with Config.Keys;
//   - its missing auth and prev events are fetched from origin through
//     Config.Fetcher (EventAuth and MissingEvents in bulk, Event one by
//     one; at most Config.MaxFetchPerPDU auth events and as many prev
//     events per PDU) and taken in first, through the same steps. An auth
//     event that cannot be had makes the PDU refused (not rejected: it may
//     come again); a prev event that cannot be had leaves a gap;
//   - it is checked against its auth events (authrules.CheckAuthEvents)
//     and against the state before it, the state resolution (stateres) of
//     the states after its prev events (after a rejected prev event: the
//     state before it; for a gap, the state the event's auth events make
//     stands in, as Matrix treats such events) with authrules.Check; an
//     event failing them is stored as rejected;
//   - it is checked for soft-fail against the room's current state
//     (authrules.CheckSoftFail) and stored with its state; an accepted event
//     that is not soft-failed becomes a forward extremity in place of its
//     prev events, and the room's current state becomes the state
//     resolution of the forward extremities' states;
//   - /sync is woken, and a pending commit that is not soft-failed goes to
//     the commit queue (SPEC-NOTES §6).
//
// An event stored already is a no-op (reported with its stored flags).
// The error is for failures of this server (storage, a cancelled
// context), after which the transaction should be retried; the results
// returned with it are those of the PDUs taken in before.
func (s *Server) ReceivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) ([]PDUResult, error) {
	if s.cfg.Keys == nil {
		return nil, errors.New("roomserver: receiving events needs Config.Keys")
	}
	out := make([]PDUResult, 0, len(pdus))
	for i, raw := range pdus {
		res, err := s.receivePDU(ctx, origin, raw)
		if err != nil {
			return out, fmt.Errorf("roomserver: receiving PDU %d (%s) from %s: %w", i, res.EventID, origin, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// receivePDU takes in one PDU.
func (s *Server) receivePDU(ctx context.Context, origin string, raw json.RawMessage) (PDUResult, error) {
	res := PDUResult{EventID: roomversion.ReferenceIDOf(raw)}
	in := &ingest{s: s, origin: origin, authBudget: s.cfg.MaxFetchPerPDU, prevBudget: s.cfg.MaxFetchPerPDU,
		cache: map[string]json.RawMessage{}, visiting: map[string]bool{}, askedAuth: map[string]bool{}}
	out, err := in.receive(ctx, raw, &res)
	var pr *pduRefusal
	switch {
	case errors.As(err, &pr):
		res.Error, res.Rejected = pr.msg, pr.rejected
		return res, nil
	case err != nil:
		return res, err
	}
	res.SoftFailed, res.Rejected = out.softFailed, out.rejected
	if out.rejected {
		res.Error = out.reason
	}
	return res, nil
}

// ingest is the taking in of one received PDU and the events fetched for
// it.
type ingest struct {
	s      *Server
	origin string
	r      *room // locked while taking events in
	v      roomversion.Version
	// authBudget and prevBudget are how many more missing auth events
	// and prev events may be fetched.
	authBudget, prevBudget int
	// cache holds events fetched in bulk (EventAuth, MissingEvents) by ID.
	cache        map[string]json.RawMessage
	visiting     map[string]bool
	askedAuth    map[string]bool
	askedMissing bool
}

// outcome is what became of one event.
type outcome struct {
	rejected, softFailed bool
	reason               string
}

// pduTop is what is read of a PDU before it can be parsed.
type pduTop struct {
	RoomID     string   `json:"room_id"`
	Type       string   `json:"type"`
	AuthEvents []string `json:"auth_events"`
	Content    struct {
		RoomVersion string `json:"room_version"`
	} `json:"content"`
}

// receive finds the PDU's room, starts it if needed, and takes the PDU in.
func (in *ingest) receive(ctx context.Context, raw json.RawMessage, res *PDUResult) (outcome, error) {
	s := in.s
	var top pduTop
	if err := json.Unmarshal(raw, &top); err != nil {
		return outcome{}, rejectPDU("not a JSON event: %v", err)
	}
	if top.RoomID == "" {
		return outcome{}, rejectPDU("the event has no room_id")
	}
	roomID := top.RoomID
	held, err := s.holdsRoom(ctx, roomID)
	if err != nil {
		return outcome{}, err
	}
	if !held {
		invites, err := s.st.Memberships(ctx, roomID, "", Invite)
		if err != nil {
			return outcome{}, fmt.Errorf("reading invites to %s: %w", roomID, err)
		}
		if len(invites) == 0 {
			return outcome{}, refuse("this server takes no part in room %s and no local user is invited to it", roomID)
		}
		if err := in.startRoom(ctx, roomID, raw, top); err != nil {
			return outcome{}, err
		}
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return outcome{}, err
	}
	defer r.mu.Unlock()
	in.r, in.v = r, r.info.Version
	ev, err := authrules.ParseEvent(ctx, in.v, raw)
	if err != nil {
		return outcome{}, rejectPDU("not an event of room version %s: %v", in.v, err)
	}
	res.EventID = ev.EventID()
	return in.take(ctx, ev)
}

// holdsRoom reports whether the server holds the room's create event.
func (s *Server) holdsRoom(ctx context.Context, roomID string) (bool, error) {
	_, err := s.st.CurrentState(ctx, roomID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("reading the current state of %s: %w", roomID, err)
}

// startRoom takes in the create event of a room the server does not hold
// yet: the PDU itself if it is one, else the create event among its auth
// events, fetched from the origin. Its room version is the one the create
// event names.
func (in *ingest) startRoom(ctx context.Context, roomID string, raw json.RawMessage, top pduTop) error {
	s := in.s
	createJSON, createID := raw, ""
	if top.Type != roomversion.EventTypeCreate {
		createJSON = nil
		for _, id := range top.AuthEvents {
			if len(createJSON) != 0 {
				break
			}
			b, err := in.fetch(ctx, id, true)
			if err != nil {
				return err
			}
			var t pduTop
			if json.Unmarshal(b, &t) == nil && t.Type == roomversion.EventTypeCreate {
				createJSON, createID = b, id
			}
		}
		if len(createJSON) == 0 {
			return refuse("room %s is not held here and none of the event's auth events is its create event", roomID)
		}
		if err := json.Unmarshal(createJSON, &top); err != nil {
			return refuse("the create event of %s is not JSON: %v", roomID, err)
		}
	}
	v, err := roomversion.Lookup(top.Content.RoomVersion)
	if err != nil {
		return rejectPDU("the create event of %s names room version %q, not an MLS room version (rule 3.3)", roomID, top.Content.RoomVersion)
	}
	create, err := authrules.ParseEvent(ctx, v, createJSON)
	if err != nil {
		return rejectPDU("the create event of %s: %v", roomID, err)
	}
	if create.RoomID().String() != roomID || create.Kind() != roomversion.EventCreate {
		return rejectPDU("the create event %s is not the create event of %s", create.EventID(), roomID)
	}
	if createID != "" && create.EventID() != createID {
		return refuse("%s answered %s when asked for the create event %s", in.origin, create.EventID(), createID)
	}
	if err := roomversion.VerifySignature(ctx, create, s.cfg.Keys); err != nil {
		return rejectPDU("the create event %s: %v", create.EventID(), err)
	}
	if err := authrules.CheckAuthEvents(create, nil, nil); err != nil {
		return rejectPDU("the create event %s: %v", create.EventID(), err)
	}
	if _, err := s.st.StoreEvent(ctx, create, storage.StoreEventOptions{
		CurrentState: &storage.RoomState{CreateID: create.EventID()}, ExpectCurrent: &storage.RoomState{},
	}); err != nil && !errors.Is(err, storage.ErrStateChanged) {
		return fmt.Errorf("storing the create event of %s: %w", roomID, err)
	}
	// A room started meanwhile by another process is re-read by lockRoom.
	s.cfg.Logger.Info("started a room from a received event", slog.String("room_id", roomID), slog.String("origin", in.origin))
	return nil
}

// fetch returns a missing event's JSON, from the cache or the origin,
// spending the auth or prev budget.
func (in *ingest) fetch(ctx context.Context, eventID string, auth bool) (json.RawMessage, error) {
	budget := &in.prevBudget
	if auth {
		budget = &in.authBudget
	}
	if *budget <= 0 {
		return nil, refuse("event %s is missing: more than %d events would have to be fetched", eventID, in.s.cfg.MaxFetchPerPDU)
	}
	if b, ok := in.cache[eventID]; ok {
		*budget--
		return b, nil
	}
	if in.s.cfg.Fetcher == nil {
		return nil, refuse("event %s is missing and this server fetches no events", eventID)
	}
	*budget--
	b, err := in.s.cfg.Fetcher.Event(ctx, in.origin, eventID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetching %s from %s: %w", eventID, in.origin, ctx.Err())
		}
		return nil, refuse("fetching missing event %s from %s: %v", eventID, in.origin, err)
	}
	return b, nil
}

// cacheEvents keeps events fetched in bulk, by their IDs, up to twice the
// budget.
func (in *ingest) cacheEvents(evs []json.RawMessage) {
	for _, b := range evs {
		if len(in.cache) >= 2*in.s.cfg.MaxFetchPerPDU {
			return
		}
		if id := roomversion.ReferenceIDOf(b); id != "" {
			in.cache[id] = b
		}
	}
}

// take takes in one parsed event of the room (in.r locked).
func (in *ingest) take(ctx context.Context, ev *roomversion.Event) (outcome, error) {
	s, r := in.s, in.r
	id := ev.EventID()
	if out, ok, err := in.stored(ctx, id); err != nil || ok {
		return out, err
	}
	if in.visiting[id] {
		return outcome{}, rejectPDU("event %s is its own ancestor", id)
	}
	in.visiting[id] = true
	defer delete(in.visiting, id)
	if ev.RoomID().String() != r.id {
		return outcome{}, rejectPDU("event %s belongs to room %s, not %s", id, ev.RoomID(), r.id)
	}
	if err := roomversion.VerifySignature(ctx, ev, s.cfg.Keys); err != nil {
		if ctx.Err() != nil {
			return outcome{}, fmt.Errorf("verifying %s: %w", id, ctx.Err())
		}
		return outcome{}, rejectPDU("event %s: %v", id, err)
	}
	if ev.Kind() == roomversion.EventCreate {
		return outcome{}, rejectPDU("event %s is a second create event of %s (the room's is %s)", id, r.id, r.mem.Create().EventID())
	}
	if err := in.fetchMissing(ctx, ev); err != nil {
		return outcome{}, err
	}

	// Against its auth events.
	authIDs := ev.AuthEventIDs()
	known, err := s.st.Events(ctx, authIDs)
	if err != nil {
		return outcome{}, fmt.Errorf("loading the auth events of %s: %w", id, err)
	}
	byID := map[string]*storage.StoredEvent{}
	for _, se := range known {
		byID[se.Event.EventID()] = se
	}
	auth := make([]*roomversion.Event, len(authIDs))
	var authCommit *roomversion.Event
	for i, aid := range authIDs {
		if se := byID[aid]; se != nil {
			auth[i] = se.Event
			if se.Event.Kind() == roomversion.EventCommit && authCommit == nil {
				authCommit = se.Event
				if held := r.mem.Event(aid); held != nil {
					authCommit = held
				}
			}
		}
	}
	rejected := func(aid string) bool { se := byID[aid]; return se != nil && se.Rejected }
	if err := authrules.CheckAuthEvents(ev, auth, rejected); err != nil {
		return in.storeRejected(ctx, ev, storage.RoomState{}, err)
	}

	for attempt := 0; ; attempt++ {
		out, err := in.judge(ctx, ev, authCommit)
		if !errors.Is(err, storage.ErrStateChanged) || attempt == 2 {
			return out, err
		}
		// Another process changed the room's current state meanwhile.
		if err := s.refresh(ctx, r); err != nil {
			return outcome{}, err
		}
	}
}

// stored reports the outcome of an event stored already.
func (in *ingest) stored(ctx context.Context, id string) (outcome, bool, error) {
	se, err := in.s.st.Event(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return outcome{}, false, nil
	case err != nil:
		return outcome{}, false, fmt.Errorf("loading %s: %w", id, err)
	}
	out := outcome{rejected: se.Rejected, softFailed: se.SoftFailed}
	if se.Rejected {
		out.reason = fmt.Sprintf("event %s was rejected before", id)
	}
	return out, true, nil
}

// fetchMissing fetches and takes in the event's missing auth events, then
// its missing prev events.
func (in *ingest) fetchMissing(ctx context.Context, ev *roomversion.Event) error {
	s, id := in.s, ev.EventID()
	missing := func(ids []string) ([]string, error) {
		known, err := s.st.Events(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("loading the auth and prev events of %s: %w", id, err)
		}
		have := map[string]bool{}
		for _, se := range known {
			have[se.Event.EventID()] = true
		}
		return slices.DeleteFunc(slices.Clone(ids), func(x string) bool { return have[x] }), nil
	}
	authMissing, err := missing(ev.AuthEventIDs())
	if err != nil {
		return err
	}
	if len(authMissing) > 0 && s.cfg.Fetcher != nil && !in.askedAuth[id] {
		in.askedAuth[id] = true
		chain, err := s.cfg.Fetcher.EventAuth(ctx, in.origin, in.r.id, id)
		if err == nil {
			in.cacheEvents(chain)
		} else if ctx.Err() != nil {
			return fmt.Errorf("fetching the auth chain of %s: %w", id, ctx.Err())
		}
		// Otherwise the events are fetched one by one.
	}
	for _, aid := range authMissing {
		if err := in.ensure(ctx, aid, true); err != nil {
			return err
		}
	}
	prevMissing, err := missing(ev.PrevEventIDs())
	if err != nil {
		return err
	}
	if len(prevMissing) > 0 && s.cfg.Fetcher != nil && !in.askedMissing {
		in.askedMissing = true
		earliest, err := s.st.ForwardExtremities(ctx, in.r.id)
		if err != nil {
			return fmt.Errorf("reading forward extremities of %s: %w", in.r.id, err)
		}
		evs, err := s.cfg.Fetcher.MissingEvents(ctx, in.origin, in.r.id, earliest, []string{id}, in.prevBudget)
		if err == nil {
			in.cacheEvents(evs)
		} else if ctx.Err() != nil {
			return fmt.Errorf("fetching the events missing before %s: %w", id, ctx.Err())
		}
	}
	for _, pid := range prevMissing {
		// A prev event that cannot be had (beyond the budget, not
		// served, refused) leaves a gap: see judge.
		var pr *pduRefusal
		if err := in.ensure(ctx, pid, false); err != nil && !errors.As(err, &pr) {
			return err
		} else if pr != nil {
			in.s.cfg.Logger.Info("a gap before a received event", slog.String("event_id", id),
				slog.String("prev_event", pid), slog.String("reason", pr.msg))
		}
	}
	return nil
}

// ensure fetches a missing auth or prev event and takes it in. An event
// that cannot be fetched, or is refused, is a refusal (*pduRefusal): for an
// auth event the event needing it is refused (not rejected: it cannot be
// judged); a prev event leaves a gap.
func (in *ingest) ensure(ctx context.Context, eventID string, auth bool) error {
	if _, ok, err := in.stored(ctx, eventID); err != nil || ok {
		return err
	}
	what := "prev"
	if auth {
		what = "auth"
	}
	b, err := in.fetch(ctx, eventID, auth)
	if err != nil {
		return err
	}
	ev, err := authrules.ParseEvent(ctx, in.v, b)
	if err != nil {
		return refuse("missing %s event %s from %s is not an event of room version %s: %v", what, eventID, in.origin, in.v, err)
	}
	if ev.EventID() != eventID {
		return refuse("%s answered %s when asked for %s", in.origin, ev.EventID(), eventID)
	}
	if _, err := in.take(ctx, ev); err != nil {
		var pr *pduRefusal
		if errors.As(err, &pr) {
			return refuse("missing %s event %s: %s", what, eventID, pr.msg)
		}
		return err
	}
	return nil
}

// storeRejected stores an event the auth rules rejected (cause, an
// *authrules.Error) and reports it.
func (in *ingest) storeRejected(ctx context.Context, ev *roomversion.Event, before storage.RoomState, cause error) (outcome, error) {
	var ae *authrules.Error
	if !errors.As(cause, &ae) {
		return outcome{}, fmt.Errorf("checking %s: %w", ev.EventID(), cause)
	}
	if _, err := in.s.st.StoreEvent(ctx, ev, storage.StoreEventOptions{Rejected: true, StateBefore: before}); err != nil {
		return outcome{}, fmt.Errorf("storing rejected event %s: %w", ev.EventID(), err)
	}
	in.s.cfg.Logger.Info("rejected a received event", slog.String("event_id", ev.EventID()),
		slog.String("origin", ev.Origin()), slog.String("rule", ae.Rule), slog.String("reason", ae.Reason))
	return outcome{rejected: true, reason: fmt.Sprintf("auth rule %s: %s", ae.Rule, ae.Reason)}, nil
}

// judge checks an event that passed against its auth events against the
// state before it and for soft-fail, and stores it. A storage.ErrStateChanged
// error means the room's current state changed meanwhile (try again after a
// refresh).
func (in *ingest) judge(ctx context.Context, ev *roomversion.Event, authCommit *roomversion.Event) (outcome, error) {
	s, r := in.s, in.r
	id := ev.EventID()
	create := r.mem.Create()
	prev := ev.PrevEventIDs()
	sets, known, err := in.statesAfter(ctx, prev)
	if err != nil {
		return outcome{}, err
	}
	if known < len(prev) {
		// A gap: prev events this server could not get (or knows no state
		// after). As Matrix does with such events, the state the event's
		// auth events make stands in for the states after them.
		sets = append(sets, stateres.StateSet{Create: create, Commit: authCommit})
	}
	var before *roomversion.Event
	if len(sets) > 0 {
		st, err := stateres.Resolve(sets, r.mem)
		if err != nil {
			// Events that passed the checks always resolve: this one
			// cannot be judged.
			return outcome{}, refuse("resolving the state before %s: %v", id, err)
		}
		before = st.Commit
	}
	beforeState := storage.RoomState{CreateID: create.EventID()}
	if before != nil {
		beforeState.CommitID = before.EventID()
	}
	if err := authrules.Check(ev, authCommit, r.mem.State(before)); err != nil {
		return in.storeRejected(ctx, ev, beforeState, err)
	}
	sf, err := authrules.CheckSoftFail(ev, r.mem)
	if err != nil {
		return outcome{}, refuse("soft-fail check of %s: %v", id, err)
	}
	expect := r.current
	opts := storage.StoreEventOptions{StateBefore: beforeState, ExpectCurrent: &expect}
	var newCurrent *roomversion.Event
	if sf != nil {
		opts.SoftFailed, opts.SoftFailReason = true, sf.String()
	} else {
		// The new forward extremities: the event in place of its prev
		// events. The current state is the resolution of their states.
		ext, err := s.st.ForwardExtremities(ctx, r.id)
		if err != nil {
			return outcome{}, fmt.Errorf("reading forward extremities of %s: %w", r.id, err)
		}
		ext = slices.DeleteFunc(ext, func(x string) bool { return slices.Contains(prev, x) })
		after := before
		if ev.Kind() == roomversion.EventCommit {
			after = ev
		}
		sets, _, err := in.statesAfter(ctx, ext)
		if err != nil {
			return outcome{}, err
		}
		sets = append(sets, stateres.StateSet{Create: create, Commit: after})
		cur, err := stateres.Resolve(sets, withEvent{r.mem, ev})
		if err != nil {
			return outcome{}, refuse("resolving the current state of %s with %s: %v", r.id, id, err)
		}
		curID := ""
		if cur.Commit != nil {
			curID = cur.Commit.EventID()
		}
		if curID != r.current.CommitID {
			newCurrent = cur.Commit
			opts.CurrentState = &storage.RoomState{CreateID: create.EventID(), CommitID: curID}
		}
	}
	isNew, err := s.st.StoreEvent(ctx, ev, opts)
	if err != nil {
		return outcome{}, fmt.Errorf("storing %s: %w", id, err)
	}
	if !isNew {
		// Stored meanwhile by another process.
		if err := s.refresh(ctx, r); err != nil {
			return outcome{}, err
		}
		out, _, err := in.stored(ctx, id)
		return out, err
	}
	r.mem.Add(ev)
	if opts.CurrentState != nil {
		r.mem.SetCurrent(newCurrent)
		r.current = *opts.CurrentState
	}
	s.notify(ctx, r.id)
	if sf != nil {
		s.cfg.Logger.Info("soft-failed a received event", slog.String("event_id", id), slog.String("origin", ev.Origin()),
			slog.String("reason", sf.String()))
		return outcome{softFailed: true, reason: sf.String()}, nil
	}
	if ev.Kind() == roomversion.EventPendingCommit {
		if _, err := s.queue.Receive(ctx, ev, s.now()); err != nil {
			// Stored; a later Tick finds it in storage.
			s.cfg.Logger.Error("queueing a received pending commit", slog.String("event_id", id), slog.Any("error", err))
		}
	}
	return outcome{}, nil
}

// statesAfter returns the states after the events among ids whose state
// this server knows: for an accepted (or soft-failed) event the state
// before it, with the event itself as commit if it is one; for a rejected
// event the state before it (a rejected event changes nothing, as in
// Matrix). It reports how many of ids have a known state after them: the
// others are unknown, of another room, or rejected without a state (they
// failed against their auth events).
func (in *ingest) statesAfter(ctx context.Context, ids []string) ([]stateres.StateSet, int, error) {
	s, r := in.s, in.r
	create := r.mem.Create()
	ses, err := s.st.Events(ctx, ids)
	if err != nil {
		return nil, 0, fmt.Errorf("loading events of %s: %w", r.id, err)
	}
	var sets []stateres.StateSet
	for _, se := range ses {
		ev := se.Event
		if ev.RoomID().String() != r.id {
			continue
		}
		var commit *roomversion.Event
		switch {
		case ev.Kind() == roomversion.EventCreate && !se.Rejected:
		case ev.Kind() == roomversion.EventCommit && !se.Rejected:
			commit = ev
		default:
			st, err := s.st.StateAtEvent(ctx, ev.EventID())
			if errors.Is(err, storage.ErrNotFound) {
				continue // no state known at it
			}
			if err != nil {
				return nil, 0, fmt.Errorf("loading the state at %s: %w", ev.EventID(), err)
			}
			if st.CommitID != "" {
				if commit, err = in.held(ctx, st.CommitID); err != nil {
					return nil, 0, err
				}
			}
		}
		if commit != nil {
			if h := r.mem.Event(commit.EventID()); h != nil {
				commit = h
			}
		}
		sets = append(sets, stateres.StateSet{Create: create, Commit: commit})
	}
	return sets, len(sets), nil
}

// held returns a held event, from the room's view or storage.
func (in *ingest) held(ctx context.Context, id string) (*roomversion.Event, error) {
	if ev := in.r.mem.Event(id); ev != nil {
		return ev, nil
	}
	se, err := in.s.st.Event(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", id, err)
	}
	return se.Event, nil
}

// withEvent is a stateres.Store of the room's events and one more.
type withEvent struct {
	room *authrules.MemRoom
	ev   *roomversion.Event
}

func (w withEvent) Event(id string) *roomversion.Event {
	if id == w.ev.EventID() {
		return w.ev
	}
	return w.room.Event(id)
}
