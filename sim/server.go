package sim

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

// server is one simulated homeserver: its signing key, its view of the
// room kept as a server keeps it (auth rules, chain rule, soft-fail, state
// resolution at the forward extremities), its pending-commit queue
// (commitqueue.Scheduler on in-memory storage) and its clients.
type server struct {
	w       *World
	idx     int
	name    string
	key     ed25519.PrivateKey
	skew    time.Duration
	down    int // > 0: down
	clients []*client

	// rp takes the room's events in and holds the room.
	rp         *stateres.Replay
	softFailed map[string]string
	store      *memStore
	sched      *commitqueue.Scheduler
	applied    int
}

func newServer(w *World, i int) *server {
	s := &server{w: w, idx: i, name: ServerName(i), rp: stateres.NewReplay(), softFailed: map[string]string{}}
	s.key = w.derivedKey(s.name)
	s.store = newMemStore(s)
	sched, err := commitqueue.New(commitqueue.Config{ServerName: s.name, Store: s.store, Applier: applier{s}, Clock: serverClock{s}})
	if err != nil {
		panic(err) // unreachable: every field is set
	}
	s.sched = sched
	return s
}

// serverClock is a server's view of the virtual time, skewed. The
// simulator calls Scheduler.Tick itself, so After is never used.
type serverClock struct{ s *server }

func (c serverClock) Now() time.Time                       { return c.s.localNow() }
func (c serverClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

// localNow is the server's clock: the virtual time plus its skew.
func (s *server) localNow() time.Time { return s.w.now.Add(s.skew) }

// current returns the room's current commit on this server.
func (s *server) current() *rvEvent {
	if s.rp.Room() == nil {
		return nil
	}
	return s.rp.Room().Commit()
}

func (s *server) currentID() string {
	if c := s.current(); c != nil {
		return c.EventID()
	}
	return ""
}

func (s *server) currentCt() int { return s.w.ctOf(s.current()) }

// holds reports whether the server has an event (accepted or rejected).
func (s *server) holds(id string) bool { return s.event(id) != nil }

func (s *server) event(id string) *rvEvent {
	if s.rp.Room() != nil {
		if ev := s.rp.Room().Event(id); ev != nil {
			return ev
		}
	}
	return s.rp.Rejected(id)
}

// build makes and signs an event of this server, stamped with its clock.
func (s *server) build(typ string, stateKey *string, content []byte, auth, prev []string) (*rvEvent, error) {
	w := s.w
	b := &roomversion.Builder{Version: w.version, RoomID: w.roomID, Type: typ, StateKey: stateKey, Content: content,
		AuthEvents: auth, PrevEvents: prev, Origin: s.name, Timestamp: s.localNow()}
	ev, err := b.Build(w.ctx, keyID, s.key)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: building %s: %w", s.name, typ, err)
	}
	w.order = append(w.order, ev)
	return ev, nil
}

// submit is a local client's send (SPEC-NOTES §11): a commit or pending
// commit must name the current commit, a message a commit on the mainline.
// It reports refused (409 WRONG_EPOCH) without building anything
// otherwise.
func (s *server) submit(typ string, stateKey *string, msg []byte, commitID string) (*rvEvent, error) {
	w := s.w
	auth := []string{s.rp.Room().Create().EventID()}
	if commitID != "" {
		auth = append(auth, commitID)
	}
	content, err := w.version.MLSContent(typ, w.suite, msg)
	if err != nil {
		return nil, err
	}
	prev := s.rp.ForwardExtremities()
	slices.Sort(prev)
	return s.build(typ, stateKey, content, auth, prev)
}

// accept takes a local event in and federates it.
func (s *server) accept(ev *rvEvent) error {
	if err := s.receive(ev, nil); err != nil {
		return err
	}
	if _, sf := s.softFailed[ev.EventID()]; sf {
		s.w.stats.ownSoftFailed++
	}
	s.w.send(s, ev)
	return nil
}

