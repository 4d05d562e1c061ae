package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

// hostileRoom is a room created on a.test by alice with real MLS clients
// (powers [a, b], servers [a, b, c], can_propose [a, b, c]), joined by bob
// on b.test and carol on c.test, held by all three; d.test is a fourth
// server of the network that is not in the room.
type hostileRoom struct {
	t          *testing.T
	hs         map[string]*homeserver
	keys       map[string]ed25519.PrivateKey
	users      map[string]*testclient.Client // by server name
	roomID     string
	create     *roomversion.Event
	commit2    *roomversion.Event // the current commit (epoch 2: carol added)
	msg        *roomversion.Event // alice's message in epoch 3
	txn        atomic.Int64
	fedServers []string
}

func newHostileRoom(t *testing.T) *hostileRoom {
	t.Helper()
	h := &hostileRoom{t: t, hs: newStack(t, "a.test", "b.test", "c.test", "d.test"), keys: map[string]ed25519.PrivateKey{},
		users: map[string]*testclient.Client{}, fedServers: []string{"a.test", "b.test", "c.test"}}
	for name, s := range h.hs {
		h.keys[name] = s.key
	}
	a, b, c := h.hs["a.test"], h.hs["b.test"], h.hs["c.test"]
	alice := testclient.New(t, a.url, a.client, "alice")
	bob := testclient.New(t, b.url, b.client, "bob")
	carol := testclient.New(t, c.url, c.client, "carol")
	h.users["a.test"], h.users["b.test"], h.users["c.test"] = alice, bob, carol
	for _, u := range []*testclient.Client{bob, carol} {
		u.UploadKeys(2, true)
		u.Sync(0)
	}
	alice.Sync(0)

	fm := testclient.FedMap([]string{"a.test", "b.test"}, h.fedServers, h.fedServers)
	h.roomID = alice.CreateRoom(fm)
	for _, u := range []*testclient.Client{bob, carol} {
		kp := alice.ClaimKeyPackage(u.UserID, u.DeviceID)
		welcome := alice.Add(h.roomID, fm, kp)
		added := alice.CommitID
		alice.Invite(h.roomID, u.UserID, u.DeviceID, welcome)
		u.JoinInvited(h.roomID, added)
	}
	msgID := alice.SendMessage(h.roomID, "before the attacks").Must(t, 200, "alice's message").Str("event_id")
	// The room is held everywhere once bob and carol get the message.
	for _, u := range []*testclient.Client{bob, carol} {
		got := false
		for deadline := time.Now().Add(15 * time.Second); !got && time.Now().Before(deadline); {
			for _, ev := range testclient.Timeline(u.Sync(2000), h.roomID) {
				got = got || ev["event_id"] == msgID
			}
		}
		if !got {
			t.Fatalf("%s never got alice's message", u.UserID)
		}
	}
	ctx := context.Background()
	cur := h.current(a)
	for _, s := range []*homeserver{b, c} {
		if got := h.current(s); got != cur {
			t.Fatalf("%s's current state %+v, a.test's %+v", s.name, got, cur)
		}
	}
	for id, dst := range map[string]**roomversion.Event{cur.CreateID: &h.create, cur.CommitID: &h.commit2, msgID: &h.msg} {
		se, err := a.db.Event(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		*dst = se.Event
	}
	if h.commit2.Epoch() != 2 {
		t.Fatalf("current commit of epoch %d, want 2", h.commit2.Epoch())
	}
	return h
}

func (h *hostileRoom) current(s *homeserver) storage.RoomState {
	h.t.Helper()
	cur, err := s.db.CurrentState(context.Background(), h.roomID)
	if err != nil {
		h.t.Fatalf("current state on %s: %v", s.name, err)
	}
	return cur
}

func (h *hostileRoom) extremities(s *homeserver) []string {
	h.t.Helper()
	ext, err := s.db.ForwardExtremities(context.Background(), h.roomID)
	if err != nil {
		h.t.Fatalf("forward extremities on %s: %v", s.name, err)
	}
	slices.Sort(ext)
	return ext
}

// fakeMLS is the content of an MLS event: a PrivateMessage with the given
// header (group, epoch, content type, authenticated data) and random
// encrypted parts. Servers read only the header.
func fakeMLS(t testing.TB, typ string, group string, epoch uint64, fm *fedmap.Map) []byte {
	t.Helper()
	ct, ad := mls.ContentTypeApplication, []byte(nil)
	if typ != roomversion.EventTypeEncrypted {
		ct = mls.ContentTypeCommit
		var err error
		if ad, err = fm.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	sender, body := make([]byte, 28), make([]byte, 48)
	_, _ = rand.Read(sender)
	_, _ = rand.Read(body)
	wire, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(group), Epoch: epoch, ContentType: ct, AuthenticatedData: ad, EncryptedSenderData: sender, Ciphertext: body,
	}}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	content, err := roomversion.V1.MLSContent(typ, mls.X25519AES128GCMSHA256Ed25519, wire)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// event builds an event of the room as origin, signed with key (nil: the
// origin's own key).
func (h *hostileRoom) event(origin string, key ed25519.PrivateKey, typ string, content []byte, auth, prev []string, ts time.Time) *roomversion.Event {
	h.t.Helper()
	if key == nil {
		key = h.keys[origin]
	}
	b := &roomversion.Builder{Version: roomversion.V1, RoomID: h.roomID, Type: typ, Content: content,
		AuthEvents: auth, PrevEvents: prev, Origin: origin, Timestamp: ts}
	if typ == roomversion.V1.CommitType() {
		b.StateKey = new(string)
	}
	ev, err := b.Build(context.Background(), testKeyID, key)
	if err != nil {
		h.t.Fatalf("building a %s event as %s: %v", typ, origin, err)
	}
	return ev
}

// message builds an m.room.encrypted event by origin on commit (epoch:
// the commit's plus one), after the target's forward extremities.
func (h *hostileRoom) message(origin string, commit *roomversion.Event, prev []string) *roomversion.Event {
	h.t.Helper()
	return h.event(origin, nil, roomversion.EventTypeEncrypted,
		fakeMLS(h.t, roomversion.EventTypeEncrypted, h.roomID, commit.Epoch()+1, nil),
		[]string{h.create.EventID(), commit.EventID()}, prev, time.Now())
}

// commit builds a commit by origin on parent with a federation map.
func (h *hostileRoom) commit(origin string, parent *roomversion.Event, fm *fedmap.Map, prev []string, ts time.Time) *roomversion.Event {
	h.t.Helper()
	typ := roomversion.V1.CommitType()
	return h.event(origin, nil, typ, fakeMLS(h.t, typ, h.roomID, parent.Epoch()+1, fm),
		[]string{h.create.EventID(), parent.EventID()}, prev, ts)
}

// attempt is what a hostile request got.
type attempt struct {
	status int
	body   []byte
	// pdus is the per-PDU answer of a 200 /send (event ID -> error).
	pdus map[string]string
	// ids are the events the request carried, by the IDs they claim
	// (they must never reach the room, except as the case says).
	ids []string
	// sent is how many PDUs a /send carried.
	sent int
	// lostFork are those of ids that are messages on a fork: soft-failed
	// under (c), they are delivered marked de.bwi.mls.lost_fork.
	lostFork []string
}

// send sends a signed /send transaction from one server to another.
func (h *hostileRoom) send(from, to string, pdus ...json.RawMessage) attempt {
	h.t.Helper()
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	body := map[string]any{"origin": from, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
	at := h.do(from, to, http.MethodPut, fmt.Sprintf("/_matrix/federation/v1/send/hostile-%d", h.txn.Add(1)), body)
	at.sent = len(pdus)
	return at
}

// do sends a signed request with the federation client of from.
func (h *hostileRoom) do(from, to, method, path string, body any) attempt {
	h.t.Helper()
	status, resp, err := h.hs[from].fed.Client().Do(context.Background(), to, method, path, body)
	if err != nil {
		h.t.Fatalf("%s %s from %s to %s: %v", method, path, from, to, err)
	}
	return decodeAttempt(h.t, status, resp)
}

func decodeAttempt(t *testing.T, status int, resp []byte) attempt {
	t.Helper()
	at := attempt{status: status, body: resp}
	if status == http.StatusOK {
		var out struct {
			PDUs map[string]struct {
				Error *string `json:"error"`
			} `json:"pdus"`
		}
		if err := json.Unmarshal(resp, &out); err == nil && out.PDUs != nil {
			at.pdus = map[string]string{}
			for id, r := range out.PDUs {
				if r.Error != nil {
					at.pdus[id] = *r.Error
				} else {
					at.pdus[id] = ""
				}
			}
		}
	}
	return at
}

// raw sends req (built for matrix://<name>/...) to the named server as is.
func (h *hostileRoom) raw(to string, req *http.Request) attempt {
	h.t.Helper()
	s := h.hs[to]
	u, err := url.Parse(s.url + req.URL.RequestURI())
	if err != nil {
		h.t.Fatal(err)
	}
	req.URL, req.Host = u, to
	resp, err := s.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return decodeAttempt(h.t, resp.StatusCode, b)
}

// transaction is a /send body from origin.
func transaction(origin string, pdus ...json.RawMessage) map[string]any {
	return map[string]any{"origin": origin, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
}

// editJSON sets (or with val nil, deletes) top-level fields of event JSON.
func editJSON(t testing.TB, js []byte, fields map[string]json.RawMessage) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// forge edits top-level fields of event JSON and hashes and signs the
// result again as origin with key, as a hostile server would: what
// roomversion.Builder refuses to build.
func forge(t *testing.T, js []byte, fields map[string]json.RawMessage, origin string, key ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(editJSON(t, js, fields), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	delete(m, "hashes")
	canonical := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = gomatrixserverlib.CanonicalJSON(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	sum := sha256.Sum256(canonical(m))
	m["hashes"] = map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])}
	redacted, err := roomversion.RedactJSON(canonical(m))
	if err != nil {
		t.Fatal(err)
	}
	if redacted, err = gomatrixserverlib.CanonicalJSON(redacted); err != nil {
		t.Fatal(err)
	}
	sig := ed25519.Sign(key, redacted)
	m["signatures"] = map[string]any{origin: map[string]string{testKeyID: base64.RawStdEncoding.EncodeToString(sig)}}
	return canonical(m)
}

// outcome is what a case must get.
type outcome struct {
	// status and errcode of the HTTP answer (errcode "" for 200).
	status  int
	errcode []string
	// errorHas is part of the Matrix error's message.
	errorHas string
	// pduError: every PDU of a 200 /send is refused with an error
	// containing this ("" when they must be accepted).
	pduError string
	// softFail: every accepted PDU is soft-failed under this case, as GET
	// /event on the target shows.
	softFail string
	// softFailReason is part of the soft-fail reason GET /event shows.
	softFailReason string
	// lostFork: the attempt's lostFork events (soft-fail (c) messages)
	// are delivered to the target's clients marked de.bwi.mls.lost_fork;
	// no other event is delivered in any case.
	lostFork bool
}

// roomSnapshot is what must not change: every server's current state, the
// target's forward extremities, what each user's /messages shows.
type roomSnapshot struct {
	current  map[string]storage.RoomState
	ext      []string
	messages map[string][]string
}

func (h *hostileRoom) snapshot(target string) roomSnapshot {
	h.t.Helper()
	s := roomSnapshot{current: map[string]storage.RoomState{}, messages: map[string][]string{}}
	for _, name := range h.fedServers {
		s.current[name] = h.current(h.hs[name])
		u := h.users[name]
		u.Sync(0) // what came before the case is not the case's
		ids := []string{}
		for _, ev := range h.messages(u) {
			ids = append(ids, ev["event_id"].(string))
		}
		s.messages[name] = ids
	}
	s.ext = h.extremities(h.hs[target])
	return s
}

// messages is the room's /messages for u, newest first.
func (h *hostileRoom) messages(u *testclient.Client) []map[string]any {
	h.t.Helper()
	r := u.Do(http.MethodGet, testclient.RoomPath(h.roomID, "/messages?dir=b&limit=200"), nil).Must(h.t, 200, u.UserID+"'s /messages")
	chunk, _ := r.Body["chunk"].([]any)
	var out []map[string]any
	for _, e := range chunk {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func lostForkMark(ev map[string]any) bool {
	unsigned, _ := ev["unsigned"].(map[string]any)
	return unsigned["de.bwi.mls.lost_fork"] == true
}

// check verifies the outcome of a case against the snapshot taken before
// it.
func (h *hostileRoom) check(t *testing.T, target string, before roomSnapshot, at attempt, want outcome) {
	t.Helper()
	ctx := context.Background()
	if at.status != want.status {
		t.Fatalf("status %d, want %d: %s", at.status, want.status, at.body)
	}
	if want.status != http.StatusOK {
		var me struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(at.body, &me)
		if !slices.Contains(want.errcode, me.Errcode) || !strings.Contains(me.Error, want.errorHas) {
			t.Errorf("%s, want errcode in %v and an error with %q", at.body, want.errcode, want.errorHas)
		}
	}
	ts := h.hs[target]
	lost := at.lostFork
	if want.lostFork != (len(lost) > 0) {
		t.Fatalf("lost-fork messages %v, want some: %v", lost, want.lostFork)
	}
	if want.status == http.StatusOK && at.sent > 0 && len(at.pdus) != at.sent {
		t.Fatalf("%d PDUs sent, %d answered: %s", at.sent, len(at.pdus), at.body)
	}
	for id, e := range at.pdus {
		switch {
		case want.pduError != "" && !strings.Contains(e, want.pduError):
			t.Errorf("PDU %s: error %q, want one with %q", id, e, want.pduError)
		case want.pduError == "" && e != "":
			t.Errorf("PDU %s refused (%s), want accepted", id, e)
		}
	}
	ids := slices.Clone(at.ids)
	for id := range at.pdus {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	// Each event: refused or rejected (GET /event 404, never stored as
	// accepted) or soft-failed under the case's letter.
	u := h.users[target]
	for _, id := range ids {
		r := u.Do(http.MethodGet, testclient.RoomPath(h.roomID, "/event/"+url.PathEscape(id)), nil)
		if want.softFail == "" || want.status != http.StatusOK {
			if r.Status != http.StatusNotFound {
				t.Errorf("GET /event %s on %s: %d %s, want 404", id, target, r.Status, r.Raw)
			}
			if se, err := ts.db.Event(ctx, id); err == nil && !se.Rejected {
				t.Errorf("%s is stored on %s as %+v, want refused or rejected", id, target, se)
			} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Fatal(err)
			}
			continue
		}
		unsigned, _ := r.Body["unsigned"].(map[string]any)
		sf, _ := unsigned["de.bwi.mls.soft_failed"].(map[string]any)
		reason, _ := sf["reason"].(string)
		if r.Status != http.StatusOK || sf["case"] != want.softFail || !strings.Contains(reason, want.softFailReason) {
			t.Errorf("GET /event %s on %s: %d %s, want soft-failed under (%s) with %q", id, target, r.Status, r.Raw, want.softFail, want.softFailReason)
		}
	}
	// Nothing of the room changed.
	for _, name := range h.fedServers {
		if got := h.current(h.hs[name]); got != before.current[name] {
			t.Errorf("%s's current state %+v, was %+v", name, got, before.current[name])
		}
	}
	if got := h.extremities(ts); !slices.Equal(got, before.ext) {
		t.Errorf("%s's forward extremities %v, were %v", target, got, before.ext)
	}
	// Nothing delivered but the lost-fork messages, marked.
	for _, name := range h.fedServers {
		u := h.users[name]
		synced := map[string]bool{}
		for _, ev := range testclient.Timeline(u.Sync(0), h.roomID) {
			id, _ := ev["event_id"].(string)
			synced[id] = true
			if name != target || !slices.Contains(lost, id) || !lostForkMark(ev) {
				t.Errorf("%s's /sync delivered %s: %v", u.UserID, id, ev)
			}
		}
		for _, id := range lost {
			if name == target && !synced[id] {
				t.Errorf("%s's /sync lacks the lost-fork message %s", u.UserID, id)
			}
		}
		got := map[string]bool{}
		for _, ev := range h.messages(u) {
			id, _ := ev["event_id"].(string)
			got[id] = true
			if slices.Contains(before.messages[name], id) {
				continue
			}
			if name != target || !slices.Contains(lost, id) || !lostForkMark(ev) {
				t.Errorf("%s's /messages shows %s: %v", u.UserID, id, ev)
			}
		}
		for _, id := range before.messages[name] {
			if !got[id] {
				t.Errorf("%s's /messages lost %s", u.UserID, id)
			}
		}
		if name == target {
			for _, id := range lost {
				if !got[id] {
					t.Errorf("%s's /messages lacks the lost-fork message %s", u.UserID, id)
				}
			}
		}
	}
}

// hostileCase is one hostile input: setup (optional) prepares the room
// before the snapshot; run sends the input to target.
type hostileCase struct {
	name   string
	target string
	setup  func(t *testing.T, h *hostileRoom)
	run    func(t *testing.T, h *hostileRoom) attempt
	want   outcome
}

// TestHostileFederationInput sends hostile input over real HTTPS to
// servers holding a room with real MLS clients, and checks each is refused
// or soft-failed as SPEC-NOTES §4, §8 and §12 say, never becomes part of
// the room's current state and never reaches the joined users' /sync or
// /messages (except the lost-fork marking of soft-fail (c) messages). A
// transaction ID sent again is answered as the first time and applied once:
// TestSendTransactionRules.
func TestHostileFederationInput(t *testing.T) {
	h := newHostileRoom(t)
	const sendPath = "/_matrix/federation/v1/send/"
	bad := []string{"M_BAD_JSON", "M_NOT_JSON"}
	unauthorized := outcome{status: http.StatusUnauthorized, errcode: []string{"M_UNAUTHORIZED"}}
	forbidden := outcome{status: http.StatusForbidden, errcode: []string{"M_FORBIDDEN"}}
	// good is a valid message from b.test on the current commit: what the
	// request-level attacks carry.
	good := func(h *hostileRoom) *roomversion.Event {
		return h.message("b.test", h.commit2, h.extremities(h.hs["a.test"]))
	}
	signedSend := func(t *testing.T, origin, dest string, key ed25519.PrivateKey, body any) *http.Request {
		return signed(t, http.MethodPut, origin, dest, sendPath+fmt.Sprintf("raw-%d", h.txn.Add(1)), body, testKeyID, key)
	}
	refusedWith := func(o outcome, msg string) outcome { o.errorHas = msg; return o }
	var fork struct{ w, w2 *roomversion.Event }

	cases := []hostileCase{
		{name: "x-matrix/missing authorization", target: "a.test", want: refusedWith(unauthorized, "missing X-Matrix"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				req := signedSend(t, "b.test", "a.test", h.keys["b.test"], transaction("b.test", ev.JSON()))
				req.Header.Del("Authorization")
				at := h.raw("a.test", req)
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "x-matrix/signature by another key", target: "a.test", want: refusedWith(unauthorized, "signature not valid"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				_, forged, _ := ed25519.GenerateKey(rand.Reader)
				at := h.raw("a.test", signedSend(t, "b.test", "a.test", forged, transaction("b.test", ev.JSON())))
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "x-matrix/signature over another body", target: "a.test", want: refusedWith(unauthorized, "signature not valid"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				req := signedSend(t, "b.test", "a.test", h.keys["b.test"], transaction("b.test"))
				js, err := json.Marshal(transaction("b.test", ev.JSON()))
				if err != nil {
					t.Fatal(err)
				}
				req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(js)), int64(len(js))
				at := h.raw("a.test", req)
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "x-matrix/wrong destination", target: "a.test", want: refusedWith(unauthorized, "destination"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				// Signed by b.test's real key for c.test, replayed to a.test.
				at := h.raw("a.test", signedSend(t, "b.test", "c.test", h.keys["b.test"], transaction("b.test", ev.JSON())))
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "body/malformed JSON", target: "a.test", want: outcome{status: http.StatusBadRequest, errcode: bad},
			run: func(t *testing.T, h *hostileRoom) attempt {
				req := signedSend(t, "b.test", "a.test", h.keys["b.test"], transaction("b.test"))
				js := []byte(`{"origin": "b.test", "pdus": [{"room_id": `)
				req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(js)), int64(len(js))
				return h.raw("a.test", req)
			}},
		{name: "body/pdus not a list", target: "a.test", want: outcome{status: http.StatusBadRequest, errcode: []string{"M_BAD_JSON"}, errorHas: "pdus"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				at := h.do("b.test", "a.test", http.MethodPut, sendPath+fmt.Sprintf("hostile-%d", h.txn.Add(1)),
					map[string]any{"origin": "b.test", "origin_server_ts": 1, "pdus": map[string]any{"x": json.RawMessage(ev.JSON())}})
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "body/51 PDUs", target: "a.test", want: outcome{status: http.StatusBadRequest, errcode: []string{"M_BAD_JSON"}, errorHas: "at most 50"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				pdus := make([]json.RawMessage, 51)
				var ids []string
				for i := range pdus {
					ev := good(h)
					pdus[i], ids = ev.JSON(), append(ids, ev.EventID())
				}
				at := h.send("b.test", "a.test", pdus...)
				at.ids = ids
				return at
			}},
		{name: "pdu/signed by a key that is not the origin's", target: "a.test", want: outcome{status: 200, pduError: "signature"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// c.test's real key signs an event claiming origin b.test.
				ev := h.event("b.test", h.keys["c.test"], roomversion.EventTypeEncrypted,
					fakeMLS(t, roomversion.EventTypeEncrypted, h.roomID, 3, nil),
					[]string{h.create.EventID(), h.commit2.EventID()}, h.extremities(h.hs["a.test"]), time.Now())
				at := h.send("b.test", "a.test", ev.JSON())
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "pdu/content edited after signing", target: "a.test", want: outcome{status: 200, pduError: "hash"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				edited := editJSON(t, ev.JSON(), map[string]json.RawMessage{
					"content": fakeMLS(t, roomversion.EventTypeEncrypted, h.roomID, 3, nil)})
				at := h.send("b.test", "a.test", edited)
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "pdu/sender present", target: "a.test", want: outcome{status: 200, pduError: "sender"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				at := h.send("b.test", "a.test", editJSON(t, ev.JSON(), map[string]json.RawMessage{"sender": json.RawMessage(`"@bob:b.test"`)}))
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "pdu/depth present", target: "a.test", want: outcome{status: 200, pduError: "depth"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := good(h)
				at := h.send("b.test", "a.test", editJSON(t, ev.JSON(), map[string]json.RawMessage{"depth": json.RawMessage(`7`)}))
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "auth/origin not in servers (rule 6)", target: "a.test", want: outcome{status: 200, pduError: "auth rule 6"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// d.test, with its own valid signature, is not in servers of
				// the commit its message names.
				ev := h.message("d.test", h.commit2, h.extremities(h.hs["a.test"]))
				at := h.send("d.test", "a.test", ev.JSON())
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "auth/commit from a server outside powers (rule 9.7)", target: "a.test", want: outcome{status: 200, pduError: "auth rule 9.7"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				fm := testclient.FedMap([]string{"a.test", "b.test"}, h.fedServers, h.fedServers)
				ev := h.commit("c.test", h.commit2, fm, h.extremities(h.hs["a.test"]), time.Now())
				at := h.send("c.test", "a.test", ev.JSON())
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "auth/wrong epoch (rule 11)", target: "b.test", want: outcome{status: 200, pduError: "auth rule 11"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				ev := h.event("a.test", nil, roomversion.EventTypeEncrypted,
					fakeMLS(t, roomversion.EventTypeEncrypted, h.roomID, 9, nil),
					[]string{h.create.EventID(), h.commit2.EventID()}, h.extremities(h.hs["b.test"]), time.Now())
				at := h.send("a.test", "b.test", ev.JSON())
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "auth/wrong MLS group ID (rule 7)", target: "b.test", want: outcome{status: 200, pduError: "auth rule 7"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// The Builder refuses such an event: a.test's message, its
				// content swapped for one of another group and signed again.
				ev := h.message("a.test", h.commit2, h.extremities(h.hs["b.test"]))
				forged := forge(t, ev.JSON(), map[string]json.RawMessage{
					"content": fakeMLS(t, roomversion.EventTypeEncrypted, "!elsewhere:a.test", 3, nil)}, "a.test", h.keys["a.test"])
				return h.send("a.test", "b.test", forged)
			}},
		{name: "room/unsolicited room", target: "a.test", want: outcome{status: 200, pduError: "no local user is invited"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// frank on b.test makes a room of b.test alone; b.test pushes
				// it to a.test, where nobody is invited.
				b := h.hs["b.test"]
				frank := testclient.New(t, b.url, b.client, "frank")
				room := frank.CreateRoom(testclient.FedMap([]string{"b.test"}, []string{"b.test"}, nil))
				cur, err := b.db.CurrentState(context.Background(), room)
				if err != nil {
					t.Fatal(err)
				}
				var pdus []json.RawMessage
				for _, id := range []string{cur.CreateID, cur.CommitID} {
					se, err := b.db.Event(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					pdus = append(pdus, se.Event.JSON())
				}
				at := h.send("b.test", "a.test", pdus...)
				at.ids = []string{cur.CreateID, cur.CommitID}
				if _, err := h.hs["a.test"].db.CurrentState(context.Background(), room); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("a.test took in the unsolicited room %s: %v", room, err)
				}
				return at
			}},
		{name: "fetch/event by a server not in servers", target: "a.test", want: refusedWith(forbidden, "d.test is not in servers"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				return h.do("d.test", "a.test", http.MethodGet, "/_matrix/federation/v1/event/"+url.PathEscape(h.msg.EventID()), nil)
			}},
		{name: "fetch/state by a server not in servers", target: "a.test", want: refusedWith(forbidden, "d.test is not in servers"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				return h.do("d.test", "a.test", http.MethodGet, "/_matrix/federation/v1/state/"+url.PathEscape(h.roomID)+
					"?event_id="+url.QueryEscape(h.msg.EventID()), nil)
			}},
		{name: "invite/origin not the inviter's server", target: "b.test", want: refusedWith(forbidden, "not a user of the sending server c.test"),
			run: func(t *testing.T, h *hostileRoom) attempt {
				// c.test, in servers, invites a user of b.test in alice's name.
				b := h.hs["b.test"]
				eve := testclient.New(t, b.url, b.client, "eve")
				eve.Sync(0)
				at := h.do("c.test", "b.test", http.MethodPut, "/_matrix/federation/unstable/de.bwi.mls/invite/"+url.PathEscape(h.roomID)+
					fmt.Sprintf("/hostile-%d", h.txn.Add(1)), map[string]any{"room_version": string(roomversion.V1),
					"inviter": "@alice:a.test", "invitee": eve.UserID, "create_event": json.RawMessage(h.create.JSON()), "commit_event": json.RawMessage(h.commit2.JSON())})
				rooms, _ := eve.Sync(0)["rooms"].(map[string]any)
				if invites, _ := rooms["invite"].(map[string]any); invites[h.roomID] != nil {
					t.Errorf("eve was invited: %v", invites[h.roomID])
				}
				return at
			}},
		{name: "soft-fail (b)/ciphertext replayed under a new origin", target: "a.test", want: outcome{status: 200, softFail: "b", softFailReason: "byte-identical"},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// b.test sends alice's ciphertext as its own message.
				ev := h.event("b.test", nil, roomversion.EventTypeEncrypted, h.msg.Content(),
					[]string{h.create.EventID(), h.commit2.EventID()}, h.extremities(h.hs["a.test"]), time.Now())
				at := h.send("b.test", "a.test", ev.JSON())
				at.ids = []string{ev.EventID()}
				return at
			}},
		{name: "soft-fail (c)/backdated fork of a server that gave up powers[0]", target: "c.test", want: outcome{status: 200, softFail: "c", softFailReason: "has itself built on", lostFork: true},
			setup: func(t *testing.T, h *hostileRoom) {
				// While a.test was away, b.test (powers[1]) committed W on
				// the current commit P; a.test came back, built on W and
				// handed powers[0] to b.test with W2. c.test holds all of it.
				fm := testclient.FedMap([]string{"a.test", "b.test"}, h.fedServers, h.fedServers)
				c := h.hs["c.test"]
				fork.w = h.commit("b.test", h.commit2, fm, h.extremities(c), time.Now())
				at := h.send("b.test", "c.test", fork.w.JSON())
				if at.status != 200 || at.pdus[fork.w.EventID()] != "" {
					t.Fatalf("W to c.test: %d %s", at.status, at.body)
				}
				handover := testclient.FedMap([]string{"b.test", "a.test"}, h.fedServers, h.fedServers)
				fork.w2 = h.commit("a.test", fork.w, handover, []string{fork.w.EventID()}, time.Now())
				at = h.send("a.test", "c.test", fork.w2.JSON())
				if at.status != 200 || at.pdus[fork.w2.EventID()] != "" {
					t.Fatalf("W2 to c.test: %d %s", at.status, at.body)
				}
				if cur := h.current(c); cur.CommitID != fork.w2.EventID() {
					t.Fatalf("c.test's current commit %s, want W2 %s", cur.CommitID, fork.w2.EventID())
				}
			},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// a.test forks from P, backdated before W, with itself
				// still at powers[0], and sends a message on its fork. By
				// rank a.test's fork would win; it has built on W.
				fm := testclient.FedMap([]string{"a.test", "b.test"}, h.fedServers, h.fedServers)
				f := h.commit("a.test", h.commit2, fm, []string{h.commit2.EventID()}, fork.w.OriginServerTS().Time().Add(-time.Second))
				m := h.message("a.test", f, []string{f.EventID()})
				at := h.send("a.test", "c.test", f.JSON(), m.JSON())
				at.ids, at.lostFork = []string{f.EventID(), m.EventID()}, []string{m.EventID()}
				return at
			}},
		{name: "soft-fail (a)/origin dropped from servers by the current commit", target: "c.test",
			want: outcome{status: 200, softFail: "a", softFailReason: "not in servers"},
			setup: func(t *testing.T, h *hostileRoom) {
				if fork.w2 == nil {
					t.Fatal("this case builds on the soft-fail (c) case's commits: run both")
				}
				// b.test, now at powers[0], drops a.test from servers.
				c := h.hs["c.test"]
				x := h.commit("b.test", fork.w2, testclient.FedMap([]string{"b.test"}, []string{"b.test", "c.test"}, nil), h.extremities(c), time.Now())
				if at := h.send("b.test", "c.test", x.JSON()); at.status != 200 || at.pdus[x.EventID()] != "" {
					t.Fatalf("commit dropping a.test to c.test: %d %s", at.status, at.body)
				}
				if cur := h.current(c); cur.CommitID != x.EventID() {
					t.Fatalf("c.test's current commit %s, want %s", cur.CommitID, x.EventID())
				}
			},
			run: func(t *testing.T, h *hostileRoom) attempt {
				// a.test goes on sending on W2, whose servers still list it.
				m := h.message("a.test", fork.w2, h.extremities(h.hs["c.test"]))
				at := h.send("a.test", "c.test", m.JSON())
				at.ids = []string{m.EventID()}
				return at
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := h.t
			h.t = t // the helpers fail the subtest
			defer func() { h.t = parent }()
			if tc.setup != nil {
				tc.setup(t, h)
			}
			before := h.snapshot(tc.target)
			at := tc.run(t, h)
			h.check(t, tc.target, before, at, tc.want)
		})
	}
}
