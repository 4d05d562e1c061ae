package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/storage/storagetest"
)

func init() { roomversion.Register() }

const (
	self = "a.example"
	srvB = "b.example"
	srvC = "c.example"
)

// waitLimit only guards against a hung test; no test relies on it for
// timing.
const waitLimit = 20 * time.Second

var errDown = errors.New("destination down")

// attempt is one SendTransaction call.
type attempt struct {
	txnID      string
	pdus, edus []string
	err        error
}

// fakeTransport records every transaction attempt per destination and
// fails those sent to a destination that is down (or as scripted).
type fakeTransport struct {
	mu       sync.Mutex
	down     map[string]bool
	script   map[string][]bool // per destination: next attempts' outcomes, true = fail
	attempts map[string]chan attempt
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{down: map[string]bool{}, script: map[string][]bool{}, attempts: map[string]chan attempt{}}
}

func (f *fakeTransport) ch(dest string) chan attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.attempts[dest]
	if c == nil {
		c = make(chan attempt, 1000)
		f.attempts[dest] = c
	}
	return c
}

func (f *fakeTransport) setDown(dest string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[dest] = down
}

func (f *fakeTransport) setScript(dest string, fails ...bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[dest] = fails
}

func (f *fakeTransport) SendTransaction(ctx context.Context, dest, txnID string, pdus, edus []json.RawMessage) error {
	a := attempt{txnID: txnID}
	for _, p := range pdus {
		a.pdus = append(a.pdus, string(p))
	}
	for _, e := range edus {
		a.edus = append(a.edus, string(e))
	}
	f.mu.Lock()
	fail := f.down[dest]
	if s := f.script[dest]; len(s) > 0 {
		fail, f.script[dest] = s[0], s[1:]
	}
	f.mu.Unlock()
	if fail {
		a.err = errDown
	}
	f.ch(dest) <- a
	return a.err
}

// next waits for dest's next attempt.
func (f *fakeTransport) next(t *testing.T, dest string) attempt {
	t.Helper()
	select {
	case a := <-f.ch(dest):
		return a
	case <-time.After(waitLimit):
		t.Fatalf("no transaction attempt for %s", dest)
		return attempt{}
	}
}

// noMore fails if dest has an attempt not yet read.
func (f *fakeTransport) noMore(t *testing.T, dest string) {
	t.Helper()
	select {
	case a := <-f.ch(dest):
		t.Fatalf("unexpected attempt for %s: %s with %d PDUs, %d EDUs", dest, a.txnID, len(a.pdus), len(a.edus))
	default:
	}
}

// stepClock is a FakeClock that reports each After call (each backoff wait)
// once its timer is set, so a test can step through the backoff.
type stepClock struct {
	*commitqueue.FakeClock
	afters chan time.Duration
}

func newStepClock() *stepClock {
	return &stepClock{FakeClock: commitqueue.NewFakeClock(time.Unix(1_800_000_000, 0)), afters: make(chan time.Duration, 1000)}
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	ch := c.FakeClock.After(d)
	c.afters <- d
	return ch
}

// waitAfter waits for the next backoff wait and returns its duration.
func (c *stepClock) waitAfter(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.afters:
		return d
	case <-time.After(waitLimit):
		t.Fatal("no backoff wait")
		return 0
	}
}

// env is a Sender over real storage with a fake transport and clock.
type env struct {
	t     *testing.T
	dsn   string
	db    storage.Database
	tr    *fakeTransport
	clock *stepClock
	s     *Sender
	room  *storagetest.Room
}

