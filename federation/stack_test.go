package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/federation/sender"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// homeserver is a whole server of a stack test: storage, room and user
// logic, the client and federation APIs on one HTTPS listener, and the
// outbound queue.
type homeserver struct {
	name   string
	key    ed25519.PrivateKey
	db     storage.Database
	rooms  *roomserver.Server
	users  *userapi.Service
	fed    *federation.API
	sender *sender.Sender
	url    string
	client *http.Client
}

// newStack starts one homeserver per name on 127.0.0.1, each reaching the
// others over HTTPS through its Resolve map, each on a SQLite file of its
// own.
func newStack(t *testing.T, names ...string) map[string]*homeserver {
	t.Helper()
	return newStackOn(t, func(tb testing.TB, name string) string { return filepath.Join(tb.TempDir(), name+".db") }, nil, names...)
}

// newStackOn is newStack with each server's storage at dsn(tb, name) and
// logger (nil: slog.Default()) for every component.
func newStackOn(t testing.TB, dsn func(tb testing.TB, name string) string, logger *slog.Logger, names ...string) map[string]*homeserver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resolve := map[string]string{}
	handlers := map[string]*atomic.Pointer[http.Handler]{}
	urls := map[string]string{}
	var transport http.RoundTripper
	var hc *http.Client
	for _, name := range names {
		h := &atomic.Pointer[http.Handler]{}
		handlers[name] = h
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := h.Load(); p != nil {
				(*p).ServeHTTP(w, r)
				return
			}
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}))
		srv.StartTLS()
		t.Cleanup(srv.Close)
		resolve[name] = srv.Listener.Addr().String()
		urls[name] = srv.URL
		if transport == nil {
			// httptest's servers share one certificate: one client trusts all.
			transport, hc = srv.Client().Transport, srv.Client()
		}
	}
	out := map[string]*homeserver{}
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		db, err := storage.Open(ctx, dsn(t, name))
		if err != nil {
			t.Fatal(err)
		}
		hs := &homeserver{name: name, key: key, db: db, url: urls[name], client: hc}
		if hs.fed, err = federation.New(federation.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
			Transport: transport, Resolve: resolve, Logger: logger}); err != nil {
			t.Fatal(err)
		}
		if hs.sender, err = sender.New(sender.Config{ServerName: name, Store: db, Transport: hs.fed.Client(),
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Logger: logger}); err != nil {
			t.Fatal(err)
		}
		if hs.rooms, err = roomserver.New(roomserver.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
			Keys: hs.fed.KeyFetcher(), Fetcher: hs.fed.Fetcher(),
			Remote: federation.RoomRemote{Events: hs.sender, Client: hs.fed.Client()}, QueuePollInterval: 100 * time.Millisecond, Logger: logger}); err != nil {
			t.Fatal(err)
		}
		remote := federation.NewUserRemote(hs.fed.Client(), hs.sender)
		remote.Servers = hs.rooms.ServersSharedWith
		if hs.users, err = userapi.New(userapi.Config{ServerName: name, Store: db, BcryptCost: bcrypt.MinCost,
			Remote: remote, Logger: logger}); err != nil {
			t.Fatal(err)
		}
		hs.fed.Attach(hs.rooms, hs.users)
		api, err := clientapi.New(clientapi.Config{ServerName: name, Rooms: hs.rooms, Users: hs.users,
			RateLimit: clientapi.RateLimit{Disabled: true}, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		r := mux.NewRouter()
		api.Register(r)
		hs.fed.Register(r)
		var h http.Handler = r
		handlers[name].Store(&h)
		if err := hs.rooms.Start(ctx); err != nil {
			t.Fatal(err)
		}
		hs.sender.Start(ctx)
		t.Cleanup(func() {
			hs.sender.Stop()
			hs.rooms.Stop()
			_ = db.Close()
		})
		out[name] = hs
	}
	// Every outbound queue stops before any server's storage closes: a
	// transaction still in flight when the test ends then completes.
	t.Cleanup(func() {
		for _, hs := range out {
			hs.sender.Stop()
		}
	})
	return out
}

