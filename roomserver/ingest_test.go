package roomserver_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

const testKeyID = "ed25519:t"

// fedServer is one homeserver of a fedWorld.
type fedServer struct {
	name  string
	rs    *roomserver.Server
	db    storage.Database
	clock *commitqueue.FakeClock
	priv  ed25519.PrivateKey
}

// fedWorld is several roomservers in one process, each with its own
// storage and key, that fetch events from each other's storage.
type fedWorld struct {
	t       *testing.T
	ctx     context.Context
	servers map[string]*fedServer

	mu    sync.Mutex
	calls map[string]int // Fetcher method -> calls
}

// serverKey derives a server's signing key from its name.
func serverKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("ingest test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newFedWorld(t *testing.T, b testdb.Backend, names ...string) *fedWorld {
	t.Helper()
	w := &fedWorld{t: t, ctx: context.Background(), servers: map[string]*fedServer{}, calls: map[string]int{}}
	keys := roomversion.KeyFetcherFunc(func(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
		if keyID != testKeyID {
			return nil, fmt.Errorf("unknown key %s of %s", keyID, server)
		}
		return serverKey(server).Public().(ed25519.PublicKey), nil
	})
	t0 := time.Now().Truncate(time.Millisecond)
	for _, name := range names {
		db, err := storage.Open(w.ctx, b.NewDSN(t))
		if err != nil {
			t.Fatalf("opening storage of %s: %v", name, err)
		}
		s := &fedServer{name: name, db: db, clock: commitqueue.NewFakeClock(t0), priv: serverKey(name)}
		s.rs, err = roomserver.New(roomserver.Config{ServerName: name, KeyID: testKeyID, PrivateKey: s.priv, Store: db,
			Clock: s.clock, Keys: keys, Fetcher: (*fakeFetcher)(w)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Errorf("closing storage of %s: %v", name, err)
			}
		})
		w.servers[name] = s
	}
	return w
}

func (w *fedWorld) count(method string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[method]
}

// fakeFetcher answers from the other servers' storage.
type fakeFetcher fedWorld

func (f *fakeFetcher) server(method, name string) (*fedServer, error) {
	f.mu.Lock()
	f.calls[method]++
	f.mu.Unlock()
	s := f.servers[name]
	if s == nil {
		return nil, fmt.Errorf("unknown server %s", name)
	}
	return s, nil
}

func (f *fakeFetcher) Event(ctx context.Context, server, eventID string) (json.RawMessage, error) {
	s, err := f.server("Event", server)
	if err != nil {
		return nil, err
	}
	se, err := s.db.Event(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if se.Rejected {
		return nil, errors.New("not found")
	}
	return se.Event.JSON(), nil
}

func (f *fakeFetcher) EventAuth(ctx context.Context, server, roomID, eventID string) ([]json.RawMessage, error) {
	s, err := f.server("EventAuth", server)
	if err != nil {
		return nil, err
	}
	se, err := s.db.Event(ctx, eventID)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	seen := map[string]bool{}
	todo := se.Event.AuthEventIDs()
	for len(todo) > 0 {
		id := todo[0]
		todo = todo[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		a, err := s.db.Event(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, a.Event.JSON())
		todo = append(todo, a.Event.AuthEventIDs()...)
	}
	return out, nil
}

func (f *fakeFetcher) MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error) {
	s, err := f.server("MissingEvents", server)
	if err != nil {
		return nil, err
	}
	stop := map[string]bool{}
	for _, id := range earliest {
		stop[id] = true
	}
	var todo []string
	for _, id := range latest {
		se, err := s.db.Event(ctx, id)
		if err != nil {
			return nil, err
		}
		todo = append(todo, se.Event.PrevEventIDs()...)
	}
	var out []json.RawMessage
	for len(todo) > 0 && len(out) < limit {
		id := todo[0]
		todo = todo[1:]
		if stop[id] {
			continue
		}
		stop[id] = true
		se, err := s.db.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, se.Event.JSON())
		todo = append(todo, se.Event.PrevEventIDs()...)
	}
	return out, nil
}