func forBackends(t *testing.T, f func(t *testing.T, b testdb.Backend)) {
	for _, b := range testdb.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

func openDB(t *testing.T, dsn string) storage.Database {
	t.Helper()
	db, err := storage.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newEnv(t *testing.T, b testdb.Backend) *env {
	t.Helper()
	e := &env{t: t, dsn: b.NewDSN(t), tr: newFakeTransport(), clock: newStepClock(), room: storagetest.NewRoom(t, "!r:a.example")}
	e.db = openDB(t, e.dsn)
	e.s = e.newSender(e.db)
	return e
}

func (e *env) newSender(db storage.Database) *Sender {
	e.t.Helper()
	s, err := New(Config{ServerName: self, Store: db, Transport: e.tr, Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Stop)
	return s
}

// events builds n distinct events and returns them with their JSON.
func (e *env) events(n int) ([]*roomversion.Event, []string) {
	evs := make([]*roomversion.Event, n)
	js := make([]string, n)
	for i := range evs {
		evs[i] = e.room.NewMessage(e.room.Commit.EventID())
		js[i] = string(evs[i].JSON())
	}
	return evs, js
}

func (e *env) sendEvents(evs []*roomversion.Event, dests ...string) {
	e.t.Helper()
	for _, ev := range evs {
		if err := e.s.SendEvent(context.Background(), ev, dests); err != nil {
			e.t.Fatal(err)
		}
	}
}

func edu(i int) string { return fmt.Sprintf(`{"edu_type":"m.test","content":{"i":%d}}`, i) }

// queued returns the payloads queued for dest.
func (e *env) queued(dest string) []string {
	e.t.Helper()
	items, err := e.db.OutboundItems(context.Background(), dest, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []string{}
	for _, it := range items {
		out = append(out, string(it.Payload))
	}
	return out
}

// waitIdle waits until dest's worker has ended (its queue is empty).
func (e *env) waitIdle(dest string) {
	e.t.Helper()
	e.s.mu.Lock()
	w := e.s.workers[dest]
	e.s.mu.Unlock()
	if w == nil {
		return
	}
	select {
	case <-w.done:
	case <-time.After(waitLimit):
		e.t.Fatalf("worker of %s did not end", dest)
	}
}

// expectSuccess reads dest's next attempt and checks it succeeded.
func (e *env) expectSuccess(dest string) attempt {
	e.t.Helper()
	a := e.tr.next(e.t, dest)
	if a.err != nil {
		e.t.Fatalf("attempt %s failed: %v", a.txnID, a.err)
	}
	return a
}

func TestNewValidates(t *testing.T) {
	db := openDB(t, testdb.SQLiteDSN(t))
	tr := newFakeTransport()
	for name, cfg := range map[string]Config{
		"no server name":  {Store: db, Transport: tr},
		"no store":        {ServerName: self, Transport: tr},
		"no transport":    {ServerName: self, Store: db},
		"initial > max":   {ServerName: self, Store: db, Transport: tr, InitialBackoff: time.Hour, MaxBackoff: time.Minute},
		"negative backof": {ServerName: self, Store: db, Transport: tr, InitialBackoff: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	s, err := New(Config{ServerName: self, Store: db, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.InitialBackoff != time.Second || s.cfg.MaxBackoff != time.Hour {
		t.Errorf("default backoff %s..%s, want 1s..1h", s.cfg.InitialBackoff, s.cfg.MaxBackoff)
	}
}

func TestNeverQueuesForItself(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		evs, js := e.events(1)
		// Not started: SendEvent only queues, durably before returning.
		e.sendEvents(evs, self, srvB, srvB)
		dests, err := e.db.OutboundDestinations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dests, []string{srvB}) {
			t.Fatalf("destinations %v, want [%s]", dests, srvB)
		}
		if got := e.queued(srvB); !slices.Equal(got, js) {
			t.Fatalf("queued for %s: %d items, want the event once", srvB, len(got))
		}
		if err := e.s.SendEDU(ctx, self, json.RawMessage(edu(1))); err == nil {
			t.Fatal("SendEDU to this server succeeded")
		}
		if err := e.s.SendEDU(ctx, srvB, json.RawMessage(`{`)); err == nil {
			t.Fatal("SendEDU of invalid JSON succeeded")
		}
		if err := e.s.SendEvent(ctx, evs[0], []string{""}); err == nil {
			t.Fatal("SendEvent to an empty destination succeeded")
		}
		if got := e.queued(self); len(got) != 0 {
			t.Fatalf("%d items queued for this server", len(got))
		}
		// Started, the sender still never sends to itself.
		e.s.Start(ctx)
		a := e.expectSuccess(srvB)
		if !slices.Equal(a.pdus, js) {
			t.Fatalf("sent %v", a.pdus)
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, self)
	})
}

func TestBatchesOf50PDUsInOrder(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		evs, js := e.events(120)
		e.sendEvents(evs, srvB) // queued before Start: sent as whole batches
		e.s.Start(context.Background())
		var got []string
		ids := map[string]bool{}
		for i, want := range []int{50, 50, 20} {
			a := e.expectSuccess(srvB)
			if len(a.pdus) != want || len(a.edus) != 0 {
				t.Fatalf("transaction %d: %d PDUs, %d EDUs, want %d PDUs", i, len(a.pdus), len(a.edus), want)
			}
			if ids[a.txnID] {
				t.Fatalf("transaction ID %s reused for another batch", a.txnID)
			}
			ids[a.txnID] = true
			got = append(got, a.pdus...)
		}
		if !slices.Equal(got, js) {
			t.Fatal("PDUs not sent once each in queue order")
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvB)
		if q := e.queued(srvB); len(q) != 0 {
			t.Fatalf("%d items left in the queue", len(q))
		}
	})
}

func TestBatchesMixPDUsAndEDUs(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		evs, js := e.events(10)
		var edus []string
		// 10 PDUs among 250 EDUs: batches are queue prefixes of at most
		// 100 EDUs and 50 PDUs.
		for i := range 250 {
			if i%25 == 0 {
				e.sendEvents(evs[i/25:i/25+1], srvB)
			}
			edus = append(edus, edu(i))
			if err := e.s.SendEDU(ctx, srvB, json.RawMessage(edu(i))); err != nil {
				t.Fatal(err)
			}
		}
		e.s.Start(ctx)
		var gotP, gotE []string
		for i, want := range [][2]int{{5, 100}, {4, 100}, {1, 50}} {
			a := e.expectSuccess(srvB)
			if len(a.pdus) != want[0] || len(a.edus) != want[1] {
				t.Fatalf("transaction %d: %d PDUs, %d EDUs, want %v", i, len(a.pdus), len(a.edus), want)
			}
			gotP, gotE = append(gotP, a.pdus...), append(gotE, a.edus...)
		}
		if !slices.Equal(gotP, js) || !slices.Equal(gotE, edus) {
			t.Fatal("items not sent once each in queue order")
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvB)
	})
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		e.tr.setDown(srvB, true)
		evs, js := e.events(1)
		e.s.Start(context.Background())
		e.sendEvents(evs, srvB)
		want := []time.Duration{}
		for d := time.Second; d < time.Hour; d *= 2 {
			want = append(want, d)
		}
		want = append(want, time.Hour, time.Hour, time.Hour)
		var txnID string
		for i, w := range want {
			a := e.tr.next(t, srvB)
			if a.err == nil {
				t.Fatalf("attempt %d succeeded", i)
			}
			if txnID == "" {
				txnID = a.txnID
			} else if a.txnID != txnID {
				t.Fatalf("retry %d used transaction ID %s, first attempt %s", i, a.txnID, txnID)
			}
			if d := e.clock.waitAfter(t); d != w {
				t.Fatalf("backoff %d: %s, want %s", i, d, w)
			}
			e.tr.noMore(t, srvB)
			e.clock.Advance(w)
		}
		// Still pending after all the failures; sent once it is up.
		if q := e.queued(srvB); !slices.Equal(q, js) {
			t.Fatalf("queue holds %d items while down", len(q))
		}
		a := e.tr.next(t, srvB)
		if a.err == nil {
			t.Fatal("attempt succeeded while down")
		}
		e.tr.setDown(srvB, false)
		e.clock.Advance(e.clock.waitAfter(t))
		a = e.expectSuccess(srvB)
		if a.txnID != txnID || !slices.Equal(a.pdus, js) {
			t.Fatalf("delivered %s %d PDUs, want %s with the event", a.txnID, len(a.pdus), txnID)
		}
		e.waitIdle(srvB)
		if q := e.queued(srvB); len(q) != 0 {
			t.Fatalf("%d items left after success", len(q))
		}
	})
}

