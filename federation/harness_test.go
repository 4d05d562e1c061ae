package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

func init() { roomversion.Register() }

const testKeyID = "ed25519:fed1"

// clock is a settable clock shared by a network's servers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// server is one homeserver of a test network: its key, storage, API and
// HTTPS listener on 127.0.0.1.
type server struct {
	name string
	key  ed25519.PrivateKey
	db   storage.Database
	api  *federation.API
	addr string
	// keyHits counts GET /_matrix/key/v2/server.
	keyHits atomic.Int64
}

// network is several servers that reach each other over HTTPS through a
// Resolve map, plus raw handlers (fake servers) under names of their own.
type network struct {
	t         *testing.T
	clock     *clock
	servers   map[string]*server
	resolve   map[string]string
	transport http.RoundTripper
}

// newNetwork starts an API server for each of names and a raw HTTPS server
// for each entry of raw, all on 127.0.0.1, every name pinned in every
// server's Resolve map. keyValidity 0 means the default.
func newNetwork(t *testing.T, names []string, raw map[string]http.Handler, keyValidity time.Duration) *network {
	t.Helper()
	n := &network{t: t, clock: &clock{t: time.Now().Truncate(time.Millisecond)}, servers: map[string]*server{}, resolve: map[string]string{}}
	handlers := map[string]*atomic.Pointer[http.Handler]{}
	start := func(name string) *httptest.Server {
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
		n.resolve[name] = srv.Listener.Addr().String()
		if n.transport == nil {
			n.transport = srv.Client().Transport
		}
		return srv
	}
	for _, name := range names {
		start(name)
	}
	for name, h := range raw {
		start(name)
		handlers[name].Store(&h)
	}
	ctx := context.Background()
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		db, err := storage.Open(ctx, filepath.Join(t.TempDir(), name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		s := &server{name: name, key: key, db: db, addr: n.resolve[name]}
		s.api, err = federation.New(federation.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
			Clock: n.clock.Now, Transport: n.transport, Resolve: n.resolve, KeyValidity: keyValidity})
		if err != nil {
			t.Fatal(err)
		}
		inner := s.api.Handler()
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_matrix/key/v2/server" {
				s.keyHits.Add(1)
			}
			inner.ServeHTTP(w, r)
		})
		handlers[name].Store(&h)
		n.servers[name] = s
	}
	return n
}

// send sends req (a matrix://name/... or https URL) to the server the
// name is pinned to and returns the status and the body.
func (n *network) send(req *http.Request) (int, []byte) {
	n.t.Helper()
	if req.URL.Scheme == "matrix" {
		u := *req.URL
		u.Scheme, u.Host = "https", n.resolve[req.URL.Host]
		req.Host = req.URL.Host
		req.URL = &u
	}
	resp, err := (&http.Client{Transport: n.transport, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		n.t.Fatalf("sending %s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// testTransport is a RoundTripper of gomatrixserverlib's own matrix://
// requests to the network, independent of the package's transport.
type testTransport struct{ n *network }

func (tt testTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	u := *r.URL
	u.Scheme, u.Host = "https", tt.n.resolve[r.URL.Host]
	out.URL, out.Host = &u, r.URL.Host
	return tt.n.transport.RoundTrip(out)
}

// errcode reads the errcode of a Matrix error body.
func errcode(b []byte) string {
	var m struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Errcode
}

// roomBuilder builds the events of one room, signed by the network's
// servers with their federation keys; MLS ciphertexts are fake (a right
// header, random-looking bytes), which is all servers read.
type roomBuilder struct {
	t      *testing.T
	n      *network
	id     string
	seq    uint64
	create *roomversion.Event
}

func newRoom(t *testing.T, n *network, id, creator string) *roomBuilder {
	b := &roomBuilder{t: t, n: n, id: id}
	content, err := roomversion.V1.CreateContentJSON(mls.X25519AES128GCMSHA256Ed25519, true)
	if err != nil {
		t.Fatal(err)
	}
	b.create = b.build(creator, &roomversion.Builder{Type: roomversion.EventTypeCreate, StateKey: new(string), Content: content})
	return b
}

func (b *roomBuilder) build(origin string, bl *roomversion.Builder) *roomversion.Event {
	b.t.Helper()
	b.seq++
	bl.Version, bl.RoomID, bl.Origin = roomversion.V1, b.id, origin
	bl.Timestamp = b.n.clock.Now().Add(-time.Hour).Add(time.Duration(b.seq) * time.Millisecond)
	ev, err := bl.Build(context.Background(), testKeyID, b.n.servers[origin].key)
	if err != nil {
		b.t.Fatalf("building event: %v", err)
	}
	return ev
}

func (b *roomBuilder) mlsContent(typ string, epoch uint64, ct mls.ContentType, ad []byte) []byte {
	b.t.Helper()
	body := make([]byte, 64)
	binary.BigEndian.PutUint64(body, b.seq+1)
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(b.id), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: bytes.Repeat([]byte{0xab}, 28), Ciphertext: body,
	}}
	msg, err := m.MarshalMLS()
	if err != nil {
		b.t.Fatal(err)
	}
	content, err := roomversion.V1.MLSContent(typ, mls.X25519AES128GCMSHA256Ed25519, msg)
	if err != nil {
		b.t.Fatal(err)
	}
	return content
}

func ids(evs ...*roomversion.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID()
	}
	return out
}

// commit builds a commit by origin on parent (nil: the epoch-0 commit)
// whose federation map lists servers (powers: origin).
func (b *roomBuilder) commit(origin string, parent *roomversion.Event, servers []string, prev ...*roomversion.Event) *roomversion.Event {
	b.t.Helper()
	fm := &fedmap.Map{Federation: fedmap.Federation{Powers: []string{origin}, Servers: servers}}
	ad, err := fm.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	auth, epoch := []string{b.create.EventID()}, uint64(0)
	if parent != nil {
		auth, epoch = append(auth, parent.EventID()), parent.Epoch()+1
	}
	typ := roomversion.V1.CommitType()
	return b.build(origin, &roomversion.Builder{Type: typ, StateKey: new(string), Content: b.mlsContent(typ, epoch, mls.ContentTypeCommit, ad),
		AuthEvents: auth, PrevEvents: ids(prev...)})
}

// message builds an m.room.encrypted event by origin on commit.
func (b *roomBuilder) message(origin string, commit *roomversion.Event, prev ...*roomversion.Event) *roomversion.Event {
	b.t.Helper()
	typ := roomversion.EventTypeEncrypted
	return b.build(origin, &roomversion.Builder{Type: typ, Content: b.mlsContent(typ, commit.Epoch()+1, mls.ContentTypeApplication, nil),
		AuthEvents: ids(b.create, commit), PrevEvents: ids(prev...)})
}

// store stores ev in db with the state before it and, if set, the new
// current state.
func store(t *testing.T, db storage.Database, ev *roomversion.Event, before storage.RoomState, current *storage.RoomState, rejected bool) {
	t.Helper()
	if _, err := db.StoreEvent(context.Background(), ev, storage.StoreEventOptions{StateBefore: before, CurrentState: current, Rejected: rejected}); err != nil {
		t.Fatalf("storing %s: %v", ev.EventID(), err)
	}
}
