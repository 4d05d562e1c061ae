package commitqueue_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
	"github.com/mlsmode/mlsmode/storage"
)

// postgresDSN is a fresh schema on the test server (internal/testdb).
func postgresDSN(tb testing.TB) string { return testdb.PostgresDSN(tb) }

// chainRoom is a room with a pre-built chain of pending commits by d, each
// on the commit applying the previous one (a's commits are deterministic,
// so they can be built in advance).
type chainRoom struct {
	create, commit0 *roomversion.Event
	pendings        []*roomversion.Event
	commits         map[string]*roomversion.Event // pending ID -> its commit
	next            map[string]*roomversion.Event // pending ID -> the next pending
}

func newChainRoom(i, n int, at time.Time) *chainRoom {
	p := stateresttest.DefaultParams()
	p.Real = false
	p.Clock = at.Add(-time.Hour)
	p.RoomID = fmt.Sprintf("!r%d:a.example", i)
	p.Seed = p.RoomID
	g := stateresttest.New(p)
	r := &chainRoom{create: g.Create(), commit0: g.Commit(srvA, nil, fed), commits: map[string]*roomversion.Event{}, next: map[string]*roomversion.Event{}}
	cur := r.commit0
	for k := range n {
		g.At(at)
		pc := g.Pending(srvD, cur, fed)
		g.At(at)
		cur = g.Apply(srvA, pc)
		r.commits[pc.EventID()] = cur
		if k > 0 {
			r.next[r.pendings[k-1].EventID()] = pc
		}
		r.pendings = append(r.pendings, pc)
	}
	return r
}

// chainApplier returns the pre-built commits; applying stores the commit
// and delivers the next pending commit of the chain to its scheduler.
type chainApplier struct {
	db    storage.Database
	sched *commitqueue.Scheduler
	rooms map[string]*chainRoom
	calls *sync.Map // pending ID -> *atomic.Int64
	total *atomic.Int64
	mine  atomic.Int64
}

func (a *chainApplier) Build(_ context.Context, pending, _ *roomversion.Event) (*roomversion.Event, error) {
	return a.rooms[pending.RoomID().String()].commits[pending.EventID()], nil
}

