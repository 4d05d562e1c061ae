package conformance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomversion"
)

// FederationChecks are the server-server checks, with the suite acting
// as other homeservers.
func FederationChecks() []Check {
	fc := func(section, name, about string, run func(c *C)) Check {
		return Check{Section: section, Name: name, About: about, Run: func(c *C) { c.NeedFederation(); run(c) }}
	}
	out := []Check{
		fc("federation/keys", "server-key", "GET /_matrix/key/v2/server", func(c *C) { serverKey(c) }),
		fc("federation/events", "create-event-format", "the create event over GET /_matrix/federation/v1/event: no sender or depth, content hash, signature, event ID = reference hash, SPEC-NOTES §2", checkCreateEventFormat),
		fc("federation/rooms", "remote-invite-and-join", "PUT /_matrix/federation/unstable/de.bwi.mls/invite, POST /join, /send delivery to the joined user, SPEC-NOTES §7, §8, §12", checkRemoteInviteAndJoin),
		fc("federation/rooms", "events-sent-to-servers", "events of a local room go to the servers in servers over /send signed with X-Matrix, SPEC-NOTES §8", checkEventsSent),
		fc("federation/keys", "remote-key-claim", "POST /_matrix/federation/v1/user/keys/claim, SPEC-NOTES §9, §12", checkRemoteKeyClaim),
		fc("federation/keys", "remote-key-query", "POST /_matrix/federation/v1/user/keys/query, SPEC-NOTES §9, §12", checkRemoteKeyQuery),
	}
	out = append(out, hostileChecks()...)
	out = append(out, AuthRuleChecks()...)
	out = append(out, StateResChecks()...)
	out = append(out, StateResRandomChecks()...)
	return out
}

// serverKey fetches and checks the server under test's signing key.
func serverKey(c *C) map[string]ed25519.PublicKey {
	req, err := http.NewRequest("GET", c.Env.FederationURL+"/_matrix/key/v2/server", nil)
	if err != nil {
		c.Fatal(err)
	}
	status, body, err := c.Env.FedDoRaw(context.Background(), req)
	if err != nil {
		c.Fatalf("GET /_matrix/key/v2/server: %v", err)
	}
	if status != 200 {
		c.Fatalf("GET /_matrix/key/v2/server: %d %s", status, clip(body))
	}
	var k struct {
		ServerName   string `json:"server_name"`
		ValidUntilTS int64  `json:"valid_until_ts"`
		VerifyKeys   map[string]struct {
			Key string `json:"key"`
		} `json:"verify_keys"`
	}
	if err := json.Unmarshal(body, &k); err != nil {
		c.Fatalf("GET /_matrix/key/v2/server: %v: %s", err, clip(body))
	}
	if k.ServerName != c.Env.ServerName {
		c.Errorf("GET /_matrix/key/v2/server: server_name %q, want %q", k.ServerName, c.Env.ServerName)
	}
	if time.UnixMilli(k.ValidUntilTS).Before(time.Now()) {
		c.Errorf("GET /_matrix/key/v2/server: valid_until_ts %d is past", k.ValidUntilTS)
	}
	keys := map[string]ed25519.PublicKey{}
	for id, vk := range k.VerifyKeys {
		pub, err := base64.RawStdEncoding.DecodeString(vk.Key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			c.Fatalf("GET /_matrix/key/v2/server: key %s is not an unpadded base64 ed25519 key", id)
		}
		if err := gomatrixserverlib.VerifyJSON(c.Env.ServerName, gomatrixserverlib.KeyID(id), pub, body); err != nil {
			c.Errorf("GET /_matrix/key/v2/server: key %s does not sign the answer: %v", id, err)
		}
		keys[id] = pub
	}
	if len(keys) == 0 {
		c.Fatalf("GET /_matrix/key/v2/server: no verify_keys: %s", clip(body))
	}
	return keys
}

// fetchEvent fetches an event over GET /_matrix/federation/v1/event as
// from.
func fetchEvent(c *C, from, eventID string) (int, []byte, json.RawMessage) {
	status, body, err := c.Env.FedDo(context.Background(), from, "GET", "/_matrix/federation/v1/event/"+url.PathEscape(eventID), nil)
	if err != nil {
		c.Fatalf("GET /_matrix/federation/v1/event: %v", err)
	}
	var tx struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if status == 200 {
		if err := json.Unmarshal(body, &tx); err != nil || len(tx.PDUs) != 1 {
			c.Fatalf("GET /_matrix/federation/v1/event/%s: want a transaction of one PDU: %s", eventID, clip(body))
		}
		return status, body, tx.PDUs[0]
	}
	return status, body, nil
}

