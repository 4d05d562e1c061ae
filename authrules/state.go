package authrules

import (
	"bytes"

	"github.com/mlsmode/mlsmode/roomversion"
)

// State is the room state an event is checked against: the create event,
// the current commit and the commit's mainline. It is all the auth rules
// need to know of a room besides the event's own auth events (Check).
//
// The state may be the event's auth events (CheckAuthEvents builds one),
// the state before the event (at its prev events), the room's current
// state, or the partially resolved state during state resolution.
type State interface {
	// Create returns the room's create event. It is never nil.
	Create() *roomversion.Event
	// Commit returns the current commit, or nil when the state has no
	// commit yet (before the epoch-0 commit: the virtual genesis commit of
	// SPEC-NOTES §4 stands in for it).
	Commit() *roomversion.Event
	// MainlineAt returns the commit on the mainline of Commit() whose MLS
	// epoch is epoch, or nil when there is none (epoch beyond the current
	// one) or it is not known. The mainline is Commit(), its auth commit,
	// that commit's auth commit and so on down to the epoch-0 commit
	// (SPEC-NOTES §5); since every commit's epoch is its auth commit's plus
	// one (rule 9.3), it has exactly one commit per epoch 0..Commit().Epoch().
	//
	// The chain rule asks only for the epoch of the commit it wonders about;
	// an implementation that knows only Commit() (as the state made of an
	// event's auth events does) answers for Commit().Epoch() alone.
	MainlineAt(epoch uint64) *roomversion.Event
}

// Snapshot is a State held in memory. The zero value is not usable: set
// CreateEvent.
type Snapshot struct {
	// CreateEvent is the room's create event.
	CreateEvent *roomversion.Event
	// CommitEvent is the current commit, nil before the epoch-0 commit.
	CommitEvent *roomversion.Event
	// Mainline, when not nil, is the mainline of CommitEvent indexed by
	// epoch: Mainline[e] is the commit of epoch e, and
	// Mainline[len(Mainline)-1] is CommitEvent. Entries may be nil where a
	// commit is not known. When Mainline is nil only CommitEvent is known to
	// be on the mainline.
	Mainline []*roomversion.Event
}

var _ State = (*Snapshot)(nil)

// Create returns CreateEvent.
func (s *Snapshot) Create() *roomversion.Event { return s.CreateEvent }

// Commit returns CommitEvent.
func (s *Snapshot) Commit() *roomversion.Event { return s.CommitEvent }

// MainlineAt returns Mainline[epoch], or CommitEvent if Mainline is nil and
// CommitEvent's epoch is epoch, or nil.
func (s *Snapshot) MainlineAt(epoch uint64) *roomversion.Event {
	if s.Mainline != nil {
		if epoch < uint64(len(s.Mainline)) {
			return s.Mainline[epoch]
		}
		return nil
	}
	if s.CommitEvent != nil && s.CommitEvent.Epoch() == epoch {
		return s.CommitEvent
	}
	return nil
}

// Room is what soft-fail needs to know of a room (SPEC-NOTES §4): its
// current state and the events it holds. "Holds" means received and passed
// the auth rules, soft-failed events included, rejected ones not. The event
// being judged is not yet among them (CheckSoftFail ignores it if it is).
type Room interface {
	// State is the room's current state: its Commit is the current commit
	// (the resolved state of the room's forward extremities) and MainlineAt
	// answers for every epoch up to it.
	State
	// Event returns the held event with that ID, or nil.
	Event(id string) *roomversion.Event
	// WithCiphertext returns the held events whose decoded ciphertext (the
	// MLSMessage, roomversion.Event.Ciphertext) equals ciphertext.
	WithCiphertext(ciphertext []byte) []*roomversion.Event
	// From returns the held events whose origin is origin.
	From(origin string) []*roomversion.Event
}

// equivalent reports whether two commits are the same commit for the rules
// (SPEC-NOTES §4): the same event, or byte-identical ciphertext. Either may
// be nil (the genesis commit): two nils are the same.
func equivalent(a, b *roomversion.Event) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || a.EventID() == b.EventID() || bytes.Equal(a.Ciphertext(), b.Ciphertext())
}

// OnMainline returns the commit of s's mainline that c is or is equivalent
// to (SPEC-NOTES §4: the same event or byte-identical ciphertext), or nil. A
// nil c (genesis) is on every mainline; OnMainline returns nil for it too,
// so callers test c == nil first.
func OnMainline(s State, c *roomversion.Event) *roomversion.Event {
	if c == nil {
		return nil
	}
	if m := s.MainlineAt(c.Epoch()); m != nil && equivalent(m, c) {
		return m
	}
	return nil
}

// authCommitID returns the ID in ev's auth events that is not the create
// event's, "" when there is none (the create event and the epoch-0 commit).
// It allocates (AuthEventIDs copies); the hot path of Check does not use it.
func authCommitID(ev *roomversion.Event, createID string) string {
	for _, id := range ev.AuthEventIDs() {
		if id != createID {
			return id
		}
	}
	return ""
}

// maxCachedMainlines bounds MemRoom's cache of mainlines (each as long as
// its commit's epoch).
const maxCachedMainlines = 64