func TestBackoffResetsAfterSuccess(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		evs, js := e.events(60) // two batches: 50 + 10
		e.sendEvents(evs, srvB)
		// Batch 1 fails twice then goes; batch 2 fails once then goes.
		e.tr.setScript(srvB, true, true, false, true, false)
		e.s.Start(context.Background())
		var got []string
		for i, step := range []struct {
			fail    bool
			backoff time.Duration
		}{{true, time.Second}, {true, 2 * time.Second}, {false, 0}, {true, time.Second}, {false, 0}} {
			a := e.tr.next(t, srvB)
			if (a.err != nil) != step.fail {
				t.Fatalf("attempt %d: error %v, want failure %v", i, a.err, step.fail)
			}
			if step.fail {
				if d := e.clock.waitAfter(t); d != step.backoff {
					t.Fatalf("attempt %d: backoff %s, want %s", i, d, step.backoff)
				}
				e.clock.Advance(step.backoff)
				continue
			}
			got = append(got, a.pdus...)
		}
		if !slices.Equal(got, js) {
			t.Fatal("events not delivered once each in order")
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvB)
	})
}

func TestCatchUpAfterDestinationReturns(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		e.tr.setDown(srvB, true)
		e.s.Start(context.Background())
		evs, js := e.events(110)
		e.sendEvents(evs[:1], srvB)
		first := e.tr.next(t, srvB)
		if first.err == nil || !slices.Equal(first.pdus, js[:1]) {
			t.Fatalf("first attempt: %v with %d PDUs", first.err, len(first.pdus))
		}
		if d := e.clock.waitAfter(t); d != time.Second {
			t.Fatalf("backoff %s", d)
		}
		// Queued while backing off: the wakes do not cut the backoff short.
		e.sendEvents(evs[1:], srvB)
		e.tr.noMore(t, srvB)
		e.tr.setDown(srvB, false)
		e.clock.Advance(time.Second)
		// The failed batch goes again unchanged, then the rest, batch after
		// batch.
		a := e.expectSuccess(srvB)
		if a.txnID != first.txnID || !slices.Equal(a.pdus, js[:1]) {
			t.Fatalf("retry %s with %d PDUs, want %s with the first event", a.txnID, len(a.pdus), first.txnID)
		}
		got := a.pdus
		for _, want := range []int{50, 50, 9} {
			a := e.expectSuccess(srvB)
			if len(a.pdus) != want {
				t.Fatalf("catch-up batch of %d PDUs, want %d", len(a.pdus), want)
			}
			got = append(got, a.pdus...)
		}
		if !slices.Equal(got, js) {
			t.Fatal("catch-up did not deliver every event once in order")
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvB)
		if q := e.queued(srvB); len(q) != 0 {
			t.Fatalf("%d items left", len(q))
		}
	})
}

