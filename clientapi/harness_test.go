package clientapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

func init() { roomversion.Register() }

// roomEnv is one homeserver over a real listener and real storage.
type roomEnv struct {
	t     testing.TB
	name  string
	url   string
	db    storage.Database
	rooms *roomserver.Server
	clock *commitqueue.FakeClock
	txn   atomic.Int64
}

// roomEnvOptions tunes newRoomEnv.
type roomEnvOptions struct {
	serverName string
	// fakeClock drives the server with a FakeClock (the commit queue is
	// then ticked by the test).
	fakeClock bool
	rateLimit clientapi.RateLimit
	maxBody   int64
	// dsn, if set, is the database to use instead of a fresh one (two
	// stacks on one PostgreSQL schema); its owner drops it.
	dsn string
	// key is the server's signing key; default a fresh one.
	key ed25519.PrivateKey
	// queuePoll is the commit queue's poll interval; default 50 ms.
	queuePoll time.Duration
}

// forBackends runs f once per storage backend.
func forBackends(t *testing.T, f func(t *testing.T, b testdb.Backend)) {
	for _, b := range testdb.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

func newRoomEnv(t testing.TB, b testdb.Backend, o roomEnvOptions) *roomEnv {
	t.Helper()
	if o.serverName == "" {
		o.serverName = "a.test"
	}
	if o.rateLimit == (clientapi.RateLimit{}) {
		o.rateLimit = clientapi.RateLimit{Disabled: true}
	}
	if o.dsn == "" {
		o.dsn = b.NewDSN(t)
	}
	if o.queuePoll == 0 {
		o.queuePoll = 50 * time.Millisecond
	}
	ctx := context.Background()
	db, err := storage.Open(ctx, o.dsn)
	if err != nil {
		t.Fatalf("opening storage: %v", err)
	}
	e := &roomEnv{t: t, name: o.serverName, db: db}
	var clock commitqueue.Clock = commitqueue.RealClock()
	now := time.Now
	if o.fakeClock {
		e.clock = commitqueue.NewFakeClock(time.Now())
		clock, now = e.clock, e.clock.Now
	}
	priv := o.key
	if priv == nil {
		_, priv, _ = ed25519.GenerateKey(nil)
	}
	rs, err := roomserver.New(roomserver.Config{ServerName: o.serverName, KeyID: "ed25519:t", PrivateKey: priv,
		Store: db, Clock: clock, QueuePollInterval: o.queuePoll})
	if err != nil {
		t.Fatal(err)
	}
	us, err := userapi.New(userapi.Config{ServerName: o.serverName, Store: db, Clock: now, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	api, err := clientapi.New(clientapi.Config{ServerName: o.serverName, Rooms: rs, Users: us, Clock: now,
		RateLimit: o.rateLimit, MaxBodyBytes: o.maxBody})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	if err := rs.Start(sctx); err != nil {
		t.Fatal(err)
	}
	if o.fakeClock {
		// Tests tick the queue themselves.
		rs.Queue().Stop()
	}
	srv := httptest.NewServer(api.Handler())
	e.url, e.rooms = srv.URL, rs
	t.Cleanup(func() {
		srv.Close()
		cancel()
		rs.Stop()
		if err := db.Close(); err != nil {
			t.Errorf("closing storage: %v", err)
		}
	})
	return e
}

// resp is a decoded response.
type resp struct {
	status int
	body   map[string]any
	raw    []byte
}

func (r resp) errcode() string { s, _ := r.body["errcode"].(string); return s }

func (r resp) str(key string) string { s, _ := r.body[key].(string); return s }

// do sends a request; body is JSON-encoded unless it is []byte or string.
func (e *roomEnv) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// must fails the test unless the response has the status.
func (r resp) must(t testing.TB, status int, what string) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.raw)
	}
	return r
}

// refused checks status and errcode.
func (r resp) refused(t testing.TB, status int, errcode, what string) resp {
	t.Helper()
	if r.status != status || r.errcode() != errcode {
		t.Fatalf("%s: got %d %s, want %d %s: %s", what, r.status, r.errcode(), status, errcode, r.raw)
	}
	return r
}

// register makes an account with the m.login.dummy flow and returns its
// access token.
func (e *roomEnv) register(name string) (userID, deviceID, token string) {
	e.t.Helper()
	r := e.do("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": name, "password": "pw-" + name, "auth": map[string]any{"type": "m.login.dummy"}})
	r.must(e.t, 200, "register "+name)
	return r.str("user_id"), r.str("device_id"), r.str("access_token")
}

// nextTxn returns a fresh transaction ID.
func (e *roomEnv) nextTxn() string { return fmt.Sprintf("txn%d", e.txn.Add(1)) }

// roomPath is /_matrix/client/v3/rooms/{roomID}/rest.
func roomPath(roomID, rest string) string { return testclient.RoomPath(roomID, rest) }

// mlsContent is the content of an MLS event of type typ carrying wire.
// (v is the room version; the encoding depends only on typ.)
func mlsContent(_ roomversion.Version, typ, alg string, wire []byte) map[string]string {
	return testclient.Content(typ, alg, wire)
}
