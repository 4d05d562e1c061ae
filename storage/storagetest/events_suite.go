package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

func testSchemaVersion(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != b.LatestVersion {
		t.Fatalf("schema version %d, want %d", v, b.LatestVersion)
	}
	if !b.Shared {
		return
	}
	// Opening again migrates nothing and keeps the version.
	dsn := b.NewDSN(t)
	b.open(t, dsn)
	db2 := b.open(t, dsn)
	if v, err := db2.SchemaVersion(ctx); err != nil || v != b.LatestVersion {
		t.Fatalf("reopened: version %d, %v", v, err)
	}
}

func testRooms(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := storage.Room{RoomID: "!r:a.example", Version: roomversion.V1, Algorithm: "m.mls.v1.alg"}
	if _, err := db.Room(ctx, r.RoomID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown room: %v, want ErrNotFound", err)
	}
	if err := db.CreateRoom(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateRoom(ctx, r); err != nil {
		t.Fatalf("same room again: %v", err)
	}
	other := r
	other.Algorithm = "other"
	if err := db.CreateRoom(ctx, other); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("conflicting room: %v, want ErrConflict", err)
	}
	got, err := db.Room(ctx, r.RoomID)
	if err != nil || got != r {
		t.Fatalf("Room = %+v, %v; want %+v", got, err, r)
	}
}

// sameEvent checks a loaded event against the stored one.
func sameEvent(t *testing.T, got *storage.StoredEvent, want *roomversion.Event) {
	t.Helper()
	if got == nil || got.Event == nil {
		t.Fatalf("event %s not loaded", want.EventID())
	}
	if got.Event.EventID() != want.EventID() || !bytes.Equal(got.Event.JSON(), want.JSON()) {
		t.Fatalf("loaded %s, want %s", got.Event.JSON(), want.JSON())
	}
	if got.Event.Kind() != want.Kind() || got.Event.Epoch() != want.Epoch() || got.Event.RoomVersion() != want.RoomVersion() {
		t.Fatalf("loaded event differs: kind %v epoch %d", got.Event.Kind(), got.Event.Epoch())
	}
}

