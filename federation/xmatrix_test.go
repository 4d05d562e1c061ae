package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// memKeys is an in-memory gomatrixserverlib.KeyDatabase.
type memKeys struct {
	mu   sync.Mutex
	keys map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult
}

func (m *memKeys) FetcherName() string { return "memory" }

func (m *memKeys) FetchKeys(_ context.Context, reqs map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	for r := range reqs {
		if k, ok := m.keys[r]; ok {
			out[r] = k
		}
	}
	return out, nil
}

func (m *memKeys) StoreKeys(_ context.Context, res map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for r, k := range res {
		m.keys[r] = k
	}
	return nil
}

// fixture is a room on hs1 whose current commit lists hs1 and hs2:
// create <- c0 <- m1 <- m2 <- c1 <- m3 <- rejected, plus a room whose
// commit lists hs1 only and a room with only its create event.
type fixture struct {
	n                       *network
	hs1, hs2, hs3           *server
	room                    *roomBuilder
	c0, m1, m2, c1, m3, rej *roomversion.Event
	other                   *roomBuilder
	otherCommit             *roomversion.Event
	bare                    *roomBuilder
}

func newFixture(t *testing.T, raw map[string]http.Handler) *fixture {
	t.Helper()
	n := newNetwork(t, []string{"hs1.test", "hs2.test", "hs3.test"}, raw, 0)
	f := &fixture{n: n, hs1: n.servers["hs1.test"], hs2: n.servers["hs2.test"], hs3: n.servers["hs3.test"]}
	db := f.hs1.db
	both := []string{"hs1.test", "hs2.test"}

	r := newRoom(t, n, "!fed:hs1.test", "hs1.test")
	f.room = r
	s0 := storage.RoomState{CreateID: r.create.EventID()}
	store(t, db, r.create, storage.RoomState{}, &s0, false)
	f.c0 = r.commit("hs1.test", nil, both, r.create)
	s1 := storage.RoomState{CreateID: r.create.EventID(), CommitID: f.c0.EventID()}
	store(t, db, f.c0, s0, &s1, false)
	f.m1 = r.message("hs1.test", f.c0, f.c0)
	store(t, db, f.m1, s1, nil, false)
	f.m2 = r.message("hs2.test", f.c0, f.m1)
	store(t, db, f.m2, s1, nil, false)
	f.c1 = r.commit("hs1.test", f.c0, both, f.m2)
	s2 := storage.RoomState{CreateID: r.create.EventID(), CommitID: f.c1.EventID()}
	store(t, db, f.c1, s1, &s2, false)
	f.m3 = r.message("hs2.test", f.c1, f.c1)
	store(t, db, f.m3, s2, nil, false)
	f.rej = r.message("hs2.test", f.c1, f.m3)
	store(t, db, f.rej, s2, nil, true)

	f.other = newRoom(t, n, "!other:hs1.test", "hs1.test")
	o0 := storage.RoomState{CreateID: f.other.create.EventID()}
	store(t, db, f.other.create, storage.RoomState{}, &o0, false)
	f.otherCommit = f.other.commit("hs1.test", nil, []string{"hs1.test"}, f.other.create)
	o1 := storage.RoomState{CreateID: f.other.create.EventID(), CommitID: f.otherCommit.EventID()}
	store(t, db, f.otherCommit, o0, &o1, false)

	f.bare = newRoom(t, n, "!bare:hs1.test", "hs1.test")
	b0 := storage.RoomState{CreateID: f.bare.create.EventID()}
	store(t, db, f.bare.create, storage.RoomState{}, &b0, false)
	return f
}

