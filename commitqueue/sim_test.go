package commitqueue_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
	"github.com/mlsmode/mlsmode/storage"
)

const (
	srvA = "a.example"
	srvB = "b.example"
	srvC = "c.example"
	srvD = "d.example" // the proposer: not in powers
)

var (
	t0  = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	fed = stateresttest.Fed{Powers: []string{srvA, srvB, srvC}, Servers: []string{srvA, srvB, srvC, srvD}, CanPropose: []string{srvD}}
)

// server is one homeserver of the simulation: its own storage, scheduler
// and applier.
type server struct {
	name    string
	dsn     string
	db      storage.Database
	sched   *commitqueue.Scheduler
	online  bool
	mu      sync.Mutex
	applied []applyRecord
}

func (srv *server) applies() []applyRecord {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return slices.Clone(srv.applied)
}

type applyRecord struct {
	pending, commit string
	at              time.Time
}

// sim is a room on servers a, b, c (powers [a, b, c]) and d (the
// proposer), with a fake clock and federation that can be cut.
type sim struct {
	t       *testing.T
	ctx     context.Context
	clock   *commitqueue.FakeClock
	gen     *stateresttest.Gen
	create  *roomversion.Event
	commit0 *roomversion.Event
	servers map[string]*server
	names   []string
	// cut[x] holds back events sent by x to the others until heal.
	cut  map[string]bool
	held []heldEvent
}

type heldEvent struct {
	from string
	ev   *roomversion.Event
}