// fed is the federation map of every commit of the tests' rooms: a.test
// at powers[0], b.test second and the only one that may propose.
var testFed = &fedmap.Map{Federation: fedmap.Federation{
	Powers: []string{"a.test", "b.test"}, Servers: []string{"a.test", "b.test"}, CanPropose: []string{"b.test"}}}

// mlsContent is the content of an MLS event of the room: a PrivateMessage
// whose header is right (group, epoch, content type, for commits the
// federation map as authenticated data) and whose encrypted parts are
// random.
func mlsContent(t *testing.T, typ, roomID string, epoch uint64) []byte {
	t.Helper()
	return mlsContentFed(t, typ, roomID, epoch, testFed)
}

// mlsContentFed is mlsContent with a commit's federation map.
func mlsContentFed(t *testing.T, typ, roomID string, epoch uint64, fed *fedmap.Map) []byte {
	t.Helper()
	v := roomversion.V1
	ct, ad := mls.ContentTypeApplication, []byte(nil)
	if typ != roomversion.EventTypeEncrypted {
		ct = mls.ContentTypeCommit
		var err error
		if ad, err = fed.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	sender, body := make([]byte, 28), make([]byte, 48)
	_, _ = rand.Read(sender)
	_, _ = rand.Read(body)
	pm := &mls.PrivateMessage{GroupID: []byte(roomID), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: sender, Ciphertext: body}
	wire, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	content, err := v.MLSContent(typ, mls.X25519AES128GCMSHA256Ed25519, wire)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// send sends a local client's event on s and returns its ID.
func (w *fedWorld) send(s *fedServer, user, roomID, typ string, epoch uint64) string {
	w.t.Helper()
	return w.sendFed(s, user, roomID, typ, epoch, testFed)
}

// sendFed is send with a commit's federation map.
func (w *fedWorld) sendFed(s *fedServer, user, roomID, typ string, epoch uint64, fed *fedmap.Map) string {
	w.t.Helper()
	req := roomserver.SendRequest{UserID: user, DeviceID: "DEV", RoomID: roomID, Type: typ,
		Content: mlsContentFed(w.t, typ, roomID, epoch, fed)}
	if typ == roomversion.V1.CommitType() {
		req.StateKey = new(string)
	} else {
		req.TxnID = fmt.Sprintf("txn-%d-%s", epoch, randomHex())
	}
	id, err := s.rs.SendEvent(w.ctx, req)
	if err != nil {
		w.t.Fatalf("%s sends %s in epoch %d on %s: %v", user, typ, epoch, s.name, err)
	}
	return id
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// pdu is a stored event of s in federation format.
func (w *fedWorld) pdu(s *fedServer, id string) json.RawMessage {
	w.t.Helper()
	se, err := s.db.Event(w.ctx, id)
	if err != nil {
		w.t.Fatalf("event %s on %s: %v", id, s.name, err)
	}
	return se.Event.JSON()
}

// deliver hands events of from to to, as from's /send would.
func (w *fedWorld) deliver(to, from *fedServer, ids ...string) []roomserver.PDUResult {
	w.t.Helper()
	pdus := make([]json.RawMessage, len(ids))
	for i, id := range ids {
		pdus[i] = w.pdu(from, id)
	}
	return w.receive(to, from.name, pdus...)
}

func (w *fedWorld) receive(to *fedServer, origin string, pdus ...json.RawMessage) []roomserver.PDUResult {
	w.t.Helper()
	res, err := to.rs.ReceivePDUs(w.ctx, origin, pdus)
	if err != nil {
		w.t.Fatalf("%s receiving from %s: %v", to.name, origin, err)
	}
	if len(res) != len(pdus) {
		w.t.Fatalf("%d results for %d PDUs", len(res), len(pdus))
	}
	return res
}

// accepted fails unless every result is an accepted event that was not
// soft-failed.
func (w *fedWorld) accepted(res []roomserver.PDUResult, what string) {
	w.t.Helper()
	for _, r := range res {
		if r.Error != "" || r.Rejected || r.SoftFailed {
			w.t.Fatalf("%s: %+v, want accepted", what, r)
		}
	}
}

func (w *fedWorld) current(s *fedServer, roomID string) string {
	w.t.Helper()
	cur, err := s.db.CurrentState(w.ctx, roomID)
	if err != nil {
		w.t.Fatalf("current state of %s on %s: %v", roomID, s.name, err)
	}
	return cur.CommitID
}

func (w *fedWorld) stored(s *fedServer, id string) *storage.StoredEvent {
	w.t.Helper()
	se, err := s.db.Event(w.ctx, id)
	if err != nil {
		w.t.Fatalf("event %s on %s: %v", id, s.name, err)
	}
	return se
}

func (w *fedWorld) notStored(s *fedServer, id string) {
	w.t.Helper()
	if _, err := s.db.Event(w.ctx, id); !errors.Is(err, storage.ErrNotFound) {
		w.t.Fatalf("event %s is on %s (%v), want not stored", id, s.name, err)
	}
}

// build makes an event signed by origin's key (or key, if not nil).
func (w *fedWorld) build(origin string, key ed25519.PrivateKey, roomID, typ string, epoch uint64, content []byte, auth, prev []string) *roomversion.Event {
	w.t.Helper()
	if key == nil {
		key = serverKey(origin)
	}
	if content == nil {
		content = mlsContent(w.t, typ, roomID, epoch)
	}
	b := &roomversion.Builder{Version: roomversion.V1, RoomID: roomID, Type: typ, Content: content,
		AuthEvents: auth, PrevEvents: prev, Origin: origin, Timestamp: w.servers["a.test"].clock.Now()}
	if typ == roomversion.V1.CommitType() {
		b.StateKey = new(string)
	}
	ev, err := b.Build(w.ctx, testKeyID, key)
	if err != nil {
		w.t.Fatal(err)
	}
	return ev
}

const (
	alice = "@alice:a.test"
	bob   = "@bob:b.test"
)

// room makes a room on a.test with its epoch-0 commit and a message, and
// invites bob on b.test (out of band, as the invite endpoint does). It
// returns the room ID, the create event, the commit and the message.
func (w *fedWorld) room() (roomID, create, commit0, msg string) {
	w.t.Helper()
	a, b := w.servers["a.test"], w.servers["b.test"]
	roomID, err := a.rs.CreateRoom(w.ctx, roomserver.CreateRoomRequest{UserID: alice, Version: roomversion.V1,
		Algorithm: "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", Federate: true})
	if err != nil {
		w.t.Fatal(err)
	}
	cur, err := a.db.CurrentState(w.ctx, roomID)
	if err != nil {
		w.t.Fatal(err)
	}
	commit0 = w.send(a, alice, roomID, roomversion.V1.CommitType(), 0)
	msg = w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 1)
	if err := b.db.SetMembership(w.ctx, storage.Membership{RoomID: roomID, UserID: bob, State: roomserver.Invite,
		Inviter: alice, UpdatedTS: b.clock.Now().UnixMilli()}); err != nil {
		w.t.Fatal(err)
	}
	return roomID, cur.CreateID, commit0, msg
}

// joined makes b.test hold the room (from a delivered message) and joins
// bob.
func (w *fedWorld) joined(roomID, msg string) {
	w.t.Helper()
	a, b := w.servers["a.test"], w.servers["b.test"]
	w.accepted(w.deliver(b, a, msg), "first message to b.test")
	if _, err := b.rs.JoinRoom(w.ctx, bob, roomID); err != nil {
		w.t.Fatalf("bob joins: %v", err)
	}
}

func forBackends(t *testing.T, f func(t *testing.T, b testdb.Backend)) {
	for _, b := range testdb.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

// TestReceiveMessageAndCommit: a server invited to a room it does not hold
// takes in a message, fetching the create event and the commit from the
// sender; a received commit moves its current state; a message and a
// commit received again are no-ops.
func TestReceiveMessageAndCommit(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, create, commit0, msg := w.room()

		res := w.deliver(b, a, msg)
		w.accepted(res, "message")
		if res[0].EventID != msg {
			t.Fatalf("result for %s, want %s", res[0].EventID, msg)
		}
		for _, id := range []string{create, commit0, msg} {
			if se := w.stored(b, id); se.Rejected || se.SoftFailed {
				t.Fatalf("%s stored on b.test as %+v", id, se)
			}
		}
		if got := w.current(b, roomID); got != commit0 {
			t.Fatalf("b.test's current commit %s, want %s", got, commit0)
		}
		if w.count("Event")+w.count("EventAuth")+w.count("MissingEvents") == 0 {
			t.Fatal("nothing was fetched")
		}
		ext, err := b.db.ForwardExtremities(w.ctx, roomID)
		if err != nil || len(ext) != 1 || ext[0] != msg {
			t.Fatalf("b.test's forward extremities %v (%v), want [%s]", ext, err, msg)
		}

		// bob joins and reads the message.
		if _, err := b.rs.JoinRoom(w.ctx, bob, roomID); err != nil {
			t.Fatal(err)
		}
		page, err := b.rs.Messages(w.ctx, roomserver.MessagesRequest{UserID: bob, RoomID: roomID, Backward: true, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if !chunkHas(page.Chunk, msg) {
			t.Fatalf("bob's /messages lacks %s", msg)
		}

		// A commit moves the current state.
		commit1 := w.send(a, alice, roomID, roomversion.V1.CommitType(), 1)
		msg2 := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 2)
		w.accepted(w.deliver(b, a, commit1, msg2), "commit and message")
		if got := w.current(b, roomID); got != commit1 {
			t.Fatalf("b.test's current commit %s, want %s", got, commit1)
		}
		// bob can send on it (b.test's view was updated).
		w.send(b, bob, roomID, roomversion.EventTypeEncrypted, 2)

		// Again: no-ops.
		fetches := w.count("Event") + w.count("EventAuth") + w.count("MissingEvents")
		w.accepted(w.deliver(b, a, commit1, msg), "events received again")
		if f := w.count("Event") + w.count("EventAuth") + w.count("MissingEvents"); f != fetches {
			t.Fatalf("events received again fetched %d events", f-fetches)
		}
	})
}

func chunkHas(chunk []roomserver.ClientEvent, id string) bool {
	for _, ce := range chunk {
		if ce.Event.EventID() == id {
			return true
		}
	}
	return false
}

// TestReceiveRefused: events that are not events of the room version, or
// lack a valid origin signature, are rejected and not stored; events for a
// room nobody local is in or invited to are refused.
func TestReceiveRefused(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test", "c.test")
		a, b, c := w.servers["a.test"], w.servers["b.test"], w.servers["c.test"]
		roomID, create, commit0, msg := w.room()
		w.joined(roomID, msg)

		refused := func(res []roomserver.PDUResult, rejected bool, want, what string) {
			t.Helper()
			r := res[0]
			if r.Error == "" || r.Rejected != rejected || r.SoftFailed || !strings.Contains(r.Error, want) {
				t.Fatalf("%s: %+v, want an error with %q (rejected %v)", what, r, want, rejected)
			}
		}
		auth := []string{create, commit0}
		// Forged signature: a.test's origin, another key.
		_, wrong, _ := ed25519.GenerateKey(nil)
		forged := w.build("a.test", wrong, roomID, roomversion.EventTypeEncrypted, 1, nil, auth, []string{msg})
		refused(w.receive(b, "a.test", forged.JSON()), true, "signature", "forged signature")
		w.notStored(b, forged.EventID())

		// Content hash mismatch: the content of another event.
		good := w.build("a.test", nil, roomID, roomversion.EventTypeEncrypted, 1, nil, auth, []string{msg})
		other := mlsContent(t, roomversion.EventTypeEncrypted, roomID, 1)
		tampered := replaceField(t, good.JSON(), "content", other)
		refused(w.receive(b, "a.test", tampered), true, "hash", "content hash mismatch")

		// sender and depth do not exist in MLS rooms.
		for _, field := range []string{"sender", "depth"} {
			val := []byte(`"@alice:a.test"`)
			if field == "depth" {
				val = []byte("3")
			}
			res := w.receive(b, "a.test", replaceField(t, good.JSON(), field, val))
			refused(res, true, field, field)
		}
		w.notStored(b, good.EventID())
		// The untampered event is fine.
		w.accepted(w.receive(b, "a.test", good.JSON()), "the untampered event")

		// Failing the auth rules (rule 11: a message of epoch 5 on the
		// epoch-0 commit): stored as rejected, never shown.
		wrongEpoch := w.build("a.test", nil, roomID, roomversion.EventTypeEncrypted, 5, nil, auth, []string{msg})
		refused(w.receive(b, "a.test", wrongEpoch.JSON()), true, "auth rule 11", "wrong epoch")
		if se := w.stored(b, wrongEpoch.EventID()); !se.Rejected {
			t.Fatalf("stored as %+v, want rejected", se)
		}
		if _, err := b.rs.Event(w.ctx, bob, "", roomID, wrongEpoch.EventID()); err == nil {
			t.Fatal("GET /event shows a rejected event")
		}
		refused(w.receive(b, "a.test", wrongEpoch.JSON()), true, "rejected before", "rejected event again")
		// An event naming the rejected one as a prev event is fine; one
		// naming it as an auth event could not be built (it is no commit).
		after := w.build("a.test", nil, roomID, roomversion.EventTypeEncrypted, 1, nil, auth, []string{wrongEpoch.EventID()})
		w.accepted(w.receive(b, "a.test", after.JSON()), "event after a rejected one")

		// A second create event for the room.
		content, err := roomversion.V1.CreateContentJSON(mls.X25519AES128GCMSHA256Ed25519, true)
		if err != nil {
			t.Fatal(err)
		}
		create2, err := (&roomversion.Builder{Version: roomversion.V1, RoomID: roomID, Type: roomversion.EventTypeCreate,
			StateKey: new(string), Content: content, Origin: "a.test", Timestamp: a.clock.Now().Add(time.Second)}).Build(w.ctx, testKeyID, a.priv)
		if err != nil {
			t.Fatal(err)
		}
		refused(w.receive(b, "a.test", create2.JSON()), true, "second create event", "second create event")
		w.notStored(b, create2.EventID())

		// c.test holds no part in the room and has no invite.
		res := w.deliver(c, a, msg)
		refused(res, false, "no local user is invited", "unsolicited room")
		w.notStored(c, msg)
		w.notStored(c, create)
		if _, err := c.db.Room(w.ctx, roomID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("c.test knows the room: %v", err)
		}
	})
}