// localRoomWithSuite makes a room on the server under test whose servers
// hold SuiteNameA, and returns it with its create event's ID.
func localRoomWithSuite(c *C) (*testclient.Client, string, string) {
	u := c.User("local")
	roomID := u.CreateRoom(testclient.FedMap([]string{c.Env.ServerName}, []string{c.Env.ServerName, SuiteNameA}, nil))
	r := u.Do("GET", testclient.RoomPath(roomID, "/state"), nil)
	expect(c, r, "GET /rooms/{roomId}/state", 200, "", "")
	var evs []map[string]any
	_ = json.Unmarshal(r.Raw, &evs)
	for _, ev := range evs {
		if ev["type"] == roomversion.EventTypeCreate {
			id, _ := ev["event_id"].(string)
			return u, roomID, id
		}
	}
	c.Fatalf("GET /state: no create event: %s", clip(r.Raw))
	return nil, "", ""
}

func checkCreateEventFormat(c *C) {
	keys := serverKey(c)
	_, _, createID := localRoomWithSuite(c)
	status, body, raw := fetchEvent(c, SuiteNameA, createID)
	if status != 200 {
		c.Fatalf("GET /_matrix/federation/v1/event of the create event by a server in servers: %d %s", status, clip(body))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		c.Fatalf("create event: not a JSON object: %s", clip(raw))
	}
	for _, f := range []string{"sender", "depth"} {
		if _, ok := m[f]; ok {
			c.Errorf("create event: has %s (MLS events have none): %s", f, clip(raw))
		}
	}
	if id := roomversion.ReferenceIDOf(raw); id != createID {
		c.Errorf("create event: its ID %s is not its reference hash %s", createID, id)
	}
	// roomversion.Parse checks the format and the content hash;
	// VerifySignature the origin's signature with the key just fetched.
	ev, err := roomversion.Parse(context.Background(), roomversion.V1, raw)
	if err != nil {
		c.Fatalf("create event: not a valid m.mls.1 event: %v: %s", err, clip(raw))
	}
	if ev.Origin() != c.Env.ServerName {
		c.Errorf("create event: origin %q, want %q", ev.Origin(), c.Env.ServerName)
	}
	fetcher := roomversion.KeyFetcherFunc(func(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
		if k, ok := keys[keyID]; ok && server == c.Env.ServerName {
			return k, nil
		}
		return nil, fmt.Errorf("no key %s of %s", keyID, server)
	})
	if err := roomversion.VerifySignature(context.Background(), ev, fetcher); err != nil {
		c.Errorf("create event: signature: %v", err)
	}
}

func checkRemoteInviteAndJoin(c *C) {
	room, c0, u := joinedSuiteRoom(c)
	m := room.message(SuiteNameA, c0)
	// After the join the room is in rooms.join with the create event and
	// the current commit as its state (SPEC-NOTES §11).
	var joined bool
	for i := 0; i < 10 && !joined; i++ {
		body := u.Sync(1000)
		rooms, _ := body["rooms"].(map[string]any)
		join, _ := rooms["join"].(map[string]any)
		jr, ok := join[room.id].(map[string]any)
		if !ok {
			continue
		}
		joined = true
		st, _ := jr["state"].(map[string]any)
		evs, _ := st["events"].([]any)
		ids := map[any]bool{}
		for _, e := range evs {
			ev, _ := e.(map[string]any)
			ids[ev["event_id"]] = true
		}
		if !ids[room.create.EventID()] || !ids[c0.EventID()] {
			c.Errorf("/sync rooms.join[%s].state: want the create event %s and the current commit %s: %v", room.id, room.create.EventID(), c0.EventID(), st)
		}
	}
	if !joined {
		c.Fatalf("/sync: the joined room %s never came under rooms.join", room.id)
	}
	status, body, res := sendPDUs(c, SuiteNameA, m.JSON())
	if status != 200 || res[m.EventID()] != "" {
		c.Fatalf("PUT /send of a message of the joined room: %d %s", status, clip(body))
	}
	for range 10 {
		for _, ev := range testclient.Timeline(u.Sync(1000), room.id) {
			checkClientFormat(c, "/sync", ev)
			if ev["event_id"] == m.EventID() {
				return
			}
		}
	}
	c.Fatalf("/sync: the message %s sent over federation never reached the joined user", m.EventID())
}