// newSim builds the room; dsn picks each server's database (nil: SQLite
// :memory:).
func newSim(t *testing.T, dsn func(name string) string) *sim {
	t.Helper()
	p := stateresttest.DefaultParams()
	p.Real = false
	p.Clock = t0.Add(-time.Hour)
	s := &sim{t: t, ctx: context.Background(), clock: commitqueue.NewFakeClock(t0), gen: stateresttest.New(p),
		servers: map[string]*server{}, cut: map[string]bool{}}
	s.create = s.gen.Create()
	s.commit0 = s.gen.Commit(srvA, nil, fed)
	for _, name := range []string{srvA, srvB, srvC, srvD} {
		d := ":memory:"
		if dsn != nil {
			d = dsn(name)
		}
		srv := &server{name: name, dsn: d, online: true}
		s.servers[name] = srv
		s.names = append(s.names, name)
		s.open(srv)
		st := storage.RoomState{CreateID: s.create.EventID(), CommitID: s.commit0.EventID()}
		if _, err := srv.db.StoreEvents(s.ctx, []storage.EventToStore{
			{Event: s.create, Options: storage.StoreEventOptions{}},
			{Event: s.commit0, Options: storage.StoreEventOptions{StateBefore: storage.RoomState{CreateID: s.create.EventID()}, CurrentState: &st}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// open (re)opens a server's database and makes a new scheduler on it.
func (s *sim) open(srv *server) {
	db, err := storage.Open(s.ctx, srv.dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	srv.db = db
	sched, err := commitqueue.New(commitqueue.Config{ServerName: srv.name, Store: db, Applier: &simApplier{s: s, srv: srv}, Clock: s.clock})
	if err != nil {
		s.t.Fatal(err)
	}
	// No Track: a restarted scheduler finds its rooms with waiting pending
	// commits in storage (TestRestartMidWindow relies on it).
	srv.sched = sched
}

// simApplier writes the commit into its server's view and federates it.
type simApplier struct {
	s   *sim
	srv *server
}

func (a *simApplier) Build(_ context.Context, pending, _ *roomversion.Event) (*roomversion.Event, error) {
	a.s.gen.At(a.s.clock.Now())
	return a.s.gen.Apply(a.srv.name, pending), nil
}

func (a *simApplier) Apply(_ context.Context, pending, commit *roomversion.Event) error {
	a.srv.mu.Lock()
	a.srv.applied = append(a.srv.applied, applyRecord{pending: pending.EventID(), commit: commit.EventID(), at: a.s.clock.Now()})
	a.srv.mu.Unlock()
	a.s.deliver(a.srv, commit)
	a.s.federate(a.srv.name, commit)
	return nil
}

// federate sends an event to every other online server, or holds it while
// its origin is cut off.
func (s *sim) federate(from string, ev *roomversion.Event) {
	if s.cut[from] {
		s.held = append(s.held, heldEvent{from, ev})
		return
	}
	for _, name := range s.names {
		if dst := s.servers[name]; name != from && dst.online {
			s.deliver(dst, ev)
		}
	}
}

// heal delivers the held events.
func (s *sim) heal() {
	held := s.held
	s.held, s.cut = nil, map[string]bool{}
	for _, h := range held {
		s.federate(h.from, h.ev)
	}
}

// deliver stores an event on a server; a commit that conflicts with the
// current one goes through state resolution; a pending commit is queued.
func (s *sim) deliver(dst *server, ev *roomversion.Event) {
	s.t.Helper()
	createID := s.create.EventID()
	authID := stateres.AuthCommitID(ev, createID)
	before := storage.RoomState{CreateID: createID, CommitID: authID}
	opts := storage.StoreEventOptions{StateBefore: before}
	if ev.Kind() == roomversion.EventCommit {
		cur, err := dst.db.CurrentState(s.ctx, ev.RoomID().String())
		if err != nil {
			s.t.Fatal(err)
		}
		next := storage.RoomState{CreateID: createID, CommitID: ev.EventID()}
		if cur.CommitID != authID {
			store := s.gen.Store()
			res, err := stateres.Resolve([]stateres.StateSet{{Create: s.create, Commit: store.Event(cur.CommitID)}, {Create: s.create, Commit: ev}}, store)
			if err != nil {
				s.t.Fatal(err)
			}
			next.CommitID = res.Commit.EventID()
			opts.SoftFailed = next.CommitID != ev.EventID()
		}
		opts.CurrentState = &next
	}
	if _, err := dst.db.StoreEvent(s.ctx, ev, opts); err != nil {
		s.t.Fatal(err)
	}
	if ev.Kind() == roomversion.EventPendingCommit {
		if _, err := dst.sched.Receive(s.ctx, ev, s.clock.Now()); err != nil {
			s.t.Fatal(err)
		}
	}
}

// propose makes d's pending commit on the current commit, with
// origin_server_ts offset from now, and sends it to the online servers.
func (s *sim) propose(on *roomversion.Event, offset time.Duration) *roomversion.Event {
	s.gen.At(s.clock.Now().Add(offset))
	p := s.gen.Pending(srvD, on, fed)
	s.deliver(s.servers[srvD], p)
	s.federate(srvD, p)
	return p
}

// tick ticks every online server's scheduler.
func (s *sim) tick() {
	s.t.Helper()
	for _, name := range s.names {
		if srv := s.servers[name]; srv.online {
			if err := srv.sched.Tick(s.ctx); err != nil {
				s.t.Fatalf("%s: %v", name, err)
			}
		}
	}
}

// run ticks every step until d has passed since now.
func (s *sim) run(d, step time.Duration) {
	end := s.clock.Now().Add(d)
	for {
		s.tick()
		if !s.clock.Now().Before(end) {
			return
		}
		s.clock.Advance(step)
	}
}

// applies lists every application, by server.
func (s *sim) applies() map[string][]applyRecord {
	out := map[string][]applyRecord{}
	for _, name := range s.names {
		if a := s.servers[name].applies(); len(a) > 0 {
			out[name] = a
		}
	}
	return out
}

func (s *sim) status(name, eventID string) commitqueue.Status {
	s.t.Helper()
	st, err := s.servers[name].sched.Status(s.ctx, eventID)
	if err != nil {
		s.t.Fatalf("%s: status of %s: %v", name, eventID, err)
	}
	return st
}

// onlyApplier checks that exactly one server applied p, once, at an offset
// from start in [from, to), and returns the record.
func (s *sim) onlyApplier(name string, start time.Time, from, to time.Duration) applyRecord {
	s.t.Helper()
	all := s.applies()
	if len(all) != 1 || len(all[name]) != 1 {
		s.t.Fatalf("applies %+v; want one by %s", all, name)
	}
	r := all[name][0]
	if d := r.at.Sub(start); d < from || d >= to {
		s.t.Fatalf("%s applied at +%v; want in [%v, %v)", name, d, from, to)
	}
	return r
}

// checkApplied checks every online server reports p applied as commit.
func (s *sim) checkApplied(p *roomversion.Event, commit string) {
	s.t.Helper()
	for _, name := range s.names {
		if !s.servers[name].online {
			continue
		}
		st := s.status(name, p.EventID())
		if st.Status != storage.PendingApplied || st.CommitEventID != commit {
			s.t.Fatalf("%s: status %+v; want applied as %s", name, st, commit)
		}
		cur, err := s.servers[name].db.CurrentState(s.ctx, p.RoomID().String())
		if err != nil || cur.CommitID != commit {
			s.t.Fatalf("%s: current commit %s, %v; want %s", name, cur.CommitID, err, commit)
		}
	}
}

func TestAOnlineAppliesAtOnce(t *testing.T) {
	s := newSim(t, nil)
	p := s.propose(s.commit0, 0)
	s.run(20*time.Minute, 15*time.Second)
	r := s.onlyApplier(srvA, t0, 0, time.Nanosecond)
	s.checkApplied(p, r.commit)
}

func TestAOfflineBAppliesInItsWindow(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvA].online = false
	p := s.propose(s.commit0, 0)
	s.run(5*time.Minute-time.Second, time.Second)
	if a := s.applies(); len(a) != 0 {
		t.Fatalf("applied before b's window: %+v", a)
	}
	if st := s.status(srvB, p.EventID()); st.Status != storage.PendingWaiting {
		t.Fatalf("b before its window: %+v", st)
	}
	s.run(20*time.Minute, 15*time.Second)
	r := s.onlyApplier(srvB, t0, 5*time.Minute, 8*time.Minute)
	s.checkApplied(p, r.commit)
}

func TestAAndBOfflineCAppliesInItsWindow(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvA].online = false
	s.servers[srvB].online = false
	p := s.propose(s.commit0, 0)
	s.run(10*time.Minute-time.Second, time.Second)
	if a := s.applies(); len(a) != 0 {
		t.Fatalf("applied before c's window: %+v", a)
	}
	s.run(20*time.Minute, 15*time.Second)
	r := s.onlyApplier(srvC, t0, 10*time.Minute, 13*time.Minute)
	s.checkApplied(p, r.commit)
}

func TestStalePendingCommitDropped(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvA].online = false
	p := s.propose(s.commit0, 0)
	// a, back online, commits directly on commit0 before b's window.
	s.run(time.Minute, 15*time.Second)
	s.servers[srvA].online = true
	s.gen.At(s.clock.Now())
	c1 := s.gen.Commit(srvA, s.commit0, fed)
	s.deliver(s.servers[srvA], c1)
	s.federate(srvA, c1)
	s.run(20*time.Minute, 15*time.Second)
	if a := s.applies(); len(a) != 0 {
		t.Fatalf("stale pending commit applied: %+v", a)
	}
	for _, name := range []string{srvB, srvC, srvD} {
		if st := s.status(name, p.EventID()); st.Status != storage.PendingStale {
			t.Fatalf("%s: %+v; want stale", name, st)
		}
	}
}

func TestFirstInReceiptOrderWins(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvA].online = false
	// p2 is older by origin_server_ts but received later.
	p1 := s.propose(s.commit0, 0)
	s.clock.Advance(10 * time.Second)
	p2 := s.propose(s.commit0, -50*time.Second)
	s.run(20*time.Minute, 15*time.Second)
	r := s.onlyApplier(srvB, t0, 5*time.Minute, 8*time.Minute)
	if r.pending != p1.EventID() {
		t.Fatalf("b applied %s; want the first received %s", r.pending, p1.EventID())
	}
	s.checkApplied(p1, r.commit)
	if st := s.status(srvB, p2.EventID()); st.Status != storage.PendingStale {
		t.Fatalf("second pending commit: %+v; want stale", st)
	}
}

func TestBackdatedPendingCommitKeepsWindows(t *testing.T) {
	t.Run("a online", func(t *testing.T) {
		s := newSim(t, nil)
		p := s.propose(s.commit0, -3*time.Minute)
		s.run(20*time.Minute, 15*time.Second)
		r := s.onlyApplier(srvA, t0, 0, time.Nanosecond)
		s.checkApplied(p, r.commit)
	})
	t.Run("a offline", func(t *testing.T) {
		s := newSim(t, nil)
		s.servers[srvA].online = false
		p := s.propose(s.commit0, -3*time.Minute)
		s.run(5*time.Minute-time.Second, time.Second)
		if a := s.applies(); len(a) != 0 {
			t.Fatalf("b applied a backdated pending commit before 5 min from receipt: %+v", a)
		}
		s.run(20*time.Minute, 15*time.Second)
		r := s.onlyApplier(srvB, t0, 5*time.Minute, 8*time.Minute)
		s.checkApplied(p, r.commit)
	})
	t.Run("future timestamp capped", func(t *testing.T) {
		s := newSim(t, nil)
		s.servers[srvA].online = false
		s.propose(s.commit0, time.Hour)
		s.run(20*time.Minute, 15*time.Second)
		// T = R + 1 min: b's window is [6, 9) min.
		s.onlyApplier(srvB, t0, 6*time.Minute, 9*time.Minute)
	})
}

func TestOutageExpires(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvB].online = false
	s.servers[srvC].online = false
	p := s.propose(s.commit0, 0)
	// a received it but goes down before its scheduler runs, for 20 min.
	s.servers[srvA].online = false
	s.clock.Advance(20 * time.Minute)
	s.servers[srvA].online = true
	s.run(time.Minute, 15*time.Second)
	if a := s.applies(); len(a) != 0 {
		t.Fatalf("expired pending commit applied: %+v", a)
	}
	if st := s.status(srvA, p.EventID()); st.Status != storage.PendingExpired {
		t.Fatalf("a: %+v; want expired", st)
	}
	if st := s.status(srvD, p.EventID()); st.Status != storage.PendingExpired {
		t.Fatalf("d: %+v; want expired", st)
	}
}

// TestLateCommitFromAWins: a applies at once but its commit is held back
// (partition); b applies in its window; when the partition heals, state
// resolution picks a's commit everywhere, and the queues report it.
func TestLateCommitFromAWins(t *testing.T) {
	s := newSim(t, nil)
	s.cut[srvA] = true
	p := s.propose(s.commit0, 0)
	s.cut = map[string]bool{srvA: true}
	s.run(7*time.Minute, 15*time.Second)
	all := s.applies()
	if len(all[srvA]) != 1 || len(all[srvB]) != 1 || len(all) != 2 {
		t.Fatalf("applies %+v; want a and b once each", all)
	}
	ca, cb := all[srvA][0].commit, all[srvB][0].commit
	if st := s.status(srvB, p.EventID()); st.CommitEventID != cb || st.AppliedHere != cb {
		t.Fatalf("b before healing: %+v", st)
	}
	s.heal()
	s.run(10*time.Minute, 15*time.Second)
	s.checkApplied(p, ca)
	if st := s.status(srvB, p.EventID()); st.AppliedHere != cb || st.Lost {
		t.Fatalf("b after healing: %+v; want applied here as %s, won by %s", st, cb, ca)
	}
	if n := len(s.applies()[srvC]); n != 0 {
		t.Fatalf("c applied %d times", n)
	}
}

// TestRestartMidWindow stops b's scheduler (and database) mid-window and
// starts a new one on the same file.
func TestRestartMidWindow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, up   time.Duration
		wantApply  bool
		wantStatus storage.PendingStatus
	}{
		{"window still open", 4 * time.Minute, 6 * time.Minute, true, storage.PendingApplied},
		{"window closed", 4 * time.Minute, 9 * time.Minute, false, storage.PendingWaiting},
		{"expired", 4 * time.Minute, 16 * time.Minute, false, storage.PendingExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newSim(t, func(name string) string { return fmt.Sprintf("%s/%s.db", dir, name) })
			for _, n := range []string{srvA, srvC} {
				s.servers[n].online = false
			}
			p := s.propose(s.commit0, 0)
			b := s.servers[srvB]
			b.sched.Start(s.ctx)
			s.clock.Advance(tc.down)
			b.sched.Stop()
			if err := b.db.Close(); err != nil {
				t.Fatal(err)
			}
			b.online = false
			s.clock.Set(t0.Add(tc.up))
			b.online = true
			s.open(b)
			b.sched.Start(s.ctx)
			defer b.sched.Stop()
			deadline := time.Now().Add(5 * time.Second)
			for {
				st := s.status(srvB, p.EventID())
				if st.Status == tc.wantStatus && (len(b.applies()) > 0) == tc.wantApply {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("status %+v, applies %+v; want %s", st, b.applies(), tc.wantStatus)
				}
				time.Sleep(time.Millisecond)
			}
			b.sched.Stop()
			applied := b.applies()
			if tc.wantApply {
				if d := applied[0].at.Sub(t0); d < 5*time.Minute || d >= 8*time.Minute {
					t.Fatalf("applied at +%v", d)
				}
			}
			if len(applied) > 1 {
				t.Fatalf("applied %d times", len(applied))
			}
		})
	}
}