// signed builds a request from origin to destination signed by
// gomatrixserverlib's code with key under keyID.
func signed(t *testing.T, method, origin, destination, uri string, content any, keyID string, key ed25519.PrivateKey) *http.Request {
	t.Helper()
	fr := fclient.NewFederationRequest(method, spec.ServerName(origin), spec.ServerName(destination), uri)
	if content != nil {
		if err := fr.SetContent(content); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Sign(spec.ServerName(origin), gomatrixserverlib.KeyID(keyID), key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestXMatrixInbound: a request signed by gomatrixserverlib's code is
// accepted; missing, forged, misaddressed or replayed-elsewhere signatures
// are 401 M_UNAUTHORIZED.
func TestXMatrixInbound(t *testing.T) {
	f := newFixture(t, map[string]http.Handler{"nokeys.test": http.NotFoundHandler()})
	n, hs2 := f.n, f.hs2
	path := "/_matrix/federation/v1/event/" + f.m1.EventID()

	status, body := n.send(signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, testKeyID, hs2.key))
	if status != http.StatusOK {
		t.Fatalf("gomatrixserverlib-signed request: %d %s", status, body)
	}
	var tx struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	if err := json.Unmarshal(body, &tx); err != nil || tx.Origin != "hs1.test" || len(tx.PDUs) != 1 {
		t.Fatalf("answer %s (%v)", body, err)
	}
	// The key ring fetched hs2's key over HTTPS and stored it.
	if k, err := f.hs1.db.ServerKey(context.Background(), "hs2.test", testKeyID); err != nil || !bytes.Equal(k.PublicKey, hs2.key.Public().(ed25519.PublicKey)) {
		t.Fatalf("hs2's key in hs1's storage: %+v, %v", k, err)
	}
	if hs2.keyHits.Load() != 1 {
		t.Fatalf("hs2's key fetched %d times, want 1", hs2.keyHits.Load())
	}
	if status, body := n.send(signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, testKeyID, hs2.key)); status != http.StatusOK || hs2.keyHits.Load() != 1 {
		t.Fatalf("second request: %d %s, %d key fetches", status, body, hs2.keyHits.Load())
	}

	_, forgedKey, _ := ed25519.GenerateKey(rand.Reader)
	noAuth := mustRequest(t, http.MethodGet, "matrix://hs1.test"+path, nil)
	bearer := mustRequest(t, http.MethodGet, "matrix://hs1.test"+path, nil)
	bearer.Header.Set("Authorization", "Bearer abc")
	otherPath := signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, testKeyID, hs2.key)
	otherPath.URL.Path = "/_matrix/federation/v1/event/" + f.m2.EventID()
	noDest := signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, testKeyID, hs2.key)
	noDest.Header.Set("Authorization", strings.Replace(noDest.Header.Get("Authorization"), `,destination="hs1.test"`, "", 1))
	noSig := mustRequest(t, http.MethodGet, "matrix://hs1.test"+path, nil)
	noSig.Header.Set("Authorization", `X-Matrix origin="hs2.test",key="`+testKeyID+`",destination="hs1.test"`)
	bodyChanged := signed(t, http.MethodPost, "hs2.test", "hs1.test", "/_matrix/federation/v1/get_missing_events/"+f.room.id,
		map[string]any{"latest_events": []string{f.m3.EventID()}}, testKeyID, hs2.key)
	bodyChanged.Body = http.NoBody
	bodyChanged.ContentLength = 0
	cases := map[string]*http.Request{
		"no authorization":    noAuth,
		"bearer only":         bearer,
		"forged signature":    signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, testKeyID, forgedKey),
		"unknown key ID":      signed(t, http.MethodGet, "hs2.test", "hs1.test", path, nil, "ed25519:other", hs2.key),
		"wrong destination":   sendTo(signed(t, http.MethodGet, "hs2.test", "hs3.test", path, nil, testKeyID, hs2.key), "hs1.test"),
		"signed for our name": signed(t, http.MethodGet, "hs1.test", "hs1.test", path, nil, testKeyID, forgedKey),
		"other path":          otherPath,
		"no destination":      noDest,
		"no sig":              noSig,
		"body removed":        bodyChanged,
		"origin without keys": signed(t, http.MethodGet, "nokeys.test", "hs1.test", path, nil, testKeyID, forgedKey),
	}
	for name, req := range cases {
		status, body := n.send(req)
		if status != http.StatusUnauthorized || errcode(body) != "M_UNAUTHORIZED" {
			t.Errorf("%s: %d %s, want 401 M_UNAUTHORIZED", name, status, body)
		}
	}
}

// sendTo points req at another server, keeping its signature.
func sendTo(req *http.Request, name string) *http.Request {
	u := *req.URL
	u.Host = name
	req.URL = &u
	req.Host = name
	return req
}

// TestXMatrixOutbound: requests of our Client pass gomatrixserverlib's
// VerifyHTTPRequest (with its own key ring fetching the key over HTTPS).
func TestXMatrixOutbound(t *testing.T) {
	type seen struct {
		origin  string
		content string
		code    int
	}
	results := make(chan seen, 4)
	var ring gomatrixserverlib.JSONVerifier
	verifier := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr, res := fclient.VerifyHTTPRequest(r, time.Now(), "verify.test", nil, ring)
		if fr == nil {
			results <- seen{code: res.Code}
			w.WriteHeader(res.Code)
			return
		}
		results <- seen{origin: string(fr.Origin()), content: string(fr.Content()), code: res.Code}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"origin":%q}`, fr.Origin())
	})
	n := newNetwork(t, []string{"hs1.test", "hs2.test"}, map[string]http.Handler{"verify.test": verifier}, 0)
	ring = gomatrixserverlib.KeyRing{
		KeyDatabase: &memKeys{keys: map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}},
		KeyFetchers: []gomatrixserverlib.KeyFetcher{&gomatrixserverlib.DirectKeyFetcher{
			Client: fclient.NewClient(fclient.WithTransport(testTransport{n})), IsLocalServerName: func(s spec.ServerName) bool { return s == "verify.test" }}},
	}
	ctx := context.Background()
	c := n.servers["hs2.test"].api.Client()
	status, body, err := c.Do(ctx, "verify.test", http.MethodPost, "/_matrix/federation/v1/anything/%21x%3Ay?a=b&c=d", map[string]any{"k": []int{1, 2}})
	if err != nil || status != http.StatusOK {
		t.Fatalf("signed POST: %d %s %v", status, body, err)
	}
	if got := <-results; got.origin != "hs2.test" || got.content != `{"k":[1,2]}` {
		t.Fatalf("verified %+v", got)
	}
	status, body, err = c.Do(ctx, "verify.test", http.MethodGet, "/_matrix/federation/v1/event/$abc", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("signed GET: %d %s %v", status, body, err)
	}
	if got := <-results; got.origin != "hs2.test" {
		t.Fatalf("verified %+v", got)
	}
	// The verifier refuses what is not signed (it can fail).
	status, _ = n.send(mustRequest(t, http.MethodGet, "matrix://verify.test/_matrix/federation/v1/event/$abc", nil))
	if got := <-results; status != http.StatusUnauthorized || got.code != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %d / %+v", status, got)
	}
	if _, _, err := c.Do(ctx, "hs2.test", http.MethodGet, "/x", nil); err == nil {
		t.Fatal("request to ourselves sent")
	}
}