// TestTwoServersShareARoom is the whole flow across two servers over
// HTTPS: alice on a.test claims bob's key package on b.test, adds him, and
// sends the Welcome (m.direct_to_device) and the invite (the remote invite
// endpoint); bob's server takes the room in, bob joins, and messages go
// both ways through the outbound queues and /send, read and decrypted in
// /sync on the other server.
func TestTwoServersShareARoom(t *testing.T) {
	hs := newStack(t, "a.test", "b.test")
	a, b := hs["a.test"], hs["b.test"]
	alice := testclient.New(t, a.url, a.client, "alice")
	bob := testclient.New(t, b.url, b.client, "bob")
	bob.UploadKeys(2, true)
	bob.Sync(0)
	alice.Sync(0)

	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil)
	roomID := alice.CreateRoom(fm)
	kp := alice.ClaimKeyPackage(bob.UserID, bob.DeviceID)
	welcome := alice.Add(roomID, fm, kp)
	addID := alice.CommitID
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, addID)

	// alice -> bob.
	sent := alice.SendMessage(roomID, "hello from a.test").Must(t, 200, "alice's message").Str("event_id")
	deadline := time.Now().Add(10 * time.Second)
	got := ""
	for got == "" && time.Now().Before(deadline) {
		for _, ev := range testclient.Timeline(bob.Sync(2000), roomID) {
			if ev["event_id"] == sent {
				got = bob.MessageText(ev)
			}
		}
	}
	if got != "hello from a.test" {
		t.Fatalf("bob on b.test read %q", got)
	}
	// bob -> alice.
	back := bob.SendMessage(roomID, "hello from b.test").Must(t, 200, "bob's message").Str("event_id")
	got = ""
	for deadline = time.Now().Add(10 * time.Second); got == "" && time.Now().Before(deadline); {
		for _, ev := range testclient.Timeline(alice.Sync(2000), roomID) {
			if ev["event_id"] == back {
				got = alice.MessageText(ev)
			}
		}
	}
	if got != "hello from b.test" {
		t.Fatalf("alice on a.test read %q", got)
	}
	// Both servers are on the same commit.
	ca, err := a.db.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.db.CurrentState(context.Background(), roomID)
	if err != nil || cb != ca {
		t.Fatalf("current states a %+v, b %+v (%v)", ca, cb, err)
	}
}

// TestSendTransactionRules: a transaction's limits and origin, and a
// retried transaction ID answered as the first time without being applied
// again.
func TestSendTransactionRules(t *testing.T) {
	hs := newStack(t, "a.test", "b.test")
	a, b := hs["a.test"], hs["b.test"]
	ctx := context.Background()
	alice := testclient.New(t, a.url, a.client, "alice")
	roomID := alice.CreateRoom(testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil))
	cur, err := a.db.CurrentState(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := a.db.Event(ctx, cur.CommitID)
	if err != nil {
		t.Fatal(err)
	}
	put := func(txn string, body any) (int, map[string]any) {
		t.Helper()
		status, resp, err := a.fed.Client().Do(ctx, "b.test", http.MethodPut, "/_matrix/federation/v1/send/"+txn, body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.Unmarshal(resp, &out)
		return status, out
	}
	pdus := make([]json.RawMessage, 51)
	for i := range pdus {
		pdus[i] = commit.Event.JSON()
	}
	if status, out := put("t-big", map[string]any{"origin": "a.test", "origin_server_ts": 1, "pdus": pdus}); status != 400 || out["errcode"] != "M_BAD_JSON" {
		t.Fatalf("51 PDUs: %d %v", status, out)
	}
	if status, out := put("t-origin", map[string]any{"origin": "c.test", "origin_server_ts": 1, "pdus": []any{}}); status != 400 || out["errcode"] != "M_BAD_JSON" {
		t.Fatalf("another origin in the body: %d %v", status, out)
	}
	if status, out := put("t-json", "{not json"); status != 400 {
		t.Fatalf("malformed body: %d %v", status, out)
	}
	// b holds no such room and no local user is invited: the PDU is
	// refused, in the per-PDU answer.
	status, first := put("t1", map[string]any{"origin": "a.test", "origin_server_ts": 1, "pdus": []json.RawMessage{commit.Event.JSON()}})
	res, _ := first["pdus"].(map[string]any)[commit.Event.EventID()].(map[string]any)
	if status != 200 || res["error"] == nil {
		t.Fatalf("unsolicited room: %d %v", status, first)
	}
	if _, err := b.db.Event(ctx, commit.Event.EventID()); err == nil {
		t.Fatal("an event of an unsolicited room was stored")
	}
	// The same transaction ID is answered from the first answer, even
	// with another body.
	status, again := put("t1", map[string]any{"origin": "a.test", "origin_server_ts": 2, "pdus": []any{}})
	if status != 200 || fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("retried transaction: %d %v, first %v", status, again, first)
	}
}
