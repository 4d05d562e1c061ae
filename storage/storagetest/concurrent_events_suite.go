package storagetest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// testConcurrentEventWrites stores a chain of events from several
// goroutines on two handles, out of order: afterwards every event is
// stored and the only forward extremity is the chain's last event.
func testConcurrentEventWrites(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	r := roomWithState(t, dbs[0], "!conc:a.example")
	evs := chain(t, r, 200)
	st := r.State()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			// Worker w stores events w, w+workers, ... from the end
			// backwards, some in batches.
			var mine []*roomversion.Event
			for i := len(evs) - 1 - w; i >= 0; i -= workers {
				mine = append(mine, evs[i])
			}
			for i := 0; i < len(mine); i += 3 {
				batch := []storage.EventToStore{}
				for _, ev := range mine[i:min(i+3, len(mine))] {
					batch = append(batch, storage.EventToStore{Event: ev, Options: storage.StoreEventOptions{StateBefore: st}})
				}
				var err error
				if w%2 == 0 {
					_, err = db.StoreEvents(ctx, batch)
				} else {
					for _, e := range batch {
						if _, err = db.StoreEvent(ctx, e.Event, e.Options); err != nil {
							break
						}
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(dbs[w%len(dbs)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.EventID()
	}
	got, err := dbs[0].Events(ctx, ids)
	if err != nil || len(got) != len(evs) {
		t.Fatalf("%d events stored, %v; want %d", len(got), err, len(evs))
	}
	if fx, err := dbs[0].ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{evs[len(evs)-1].EventID()}) {
		t.Fatalf("extremities %v, %v; want only the last event", fx, err)
	}
}