// replaceField sets a top-level field of event JSON.
func replaceField(t *testing.T, js []byte, field string, val []byte) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = val
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReceiveSoftFail: an event from a server not in servers of the
// current commit is soft-failed under (a); a byte-identical ciphertext
// replayed by another origin under (b). Both are accepted (success for
// /send), stored with their case and kept out of the forward extremities.
func TestReceiveSoftFail(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test", "c.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, create, commit0, msg := w.room()
		w.joined(roomID, msg)
		auth := []string{create, commit0}

		// (a): c.test is in servers of commit 1, which its message names,
		// but not in those of commit 2, the current one.
		withC := &fedmap.Map{Federation: testFed.Federation}
		withC.Federation.Servers = []string{"a.test", "b.test", "c.test"}
		commit1 := w.sendFed(a, alice, roomID, roomversion.V1.CommitType(), 1, withC)
		commit2 := w.send(a, alice, roomID, roomversion.V1.CommitType(), 2)
		w.accepted(w.deliver(b, a, commit1, commit2), "commits")
		fromC := w.build("c.test", nil, roomID, roomversion.EventTypeEncrypted, 2, nil, []string{create, commit1}, []string{commit2})
		res := w.receive(b, "c.test", fromC.JSON())
		if r := res[0]; r.Error != "" || !r.SoftFailed || r.Rejected {
			t.Fatalf("event from c.test: %+v, want soft-failed", r)
		}
		if se := w.stored(b, fromC.EventID()); !se.SoftFailed || !strings.HasPrefix(se.SoftFailReason, "soft-fail (a)") {
			t.Fatalf("stored as %+v, want soft-fail (a)", se)
		}
		ev, err := b.rs.Event(w.ctx, bob, "", roomID, fromC.EventID())
		if err != nil || ev.SoftFailCase != "a" {
			t.Fatalf("GET /event: %+v, %v; want soft-fail case a", ev, err)
		}

		// (b): b.test replays a.test's ciphertext.
		se := w.stored(a, msg)
		replay := w.build("b.test", nil, roomID, roomversion.EventTypeEncrypted, 1, se.Event.Content(), auth, []string{commit2})
		res = w.receive(a, "b.test", replay.JSON())
		if r := res[0]; r.Error != "" || !r.SoftFailed || r.Rejected {
			t.Fatalf("replay: %+v, want soft-failed", r)
		}
		if se := w.stored(a, replay.EventID()); !se.SoftFailed || !strings.HasPrefix(se.SoftFailReason, "soft-fail (b)") {
			t.Fatalf("replay stored as %+v, want soft-fail (b)", se)
		}
		for _, s := range []*fedServer{a, b} {
			ext, err := s.db.ForwardExtremities(w.ctx, roomID)
			if err != nil || len(ext) != 1 || ext[0] != commit2 {
				t.Fatalf("%s's forward extremities %v (%v), want [%s]", s.name, ext, err, commit2)
			}
		}
		// Soft-failed messages are not delivered.
		page, err := a.rs.Messages(w.ctx, roomserver.MessagesRequest{UserID: alice, RoomID: roomID, Backward: true, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		if chunkHas(page.Chunk, replay.EventID()) {
			t.Fatal("the replay is in /messages")
		}
	})
}