func testEventRoundTrip(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := NewRoom(t, "!rt:a.example")
	create := storage.RoomState{CreateID: r.Create.EventID()}
	if ok, err := db.StoreEvent(ctx, r.Create, storage.StoreEventOptions{CurrentState: &create}); err != nil || !ok {
		t.Fatalf("storing create: %v, %v", ok, err)
	}
	st := r.State()
	if ok, err := db.StoreEvent(ctx, r.Commit, storage.StoreEventOptions{StateBefore: create, CurrentState: &st}); err != nil || !ok {
		t.Fatalf("storing commit: %v, %v", ok, err)
	}
	msg := r.NewMessage(r.Commit.EventID())
	if _, err := db.StoreEvent(ctx, msg, storage.StoreEventOptions{StateBefore: st}); err != nil {
		t.Fatal(err)
	}
	rej := r.NewMessage(msg.EventID())
	if _, err := db.StoreEvent(ctx, rej, storage.StoreEventOptions{Rejected: true, StateBefore: st}); err != nil {
		t.Fatal(err)
	}
	soft := r.NewMessage(msg.EventID())
	if _, err := db.StoreEvent(ctx, soft, storage.StoreEventOptions{SoftFailed: true, SoftFailReason: "case b", StateBefore: st}); err != nil {
		t.Fatal(err)
	}
	// Storing again is a no-op.
	if ok, err := db.StoreEvent(ctx, msg, storage.StoreEventOptions{Rejected: true}); err != nil || ok {
		t.Fatalf("storing again: %v, %v; want false, nil", ok, err)
	}

	room, err := db.Room(ctx, r.ID)
	if err != nil || room.Version != roomversion.V1 || room.Algorithm == "" {
		t.Fatalf("room from create event: %+v, %v", room, err)
	}
	for _, ev := range []*roomversion.Event{r.Create, r.Commit, msg} {
		got, err := db.Event(ctx, ev.EventID())
		if err != nil {
			t.Fatal(err)
		}
		sameEvent(t, got, ev)
		if got.Rejected || got.SoftFailed {
			t.Fatalf("%s flagged", ev.EventID())
		}
	}
	got, err := db.Event(ctx, rej.EventID())
	if err != nil || !got.Rejected || got.SoftFailed {
		t.Fatalf("rejected event: %+v, %v", got, err)
	}
	got, err = db.Event(ctx, soft.EventID())
	if err != nil || got.Rejected || !got.SoftFailed || got.SoftFailReason != "case b" {
		t.Fatalf("soft-failed event: %+v, %v", got, err)
	}
	if _, err := db.Event(ctx, "$unknown"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
	evs, err := db.Events(ctx, []string{soft.EventID(), "$unknown", r.Create.EventID(), msg.EventID()})
	if err != nil || len(evs) != 3 {
		t.Fatalf("Events: %d, %v", len(evs), err)
	}
	for i, want := range []*roomversion.Event{soft, r.Create, msg} {
		sameEvent(t, evs[i], want)
	}
	if evs[0].NID <= evs[2].NID || evs[2].NID <= evs[1].NID {
		t.Fatalf("NIDs not in write order: %d %d %d", evs[1].NID, evs[2].NID, evs[0].NID)
	}

	// State at each event and the current state.
	if s, err := db.StateAtEvent(ctx, msg.EventID()); err != nil || s != st {
		t.Fatalf("state at message: %+v, %v", s, err)
	}
	if s, err := db.StateAtEvent(ctx, r.Commit.EventID()); err != nil || s != create {
		t.Fatalf("state at commit: %+v, %v", s, err)
	}
	if _, err := db.StateAtEvent(ctx, r.Create.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("state at create: %v, want ErrNotFound", err)
	}
	if s, err := db.CurrentState(ctx, r.ID); err != nil || s != st {
		t.Fatalf("current state: %+v, %v", s, err)
	}
	if _, err := db.CurrentState(ctx, "!none:a.example"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("current state of unknown room: %v", err)
	}
	// Edges.
	refs, err := db.EventReferences(ctx, msg.EventID())
	want := []string{rej.EventID(), soft.EventID()}
	slices.Sort(want)
	if err != nil || !slices.Equal(refs, want) {
		t.Fatalf("references: %v, %v; want %v", refs, err, want)
	}
	// Rejected and soft-failed events are no extremities.
	fx, err := db.ForwardExtremities(ctx, r.ID)
	if err != nil || !slices.Equal(fx, []string{msg.EventID()}) {
		t.Fatalf("extremities %v, %v; want [%s]", fx, err, msg.EventID())
	}
}

func testForwardExtremities(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := NewRoom(t, "!fx:a.example")
	st := r.State()
	for _, ev := range []*roomversion.Event{r.Create, r.Commit} {
		if _, err := db.StoreEvent(ctx, ev, storage.StoreEventOptions{CurrentState: &st}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want ...string) {
		t.Helper()
		slices.Sort(want)
		got, err := db.ForwardExtremities(ctx, r.ID)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("extremities %v, %v; want %v", got, err, want)
		}
	}
	check(r.Commit.EventID())
	a := r.NewMessage(r.Commit.EventID())
	bb := r.NewMessage(r.Commit.EventID())
	for _, ev := range []*roomversion.Event{a, bb} {
		if _, err := db.StoreEvent(ctx, ev, storage.StoreEventOptions{StateBefore: st}); err != nil {
			t.Fatal(err)
		}
	}
	check(a.EventID(), bb.EventID())
	// A child stored before its parent (out of order): the parent does
	// not become an extremity.
	c := r.NewMessage(a.EventID(), bb.EventID())
	d := r.NewMessage(c.EventID())
	if _, err := db.StoreEvent(ctx, d, storage.StoreEventOptions{StateBefore: st}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StoreEvent(ctx, c, storage.StoreEventOptions{StateBefore: st}); err != nil {
		t.Fatal(err)
	}
	check(d.EventID())
	// Explicit extremities replace the set.
	e := r.NewMessage(d.EventID())
	if _, err := db.StoreEvent(ctx, e, storage.StoreEventOptions{ForwardExtremities: []string{e.EventID(), a.EventID()}}); err != nil {
		t.Fatal(err)
	}
	check(e.EventID(), a.EventID())
}

// testStoreEventAtomic makes a write fail after the event row is inserted
// (a duplicate forward extremity violates the primary key) and checks that
// nothing of the event remains.
func testStoreEventAtomic(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := NewRoom(t, "!atomic:a.example")
	st := r.State()
	for _, ev := range []*roomversion.Event{r.Create, r.Commit} {
		if _, err := db.StoreEvent(ctx, ev, storage.StoreEventOptions{CurrentState: &st}); err != nil {
			t.Fatal(err)
		}
	}
	msg := r.NewMessage(r.Commit.EventID())
	newState := storage.RoomState{CreateID: r.Create.EventID(), CommitID: msg.EventID()}
	_, err := db.StoreEvent(ctx, msg, storage.StoreEventOptions{
		StateBefore:        st,
		CurrentState:       &newState,
		ForwardExtremities: []string{msg.EventID(), msg.EventID()},
	})
	if err == nil {
		t.Fatal("storing with a duplicate extremity succeeded")
	}
	checkAbsent(t, db, r, msg)
	// The same event stores fine afterwards.
	if ok, err := db.StoreEvent(ctx, msg, storage.StoreEventOptions{StateBefore: st}); err != nil || !ok {
		t.Fatalf("storing after the failure: %v, %v", ok, err)
	}
}

// checkAbsent checks that nothing of msg is stored and the room is as
// before it.
func checkAbsent(t *testing.T, db storage.Database, r *Room, msgs ...*roomversion.Event) {
	t.Helper()
	ctx := context.Background()
	for _, msg := range msgs {
		if _, err := db.Event(ctx, msg.EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("event %s left behind: %v", msg.EventID(), err)
		}
		if _, err := db.StateAtEvent(ctx, msg.EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("state of %s left behind: %v", msg.EventID(), err)
		}
	}
	if refs, err := db.EventReferences(ctx, r.Commit.EventID()); err != nil || len(refs) != 0 {
		t.Fatalf("edges left behind: %v, %v", refs, err)
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{r.Commit.EventID()}) {
		t.Fatalf("extremities changed: %v, %v", fx, err)
	}
	if s, err := db.CurrentState(ctx, r.ID); err != nil || s != r.State() {
		t.Fatalf("current state changed: %+v, %v", s, err)
	}
}

func testStoreEventsAtomic(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := NewRoom(t, "!batch:a.example")
	st := r.State()
	for _, ev := range []*roomversion.Event{r.Create, r.Commit} {
		if _, err := db.StoreEvent(ctx, ev, storage.StoreEventOptions{CurrentState: &st}); err != nil {
			t.Fatal(err)
		}
	}
	m1 := r.NewMessage(r.Commit.EventID())
	m2 := r.NewMessage(m1.EventID())
	m3 := r.NewMessage(m2.EventID())
	batch := []storage.EventToStore{
		{Event: m1, Options: storage.StoreEventOptions{StateBefore: st}},
		{Event: m2, Options: storage.StoreEventOptions{StateBefore: st}},
		{Event: m3, Options: storage.StoreEventOptions{StateBefore: st, ForwardExtremities: []string{m3.EventID(), m3.EventID()}}},
	}
	if _, err := db.StoreEvents(ctx, batch); err == nil {
		t.Fatal("batch with a failing event succeeded")
	}
	checkAbsent(t, db, r, m1, m2, m3)
	batch[2].Options.ForwardExtremities = nil
	if n, err := db.StoreEvents(ctx, batch); err != nil || n != 3 {
		t.Fatalf("batch: %d, %v", n, err)
	}
	if n, err := db.StoreEvents(ctx, batch); err != nil || n != 0 {
		t.Fatalf("batch again: %d, %v; want 0", n, err)
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{m3.EventID()}) {
		t.Fatalf("extremities %v, %v", fx, err)
	}
}

// testStoreEventsCancelled cancels batches of events at different moments:
// each batch is stored whole or not at all.
func testStoreEventsCancelled(t *testing.T, b Backend) {
	db := b.fresh(t)
	r := roomWithState(t, db, "!cancel:a.example")
	st := r.State()
	evs := chain(t, r, 600)
	for i, delay := range []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, time.Second} {
		batch := evs[i*100 : (i+1)*100]
		toStore := make([]storage.EventToStore, len(batch))
		for j, ev := range batch {
			toStore[j] = storage.EventToStore{Event: ev, Options: storage.StoreEventOptions{StateBefore: st}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), delay)
		_, err := db.StoreEvents(ctx, toStore)
		cancel()
		ids := make([]string, len(batch))
		for j, ev := range batch {
			ids[j] = ev.EventID()
		}
		got, lerr := db.Events(context.Background(), ids)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(got) != 0 && len(got) != len(batch) {
			t.Fatalf("batch %d (timeout %v, error %v): %d of %d events stored", i, delay, err, len(got), len(batch))
		}
		if err == nil && len(got) != len(batch) {
			t.Fatalf("batch %d: no error but %d events stored", i, len(got))
		}
		if len(got) == 0 {
			// Store it for the next batch's prev events.
			if _, err := db.StoreEvents(context.Background(), toStore); err != nil {
				t.Fatal(err)
			}
		}
	}
	if fx, err := db.ForwardExtremities(context.Background(), r.ID); err != nil || !slices.Equal(fx, []string{evs[len(evs)-1].EventID()}) {
		t.Fatalf("extremities %v, %v", fx, err)
	}
}