func TestRestartResendsWithSameTransactionID(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		evs, js := e.events(3)
		e.sendEvents(evs, srvB, srvC)
		if err := e.s.SendEDU(ctx, srvB, json.RawMessage(edu(1))); err != nil {
			t.Fatal(err)
		}
		e.tr.setDown(srvB, true)
		e.s.Start(ctx)
		failed := e.tr.next(t, srvB)
		if failed.err == nil {
			t.Fatal("attempt succeeded while down")
		}
		e.expectSuccess(srvC)
		e.waitIdle(srvC)
		e.clock.waitAfter(t)
		// The process stops (or crashes) before b accepts anything.
		e.s.Stop()
		if err := e.db.Close(); err != nil {
			t.Fatal(err)
		}
		db := openDB(t, e.dsn)
		e.db = db
		if q := e.queued(srvB); len(q) != 4 {
			t.Fatalf("%d items queued for %s after stop, want 4", len(q), srvB)
		}
		if q := e.queued(srvC); len(q) != 0 {
			t.Fatalf("%d items still queued for %s, which accepted them", len(q), srvC)
		}
		e.tr.setDown(srvB, false)
		e.s = e.newSender(db)
		e.s.Start(ctx)
		a := e.expectSuccess(srvB)
		if a.txnID != failed.txnID {
			t.Fatalf("after restart transaction ID %s, failed attempt used %s", a.txnID, failed.txnID)
		}
		if !slices.Equal(a.pdus, js) || !slices.Equal(a.edus, []string{edu(1)}) {
			t.Fatalf("after restart sent %d PDUs, %d EDUs", len(a.pdus), len(a.edus))
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvB)
		e.tr.noMore(t, srvC)
		if q := e.queued(srvB); len(q) != 0 {
			t.Fatalf("%d items left", len(q))
		}
	})
}

