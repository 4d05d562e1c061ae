package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// fuzzPair is a receiving server (b.test: federation API with room and
// user logic) and a sending one (a.test: federation API only, which serves
// its key), over HTTPS on 127.0.0.1. newStack takes a *testing.T; a fuzz
// target builds this once with its *testing.F and reuses it.
type fuzzPair struct {
	keys   map[string]ed25519.PrivateKey
	apis   map[string]*federation.API
	rooms  *roomserver.Server
	db     storage.Database // b.test's
	urls   map[string]string
	client *http.Client
	// roomID is a room held by b.test whose commit lists a.test in
	// servers; commitID is that commit.
	roomID, createID, commitID string
}

func newFuzzPair(f *testing.F) *fuzzPair {
	f.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	p := &fuzzPair{keys: map[string]ed25519.PrivateKey{}, apis: map[string]*federation.API{}, urls: map[string]string{}}
	names := []string{"a.test", "b.test"}
	resolve := map[string]string{}
	handlers := map[string]*atomic.Pointer[http.Handler]{}
	var transport http.RoundTripper
	for _, name := range names {
		h := &atomic.Pointer[http.Handler]{}
		handlers[name] = h
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hp := h.Load(); hp != nil {
				(*hp).ServeHTTP(w, r)
				return
			}
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}))
		srv.StartTLS()
		f.Cleanup(srv.Close)
		resolve[name], p.urls[name] = srv.Listener.Addr().String(), srv.URL
		if transport == nil {
			transport, p.client = srv.Client().Transport, srv.Client()
		}
	}
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		db, err := storage.Open(ctx, filepath.Join(f.TempDir(), name+".db"))
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = db.Close() })
		api, err := federation.New(federation.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
			Transport: transport, Resolve: resolve})
		if err != nil {
			f.Fatal(err)
		}
		if name == "b.test" {
			p.db = db
			if p.rooms, err = roomserver.New(roomserver.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
				Keys: api.KeyFetcher(), Fetcher: api.Fetcher()}); err != nil {
				f.Fatal(err)
			}
			users, err := userapi.New(userapi.Config{ServerName: name, Store: db, BcryptCost: bcrypt.MinCost})
			if err != nil {
				f.Fatal(err)
			}
			api.Attach(p.rooms, users)
		}
		var h http.Handler = api.Handler()
		handlers[name].Store(&h)
		p.keys[name], p.apis[name] = key, api
	}

	// A room of b.test whose epoch-0 commit lists a.test, so that PDUs
	// from a.test get past the room check into the auth rules.
	const creator = "@carl:b.test"
	var err error
	if p.roomID, err = p.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{UserID: creator, Version: roomversion.V1,
		Algorithm: "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", Federate: true}); err != nil {
		f.Fatal(err)
	}
	fm := testclient.FedMap([]string{"b.test"}, []string{"a.test", "b.test"}, []string{"a.test", "b.test"})
	typ := roomversion.V1.CommitType()
	if p.commitID, err = p.rooms.SendEvent(ctx, roomserver.SendRequest{UserID: creator, DeviceID: "DEV", RoomID: p.roomID,
		Type: typ, StateKey: new(string), Content: fakeMLS(f, typ, p.roomID, 0, fm)}); err != nil {
		f.Fatal(err)
	}
	cur, err := p.db.CurrentState(ctx, p.roomID)
	if err != nil {
		f.Fatal(err)
	}
	p.createID = cur.CreateID
	return p
}