// TestReceiveFork: a.test (powers[0]) and b.test (applying a pending
// commit in its window while partitioned) commit the same epoch. Delivered
// both ways, both servers end on a.test's commit; on a.test, b.test's
// commit and its message are soft-failed under (c) and the message comes
// in /messages marked as lost to a fork. The pending commit b.test's
// commit applied is fetched as a missing prev event.
func TestReceiveFork(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, _, _, msg := w.room()
		w.joined(roomID, msg)

		// Partitioned: bob's pending commit is applied by b.test in its
		// window; alice commits the same epoch on a.test.
		pending := w.send(b, bob, roomID, roomversion.V1.PendingCommitType(), 1)
		commitA := w.send(a, alice, roomID, roomversion.V1.CommitType(), 1)
		b.clock.Advance(6 * time.Minute)
		if err := b.rs.Queue().Tick(w.ctx); err != nil {
			t.Fatal(err)
		}
		st, err := b.rs.Queue().Status(w.ctx, pending)
		if err != nil || st.Status != storage.PendingApplied {
			t.Fatalf("pending commit on b.test: %+v, %v; want applied", st, err)
		}
		commitB := st.CommitEventID
		if got := w.current(b, roomID); got != commitB {
			t.Fatalf("b.test's current commit %s, want its own %s", got, commitB)
		}
		msgB := w.send(b, bob, roomID, roomversion.EventTypeEncrypted, 2)
		msgA := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 2)

		// Healed: a.test's events to b.test, b.test's to a.test.
		w.accepted(w.deliver(b, a, commitA, msgA), "a.test's fork on b.test")
		if got := w.current(b, roomID); got != commitA {
			t.Fatalf("b.test's current commit %s, want a.test's %s", got, commitA)
		}
		missing := w.count("MissingEvents")
		res := w.deliver(a, b, commitB, msgB)
		for _, r := range res {
			if r.Error != "" || !r.SoftFailed {
				t.Fatalf("b.test's fork on a.test: %+v, want soft-failed", r)
			}
		}
		if w.count("MissingEvents") == missing {
			t.Fatal("the pending commit was not fetched as a missing prev event")
		}
		w.stored(a, pending)
		for _, id := range []string{commitB, msgB} {
			if se := w.stored(a, id); !strings.HasPrefix(se.SoftFailReason, "soft-fail (c)") {
				t.Fatalf("%s on a.test: %+v, want soft-fail (c)", id, se)
			}
		}
		for _, s := range []*fedServer{a, b} {
			if got := w.current(s, roomID); got != commitA {
				t.Fatalf("%s's current commit %s, want a.test's %s", s.name, got, commitA)
			}
		}
		page, err := a.rs.Messages(w.ctx, roomserver.MessagesRequest{UserID: alice, RoomID: roomID, Backward: true, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		var lost, commitBShown bool
		for _, ce := range page.Chunk {
			switch ce.Event.EventID() {
			case msgB:
				lost = ce.LostFork
			case commitB:
				commitBShown = true
			}
		}
		if !lost || commitBShown {
			t.Fatalf("a.test's /messages: lost fork message marked %v, losing commit shown %v", lost, commitBShown)
		}
		// a.test's clients keep sending on a.test's commit.
		w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 2)
	})
}