// receive takes an event in (from another server, or nil for its own):
// first the auth and prev events it lacks, fetched from the sender, then
// the checks, then the queue and the clients.
func (s *server) receive(ev *rvEvent, from *server) error {
	if s.holds(ev.EventID()) {
		return nil
	}
	if from != nil {
		for _, id := range append(ev.AuthEventIDs(), ev.PrevEventIDs()...) {
			if s.holds(id) {
				continue
			}
			if m := from.event(id); m != nil {
				if err := s.receive(m, from); err != nil {
					return err
				}
			}
		}
	}
	if s.rp.Room() == nil && ev.Kind() != roomversion.EventCreate {
		return fmt.Errorf("sim: %s: %s arrived before the create event", s.name, ev.EventID())
	}
	sf, rejectErr, err := s.judge(ev)
	if err != nil {
		return fmt.Errorf("sim: %s: taking %s in: %w", s.name, ev.EventID(), err)
	}
	w := s.w
	if rejectErr != nil {
		w.stats.rejected++
		if len(w.stats.rejectReasons) < 5 {
			w.stats.rejectReasons = append(w.stats.rejectReasons, fmt.Sprintf("%s rejected %s from %s: %v", s.name, ev.Type(), ev.Origin(), rejectErr))
		}
		return nil
	}
	if ev.Kind() == roomversion.EventCommit {
		// Only commits' references are kept: the queue's Status looks for
		// the commits naming a pending commit, and nothing else reads them.
		for _, p := range ev.PrevEventIDs() {
			s.store.refs[p] = append(s.store.refs[p], ev.EventID())
		}
	}
	if sf != nil {
		s.softFailed[ev.EventID()] = sf.Case
		w.stats.softFailed[sf.Case]++
		if sf.Case == "c" && ev.Kind() == roomversion.EventEncrypted {
			// Messages lost to a fork reach the clients, flagged.
			for _, c := range s.clients {
				c.onMessage(ev)
			}
		}
		return nil
	}
	switch ev.Kind() {
	case roomversion.EventPendingCommit:
		if _, err := s.sched.Receive(w.ctx, ev, s.localNow()); err != nil {
			return fmt.Errorf("sim: %s: queueing %s: %w", s.name, ev.EventID(), err)
		}
	case roomversion.EventEncrypted:
		for _, c := range s.clients {
			c.onMessage(ev)
		}
	case roomversion.EventCommit:
		ct := w.ctOf(ev)
		for _, c := range s.clients {
			c.onCommit(ev, ct)
		}
		if s.store.waiting > 0 {
			w.push(w.now, kTick, s.idx, 0, nil)
		}
	}
	return nil
}

// judge checks an event as a server does on receipt and records it
// (stateres.Replay: the auth rules against its auth events and the state
// before it, soft-fail against the current state, and the new current
// state at the forward extremities). It returns the soft-fail verdict, or
// the rejection.
func (s *server) judge(ev *rvEvent) (*authrules.SoftFail, error, error) {
	v, err := s.rp.Take(ev)
	if err != nil {
		return nil, nil, err
	}
	return v.SoftFail, v.Rejected, nil
}

// queued is told by the store that a pending commit was queued: the
// server's queue is run when it arrives, at every window's start and at
// its expiry (in virtual time, the server's clock being skewed).
func (s *server) queued(pc storage.PendingCommit) {
	w := s.w
	w.push(w.now, kTick, s.idx, 0, nil)
	for _, win := range pc.Windows {
		w.push(time.UnixMilli(win.Start).Add(-s.skew), kTick, s.idx, 0, nil)
		w.push(time.UnixMilli(win.End).Add(-s.skew), kTick, s.idx, 0, nil)
	}
	if ev := s.event(pc.EventID); ev != nil {
		_, exp := commitqueue.Windows(ev.OriginServerTS().Time(), time.UnixMilli(pc.ReceivedTS), len(w.powers))
		w.push(exp.Add(-s.skew+time.Millisecond), kTick, s.idx, 0, nil)
	}
}

// tick runs the server's queue until it applies nothing more.
func (s *server) tick() {
	if s.down > 0 {
		return
	}
	for range 8 {
		n := s.applied
		if err := s.sched.Tick(s.w.ctx); err != nil {
			s.w.stats.queueErrors++
			if len(s.w.stats.queueErrSamples) < 5 {
				s.w.stats.queueErrSamples = append(s.w.stats.queueErrSamples, fmt.Sprintf("%s: %v", s.name, err))
			}
			return
		}
		if s.applied == n {
			return
		}
	}
}

