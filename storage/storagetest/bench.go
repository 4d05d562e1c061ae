package storagetest

import (
	"context"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// chain builds n messages of a room, each the child of the one before.
func chain(tb testing.TB, r *Room, n int) []*roomversion.Event {
	out := make([]*roomversion.Event, n)
	prev := r.Commit.EventID()
	for i := range out {
		out[i] = r.NewMessage(prev)
		prev = out[i].EventID()
	}
	return out
}

// benchRoom opens a fresh database with a room's create event and commit.
func benchRoom(b *testing.B, be Backend) (storage.Database, *Room) {
	b.Helper()
	db := be.fresh(b)
	r := NewRoom(b, "!bench:a.example")
	st := r.State()
	for _, ev := range []*roomversion.Event{r.Create, r.Commit} {
		if _, err := db.StoreEvent(context.Background(), ev, storage.StoreEventOptions{CurrentState: &st}); err != nil {
			b.Fatal(err)
		}
	}
	return db, r
}

// BenchmarkStoreEvent writes events one transaction each.
func BenchmarkStoreEvent(b *testing.B, be Backend) {
	ctx := context.Background()
	db, r := benchRoom(b, be)
	evs := chain(b, r, b.N)
	st := r.State()
	b.ResetTimer()
	for i := range b.N {
		if _, err := db.StoreEvent(ctx, evs[i], storage.StoreEventOptions{StateBefore: st}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BatchSize is how many events BenchmarkStoreEvents writes per
// transaction.
const BatchSize = 100

// BenchmarkStoreEvents writes events BatchSize per transaction.
func BenchmarkStoreEvents(b *testing.B, be Backend) {
	ctx := context.Background()
	db, r := benchRoom(b, be)
	evs := chain(b, r, b.N)
	st := r.State()
	batch := make([]storage.EventToStore, 0, BatchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i += BatchSize {
		batch = batch[:0]
		for _, ev := range evs[i:min(i+BatchSize, b.N)] {
			batch = append(batch, storage.EventToStore{Event: ev, Options: storage.StoreEventOptions{StateBefore: st}})
		}
		if _, err := db.StoreEvents(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkClaimKeyPackages has Claimers goroutines claim b.N one-time
// key packages of one device.
func BenchmarkClaimKeyPackages(b *testing.B, be Backend) {
	ctx := context.Background()
	db := be.fresh(b)
	const u, d = "@bench:a.example", "DEV"
	for i := 0; i < b.N; i += 1000 {
		kps := make([]storage.KeyPackage, 0, 1000)
		for j := i; j < min(i+1000, b.N); j++ {
			kps = append(kps, kp(algA, j))
		}
		if err := db.StoreOneTimeKeyPackages(ctx, u, d, kps); err != nil {
			b.Fatal(err)
		}
	}
	// Warm the connection pool.
	var wg sync.WaitGroup
	for range Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = db.CountOneTimeKeyPackages(ctx, u, d)
		}()
	}
	wg.Wait()
	var (
		mu      sync.Mutex
		claimed int
	)
	b.ResetTimer()
	for range Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				ck, err := db.ClaimKeyPackage(ctx, u, d, algA)
				if err != nil || ck.Fallback {
					break
				}
				n++
			}
			mu.Lock()
			claimed += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	if claimed != b.N {
		b.Fatalf("claimed %d, want %d", claimed, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

// BenchmarkStateAtEvent looks up the state at stored events.
func BenchmarkStateAtEvent(b *testing.B, be Backend) {
	ctx := context.Background()
	db, r := benchRoom(b, be)
	evs := chain(b, r, 1000)
	st := r.State()
	batch := make([]storage.EventToStore, len(evs))
	for i, ev := range evs {
		batch[i] = storage.EventToStore{Event: ev, Options: storage.StoreEventOptions{StateBefore: st}}
	}
	if _, err := db.StoreEvents(ctx, batch); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := db.StateAtEvent(ctx, evs[i%len(evs)].EventID()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
