package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// testConditionalStore checks StoreEventOptions.ExpectCurrent: a mismatch
// stores nothing (one event or a whole batch) and wraps ErrStateChanged;
// a room without state expects the zero RoomState; an event stored
// already is reported not new before the check.
func testConditionalStore(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := NewRoom(t, "!cond:a.example")
	createSt := storage.RoomState{CreateID: r.Create.EventID()}
	st := r.State()
	if _, err := db.StoreEvent(ctx, r.Create, storage.StoreEventOptions{CurrentState: &createSt, ExpectCurrent: &st}); !errors.Is(err, storage.ErrStateChanged) {
		t.Fatalf("create expecting a state in an unknown room: %v, want ErrStateChanged", err)
	}
	if _, err := db.Event(ctx, r.Create.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("create stored after the mismatch: %v", err)
	}
	if _, err := db.CurrentState(ctx, r.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("current state after the mismatch: %v", err)
	}
	if ok, err := db.StoreEvent(ctx, r.Create, storage.StoreEventOptions{CurrentState: &createSt, ExpectCurrent: &storage.RoomState{}}); err != nil || !ok {
		t.Fatalf("create expecting no state: %v, %v", ok, err)
	}
	if ok, err := db.StoreEvent(ctx, r.Commit, storage.StoreEventOptions{StateBefore: createSt, CurrentState: &st, ExpectCurrent: &createSt}); err != nil || !ok {
		t.Fatalf("commit expecting the create state: %v, %v", ok, err)
	}
	// A second commit on the create state: the state has moved on.
	c2 := r.NewCommit(0, []string{r.Create.EventID()}, []string{r.Create.EventID()})
	c2St := storage.RoomState{CreateID: r.Create.EventID(), CommitID: c2.EventID()}
	if ok, err := db.StoreEvent(ctx, c2, storage.StoreEventOptions{StateBefore: createSt, CurrentState: &c2St, ExpectCurrent: &createSt}); !errors.Is(err, storage.ErrStateChanged) || ok {
		t.Fatalf("commit on a stale state: %v, %v; want ErrStateChanged", ok, err)
	}
	checkAbsent(t, db, r, c2)
	// An event stored already is not new, whatever is expected.
	if ok, err := db.StoreEvent(ctx, r.Commit, storage.StoreEventOptions{ExpectCurrent: &createSt}); err != nil || ok {
		t.Fatalf("stored commit again with a stale expectation: %v, %v; want false, nil", ok, err)
	}
	// A batch with one mismatch stores nothing.
	m1 := r.NewMessage(r.Commit.EventID())
	m2 := r.NewMessage(m1.EventID())
	n, err := db.StoreEvents(ctx, []storage.EventToStore{
		{Event: m1, Options: storage.StoreEventOptions{StateBefore: st, ExpectCurrent: &st}},
		{Event: m2, Options: storage.StoreEventOptions{StateBefore: st, ExpectCurrent: &createSt}},
	})
	if !errors.Is(err, storage.ErrStateChanged) || n != 0 {
		t.Fatalf("batch with a stale expectation: %d, %v; want ErrStateChanged", n, err)
	}
	checkAbsent(t, db, r, m1, m2)
	n, err = db.StoreEvents(ctx, []storage.EventToStore{
		{Event: m1, Options: storage.StoreEventOptions{StateBefore: st, ExpectCurrent: &st}},
		{Event: m2, Options: storage.StoreEventOptions{StateBefore: st, ExpectCurrent: &st}},
	})
	if err != nil || n != 2 {
		t.Fatalf("batch with the right expectation: %d, %v", n, err)
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{m2.EventID()}) {
		t.Fatalf("extremities %v, %v; want the batch's last event", fx, err)
	}
}