// TestReceiveMissingPrevEvents: events between the receiver's forward
// extremities and a received event are fetched from the sender.
func TestReceiveMissingPrevEvents(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, _, _, msg := w.room()
		w.joined(roomID, msg)
		m1 := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 1)
		c1 := w.send(a, alice, roomID, roomversion.V1.CommitType(), 1)
		m2 := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 2)
		m3 := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 2)
		before := w.count("MissingEvents")
		w.accepted(w.deliver(b, a, m3), "latest message")
		if w.count("MissingEvents") == before {
			t.Fatal("MissingEvents was not asked")
		}
		for _, id := range []string{m1, c1, m2, m3} {
			if se := w.stored(b, id); se.Rejected || se.SoftFailed {
				t.Fatalf("%s on b.test: %+v", id, se)
			}
		}
		if got := w.current(b, roomID); got != c1 {
			t.Fatalf("b.test's current commit %s, want %s", got, c1)
		}
		ext, err := b.db.ForwardExtremities(w.ctx, roomID)
		if err != nil || len(ext) != 1 || ext[0] != m3 {
			t.Fatalf("b.test's forward extremities %v (%v), want [%s]", ext, err, m3)
		}
	})
}

// TestReceiveFetchBudget: a PDU whose missing history exceeds the fetch
// budget is taken in with a gap: the prev events within the budget are
// fetched, the oldest of them checked against the state its auth events
// make, and the older ones left out.
func TestReceiveFetchBudget(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, _, _, msg := w.room()
		w.joined(roomID, msg)
		var ids []string
		for range 8 {
			ids = append(ids, w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 1))
		}
		small, err := roomserver.New(roomserver.Config{ServerName: "b.test", KeyID: testKeyID, PrivateKey: b.priv,
			Store: b.db, Clock: b.clock, Keys: roomversion.KeyFetcherFunc(func(context.Context, string, string, time.Time) (ed25519.PublicKey, error) {
				return a.priv.Public().(ed25519.PublicKey), nil
			}), Fetcher: (*fakeFetcher)(w), MaxFetchPerPDU: 3})
		if err != nil {
			t.Fatal(err)
		}
		res, err := small.ReceivePDUs(w.ctx, "a.test", []json.RawMessage{w.pdu(a, ids[7])})
		if err != nil {
			t.Fatal(err)
		}
		w.accepted(res, "the latest message")
		for i, id := range ids {
			_, err := b.db.Event(w.ctx, id)
			if fetched := i >= 4; fetched != (err == nil) {
				t.Fatalf("message %d on b.test: %v, want stored %v", i, err, fetched)
			}
		}
		ext, err := b.db.ForwardExtremities(w.ctx, roomID)
		if err != nil || len(ext) != 2 || !slices.Contains(ext, msg) || !slices.Contains(ext, ids[7]) {
			t.Fatalf("b.test's forward extremities %v (%v), want the two sides of the gap", ext, err)
		}
	})
}