func checkEventsSent(c *C) {
	keys := serverKey(c)
	u, roomID, _ := localRoomWithSuite(c)
	id := u.SendMessage(roomID, "to the suite").Str("event_id")
	if id == "" {
		c.Fatal("PUT /send/m.room.encrypted: no event_id")
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, txn := range c.Env.Suite.Received() {
			for _, pdu := range txn.PDUs {
				if roomversion.ReferenceIDOf(pdu) == id {
					checkXMatrix(c, txn, keys)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Fatalf("the message %s of a room whose servers hold %s never came to it over /send", id, SuiteNameA)
}

// checkXMatrix verifies the X-Matrix signature of a transaction the
// server under test sent, with its published keys (gomatrixserverlib's
// verification, as receiving servers do).
func checkXMatrix(c *C, txn ReceivedTxn, keys map[string]ed25519.PublicKey) {
	req := httptest.NewRequest(txn.Method, txn.RequestURI, bytes.NewReader(txn.Body))
	req.Host = txn.Host
	for _, a := range txn.Authorization {
		req.Header.Add("Authorization", a)
	}
	req.Header.Set("Content-Type", "application/json")
	local := func(n spec.ServerName) bool { return n == SuiteNameA || n == SuiteNameB || n == SuiteNameD }
	fr, res := fclient.VerifyHTTPRequest(req, time.Now(), SuiteNameA, local, keyVerifier{server: c.Env.ServerName, keys: keys})
	if fr == nil {
		c.Errorf("PUT /send from the server to %s: X-Matrix does not verify with its published keys (%d %v); Authorization %q", txn.Host, res.Code, res.JSON, txn.Authorization)
		return
	}
	if string(fr.Origin()) != c.Env.ServerName {
		c.Errorf("PUT /send from the server: X-Matrix origin %q, want %q", fr.Origin(), c.Env.ServerName)
	}
}

// keyVerifier verifies JSON signatures of one server with its keys.
type keyVerifier struct {
	server string
	keys   map[string]ed25519.PublicKey
}

func (v keyVerifier) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	out := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		out[i].Error = fmt.Errorf("no valid signature of %s", r.ServerName)
		if string(r.ServerName) != v.server {
			continue
		}
		for id, k := range v.keys {
			if gomatrixserverlib.VerifyJSON(v.server, gomatrixserverlib.KeyID(id), k, r.Message) == nil {
				out[i].Error = nil
				break
			}
		}
	}
	return out, nil
}

func checkRemoteKeyClaim(c *C) {
	u := c.User("claimed")
	u.UploadKeys(2, false)
	claim := func() string {
		status, body, err := c.Env.FedDo(context.Background(), SuiteNameA, "POST", "/_matrix/federation/v1/user/keys/claim",
			map[string]any{"one_time_keys": map[string]any{u.UserID: map[string]string{u.DeviceID: u.Alg}}})
		if err != nil {
			c.Fatalf("POST user/keys/claim: %v", err)
		}
		if status != 200 {
			c.Fatalf("POST user/keys/claim: %d %s", status, clip(body))
		}
		var out struct {
			OneTimeKeys map[string]map[string]map[string]string `json:"one_time_keys"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			c.Fatalf("POST user/keys/claim: %v: %s", err, clip(body))
		}
		got := out.OneTimeKeys[u.UserID][u.DeviceID]
		if len(got) != 1 {
			c.Fatalf("POST user/keys/claim: want one key package of the device: %s", clip(body))
		}
		for id := range got {
			if _, ok := u.KeyPackages[id]; !ok {
				c.Fatalf("POST user/keys/claim: key %s is not one the device uploaded", id)
			}
			return id
		}
		return ""
	}
	first, second := claim(), claim()
	if first == second {
		c.Errorf("POST user/keys/claim: the same one-time key package %s handed out twice", first)
	}
}

func checkRemoteKeyQuery(c *C) {
	u := c.User("queried")
	u.UploadKeys(1, false)
	status, body, err := c.Env.FedDo(context.Background(), SuiteNameA, "POST", "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{u.UserID: []string{}}})
	if err != nil {
		c.Fatalf("POST user/keys/query: %v", err)
	}
	if status != 200 {
		c.Fatalf("POST user/keys/query: %d %s", status, clip(body))
	}
	var out struct {
		DeviceKeys map[string]map[string]struct {
			UserID   string            `json:"user_id"`
			DeviceID string            `json:"device_id"`
			Keys     map[string]string `json:"keys"`
		} `json:"device_keys"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		c.Fatalf("POST user/keys/query: %v: %s", err, clip(body))
	}
	dk, ok := out.DeviceKeys[u.UserID][u.DeviceID]
	if !ok || dk.UserID != u.UserID || dk.DeviceID != u.DeviceID {
		c.Fatalf("POST user/keys/query: no device keys of %s %s: %s", u.UserID, u.DeviceID, clip(body))
	}
	cred, err := u.Credential.MarshalMLS()
	if err != nil {
		c.Fatal(err)
	}
	if got := dk.Keys[u.Alg+":"+u.DeviceID]; got != base64.RawStdEncoding.EncodeToString(cred) {
		c.Errorf("POST user/keys/query: the device's %s key is %q, want the uploaded credential (SPEC-NOTES §9)", u.Alg+":"+u.DeviceID, got)
	}
}

// hostileChecks are requests a server must refuse.
func hostileChecks() []Check {
	type hostile struct {
		name, about string
		run         func(c *C)
	}
	sendPath := func(c *C) string {
		return "/_matrix/federation/v1/send/" + c.Env.Prefix + fmt.Sprint(c.Env.seq.Add(1))
	}
	emptyTxn := func(origin string) map[string]any {
		return map[string]any{"origin": origin, "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": []any{}}
	}
	refused := func(c *C, what string, status int, body []byte, err error, want int, errcodes ...string) {
		if err != nil {
			c.Fatalf("%s: %v", what, err)
		}
		var e struct {
			Errcode string `json:"errcode"`
		}
		_ = json.Unmarshal(body, &e)
		ok := status == want
		if ok && len(errcodes) > 0 {
			ok = false
			for _, ec := range errcodes {
				ok = ok || e.Errcode == ec
			}
		}
		if !ok {
			c.Fatalf("%s: got %d %s, want %d %v: %s", what, status, e.Errcode, want, errcodes, clip(body))
		}
	}
	pduRefused := func(c *C, what string, ev json.RawMessage, has string) {
		status, body, res := sendPDUs(c, SuiteNameA, ev)
		id := roomversion.ReferenceIDOf(ev)
		if status != 200 {
			c.Fatalf("%s: PUT /send: %d %s", what, status, clip(body))
		}
		e, ok := res[id]
		if !ok || e == "" {
			c.Fatalf("%s: PUT /send accepted the PDU (want an error for %s): %s", what, id, clip(body))
		}
		if has != "" && !strings.Contains(e, has) {
			c.Errorf("%s: the PDU's error %q does not say %q", what, e, has)
		}
	}
	editJSON := func(c *C, raw []byte, field string, value any) json.RawMessage {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			c.Fatal(err)
		}
		m[field] = value
		b, err := json.Marshal(m)
		if err != nil {
			c.Fatal(err)
		}
		return b
	}
	list := []hostile{
		{"x-matrix-missing", "PUT /send without X-Matrix: 401 M_UNAUTHORIZED", func(c *C) {
			req, err := http.NewRequest("PUT", sendPath(c), strings.NewReader(`{"origin":"`+SuiteNameA+`","pdus":[],"edus":[]}`))
			if err != nil {
				c.Fatal(err)
			}
			status, body, err := c.Env.FedDoRaw(context.Background(), req)
			refused(c, "PUT /send without Authorization", status, body, err, 401, "M_UNAUTHORIZED")
		}},
		{"x-matrix-forged", "PUT /send signed by a key that is not the origin's: 401 M_UNAUTHORIZED", func(c *C) {
			status, body, err := c.Env.FedDoSigned(context.Background(), SuiteNameA, c.Env.ServerName, c.Env.Suite.Key(SuiteNameB), "PUT", sendPath(c), emptyTxn(SuiteNameA))
			refused(c, "PUT /send signed by another server's key", status, body, err, 401, "M_UNAUTHORIZED")
		}},
		{"x-matrix-wrong-destination", "PUT /send signed for another destination: 401 M_UNAUTHORIZED", func(c *C) {
			status, body, err := c.Env.FedDoSigned(context.Background(), SuiteNameA, "elsewhere.example.org", c.Env.Suite.Key(SuiteNameA), "PUT", sendPath(c), emptyTxn(SuiteNameA))
			refused(c, "PUT /send signed for another destination", status, body, err, 401, "M_UNAUTHORIZED")
		}},
		{"send-body-not-a-transaction", "PUT /send whose pdus is not a list: 400", func(c *C) {
			status, body, err := c.Env.FedDo(context.Background(), SuiteNameA, "PUT", sendPath(c),
				map[string]any{"origin": SuiteNameA, "origin_server_ts": 1, "pdus": map[string]any{"x": 1}})
			refused(c, "PUT /send with pdus an object", status, body, err, 400, "M_BAD_JSON", "M_NOT_JSON")
		}},
		{"send-origin-mismatch", "PUT /send whose body's origin is not the request's: 400", func(c *C) {
			status, body, err := c.Env.FedDo(context.Background(), SuiteNameA, "PUT", sendPath(c), emptyTxn(SuiteNameB))
			refused(c, "PUT /send with another origin in the body", status, body, err, 400, "M_BAD_JSON")
		}},
		{"pdu-with-sender", "a PDU with sender is refused, SPEC-NOTES §2", func(c *C) {
			room, c0, _ := joinedSuiteRoom(c)
			m := room.message(SuiteNameA, c0)
			pduRefused(c, "a message with a sender", editJSON(c, m.JSON(), "sender", "@x:"+SuiteNameA), "")
		}},
		{"pdu-with-depth", "a PDU with depth is refused, SPEC-NOTES §2", func(c *C) {
			room, c0, _ := joinedSuiteRoom(c)
			m := room.message(SuiteNameA, c0)
			pduRefused(c, "a message with a depth", editJSON(c, m.JSON(), "depth", 7), "")
		}},
		{"pdu-content-edited", "a PDU whose content changed after signing is refused (content hash)", func(c *C) {
			room, c0, _ := joinedSuiteRoom(c)
			m := room.message(SuiteNameA, c0)
			var content map[string]any
			_ = json.Unmarshal(m.Content(), &content)
			content["ciphertext"] = strings.Repeat("A", 40)
			pduRefused(c, "a message edited after signing", editJSON(c, m.JSON(), "content", content), "")
		}},
		{"pdu-unsolicited-room", "events of a room no local user is in or invited to are refused, SPEC-NOTES §8", func(c *C) {
			room := newSuiteRoom(c)
			c0 := room.commit(SuiteNameA, nil, []string{SuiteNameA}, []string{SuiteNameA, c.Env.ServerName})
			pduRefused(c, "an unsolicited room's commit", c0.JSON(), "")
			r := c.User("nosuch").Do("GET", testclient.RoomPath(room.id, "/state"), nil)
			if r.Status == 200 {
				c.Errorf("GET /state of the unsolicited room answered 200: %s", clip(r.Raw))
			}
		}},
		{"pdu-origin-not-in-servers", "a message from a server not in servers is rejected (auth rule 6)", func(c *C) {
			room, c0, u := joinedSuiteRoom(c)
			m := room.message(SuiteNameB, c0)
			pduRefused(c, "a message of a server not in servers", m.JSON(), "")
			r := u.Do("GET", testclient.RoomPath(room.id, "/event/"+url.PathEscape(m.EventID())), nil)
			expect(c, r, "GET /event of a rejected event", 404, "M_NOT_FOUND", "")
		}},
		{"fetch-by-server-not-in-servers", "GET /_matrix/federation/v1/event by a server not in servers: 403, SPEC-NOTES §12", func(c *C) {
			_, _, createID := localRoomWithSuite(c)
			status, body, _ := fetchEvent(c, SuiteNameB, createID)
			refused(c, "GET /event by a server not in servers", status, body, nil, 403, "M_FORBIDDEN")
		}},
		{"invite-server-not-in-servers", "an invite whose commit does not list the server: 403, SPEC-NOTES §12", func(c *C) {
			u := c.User("invitee")
			room := newSuiteRoom(c)
			c0 := room.commit(SuiteNameA, nil, []string{SuiteNameA}, []string{SuiteNameA})
			status, body := invite(c, room.id, "@inviter:"+SuiteNameA, u.UserID, room.create.JSON(), c0.JSON())
			refused(c, "PUT invite with the server not in servers", status, body, nil, 403, "M_FORBIDDEN")
		}},
		{"invite-inviter-of-another-server", "an invite whose inviter is not of the sending server: 403, SPEC-NOTES §12", func(c *C) {
			u := c.User("invitee")
			room := newSuiteRoom(c)
			c0 := room.commit(SuiteNameA, nil, []string{SuiteNameA}, []string{SuiteNameA, SuiteNameB, c.Env.ServerName})
			path := "/_matrix/federation/unstable/de.bwi.mls/invite/" + url.PathEscape(room.id) + "/" + c.Env.Prefix + fmt.Sprint(c.Env.seq.Add(1))
			status, body, err := c.Env.FedDo(context.Background(), SuiteNameB, "PUT", path, map[string]any{
				"room_version": string(roomversion.V1), "inviter": "@inviter:" + SuiteNameA, "invitee": u.UserID,
				"create_event": room.create.JSON(), "commit_event": c0.JSON()})
			refused(c, "PUT invite from another server than the inviter's", status, body, err, 403, "M_FORBIDDEN")
		}},
	}
	var out []Check
	for _, h := range list {
		out = append(out, Check{Section: "federation/hostile", Name: h.name, About: h.about, Run: func(c *C) { c.NeedFederation(); h.run(c) }})
	}
	return out
}