// event builds an event of the pair's room as a.test.
func (p *fuzzPair) event(tb testing.TB, typ string, epoch uint64, prev []string) *roomversion.Event {
	tb.Helper()
	var fm *fedmap.Map
	b := &roomversion.Builder{Version: roomversion.V1, RoomID: p.roomID, Type: typ,
		AuthEvents: []string{p.createID, p.commitID}, PrevEvents: prev, Origin: "a.test"}
	if typ == roomversion.V1.CommitType() {
		b.StateKey = new(string)
		fm = testclient.FedMap([]string{"b.test"}, []string{"a.test", "b.test"}, nil)
	}
	b.Content = fakeMLS(tb, typ, p.roomID, epoch, fm)
	ev, err := b.Build(context.Background(), testKeyID, p.keys["a.test"])
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// put sends body to b.test's /send as a.test: signed when it is JSON that
// gomatrixserverlib can sign (canonical JSON refuses floats, for one),
// otherwise with the X-Matrix header of another body.
func (p *fuzzPair) put(tb testing.TB, txnID string, body []byte) (status int, resp []byte) {
	tb.Helper()
	path := "/_matrix/federation/v1/send/" + txnID
	sign := func(content []byte) (*http.Request, error) {
		fr := fclient.NewFederationRequest(http.MethodPut, "a.test", "b.test", path)
		if err := fr.SetContent(json.RawMessage(content)); err != nil {
			return nil, err
		}
		if err := fr.Sign("a.test", gomatrixserverlib.KeyID(testKeyID), p.keys["a.test"]); err != nil {
			return nil, err
		}
		return fr.HTTPRequest()
	}
	var signedReq *http.Request
	var err error
	if json.Valid(body) {
		signedReq, err = sign(body)
	}
	if signedReq == nil || err != nil {
		if signedReq, err = sign([]byte("{}")); err != nil {
			tb.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPut, p.urls["b.test"]+signedReq.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Host, req.Header = "b.test", signedReq.Header.Clone()
	res, err := p.client.Do(req)
	if err != nil {
		// A handler panic closes the connection without an answer.
		tb.Fatalf("PUT %s with %q: no answer: %v", path, body, err)
	}
	defer res.Body.Close()
	if resp, err = io.ReadAll(res.Body); err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, resp
}

// FuzzSendBody: whatever the body of PUT /send, b.test answers 200 with a
// {"pdus": {eventId: {} or {"error": "..."}}} object or a 4xx Matrix error
// ({"errcode", "error"}), and never fails (panic, no answer, 5xx).
func FuzzSendBody(f *testing.F) {
	p := newFuzzPair(f)
	msg := p.event(f, roomversion.EventTypeEncrypted, 1, []string{p.commitID})
	commit := p.event(f, roomversion.V1.CommitType(), 1, []string{p.commitID})
	tx := func(pdus ...string) string {
		return `{"origin":"a.test","origin_server_ts":1,"pdus":[` + strings.Join(pdus, ",") + `],"edus":[]}`
	}
	withSender := string(editJSON(f, msg.JSON(), map[string]json.RawMessage{"sender": json.RawMessage(`"@x:a.test"`)}))
	many := make([]string, 51)
	for i := range many {
		many[i] = "{}"
	}
	for _, seed := range []string{
		tx(),
		tx(string(msg.JSON())),
		tx(string(msg.JSON()), string(commit.JSON())),
		tx(withSender),
		tx(`1`, `"x"`, `null`, `{}`, `[]`, `{"room_id":1}`, `{"room_id":"!nope:c.test","type":"m.room.create","auth_events":["$a"]}`),
		tx(many...),
		`{"origin":"a.test","pdus":null,"edus":null}`,
		`{"origin":"c.test","pdus":[]}`,
		`{"origin":"a.test","pdus":{"a":1}}`,
		`{"origin":"a.test","origin_server_ts":"x","pdus":[]}`,
		`{"origin":"a.test","pdus":[],"edus":[{"edu_type":"m.direct_to_device","content":{"sender":"@x:a.test","type":"m.mls.welcome","message_id":"m1","messages":{"@carl:b.test":{"*":{"a":1}}}}}]}`,
		`{"origin":"a.test","pdus":[],"edus":[{"edu_type":"m.direct_to_device","content":"x"},{"edu_type":7},null]}`,
		`{"origin":`,
		`[]`,
		`null`,
		`"x"`,
		``,
		`{"origin":"a.test","origin_server_ts":1e400,"pdus":[]}`,
		`{"origin":"a.test","origin_server_ts":1.5,"pdus":[]}`,
		`{"origin":"a.test","pdus":[{"room_id":"!\u0000:b.test","type":"m.room.encrypted","auth_events":["$\ud800"]}]}`,
	} {
		f.Add([]byte(seed))
	}
	var txn atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte) {
		status, resp := p.put(t, fmt.Sprintf("fuzz-%d-%d", time.Now().UnixNano(), txn.Add(1)), body)
		if status == http.StatusOK {
			var out map[string]json.RawMessage
			if err := json.Unmarshal(resp, &out); err != nil {
				t.Fatalf("200 with a body that is no object: %q (%v) for %q", resp, err, body)
			}
			var pdus map[string]struct {
				Error *string `json:"error"`
			}
			if err := json.Unmarshal(out["pdus"], &pdus); err != nil || pdus == nil {
				t.Fatalf("200 without a pdus object: %s (%v) for %q", resp, err, body)
			}
			return
		}
		if status < 400 || status > 499 {
			t.Fatalf("status %d: %s for %q", status, resp, body)
		}
		var me struct {
			Errcode *string `json:"errcode"`
			Error   *string `json:"error"`
		}
		if err := json.Unmarshal(resp, &me); err != nil || me.Errcode == nil || !strings.HasPrefix(*me.Errcode, "M_") || me.Error == nil {
			t.Fatalf("status %d without a Matrix error: %s (%v) for %q", status, resp, err, body)
		}
	})
}