// TestReceivePendingCommit: a received pending commit is queued (waiting)
// and applied by the powers[0] server's queue in its window; the commit
// moves the proposer's server too.
func TestReceivePendingCommit(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, _, _, msg := w.room()
		w.joined(roomID, msg)
		pending := w.send(b, bob, roomID, roomversion.V1.PendingCommitType(), 1)
		w.accepted(w.deliver(a, b, pending), "pending commit")
		st, err := a.rs.Queue().Status(w.ctx, pending)
		if err != nil || st.Status != storage.PendingWaiting {
			t.Fatalf("pending commit on a.test: %+v, %v; want waiting", st, err)
		}
		a.clock.Advance(time.Second)
		if err := a.rs.Queue().Tick(w.ctx); err != nil {
			t.Fatal(err)
		}
		st, err = a.rs.Queue().Status(w.ctx, pending)
		if err != nil || st.Status != storage.PendingApplied || st.CommitEventID == "" {
			t.Fatalf("pending commit on a.test after its window opened: %+v, %v; want applied", st, err)
		}
		commit := st.CommitEventID
		if got := w.current(a, roomID); got != commit {
			t.Fatalf("a.test's current commit %s, want %s", got, commit)
		}
		if !bytes.Equal(w.stored(a, commit).Event.Ciphertext(), w.stored(a, pending).Event.Ciphertext()) {
			t.Fatal("the commit does not carry the pending commit's content")
		}
		w.accepted(w.deliver(b, a, commit), "the applied commit")
		if got := w.current(b, roomID); got != commit {
			t.Fatalf("b.test's current commit %s, want %s", got, commit)
		}
		// bob's client, told by /sync, goes on in the new epoch.
		w.send(b, bob, roomID, roomversion.EventTypeEncrypted, 2)
	})
}