// applier turns a pending commit into this server's m.mls.commit.
type applier struct{ s *server }

// Build makes the commit: the pending commit's content, auth events
// [create, current], prev events the forward extremities and the pending
// commit.
func (a applier) Build(_ context.Context, pending, current *rvEvent) (*rvEvent, error) {
	s := a.s
	prev := s.rp.ForwardExtremities()
	if !slices.Contains(prev, pending.EventID()) {
		prev = append(prev, pending.EventID())
	}
	slices.Sort(prev)
	return s.build(s.w.version.CommitType(), new(string), pending.Content(), []string{s.rp.Room().Create().EventID(), current.EventID()}, prev)
}

// Apply takes the commit in and sends it.
func (a applier) Apply(ctx context.Context, pending, commit *rvEvent) error {
	s, w := a.s, a.s.w
	s.applied++
	w.appliedAt[commit.EventID()] = w.now
	w.winIndex[commit.EventID()] = -1
	if pc, err := s.store.PendingCommit(ctx, pending.EventID()); err == nil {
		now := s.localNow().UnixMilli()
		for _, win := range pc.Windows {
			if now >= win.Start && now < win.End {
				w.winIndex[commit.EventID()] = win.PowerIndex
			}
		}
	}
	return s.accept(commit)
}

// pick returns a random client of the server that has the room and no
// broken state, or nil.
func (s *server) pick(ok func(*client) bool) *client {
	var cands []*client
	for _, c := range s.clients {
		if c.ready() && (ok == nil || ok(c)) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[s.w.rng.IntN(len(cands))]
}

// sendMessage has a random client of the server send a message.
func (s *server) sendMessage() error {
	w := s.w
	c := s.pick(nil)
	if c == nil {
		w.stats.noMember++
		return nil
	}
	commit := s.event(c.atID)
	if commit == nil || authrules.OnMainline(s.rp.Room(), commit) == nil {
		w.stats.refusedEpoch++
		return nil
	}
	var msg []byte
	var err error
	if w.real {
		if c.real.group.Epoch() != commit.Epoch()+1 {
			return fmt.Errorf("sim: client %d's MLS group is at epoch %d, its commit at %d", c.idx, c.real.group.Epoch(), commit.Epoch()+1)
		}
		msg, err = c.realEncrypt()
	} else {
		msg, err = w.mlsMessage(commit.Epoch()+1, mls.ContentTypeApplication, nil)
	}
	if err != nil {
		return err
	}
	ev, err := s.submit(roomversion.EventTypeEncrypted, nil, msg, commit.EventID())
	if err != nil {
		return err
	}
	w.msgIndex[ev.EventID()] = len(w.msgs)
	w.msgs = append(w.msgs, &message{ev: ev, sender: c.idx, ct: c.at})
	return s.accept(ev)
}

// changeMembership has a random client of the server add or remove a
// member.
func (s *server) changeMembership(update bool) error {
	w := s.w
	if !w.mayCommit(s) {
		w.stats.notPermitted++
		return nil
	}
	c := s.pick(func(c *client) bool { return c.staged < 0 })
	if c == nil {
		w.stats.busy++
		return nil
	}
	if c.at != s.currentCt() {
		w.stats.refusedCommit++
		return nil
	}
	mc := w.commits[c.at]
	var members, others []int
	for i, o := range w.clients {
		switch {
		case mc.has(i) && i != c.idx:
			members = append(members, i)
		case !mc.has(i) && !o.stuck:
			others = append(others, i)
		}
	}
	ch := change{add: -1, remove: -1}
	if update {
		return c.propose(ch, "")
	}
	canRemove := len(members) > 1
	switch {
	case len(others) > 0 && (!canRemove || w.rng.IntN(2) == 0):
		ch.add = others[w.rng.IntN(len(others))]
	case canRemove:
		ch.remove = members[w.rng.IntN(len(members))]
	default:
		w.stats.noMember++
		return nil
	}
	return c.propose(ch, "")
}