func (a *chainApplier) Apply(ctx context.Context, pending, commit *roomversion.Event) error {
	n, _ := a.calls.LoadOrStore(pending.EventID(), new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	// Counted done (total) only once everything is stored: the test stops
	// the schedulers when total is reached.
	defer a.total.Add(1)
	a.mine.Add(1)
	r := a.rooms[pending.RoomID().String()]
	st := storage.RoomState{CreateID: r.create.EventID(), CommitID: commit.EventID()}
	before := storage.RoomState{CreateID: r.create.EventID(), CommitID: commit.AuthEventIDs()[1]}
	if _, err := a.db.StoreEvent(ctx, commit, storage.StoreEventOptions{StateBefore: before, CurrentState: &st}); err != nil {
		return err
	}
	if next := r.next[pending.EventID()]; next != nil {
		if _, err := a.db.StoreEvent(ctx, next, storage.StoreEventOptions{StateBefore: st}); err != nil {
			return err
		}
		if _, err := a.sched.Receive(ctx, next, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// TestTwoProcessesOnePostgres runs two schedulers (two database handles,
// as two processes) on one PostgreSQL database over 100 rooms with chains
// of 10 pending commits each: every one is applied exactly once.
func TestTwoProcessesOnePostgres(t *testing.T) {
	const rooms, perRoom = 100, 10
	ctx := context.Background()
	dsn := postgresDSN(t)
	start := time.Now()
	chain := map[string]*chainRoom{}
	var roomIDs []string
	for i := range rooms {
		r := newChainRoom(i, perRoom, start)
		chain[r.create.RoomID().String()] = r
		roomIDs = append(roomIDs, r.create.RoomID().String())
	}
	calls, total := &sync.Map{}, &atomic.Int64{}
	var scheds []*commitqueue.Scheduler
	var dbs []storage.Database
	var appliers []*chainApplier
	for range 2 {
		db, err := storage.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		a := &chainApplier{db: db, rooms: chain, calls: calls, total: total}
		s, err := commitqueue.New(commitqueue.Config{ServerName: srvA, Store: db, Applier: a, PollInterval: 5 * time.Millisecond,
			Logf: func(f string, args ...any) { t.Logf(f, args...) }})
		if err != nil {
			t.Fatal(err)
		}
		a.sched = s
		appliers = append(appliers, a)
		s.Track(roomIDs...)
		scheds = append(scheds, s)
		dbs = append(dbs, db)
	}
	// Both processes receive the first pending commit of every room (the
	// second receipt changes nothing).
	for _, id := range roomIDs {
		r := chain[id]
		st := storage.RoomState{CreateID: r.create.EventID(), CommitID: r.commit0.EventID()}
		if _, err := dbs[0].StoreEvents(ctx, []storage.EventToStore{
			{Event: r.create},
			{Event: r.commit0, Options: storage.StoreEventOptions{StateBefore: storage.RoomState{CreateID: r.create.EventID()}, CurrentState: &st}},
			{Event: r.pendings[0], Options: storage.StoreEventOptions{StateBefore: st}},
		}); err != nil {
			t.Fatal(err)
		}
		for _, s := range scheds {
			if _, err := s.Receive(ctx, r.pendings[0], time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range scheds {
		s.Start(ctx)
		defer s.Stop()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for total.Load() < rooms*perRoom && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range scheds {
		s.Stop()
	}
	if got := total.Load(); got != rooms*perRoom {
		t.Fatalf("%d applier calls; want %d", got, rooms*perRoom)
	}
	for _, id := range roomIDs {
		r := chain[id]
		for _, p := range r.pendings {
			n, ok := calls.Load(p.EventID())
			if !ok || n.(*atomic.Int64).Load() != 1 {
				t.Fatalf("%s applied %v times", p.EventID(), n)
			}
			st, err := scheds[1].Status(ctx, p.EventID())
			if err != nil || st.Status != storage.PendingApplied || st.CommitEventID != r.commits[p.EventID()].EventID() {
				t.Fatalf("status of %s: %+v, %v", p.EventID(), st, err)
			}
		}
		cur, err := dbs[1].CurrentState(ctx, id)
		if err != nil || cur.CommitID != r.commits[r.pendings[perRoom-1].EventID()].EventID() {
			t.Fatalf("%s: current %+v, %v", id, cur, err)
		}
	}
	t.Logf("%d pending commits applied once each in %v (%d by the first process, %d by the second)",
		total.Load(), time.Since(start), appliers[0].mine.Load(), appliers[1].mine.Load())
}

// TestTwoProcessesCompetingPendingCommits: 100 rooms, each with 10 pending
// commits on the same commit, queued in both processes at once: in every
// room exactly one is applied, once, the first in (receipt time, event ID)
// order, and the others are stale.
func TestTwoProcessesCompetingPendingCommits(t *testing.T) {
	const rooms, perRoom = 100, 10
	ctx := context.Background()
	dsn := postgresDSN(t)
	start := time.Now()
	chain := map[string]*chainRoom{}
	var roomIDs []string
	for i := range rooms {
		p := stateresttest.DefaultParams()
		p.Real = false
		p.Clock = start.Add(-time.Hour)
		p.RoomID = fmt.Sprintf("!c%d:a.example", i)
		p.Seed = p.RoomID
		g := stateresttest.New(p)
		r := &chainRoom{create: g.Create(), commit0: g.Commit(srvA, nil, fed), commits: map[string]*roomversion.Event{}, next: map[string]*roomversion.Event{}}
		for k := range perRoom {
			g.At(start.Add(-time.Duration(k+1) * time.Second))
			pc := g.Pending(srvD, r.commit0, fed)
			r.commits[pc.EventID()] = g.Apply(srvA, pc)
			r.pendings = append(r.pendings, pc)
		}
		chain[p.RoomID] = r
		roomIDs = append(roomIDs, p.RoomID)
	}
	calls, total := &sync.Map{}, &atomic.Int64{}
	var scheds []*commitqueue.Scheduler
	var dbs []storage.Database
	for range 2 {
		db, err := storage.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		a := &chainApplier{db: db, rooms: chain, calls: calls, total: total}
		s, err := commitqueue.New(commitqueue.Config{ServerName: srvA, Store: db, Applier: a, PollInterval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		a.sched = s
		s.Track(roomIDs...)
		scheds = append(scheds, s)
		dbs = append(dbs, db)
	}
	for _, id := range roomIDs {
		r := chain[id]
		st := storage.RoomState{CreateID: r.create.EventID(), CommitID: r.commit0.EventID()}
		evs := []storage.EventToStore{
			{Event: r.create},
			{Event: r.commit0, Options: storage.StoreEventOptions{StateBefore: storage.RoomState{CreateID: r.create.EventID()}, CurrentState: &st}},
		}
		for _, p := range r.pendings {
			evs = append(evs, storage.EventToStore{Event: p, Options: storage.StoreEventOptions{StateBefore: st}})
		}
		if _, err := dbs[0].StoreEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	// Both processes receive every pending commit concurrently, with the
	// same receipt time per room (the event ID breaks the tie), then
	// start.
	var wg sync.WaitGroup
	for _, s := range scheds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range roomIDs {
				for _, p := range chain[id].pendings {
					if _, err := s.Receive(ctx, p, start); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range scheds {
		s.Start(ctx)
		defer s.Stop()
	}
	deadline := time.Now().Add(time.Minute)
	for {
		done := total.Load() >= rooms
		for _, id := range roomIDs {
			w, err := dbs[0].PendingCommits(ctx, id, storage.PendingWaiting)
			if err != nil {
				t.Fatal(err)
			}
			done = done && len(w) == 0
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range scheds {
		s.Stop()
	}
	if got := total.Load(); got != rooms {
		t.Fatalf("%d applier calls; want %d", got, rooms)
	}
	for _, id := range roomIDs {
		r := chain[id]
		first := r.pendings[0]
		for _, p := range r.pendings[1:] {
			if p.EventID() < first.EventID() {
				first = p
			}
		}
		for _, p := range r.pendings {
			n, _ := calls.Load(p.EventID())
			st, err := scheds[0].Status(ctx, p.EventID())
			if err != nil {
				t.Fatal(err)
			}
			if p == first {
				if n == nil || n.(*atomic.Int64).Load() != 1 || st.Status != storage.PendingApplied {
					t.Fatalf("%s: first pending commit %s: calls %v, status %+v", id, p.EventID(), n, st)
				}
				continue
			}
			if n != nil || st.Status != storage.PendingStale {
				t.Fatalf("%s: later pending commit %s: calls %v, status %+v", id, p.EventID(), n, st)
			}
		}
	}
}
