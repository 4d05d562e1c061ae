package commitqueue_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
	"github.com/mlsmode/mlsmode/storage"
)

// benchDSN returns a fresh database of a backend.
func benchDSN(b *testing.B, backend string) string {
	if backend == "postgres" {
		return postgresDSN(b)
	}
	return filepath.Join(b.TempDir(), "bench.db")
}

// latencyApplier notes when it is called, then stores the commit.
type latencyApplier struct {
	db     storage.Database
	room   *chainRoom
	called chan time.Time
}

func (a *latencyApplier) Build(_ context.Context, pending, _ *roomversion.Event) (*roomversion.Event, error) {
	return a.room.commits[pending.EventID()], nil
}

func (a *latencyApplier) Apply(ctx context.Context, pending, commit *roomversion.Event) error {
	at := time.Now()
	st := storage.RoomState{CreateID: a.room.create.EventID(), CommitID: commit.EventID()}
	before := storage.RoomState{CreateID: a.room.create.EventID(), CommitID: commit.AuthEventIDs()[1]}
	_, err := a.db.StoreEvent(ctx, commit, storage.StoreEventOptions{StateBefore: before, CurrentState: &st})
	a.called <- at
	return err
}

// BenchmarkReceiveToApply measures, for the server at index 0 of powers,
// the time from Receive to the applier being called, through a started
// scheduler on real storage. It reports the median and 90th percentile.
func BenchmarkReceiveToApply(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			db, err := storage.Open(ctx, benchDSN(b, backend))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			r := newChainRoom(0, b.N, time.Now())
			st := storage.RoomState{CreateID: r.create.EventID(), CommitID: r.commit0.EventID()}
			if _, err := db.StoreEvents(ctx, []storage.EventToStore{
				{Event: r.create},
				{Event: r.commit0, Options: storage.StoreEventOptions{StateBefore: storage.RoomState{CreateID: r.create.EventID()}, CurrentState: &st}},
			}); err != nil {
				b.Fatal(err)
			}
			a := &latencyApplier{db: db, room: r, called: make(chan time.Time, 1)}
			s, err := commitqueue.New(commitqueue.Config{ServerName: srvA, Store: db, Applier: a, PollInterval: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			s.Start(ctx)
			defer s.Stop()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				p := r.pendings[i]
				b.StopTimer()
				before := storage.RoomState{CreateID: r.create.EventID(), CommitID: p.AuthEventIDs()[1]}
				if _, err := db.StoreEvent(ctx, p, storage.StoreEventOptions{StateBefore: before}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t := time.Now()
				if _, err := s.Receive(ctx, p, t); err != nil {
					b.Fatal(err)
				}
				select {
				case at := <-a.called:
					lat = append(lat, at.Sub(t))
				case <-time.After(10 * time.Second):
					b.Fatalf("pending commit %d not applied", i)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
		})
	}
}

// nopApplier never gets called in BenchmarkTickOverhead.
type nopApplier struct{}

func (nopApplier) Build(context.Context, *roomversion.Event, *roomversion.Event) (*roomversion.Event, error) {
	return nil, nil
}
func (nopApplier) Apply(context.Context, *roomversion.Event, *roomversion.Event) error { return nil }

// BenchmarkTickOverhead measures a Tick over 1,000 queued pending commits
// (10 rooms x 100) none of which is due (this server is at index 2, before
// its window), and reports ns per queued commit.
func BenchmarkTickOverhead(b *testing.B) {
	const rooms, perRoom = 10, 100
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			db, err := storage.Open(ctx, benchDSN(b, backend))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			clock := commitqueue.NewFakeClock(t0)
			s, err := commitqueue.New(commitqueue.Config{ServerName: srvC, Store: db, Applier: nopApplier{}, Clock: clock})
			if err != nil {
				b.Fatal(err)
			}
			for i := range rooms {
				p := stateresttest.DefaultParams()
				p.Real = false
				p.Clock = t0.Add(-time.Hour)
				p.RoomID = "!tick" + string(rune('a'+i)) + ":a.example"
				g := stateresttest.New(p)
				c0 := g.Commit(srvA, nil, fed)
				st := storage.RoomState{CreateID: g.Create().EventID(), CommitID: c0.EventID()}
				evs := []storage.EventToStore{{Event: g.Create()}, {Event: c0, Options: storage.StoreEventOptions{StateBefore: storage.RoomState{CreateID: st.CreateID}, CurrentState: &st}}}
				var pcs []*roomversion.Event
				for range perRoom {
					g.At(t0)
					pc := g.Pending(srvD, c0, fed)
					pcs = append(pcs, pc)
					evs = append(evs, storage.EventToStore{Event: pc, Options: storage.StoreEventOptions{StateBefore: st}})
				}
				if _, err := db.StoreEvents(ctx, evs); err != nil {
					b.Fatal(err)
				}
				for _, pc := range pcs {
					if _, err := s.Receive(ctx, pc, t0); err != nil {
						b.Fatal(err)
					}
				}
			}
			clock.Set(t0.Add(time.Minute))
			b.ResetTimer()
			for range b.N {
				if err := s.Tick(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rooms*perRoom), "ns/commit")
		})
	}
}
