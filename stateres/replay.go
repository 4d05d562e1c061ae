package stateres

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Replay is one server's view of a room as it takes events in one at a
// time, the reading of SPEC-NOTES §4-5 that mlsroom resolve, the
// conformance suite's expected outcomes and the simulator's servers share:
// the auth events are checked (rule 4); the event's rules run against the
// state before it, the resolution of the states after its accepted prev
// events; an event that passes is soft-failed or not against the current
// state; a commit that is not soft-failed becomes a forward extremity, and
// the current state is the resolution of the extremities' states.
// The events must come prev events first.
type Replay struct {
	room     *authrules.MemRoom
	rejected map[string]*roomversion.Event
	after    map[string]*roomversion.Event // state after each accepted event
	extrem   []string
	accepted []*roomversion.Event
	states   []StateSet // scratch
}

// Verdict is what Replay.Take decided of an event.
type Verdict struct {
	// Rejected is the rule the event failed (an *authrules.Error, or why
	// it could not be judged); nil for an accepted event.
	Rejected error
	// SoftFail is set for an accepted event that is soft-failed.
	SoftFail *authrules.SoftFail
}

// NewReplay returns a Replay of a room it has not seen the create event of.
func NewReplay() *Replay {
	return &Replay{rejected: map[string]*roomversion.Event{}, after: map[string]*roomversion.Event{}}
}

// Room is the room as taken in so far (nil before the create event).
func (r *Replay) Room() *authrules.MemRoom { return r.room }

// Rejected returns the rejected event id (nil if none was).
func (r *Replay) Rejected(id string) *roomversion.Event { return r.rejected[id] }

// ForwardExtremities lists the accepted events no accepted event builds on
// (soft-failed events left out), oldest first.
func (r *Replay) ForwardExtremities() []string { return slices.Clone(r.extrem) }

// Accepted lists the accepted events (soft-failed ones included) in the
// order taken.
func (r *Replay) Accepted() []*roomversion.Event { return slices.Clone(r.accepted) }

// Take judges ev and records it. The error is for what is not a verdict on
// the event (a state resolution that failed).
func (r *Replay) Take(ev *roomversion.Event) (Verdict, error) {
	reject := func(err error) (Verdict, error) {
		r.rejected[ev.EventID()] = ev
		return Verdict{Rejected: err}, nil
	}
	ids := ev.AuthEventIDs()
	auth := make([]*roomversion.Event, len(ids))
	var authCommit *roomversion.Event
	for i, id := range ids {
		if r.room != nil {
			auth[i] = r.room.Event(id)
		}
		if auth[i] == nil {
			auth[i] = r.rejected[id]
		}
		if auth[i] != nil && auth[i].Kind() == roomversion.EventCommit {
			authCommit = auth[i]
		}
	}
	if err := authrules.CheckAuthEvents(ev, auth, func(id string) bool { return r.rejected[id] != nil }); err != nil {
		return reject(err)
	}
	if ev.Kind() == roomversion.EventCreate {
		if r.room == nil {
			r.room = authrules.NewMemRoom(ev)
			r.after[ev.EventID()] = nil
			r.extrem = []string{ev.EventID()}
			r.accepted = append(r.accepted, ev)
		}
		return Verdict{}, nil
	}
	if r.room == nil {
		return reject(errors.New("the room has no create event"))
	}
	states := r.states[:0]
	for _, id := range ev.PrevEventIDs() {
		if c, ok := r.after[id]; ok {
			states = append(states, StateSet{Create: r.room.Create(), Commit: c})
		}
	}
	var before *roomversion.Event
	if len(states) > 0 {
		st, err := r.resolve(states)
		if err != nil {
			return Verdict{}, fmt.Errorf("resolving the state before %s: %w", ev.EventID(), err)
		}
		before = st.Commit
	}
	if err := authrules.Check(ev, authCommit, r.room.State(before)); err != nil {
		return reject(err)
	}
	sf, err := authrules.CheckSoftFail(ev, r.room)
	if err != nil {
		return reject(err)
	}
	r.room.Add(ev)
	r.accepted = append(r.accepted, ev)
	r.after[ev.EventID()] = before
	if ev.Kind() == roomversion.EventCommit {
		r.after[ev.EventID()] = ev
	}
	if sf != nil {
		return Verdict{SoftFail: sf}, nil
	}
	prev := ev.PrevEventIDs()
	r.extrem = slices.DeleteFunc(r.extrem, func(id string) bool { return slices.Contains(prev, id) })
	r.extrem = append(r.extrem, ev.EventID())
	states = states[:0]
	for _, id := range r.extrem {
		states = append(states, StateSet{Create: r.room.Create(), Commit: r.after[id]})
	}
	cur, err := r.resolve(states)
	if err != nil {
		return Verdict{}, fmt.Errorf("resolving the current state after %s: %w", ev.EventID(), err)
	}
	r.states = states
	r.room.SetCurrent(cur.Commit)
	return Verdict{}, nil
}

// resolve is Resolve, skipping the work when every state is the same (the
// answer is then that state).
func (r *Replay) resolve(states []StateSet) (StateSet, error) {
	same := true
	for _, st := range states[1:] {
		if st.Commit != states[0].Commit {
			same = false
			break
		}
	}
	if same {
		return states[0], nil
	}
	return Resolve(states, r.room)
}