// testClientTxns checks StoreEventOptions.Txn, ClientTxnEvent and
// EventClientTxn: a transaction is recorded once, a duplicate stores
// nothing and wraps ErrDuplicateTxn.
func testClientTxns(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := roomWithState(t, db, "!txn:a.example")
	st := r.State()
	txn := storage.ClientTxn{UserID: "@a:a.example", DeviceID: "DEV", TxnID: "t1"}
	if _, err := db.ClientTxnEvent(ctx, txn.UserID, txn.DeviceID, txn.TxnID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown transaction: %v", err)
	}
	m1 := r.NewMessage(r.Commit.EventID())
	if ok, err := db.StoreEvent(ctx, m1, storage.StoreEventOptions{StateBefore: st, Txn: &txn}); err != nil || !ok {
		t.Fatalf("storing with a transaction: %v, %v", ok, err)
	}
	if id, err := db.ClientTxnEvent(ctx, txn.UserID, txn.DeviceID, txn.TxnID); err != nil || id != m1.EventID() {
		t.Fatalf("ClientTxnEvent = %q, %v; want %s", id, err, m1.EventID())
	}
	if got, err := db.EventClientTxn(ctx, m1.EventID()); err != nil || got != txn {
		t.Fatalf("EventClientTxn = %+v, %v; want %+v", got, err, txn)
	}
	if _, err := db.EventClientTxn(ctx, r.Commit.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("event sent without a transaction: %v", err)
	}
	// RoomEvents carries the transaction of each event that has one.
	evs, err := db.RoomEvents(ctx, r.ID, 0, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, se := range evs {
		want := se.Event.EventID() == m1.EventID()
		if (se.Txn != nil) != want || (want && *se.Txn != txn) {
			t.Fatalf("RoomEvents: %s has transaction %+v", se.Event.EventID(), se.Txn)
		}
	}
	m2 := r.NewMessage(r.Commit.EventID())
	if ok, err := db.StoreEvent(ctx, m2, storage.StoreEventOptions{StateBefore: st, Txn: &txn}); !errors.Is(err, storage.ErrDuplicateTxn) || ok {
		t.Fatalf("duplicate transaction: %v, %v; want ErrDuplicateTxn", ok, err)
	}
	if _, err := db.Event(ctx, m2.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("event of the duplicate transaction stored: %v", err)
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{m1.EventID()}) {
		t.Fatalf("extremities %v, %v after the duplicate", fx, err)
	}
	// The same transaction ID from another device is another transaction.
	other := txn
	other.DeviceID = "OTHER"
	if ok, err := db.StoreEvent(ctx, m2, storage.StoreEventOptions{StateBefore: st, Txn: &other}); err != nil || !ok {
		t.Fatalf("same ID from another device: %v, %v", ok, err)
	}
	// A batch with a duplicate stores nothing, its other transactions
	// included.
	m3 := r.NewMessage(m1.EventID(), m2.EventID())
	m4 := r.NewMessage(m3.EventID())
	t3 := storage.ClientTxn{UserID: txn.UserID, DeviceID: txn.DeviceID, TxnID: "t3"}
	if n, err := db.StoreEvents(ctx, []storage.EventToStore{
		{Event: m3, Options: storage.StoreEventOptions{StateBefore: st, Txn: &t3}},
		{Event: m4, Options: storage.StoreEventOptions{StateBefore: st, Txn: &txn}},
	}); !errors.Is(err, storage.ErrDuplicateTxn) || n != 0 {
		t.Fatalf("batch with a duplicate: %d, %v; want ErrDuplicateTxn", n, err)
	}
	if _, err := db.Event(ctx, m3.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("batch event stored: %v", err)
	}
	if _, err := db.ClientTxnEvent(ctx, t3.UserID, t3.DeviceID, t3.TxnID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("batch transaction recorded: %v", err)
	}
	// An event stored already is not new and records nothing.
	t4 := storage.ClientTxn{UserID: txn.UserID, DeviceID: txn.DeviceID, TxnID: "t4"}
	if ok, err := db.StoreEvent(ctx, m1, storage.StoreEventOptions{StateBefore: st, Txn: &t4}); err != nil || ok {
		t.Fatalf("stored event again with a new transaction: %v, %v; want false, nil", ok, err)
	}
	if _, err := db.ClientTxnEvent(ctx, t4.UserID, t4.DeviceID, t4.TxnID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("transaction of a stored event recorded: %v", err)
	}
}

// testConcurrentConditionalWrites stores two different commits expecting
// the same current state from 8 goroutines on two handles, for several
// rounds: each round exactly one write succeeds, the other commit is not
// stored and the current state is the winner's.
func testConcurrentConditionalWrites(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	r := roomWithState(t, dbs[0], "!cond-conc:a.example")
	cur := r.State()
	for round := range 5 {
		prev := cur
		commits := []*roomversion.Event{
			r.NewCommit(uint64(round+1), []string{r.Create.EventID(), prev.CommitID}, []string{prev.CommitID}),
			r.NewCommit(uint64(round+1), []string{r.Create.EventID(), prev.CommitID}, []string{prev.CommitID}),
		}
		const workers = 8
		type result struct {
			commit int
			ok     bool
			err    error
		}
		results := make(chan result, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func(db storage.Database, c int) {
				defer wg.Done()
				<-start
				next := storage.RoomState{CreateID: prev.CreateID, CommitID: commits[c].EventID()}
				ok, err := db.StoreEvent(ctx, commits[c], storage.StoreEventOptions{StateBefore: prev, CurrentState: &next, ExpectCurrent: &prev})
				results <- result{c, ok, err}
			}(dbs[w%len(dbs)], w%2)
		}
		close(start)
		wg.Wait()
		close(results)
		winner, wins := -1, 0
		var all []result
		for res := range results {
			all = append(all, res)
			if res.err != nil && !errors.Is(res.err, storage.ErrStateChanged) {
				t.Fatalf("round %d: %v", round, res.err)
			}
			if res.ok {
				wins++
				winner = res.commit
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d writes succeeded, want 1: %+v", round, wins, all)
		}
		for _, res := range all {
			if !res.ok && res.err == nil && res.commit != winner {
				t.Fatalf("round %d: the losing commit reported stored already", round)
			}
		}
		if _, err := dbs[0].Event(ctx, commits[1-winner].EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("round %d: losing commit stored: %v", round, err)
		}
		cur = storage.RoomState{CreateID: prev.CreateID, CommitID: commits[winner].EventID()}
		if s, err := dbs[0].CurrentState(ctx, r.ID); err != nil || s != cur {
			t.Fatalf("round %d: current state %+v, %v; want %+v", round, s, err, cur)
		}
		if fx, err := dbs[0].ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{cur.CommitID}) {
			t.Fatalf("round %d: extremities %v, %v", round, fx, err)
		}
	}
}

// eventIDs lists the IDs of stored events.
func eventIDs(evs []*storage.StoredEvent) []string {
	out := make([]string, len(evs))
	for i, se := range evs {
		out[i] = se.Event.EventID()
	}
	return out
}

func testRoomEvents(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	r := roomWithState(t, db, "!re:a.example")
	st := r.State()
	m1 := r.NewMessage(r.Commit.EventID())
	m2 := r.NewMessage(m1.EventID())
	m3 := r.NewMessage(m1.EventID())
	m4 := r.NewMessage(m1.EventID())
	for _, e := range []storage.EventToStore{
		{Event: m1, Options: storage.StoreEventOptions{StateBefore: st}},
		{Event: m2, Options: storage.StoreEventOptions{StateBefore: st, Rejected: true}},
		{Event: m3, Options: storage.StoreEventOptions{StateBefore: st, SoftFailed: true, SoftFailReason: "not a member"}},
		{Event: m4, Options: storage.StoreEventOptions{StateBefore: st}},
	} {
		if _, err := db.StoreEvent(ctx, e.Event, e.Options); err != nil {
			t.Fatal(err)
		}
	}
	o := roomWithState(t, db, "!re-other:a.example")
	if _, err := db.StoreEvent(ctx, o.NewMessage(o.Commit.EventID()), storage.StoreEventOptions{StateBefore: o.State()}); err != nil {
		t.Fatal(err)
	}
	nid := map[string]int64{}
	for _, ev := range []*roomversion.Event{r.Create, r.Commit, m1, m2, m3, m4} {
		se, err := db.Event(ctx, ev.EventID())
		if err != nil {
			t.Fatal(err)
		}
		nid[ev.EventID()] = se.NID
	}
	id := func(evs ...*roomversion.Event) []string {
		out := []string{}
		for _, ev := range evs {
			out = append(out, ev.EventID())
		}
		return out
	}
	for _, c := range []struct {
		name     string
		from, to int64
		limit    int
		backward bool
		want     []string
	}{
		{"all forward", 0, 0, 0, false, id(r.Create, r.Commit, m1, m3, m4)},
		{"all backward", 0, 0, -1, true, id(m4, m3, m1, r.Commit, r.Create)},
		{"forward bounds", nid[r.Commit.EventID()], nid[m3.EventID()], 0, false, id(m1, m3)},
		{"forward limit", nid[r.Commit.EventID()], 0, 2, false, id(m1, m3)},
		{"forward to only", 0, nid[m1.EventID()], 0, false, id(r.Create, r.Commit, m1)},
		{"forward past the end", nid[m4.EventID()], 0, 0, false, id()},
		{"backward limit", 0, 0, 2, true, id(m4, m3)},
		{"backward bounds", nid[m4.EventID()], nid[r.Commit.EventID()], 0, true, id(m3, m1)},
		{"backward from only", nid[m1.EventID()], 0, 0, true, id(r.Commit, r.Create)},
		{"backward before the start", nid[r.Create.EventID()], 0, 0, true, id()},
	} {
		got, err := db.RoomEvents(ctx, r.ID, c.from, c.to, c.limit, c.backward)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ids := eventIDs(got); !slices.Equal(ids, c.want) {
			t.Fatalf("%s: %v, want %v", c.name, ids, c.want)
		}
		for _, se := range got {
			if se.NID != nid[se.Event.EventID()] || se.Rejected {
				t.Fatalf("%s: %s loaded with NID %d rejected %v", c.name, se.Event.EventID(), se.NID, se.Rejected)
			}
			if (se.Event.EventID() == m3.EventID()) != se.SoftFailed || (se.SoftFailed && se.SoftFailReason != "not a member") {
				t.Fatalf("%s: %s soft-failed %v (%q)", c.name, se.Event.EventID(), se.SoftFailed, se.SoftFailReason)
			}
		}
	}
	if got, err := db.RoomEvents(ctx, "!unknown:a.example", 0, 0, 0, false); err != nil || len(got) != 0 {
		t.Fatalf("unknown room: %v, %v", eventIDs(got), err)
	}
}

// testStreamPositions checks that every write moves its stream's position
// to what it reports, and that deleting does not move any back.
func testStreamPositions(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	pos := func() storage.StreamPositions {
		t.Helper()
		p, err := db.MaxStreamPositions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := pos(); p != (storage.StreamPositions{}) {
		t.Fatalf("empty database: %+v", p)
	}
	r := roomWithState(t, db, "!sp:a.example")
	se, err := db.Event(ctx, r.Commit.EventID())
	if err != nil {
		t.Fatal(err)
	}
	if p := pos(); p.Events != se.NID {
		t.Fatalf("events position %d, want the commit's NID %d", p.Events, se.NID)
	}
	td, err := db.SendToDevice(ctx, "@a:a.example", "DEV", storage.ToDeviceMessage{Sender: "@b:b.example", Type: "m.x", Content: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if p := pos(); p.ToDevice != td {
		t.Fatalf("to-device position %d, want %d", p.ToDevice, td)
	}
	if err := db.DeleteToDevice(ctx, "@a:a.example", "DEV", td); err != nil {
		t.Fatal(err)
	}
	if p := pos(); p.ToDevice != td {
		t.Fatalf("to-device position %d after delivery, want %d", p.ToDevice, td)
	}
	if td2, err := db.SendToDevice(ctx, "@a:a.example", "DEV", storage.ToDeviceMessage{Sender: "@b:b.example", Type: "m.x", Content: []byte(`{}`)}); err != nil || td2 <= td {
		t.Fatalf("next to-device position %d, %v; want above %d", td2, err, td)
	}
	m := storage.Membership{RoomID: r.ID, UserID: "@a:a.example", State: "join", UpdatedTS: 1}
	if err := db.SetMembership(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := db.Membership(ctx, m.RoomID, m.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if p := pos(); p.Memberships != got.Pos || got.Pos == 0 {
		t.Fatalf("memberships position %d, want the membership's %d", p.Memberships, got.Pos)
	}
	if err := db.StoreDeviceKeys(ctx, storage.DeviceKeys{UserID: "@a:a.example", DeviceID: "DEV", KeysJSON: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	_, high, err := db.DeviceKeyChangesSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p := pos(); p.DeviceKeys != high || high == 0 {
		t.Fatalf("device keys position %d, want %d", p.DeviceKeys, high)
	}
}

// testStreamOrdering writes events, to-device messages and memberships
// from several goroutines on two handles while a reader repeatedly reads
// the stream positions and then everything up to them: no row may later
// appear at or below a position the reader has read.
func testStreamOrdering(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	r := roomWithState(t, dbs[0], "!order:a.example")
	st := r.State()
	const workers, perWorker = 4, 25
	const u, dev = "@a:a.example", "DEV"
	msgs := make([][]*roomversion.Event, workers)
	for w := range msgs {
		for range perWorker {
			msgs[w] = append(msgs[w], r.NewMessage(r.Commit.EventID()))
		}
	}
	type snapshot struct {
		pos                           storage.StreamPositions
		events, toDevice, memberships int
	}
	// count counts what is stored up to the positions of p.
	count := func(db storage.Database, p storage.StreamPositions) (snapshot, error) {
		s := snapshot{pos: p}
		evs, err := db.RoomEvents(ctx, r.ID, 0, p.Events, 0, false)
		if err != nil {
			return s, err
		}
		s.events = len(evs)
		tds, err := db.ToDeviceMessages(ctx, u, dev, 0, 1_000_000)
		if err != nil {
			return s, err
		}
		for _, m := range tds {
			if m.Pos <= p.ToDevice {
				s.toDevice++
			}
		}
		ms, err := db.MembershipsSince(ctx, u, 0)
		if err != nil {
			return s, err
		}
		for _, m := range ms {
			if m.Pos <= p.Memberships {
				s.memberships++
			}
		}
		return s, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	done := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			for i, ev := range msgs[w] {
				if _, err := db.StoreEvent(ctx, ev, storage.StoreEventOptions{StateBefore: st}); err != nil {
					errs <- err
					return
				}
				if _, err := db.SendToDevice(ctx, u, dev, storage.ToDeviceMessage{Sender: u, Type: "m.x", Content: []byte(`{}`)}); err != nil {
					errs <- err
					return
				}
				m := storage.Membership{RoomID: fmt.Sprintf("!m%d-%d:a.example", w, i), UserID: u, State: "join", UpdatedTS: 1}
				if err := db.SetMembership(ctx, m); err != nil {
					errs <- err
					return
				}
			}
		}(dbs[w%len(dbs)])
	}
	var snaps []snapshot
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		db := dbs[len(dbs)-1]
		for {
			select {
			case <-done:
				return
			default:
			}
			p, err := db.MaxStreamPositions(ctx)
			if err != nil {
				errs <- err
				return
			}
			s, err := count(db, p)
			if err != nil {
				errs <- err
				return
			}
			snaps = append(snaps, s)
		}
	}()
	wg.Wait()
	close(done)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(snaps) == 0 {
		t.Fatal("the reader read nothing")
	}
	for _, s := range snaps {
		now, err := count(dbs[0], s.pos)
		if err != nil {
			t.Fatal(err)
		}
		if now != s {
			t.Fatalf("rows appeared at or below positions %+v read before: read %+v, now %+v", s.pos, s, now)
		}
	}
}

func testMembershipPositions(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u, v = "@a:a.example", "@b:b.example"
	var last int64
	set := func(m storage.Membership) int64 {
		t.Helper()
		if err := db.SetMembership(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := db.Membership(ctx, m.RoomID, m.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Pos <= last {
			t.Fatalf("position %d after %d", got.Pos, last)
		}
		last = got.Pos
		return got.Pos
	}
	set(storage.Membership{RoomID: "!1:a.example", UserID: u, State: "invite", Inviter: v, UpdatedTS: 1})
	p2 := set(storage.Membership{RoomID: "!2:a.example", UserID: u, State: "join", UpdatedTS: 2})
	set(storage.Membership{RoomID: "!1:a.example", UserID: v, State: "join", UpdatedTS: 3})
	p4 := set(storage.Membership{RoomID: "!1:a.example", UserID: u, State: "join", UpdatedTS: 4})
	ms, err := db.MembershipsSince(ctx, u, 0)
	if err != nil || len(ms) != 2 || ms[0].RoomID != "!2:a.example" || ms[0].Pos != p2 || ms[1].RoomID != "!1:a.example" || ms[1].Pos != p4 || ms[1].State != "join" {
		t.Fatalf("memberships of %s since 0: %+v, %v", u, ms, err)
	}
	if ms, err := db.MembershipsSince(ctx, u, p2); err != nil || len(ms) != 1 || ms[0].Pos != p4 {
		t.Fatalf("since %d: %+v, %v", p2, ms, err)
	}
	if ms, err := db.MembershipsSince(ctx, u, p4); err != nil || len(ms) != 0 {
		t.Fatalf("since %d: %+v, %v", p4, ms, err)
	}
	if ms, err := db.Memberships(ctx, "!1:a.example", "", "join"); err != nil || len(ms) != 2 || ms[0].Pos != p4 || ms[1].Pos == 0 {
		t.Fatalf("members of !1: %+v, %v", ms, err)
	}
}

func testDeviceKeyChanges(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	if users, high, err := db.DeviceKeyChangesSince(ctx, 0); err != nil || len(users) != 0 || high != 0 {
		t.Fatalf("no changes: %v, %d, %v", users, high, err)
	}
	for _, k := range []storage.DeviceKeys{
		{UserID: "@b:a.example", DeviceID: "B1", KeysJSON: []byte(`{}`)},
		{UserID: "@a:a.example", DeviceID: "A1", KeysJSON: []byte(`{}`)},
		{UserID: "@b:a.example", DeviceID: "B2", KeysJSON: []byte(`{}`)},
	} {
		if err := db.StoreDeviceKeys(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	users, h1, err := db.DeviceKeyChangesSince(ctx, 0)
	if err != nil || !slices.Equal(users, []string{"@a:a.example", "@b:a.example"}) || h1 == 0 {
		t.Fatalf("changes since 0: %v, %d, %v", users, h1, err)
	}
	if p, err := db.MaxStreamPositions(ctx); err != nil || p.DeviceKeys != h1 {
		t.Fatalf("device keys position %+v, %v; want %d", p, err, h1)
	}
	if users, high, err := db.DeviceKeyChangesSince(ctx, h1); err != nil || len(users) != 0 || high != h1 {
		t.Fatalf("changes since %d: %v, %d, %v; want none and %d", h1, users, high, err, h1)
	}
	if err := db.StoreDevice(ctx, storage.Device{UserID: "@a:a.example", DeviceID: "A1", CreatedTS: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDevice(ctx, "@a:a.example", "A1"); err != nil {
		t.Fatal(err)
	}
	users, h2, err := db.DeviceKeyChangesSince(ctx, h1)
	if err != nil || !slices.Equal(users, []string{"@a:a.example"}) || h2 <= h1 {
		t.Fatalf("changes after deleting a device: %v, %d, %v", users, h2, err)
	}
	// A remote user's change: a row in the stream, no keys stored.
	if err := db.RecordDeviceKeyChange(ctx, "@r:b.example"); err != nil {
		t.Fatal(err)
	}
	users, h3, err := db.DeviceKeyChangesSince(ctx, h2)
	if err != nil || !slices.Equal(users, []string{"@r:b.example"}) || h3 <= h2 {
		t.Fatalf("changes after a recorded change: %v, %d, %v", users, h3, err)
	}
	if p, err := db.MaxStreamPositions(ctx); err != nil || p.DeviceKeys != h3 {
		t.Fatalf("device keys position %+v, %v; want %d", p, err, h3)
	}
	if keys, err := db.DeviceKeys(ctx, "@r:b.example", nil); err != nil || len(keys) != 0 {
		t.Fatalf("keys of the remote user: %+v, %v; want none", keys, err)
	}
}

func testFilters(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	js := []byte(`{"room":{"timeline":{"limit":10}}}`)
	id, err := db.StoreFilter(ctx, "@a:a.example", js)
	if err != nil || id == "" {
		t.Fatalf("StoreFilter = %q, %v", id, err)
	}
	if got, err := db.Filter(ctx, "@a:a.example", id); err != nil || string(got) != string(js) {
		t.Fatalf("Filter = %s, %v", got, err)
	}
	id2, err := db.StoreFilter(ctx, "@a:a.example", []byte(`{}`))
	if err != nil || id2 == id {
		t.Fatalf("second filter %q, %v (first %q)", id2, err, id)
	}
	for _, c := range []struct{ user, id string }{{"@b:a.example", id}, {"@a:a.example", "nope"}, {"@a:a.example", "999999"}, {"@a:a.example", ""}} {
		if _, err := db.Filter(ctx, c.user, c.id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("filter %q of %s: %v, want ErrNotFound", c.id, c.user, err)
		}
	}
}

func testProfiles(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u = "@a:a.example"
	if _, err := db.Profile(ctx, u); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("profile of an unknown user: %v", err)
	}
	if err := db.SetDisplayName(ctx, u, "Alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("display name of an unknown user: %v", err)
	}
	if err := db.SetAvatarURL(ctx, u, "mxc://a.example/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("avatar of an unknown user: %v", err)
	}
	if err := db.CreateUser(ctx, storage.User{UserID: u, CreatedTS: 1}); err != nil {
		t.Fatal(err)
	}
	check := func(want storage.Profile) {
		t.Helper()
		if got, err := db.Profile(ctx, u); err != nil || got != want {
			t.Fatalf("profile %+v, %v; want %+v", got, err, want)
		}
	}
	check(storage.Profile{})
	if err := db.SetDisplayName(ctx, u, "Alice"); err != nil {
		t.Fatal(err)
	}
	check(storage.Profile{DisplayName: "Alice"})
	if err := db.SetAvatarURL(ctx, u, "mxc://a.example/x"); err != nil {
		t.Fatal(err)
	}
	check(storage.Profile{DisplayName: "Alice", AvatarURL: "mxc://a.example/x"})
	if err := db.SetDisplayName(ctx, u, ""); err != nil {
		t.Fatal(err)
	}
	check(storage.Profile{AvatarURL: "mxc://a.example/x"})
}

// testChanges checks that subscribers of a Database receive the keys
// notified through it, that a subscription ends with its context, and
// that a subscriber falling behind gets "*" rather than losing keys.
func testChanges(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch1, err := db.SubscribeChanges(subCtx)
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := db.SubscribeChanges(subCtx)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"!r:a.example", "@u:a.example"}
	for _, k := range keys {
		if err := db.NotifyChange(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range []<-chan string{ch1, ch2} {
		var got []string
		for len(got) < len(keys) {
			select {
			case k := <-ch:
				got = append(got, k)
			case <-time.After(5 * time.Second):
				t.Fatalf("subscriber %d: received %v, want %v", i, got, keys)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, keys) {
			t.Fatalf("subscriber %d: received %v, want %v", i, got, keys)
		}
	}
	cancel()
	for _, ch := range []<-chan string{ch1, ch2} {
		timeout := time.After(5 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-timeout:
				t.Fatal("subscription not closed after its context ended")
			}
		}
	}
	// A subscriber that does not read falls behind.
	slow, err := db.SubscribeChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		if err := db.NotifyChange(ctx, fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for {
		select {
		case k := <-slow:
			if k == "*" {
				return
			}
			got[k] = true
			if k == fmt.Sprintf("k%d", n-1) {
				if len(got) != n {
					t.Fatalf("received the last key after %d of %d keys and no \"*\"", len(got), n)
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("slow subscriber: %d keys, then nothing", len(got))
		}
	}
}

// testMembershipStreamMigration makes a database at schema version 4 with
// memberships, migrates it, and checks that they got positions and that
// new memberships get higher ones.
func testMembershipStreamMigration(t *testing.T, b Backend) {
	if !b.Shared {
		t.Skip("needs a database that outlives its handle")
	}
	ctx := context.Background()
	dsn := b.NewDSN(t)
	raw, err := b.OpenRaw(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctx, raw, 4); err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"!1:a.example", "!2:a.example"} {
		if _, err := raw.ExecContext(ctx, `INSERT INTO mlsmode_network_membership (room_id, user_id, membership, inviter, updated_ts)
			VALUES ($1, $2, $3, $4, $5)`, room, "@a:a.example", "join", "", 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	db := b.open(t, dsn)
	ms, err := db.MembershipsSince(ctx, "@a:a.example", 0)
	if err != nil || len(ms) != 2 || ms[0].Pos == 0 || ms[0].Pos == ms[1].Pos {
		t.Fatalf("migrated memberships %+v, %v", ms, err)
	}
	if err := db.SetMembership(ctx, storage.Membership{RoomID: "!3:a.example", UserID: "@a:a.example", State: "join"}); err != nil {
		t.Fatal(err)
	}
	if ms, err := db.MembershipsSince(ctx, "@a:a.example", max(ms[0].Pos, ms[1].Pos)); err != nil || len(ms) != 1 || ms[0].RoomID != "!3:a.example" {
		t.Fatalf("new membership after migration: %+v, %v", ms, err)
	}
}