func TestDestinationsAreIndependent(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		e.tr.setDown(srvC, true)
		e.s.Start(context.Background())
		evs, js := e.events(5)
		e.sendEvents(evs[:1], srvC, srvB)
		if a := e.tr.next(t, srvC); a.err == nil {
			t.Fatal("c accepted while down")
		}
		e.clock.waitAfter(t) // c is backing off
		e.sendEvents(evs[1:], srvB, srvC)
		var got []string
		for len(got) < len(js) {
			got = append(got, e.expectSuccess(srvB).pdus...)
		}
		if !slices.Equal(got, js) {
			t.Fatal("b did not get every event in order while c was down")
		}
		e.waitIdle(srvB)
		e.tr.noMore(t, srvC)
		if q := e.queued(srvC); len(q) != 5 {
			t.Fatalf("%d items queued for c, want 5", len(q))
		}
		e.tr.setDown(srvC, false)
		e.clock.Advance(time.Second)
		got = nil
		for len(got) < len(js) {
			got = append(got, e.expectSuccess(srvC).pdus...)
		}
		if !slices.Equal(got, js) {
			t.Fatal("c did not catch up in order")
		}
		e.waitIdle(srvC)
		e.tr.noMore(t, srvB)
		e.tr.noMore(t, srvC)
	})
}

func TestWakeWhileGoingIdleIsNotLost(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		evs, js := e.events(2)
		calls := 0
		// An event queued between the worker's last (empty) fetch and its
		// end must still be sent.
		e.s.testHookEmpty = func(dest string) {
			calls++
			if calls == 1 {
				if err := e.s.SendEvent(context.Background(), evs[1], []string{srvB}); err != nil {
					t.Error(err)
				}
			}
		}
		e.s.Start(context.Background())
		e.sendEvents(evs[:1], srvB)
		got := e.expectSuccess(srvB).pdus
		e.waitIdle(srvB)
		if q := e.queued(srvB); len(q) != 0 {
			t.Fatalf("event queued as the worker went idle was not sent (%d items left)", len(q))
		}
		got = append(got, e.expectSuccess(srvB).pdus...)
		if !slices.Equal(got, js) {
			t.Fatal("events not sent once each in order")
		}
		e.tr.noMore(t, srvB)
	})
}

func TestTransactionIDStable(t *testing.T) {
	batch := []storage.OutboundItem{{NID: 3, Kind: KindPDU, Payload: []byte(`{"a":1}`)}, {NID: 7, Kind: KindEDU, Payload: []byte(`{}`)}}
	id := TransactionID(srvB, batch)
	if id != TransactionID(srvB, slices.Clone(batch)) {
		t.Fatal("same batch, different IDs")
	}
	if id == TransactionID(srvC, batch) {
		t.Fatal("same ID for another destination")
	}
	other := slices.Clone(batch)
	other[1] = storage.OutboundItem{NID: 7, Kind: KindEDU, Payload: []byte(`{"x":1}`)}
	if id == TransactionID(srvB, other) {
		t.Fatal("same ID for other payloads")
	}
	if id == TransactionID(srvB, batch[:1]) {
		t.Fatal("same ID for a shorter batch")
	}
}

// TestRescanSendsWhatAnotherProcessQueued: items another process sharing
// the database queued (and did not send) are sent at the next rescan,
// without this process restarting; without RescanInterval they wait.
func TestRescanSendsWhatAnotherProcessQueued(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newEnv(t, b)
		other := openDB(t, e.dsn) // another process's handle on the database
		s, err := New(Config{ServerName: self, Store: e.db, Transport: e.tr, Clock: e.clock,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		s.Start(context.Background())
		if d := e.clock.waitAfter(t); d != 10*time.Second {
			t.Fatalf("first wait %v, want the rescan interval", d)
		}
		evs, js := e.events(3)
		for _, ev := range evs {
			if _, err := other.QueueOutbound(context.Background(), "b.example", "pdu", ev.JSON(), 1); err != nil {
				t.Fatal(err)
			}
		}
		e.tr.noMore(t, "b.example")
		e.clock.Advance(10 * time.Second)
		a := e.tr.next(t, "b.example")
		if !slices.Equal(a.pdus, js) {
			t.Fatalf("rescan sent %d PDUs %v, want the 3 queued by the other process", len(a.pdus), a.pdus)
		}
		if d := e.clock.waitAfter(t); d != 10*time.Second {
			t.Fatalf("next wait %v, want the rescan interval", d)
		}
	})
}
