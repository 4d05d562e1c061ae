package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// roomWithState stores a room's create event and commit as current state.
func roomWithState(t *testing.T, db storage.Database, roomID string) *Room {
	t.Helper()
	r := NewRoom(t, roomID)
	st := r.State()
	for _, ev := range []*roomversion.Event{r.Create, r.Commit} {
		if _, err := db.StoreEvent(context.Background(), ev, storage.StoreEventOptions{CurrentState: &st}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func testPendingCommits(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := roomWithState(t, db, "!pc:a.example")
	wins := []storage.Window{{PowerIndex: 0, Start: 1000, End: 181000}, {PowerIndex: 1, Start: 301000, End: 481000}}
	pcs := []storage.PendingCommit{
		{EventID: "$p2", RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: 2000, Windows: wins},
		{EventID: "$p1", RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: 2000, Windows: wins[:1]},
		{EventID: "$p0", RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: 3000},
		{EventID: "$old", RoomID: r.ID, CommitID: "$oldcommit", ReceivedTS: 1000},
	}
	for _, pc := range pcs {
		if ok, err := db.AddPendingCommit(ctx, pc); err != nil || !ok {
			t.Fatalf("adding %s: %v, %v", pc.EventID, ok, err)
		}
	}
	if ok, err := db.AddPendingCommit(ctx, pcs[0]); err != nil || ok {
		t.Fatalf("adding again: %v, %v", ok, err)
	}
	got, err := db.PendingCommit(ctx, "$p2")
	want := pcs[0]
	want.Status = storage.PendingWaiting
	if err != nil || got.EventID != want.EventID || got.RoomID != want.RoomID || got.CommitID != want.CommitID ||
		got.ReceivedTS != want.ReceivedTS || got.Status != want.Status || !slices.Equal(got.Windows, wins) {
		t.Fatalf("PendingCommit = %+v, %v; want %+v", got, err, want)
	}
	if _, err := db.PendingCommit(ctx, "$none"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown pending commit: %v", err)
	}
	list, err := db.PendingCommits(ctx, r.ID, storage.PendingWaiting)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, pc := range list {
		order = append(order, pc.EventID)
	}
	if !slices.Equal(order, []string{"$old", "$p1", "$p2", "$p0"}) {
		t.Fatalf("queue order %v", order)
	}
	if len(list[1].Windows) != 1 || len(list[3].Windows) != 0 {
		t.Fatalf("windows in list: %+v", list)
	}
	// Claims.
	if res, err := db.ClaimPendingCommit(ctx, "$p1", "$applied1"); err != nil || res != storage.ClaimWon {
		t.Fatalf("claim: %v, %v", res, err)
	}
	if res, err := db.ClaimPendingCommit(ctx, "$p1", "$applied2"); err != nil || res != storage.ClaimTaken {
		t.Fatalf("second claim: %v, %v", res, err)
	}
	if res, err := db.ClaimPendingCommit(ctx, "$old", "$applied3"); err != nil || res != storage.ClaimStale {
		t.Fatalf("claim of stale: %v, %v", res, err)
	}
	if _, err := db.ClaimPendingCommit(ctx, "$none", "$x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim unknown: %v", err)
	}
	if ok, err := db.SetPendingCommitStatus(ctx, "$p0", storage.PendingExpired); err != nil || !ok {
		t.Fatalf("expire: %v, %v", ok, err)
	}
	if ok, err := db.SetPendingCommitStatus(ctx, "$p1", storage.PendingExpired); err != nil || ok {
		t.Fatalf("expire applied: %v, %v", ok, err)
	}
	if _, err := db.SetPendingCommitStatus(ctx, "$p2", storage.PendingApplied); err == nil {
		t.Fatal("setting applied without a claim succeeded")
	}
	if res, err := db.ClaimPendingCommit(ctx, "$p0", "$x"); err != nil || res != storage.ClaimTaken {
		t.Fatalf("claim of expired: %v, %v", res, err)
	}
	p1, err := db.PendingCommit(ctx, "$p1")
	if err != nil || p1.Status != storage.PendingApplied || p1.AppliedCommitID != "$applied1" {
		t.Fatalf("applied: %+v, %v", p1, err)
	}
	for status, ids := range map[storage.PendingStatus][]string{
		storage.PendingWaiting: {"$p2"}, storage.PendingApplied: {"$p1"},
		storage.PendingStale: {"$old"}, storage.PendingExpired: {"$p0"},
	} {
		list, err := db.PendingCommits(ctx, r.ID, status)
		if err != nil || len(list) != len(ids) || list[0].EventID != ids[0] {
			t.Fatalf("%s: %+v, %v", status, list, err)
		}
	}
}

// testConcurrentPendingClaims has many goroutines on two handles claim
// the same pending commits: each is won exactly once.
func testConcurrentPendingClaims(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	r := roomWithState(t, dbs[0], "!pcc:a.example")
	const n, workers = 20, 16
	for i := range n {
		pc := storage.PendingCommit{EventID: fmt.Sprintf("$p%d", i), RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: int64(i)}
		if _, err := dbs[0].AddPendingCommit(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		wins = map[string][]string{}
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			for i := range n {
				id := fmt.Sprintf("$p%d", i)
				applied := fmt.Sprintf("$c%d-%d", i, w)
				res, err := db.ClaimPendingCommit(ctx, id, applied)
				if err != nil {
					errs <- err
					return
				}
				if res == storage.ClaimWon {
					mu.Lock()
					wins[id] = append(wins[id], applied)
					mu.Unlock()
				} else if res != storage.ClaimTaken {
					errs <- fmt.Errorf("claim of %s: %v", id, res)
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
	for i := range n {
		id := fmt.Sprintf("$p%d", i)
		if len(wins[id]) != 1 {
			t.Fatalf("%s won %d times", id, len(wins[id]))
		}
		pc, err := dbs[len(dbs)-1].PendingCommit(ctx, id)
		if err != nil || pc.Status != storage.PendingApplied || pc.AppliedCommitID != wins[id][0] {
			t.Fatalf("%s: %+v, %v; winner %s", id, pc, err, wins[id][0])
		}
	}
}

// testMigration makes databases at schema version 1 and at the previous
// version, stores an event with version 1's columns, and opens them: the
// migrations run and the event loads.
func testMigration(t *testing.T, b Backend) {
	if !b.Shared {
		t.Skip("needs a database that outlives its handle")
	}
	for _, from := range []int{1, b.LatestVersion - 1} {
		t.Run(fmt.Sprintf("from%d", from), func(t *testing.T) { testMigrationFrom(t, b, from) })
	}
}

func testMigrationFrom(t *testing.T, b Backend, from int) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	raw, err := b.OpenRaw(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctx, raw, from); err != nil {
		t.Fatal(err)
	}
	r := NewRoom(t, "!mig:a.example")
	var v int
	if err := raw.QueryRowContext(ctx, `SELECT MAX(version) FROM mlsmode_schema_migrations`).Scan(&v); err != nil || v != from {
		t.Fatalf("version after migrating to %d: %d, %v", from, v, err)
	}
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO mlsmode_rooms (room_id, room_version, algorithm) VALUES ($1, $2, $3)`, []any{r.ID, string(roomversion.V1), algA}},
		{`INSERT INTO mlsmode_events (event_id, room_id, event_type, state_key, origin, origin_server_ts, epoch, event_json, rejected, soft_failed)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, []any{r.Create.EventID(), r.ID, r.Create.Type(), "", r.Create.Origin(),
			int64(r.Create.OriginServerTS()), 0, r.Create.JSON(), false, false}},
		{`INSERT INTO mlsmode_forward_extremities (room_id, event_id) VALUES ($1, $2)`, []any{r.ID, r.Create.EventID()}},
		{`INSERT INTO mlsmode_current_state (room_id, create_id, commit_id) VALUES ($1, $2, $3)`, []any{r.ID, r.Create.EventID(), ""}},
	}
	for _, s := range stmts {
		if _, err := raw.ExecContext(ctx, s.q, s.args...); err != nil {
			t.Fatalf("inserting at version %d: %v", from, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	db := b.open(t, dsn)
	if v, err := db.SchemaVersion(ctx); err != nil || v != b.LatestVersion {
		t.Fatalf("migrated to %d, %v; want %d", v, err, b.LatestVersion)
	}
	got, err := db.Event(ctx, r.Create.EventID())
	if err != nil {
		t.Fatal(err)
	}
	sameEvent(t, got, r.Create)
	if got.SoftFailReason != "" || got.SoftFailed {
		t.Fatalf("migrated event flags: %+v", got)
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{r.Create.EventID()}) {
		t.Fatalf("extremities after migration %v, %v", fx, err)
	}
	// The tables of migration 2 work, and new events store.
	st := r.State()
	if _, err := db.StoreEvent(ctx, r.Commit, storage.StoreEventOptions{SoftFailed: true, SoftFailReason: "x", CurrentState: &st}); err != nil {
		t.Fatal(err)
	}
	if err := db.StoreOneTimeKeyPackages(ctx, "@u:a.example", "D", []storage.KeyPackage{kp(algA, 1)}); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentApplyPendingCommits has workers on every handle apply 20
// pending commits that all reference the room's current commit: exactly
// one is applied, its commit stored and current, and every other becomes
// stale: no process applies two pending commits on one commit.
func testConcurrentApplyPendingCommits(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	r := roomWithState(t, dbs[0], "!apc:a.example")
	const n, workers = 20, 8
	auth := []string{r.Create.EventID(), r.Commit.EventID()}
	commits := make([][]*roomversion.Event, workers)
	for i := range n {
		pc := storage.PendingCommit{EventID: fmt.Sprintf("$ap%d", i), RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: int64(i)}
		if _, err := dbs[0].AddPendingCommit(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	for w := range workers {
		for range n {
			commits[w] = append(commits[w], r.NewCommit(1, auth, []string{r.Commit.EventID()}))
		}
	}
	var (
		mu   sync.Mutex
		wins []*roomversion.Event
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			for i := range n {
				c := commits[w][i]
				cur := storage.RoomState{CreateID: r.Create.EventID(), CommitID: c.EventID()}
				res, err := db.ApplyPendingCommit(ctx, fmt.Sprintf("$ap%d", i), c, storage.StoreEventOptions{StateBefore: r.State(), CurrentState: &cur})
				if err != nil {
					errs <- err
					return
				}
				if res == storage.ClaimWon {
					mu.Lock()
					wins = append(wins, c)
					mu.Unlock()
				}
			}
		}(dbs[w%len(dbs)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(wins) != 1 {
		t.Fatalf("%d pending commits applied on one commit, want 1", len(wins))
	}
	db := dbs[len(dbs)-1]
	cur, err := db.CurrentState(ctx, r.ID)
	if err != nil || cur.CommitID != wins[0].EventID() {
		t.Fatalf("current commit %s (%v), want the applied %s", cur.CommitID, err, wins[0].EventID())
	}
	if _, err := db.Event(ctx, wins[0].EventID()); err != nil {
		t.Fatalf("the applied commit is not stored: %v", err)
	}
	applied := 0
	for i := range n {
		pc, err := db.PendingCommit(ctx, fmt.Sprintf("$ap%d", i))
		if err != nil {
			t.Fatal(err)
		}
		switch pc.Status {
		case storage.PendingApplied:
			applied++
			if pc.AppliedCommitID != wins[0].EventID() {
				t.Fatalf("%s applied as %s, want %s", pc.EventID, pc.AppliedCommitID, wins[0].EventID())
			}
		case storage.PendingStale:
		default:
			t.Fatalf("%s left %s", pc.EventID, pc.Status)
		}
	}
	if applied != 1 {
		t.Fatalf("%d pending commits marked applied", applied)
	}
	// A pending commit of another room cannot be applied with this commit.
	if _, err := db.ApplyPendingCommit(ctx, "$ap0", NewRoom(t, "!other:a.example").Commit, storage.StoreEventOptions{}); err == nil {
		t.Fatal("applied a pending commit with another room's commit")
	}
}

// testPendingCommitRooms lists the rooms with waiting pending commits, as a
// restarted scheduler does.
func testPendingCommitRooms(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	rooms := []*Room{roomWithState(t, db, "!b:a.example"), roomWithState(t, db, "!a:a.example"), roomWithState(t, db, "!c:a.example")}
	for i, r := range rooms[:2] {
		pc := storage.PendingCommit{EventID: fmt.Sprintf("$w%d", i), RoomID: r.ID, CommitID: r.Commit.EventID(), ReceivedTS: 1}
		if _, err := db.AddPendingCommit(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.PendingCommitRooms(ctx, storage.PendingWaiting)
	if err != nil || !slices.Equal(got, []string{"!a:a.example", "!b:a.example"}) {
		t.Fatalf("rooms with waiting pending commits: %v, %v", got, err)
	}
	if _, err := db.SetPendingCommitStatus(ctx, "$w0", storage.PendingExpired); err != nil {
		t.Fatal(err)
	}
	got, err = db.PendingCommitRooms(ctx, storage.PendingWaiting)
	if err != nil || !slices.Equal(got, []string{"!a:a.example"}) {
		t.Fatalf("after one expired: %v, %v", got, err)
	}
	if got, _ := db.PendingCommitRooms(ctx, storage.PendingExpired); !slices.Equal(got, []string{"!b:a.example"}) {
		t.Fatalf("rooms with expired pending commits: %v", got)
	}
}