// TestAppliedCommitLostToFork: b applies the pending commit while a's own
// (non-equivalent) commit on the same commit is held back; when it
// arrives, state resolution picks a's, and b's queue reports its
// application lost.
func TestAppliedCommitLostToFork(t *testing.T) {
	s := newSim(t, nil)
	s.servers[srvA].online = false
	p := s.propose(s.commit0, 0)
	s.servers[srvA].online = true
	s.cut[srvA] = true
	s.gen.At(s.clock.Now())
	c1 := s.gen.Commit(srvA, s.commit0, fed)
	s.deliver(s.servers[srvA], c1)
	s.federate(srvA, c1)
	s.run(6*time.Minute, 15*time.Second)
	r := s.onlyApplier(srvB, t0, 5*time.Minute, 8*time.Minute)
	s.heal()
	s.run(time.Minute, 15*time.Second)
	for _, name := range []string{srvB, srvC, srvD} {
		st := s.status(name, p.EventID())
		if st.Status != storage.PendingApplied || !st.Lost || st.CommitEventID != r.commit {
			t.Fatalf("%s: %+v; want applied as %s and lost", name, st, r.commit)
		}
		cur, err := s.servers[name].db.CurrentState(s.ctx, p.RoomID().String())
		if err != nil || cur.CommitID != c1.EventID() {
			t.Fatalf("%s: current %s, %v; want a's commit", name, cur.CommitID, err)
		}
	}
}