// TestReceiveWakesSync: a received event wakes a /sync long-poll of a
// joined user on the receiving server.
func TestReceiveWakesSync(t *testing.T) {
	forBackends(t, func(t *testing.T, be testdb.Backend) {
		w := newFedWorld(t, be, "a.test", "b.test")
		a, b := w.servers["a.test"], w.servers["b.test"]
		roomID, _, _, msg := w.room()
		w.joined(roomID, msg)
		ctx, cancel := context.WithCancel(w.ctx)
		if err := b.rs.Start(ctx); err != nil {
			t.Fatal(err)
		}
		b.rs.Queue().Stop() // the test has nothing for it to do
		t.Cleanup(func() { cancel(); b.rs.Stop() })
		first, err := b.rs.Sync(w.ctx, roomserver.SyncRequest{UserID: bob, DeviceID: "DEV"})
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			resp *roomserver.SyncResponse
			err  error
			took time.Duration
		}
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			resp, err := b.rs.Sync(w.ctx, roomserver.SyncRequest{UserID: bob, DeviceID: "DEV", Since: first.NextBatch, Timeout: 20 * time.Second})
			done <- result{resp, err, time.Since(start)}
		}()
		m := w.send(a, alice, roomID, roomversion.EventTypeEncrypted, 1)
		time.Sleep(50 * time.Millisecond) // most likely waiting by now; either order must work
		w.accepted(w.deliver(b, a, m), "message")
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.took > 10*time.Second {
			t.Fatalf("the long-poll took %v: not woken", r.took)
		}
		jr := r.resp.Join[roomID]
		if jr == nil || !chunkHas(jr.Timeline, m) {
			t.Fatalf("the long-poll's response lacks %s: %+v", m, r.resp)
		}
	})
}