// MemRoom is an in-memory Room: the events a room holds, with its current
// state. It serves tests, tools (mlsroom check) and servers small enough
// to keep rooms in memory. It is not safe for concurrent use.
type MemRoom struct {
	create    *roomversion.Event
	current   *roomversion.Event
	events    map[string]*roomversion.Event
	auth      map[string]string // event ID -> its auth commit's ID
	byCT      map[string][]*roomversion.Event
	byOrigin  map[string][]*roomversion.Event
	mainlines map[string][]*roomversion.Event // commit ID -> mainline; nil entry: not consistent
}

var _ Room = (*MemRoom)(nil)

// NewMemRoom returns a room holding only its create event, with no commit.
func NewMemRoom(create *roomversion.Event) *MemRoom {
	r := &MemRoom{
		create:    create,
		events:    map[string]*roomversion.Event{},
		auth:      map[string]string{},
		byCT:      map[string][]*roomversion.Event{},
		byOrigin:  map[string][]*roomversion.Event{},
		mainlines: map[string][]*roomversion.Event{},
	}
	r.Add(create)
	return r
}

// Add holds ev (it passed the auth rules; it may be soft-failed). Adding an
// event twice does nothing.
func (r *MemRoom) Add(ev *roomversion.Event) {
	id := ev.EventID()
	if _, ok := r.events[id]; ok {
		return
	}
	r.events[id] = ev
	r.auth[id] = authCommitID(ev, r.create.EventID())
	if ct := ev.Ciphertext(); ct != nil {
		r.byCT[string(ct)] = append(r.byCT[string(ct)], ev)
	}
	r.byOrigin[ev.Origin()] = append(r.byOrigin[ev.Origin()], ev)
	if ev.Kind() == roomversion.EventCommit {
		// A chain that was missing this commit may now be complete; complete
		// chains never change.
		for id, ml := range r.mainlines {
			if ml == nil {
				delete(r.mainlines, id)
			}
		}
	}
}

// SetCurrent makes commit (held or not; nil for none) the current commit,
// holding it if it is not held yet.
func (r *MemRoom) SetCurrent(commit *roomversion.Event) {
	if commit != nil {
		r.Add(commit)
	}
	r.current = commit
}

// Create returns the create event.
func (r *MemRoom) Create() *roomversion.Event { return r.create }

// Commit returns the current commit.
func (r *MemRoom) Commit() *roomversion.Event { return r.current }

// MainlineAt answers for the current commit's mainline.
func (r *MemRoom) MainlineAt(epoch uint64) *roomversion.Event {
	ml := r.Mainline(r.current)
	switch {
	case epoch < uint64(len(ml)):
		return ml[epoch]
	case ml == nil && r.current != nil && r.current.Epoch() == epoch:
		return r.current
	}
	return nil
}

// Event returns the held event with that ID, or nil.
func (r *MemRoom) Event(id string) *roomversion.Event { return r.events[id] }

// WithCiphertext returns the held events with that ciphertext.
func (r *MemRoom) WithCiphertext(ciphertext []byte) []*roomversion.Event {
	return r.byCT[string(ciphertext)]
}

// From returns the held events of origin, in the order they were added.
func (r *MemRoom) From(origin string) []*roomversion.Event { return r.byOrigin[origin] }

// AuthCommit returns the held commit that ev names in its auth events, or
// nil when it names none or the room does not hold it.
func (r *MemRoom) AuthCommit(ev *roomversion.Event) *roomversion.Event {
	id, ok := r.auth[ev.EventID()]
	if !ok {
		id = authCommitID(ev, r.create.EventID())
	}
	if id == "" {
		return nil
	}
	return r.events[id]
}

// Mainline returns the mainline of commit indexed by epoch (see
// Snapshot.Mainline): commit, its auth commit, and so on down to the epoch-0
// commit. It returns nil for a nil commit, and nil when the room does not
// hold the whole chain or the chain does not step down one epoch at a time
// to epoch 0 (possible only for events that did not pass the auth rules);
// then only commit itself is known to be on its mainline. The result is
// cached and shared: do not modify it.
func (r *MemRoom) Mainline(commit *roomversion.Event) []*roomversion.Event {
	if commit == nil {
		return nil
	}
	if ml, ok := r.mainlines[commit.EventID()]; ok {
		return ml
	}
	var chain []*roomversion.Event
	c := commit
	for c != nil {
		if n := len(chain); n > 0 && c.Epoch()+1 != chain[n-1].Epoch() {
			chain = nil // not consecutive
			break
		}
		chain = append(chain, c)
		if c.Epoch() == 0 {
			break
		}
		c = r.AuthCommit(c)
	}
	var ml []*roomversion.Event
	if n := len(chain); n > 0 && chain[n-1].Epoch() == 0 {
		ml = make([]*roomversion.Event, n)
		for i, c := range chain {
			ml[n-1-i] = c
		}
	}
	if len(r.mainlines) >= maxCachedMainlines {
		clear(r.mainlines)
	}
	r.mainlines[commit.EventID()] = ml
	return ml
}

// State returns the state whose current commit is commit (nil: before the
// epoch-0 commit), with commit's mainline as far as the room holds it.
func (r *MemRoom) State(commit *roomversion.Event) *Snapshot {
	s := &Snapshot{CreateEvent: r.create, CommitEvent: commit}
	if commit != nil {
		s.Mainline = r.Mainline(commit)
	}
	return s
}
