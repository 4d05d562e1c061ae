package conformance

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

const v3 = "/_matrix/client/v3"

// expect fails the check unless r has the status and (if not "") the
// errcode and an error message holding msg; what names the endpoint and
// the rule.
func expect(c *C, r testclient.Response, what string, status int, errcode, msg string) {
	if r.Status != status || (errcode != "" && r.Errcode() != errcode) {
		want := fmt.Sprint(status)
		if errcode != "" {
			want += " " + errcode
		}
		got := fmt.Sprint(r.Status)
		if r.Errcode() != "" {
			got += " " + r.Errcode()
		}
		c.Fatalf("%s: got %s, want %s: %s", what, got, want, clip(r.Raw))
	}
	if msg != "" && !strings.Contains(r.Str("error"), msg) {
		c.Fatalf("%s: error %q does not say %q", what, r.Str("error"), msg)
	}
}

// clip shortens a body for a failure message.
func clip(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}

// soloFedMap is a federation map with the server under test alone.
func soloFedMap(c *C) *fedmap.Map {
	return testclient.FedMap([]string{c.Env.ServerName}, []string{c.Env.ServerName}, nil)
}

// ClientChecks are the client-server checks.
func ClientChecks() []Check {
	var out []Check
	add := func(section, name, about string, run func(c *C)) {
		out = append(out, Check{Section: section, Name: name, About: about, Run: run})
	}

	add("client/capabilities", "mls-room-versions", "GET /capabilities, SPEC-NOTES §11", func(c *C) {
		u := c.User("caps")
		r := u.Do("GET", v3+"/capabilities", nil)
		expect(c, r, "GET /capabilities", 200, "", "")
		caps, _ := r.Body["capabilities"].(map[string]any)
		rv, _ := caps["m.room_versions"].(map[string]any)
		avail, _ := rv["available"].(map[string]any)
		for _, v := range []string{"m.mls.1", "de.bwi.mls.v1"} {
			if avail[v] != "unstable" {
				c.Errorf("GET /capabilities: m.room_versions.available[%q] = %v, want \"unstable\": %s", v, avail[v], clip(r.Raw))
			}
		}
	})

	// createRoom and its refusals.
	add("client/rooms", "createRoom-mls", "POST /createRoom, SPEC-NOTES §11", func(c *C) {
		u := c.User("create")
		r := u.Do("POST", v3+"/createRoom", map[string]any{"room_version": "m.mls.1", "creation_content": map[string]any{"algorithm": u.Alg}})
		expect(c, r, "POST /createRoom m.mls.1", 200, "", "")
		if id := r.Str("room_id"); !strings.HasPrefix(id, "!") || roomversion.Domain(id) != c.Env.ServerName {
			c.Fatalf("POST /createRoom: room_id %q is not a room of %s", id, c.Env.ServerName)
		}
	})
	for _, f := range []struct {
		field string
		value any
	}{
		{"initial_state", []any{}}, {"invite", []string{"@x:example.org"}}, {"invite_3pid", []any{}}, {"name", "n"},
		{"topic", "t"}, {"room_alias_name", "a"}, {"power_level_content_override", map[string]any{}},
	} {
		add("client/rooms", "createRoom-refuses-"+f.field, "POST /createRoom: "+f.field+" is 400 M_BAD_JSON, SPEC-NOTES §11", func(c *C) {
			u := c.User("refuse")
			r := u.Do("POST", v3+"/createRoom", map[string]any{"room_version": "m.mls.1", "creation_content": map[string]any{"algorithm": u.Alg}, f.field: f.value})
			expect(c, r, "POST /createRoom with "+f.field, 400, "M_BAD_JSON", f.field)
		})
	}
	add("client/rooms", "createRoom-refuses-no-algorithm", "POST /createRoom without creation_content.algorithm, SPEC-NOTES §11", func(c *C) {
		u := c.User("refuse")
		expect(c, u.Do("POST", v3+"/createRoom", map[string]any{"room_version": "m.mls.1"}), "POST /createRoom without algorithm", 400, "M_BAD_JSON", "algorithm")
	})
	add("client/rooms", "create-event-client-format", "client-format events have no sender, SPEC-NOTES §11", func(c *C) {
		u := c.User("fmt")
		roomID := u.CreateRoom(soloFedMap(c))
		r := u.Do("GET", testclient.RoomPath(roomID, "/state"), nil)
		expect(c, r, "GET /rooms/{roomId}/state", 200, "", "")
		var evs []map[string]any
		if err := json.Unmarshal(r.Raw, &evs); err != nil {
			c.Fatalf("GET /state: not a list of events: %s", clip(r.Raw))
		}
		var create, commit map[string]any
		for _, ev := range evs {
			switch ev["type"] {
			case roomversion.EventTypeCreate:
				create = ev
			case u.Version.CommitType():
				commit = ev
			}
		}
		if create == nil || commit == nil {
			c.Fatalf("GET /state: want the create event and the current commit: %s", clip(r.Raw))
		}
		for _, ev := range []map[string]any{create, commit} {
			checkClientFormat(c, "GET /state", ev)
		}
		if create["origin"] != c.Env.ServerName {
			c.Errorf("GET /state: the create event's origin is %v, want %s", create["origin"], c.Env.ServerName)
		}
		cc, _ := create["content"].(map[string]any)
		if cc["algorithm"] != u.Alg || cc["room_version"] != string(u.Version) {
			c.Errorf("GET /state: create content %v, want algorithm %s and room_version %s", cc, u.Alg, u.Version)
		}
	})
	add("client/rooms", "events-have-no-sender", "/sync, /messages and /event in client format, SPEC-NOTES §11", func(c *C) {
		u := c.User("nosender")
		roomID := u.CreateRoom(soloFedMap(c))
		id := u.SendMessage(roomID, "hello").Str("event_id")
		if id == "" {
			c.Fatal("PUT /send/m.room.encrypted: no event_id")
		}
		var seen bool
		for range 10 {
			for _, ev := range testclient.Timeline(u.Sync(1000), roomID) {
				checkClientFormat(c, "/sync", ev)
				seen = seen || ev["event_id"] == id
			}
			if seen {
				break
			}
		}
		if !seen {
			c.Fatalf("/sync: the message %s never came", id)
		}
		r := u.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=10"), nil)
		expect(c, r, "GET /messages", 200, "", "")
		chunk, _ := r.Body["chunk"].([]any)
		if len(chunk) == 0 {
			c.Fatalf("GET /messages: no events: %s", clip(r.Raw))
		}
		for _, e := range chunk {
			ev, _ := e.(map[string]any)
			checkClientFormat(c, "GET /messages", ev)
		}
		r = u.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(id)), nil)
		expect(c, r, "GET /event", 200, "", "")
		checkClientFormat(c, "GET /event", r.Body)
		if r.Str("event_id") != id || r.Body["type"] != roomversion.EventTypeEncrypted {
			c.Errorf("GET /event: got %s, want the message %s", clip(r.Raw), id)
		}
	})
	out = append(out, refusalChecks()...)
	out = append(out, commitChecks()...)
	out = append(out, keyChecks()...)
	return out
}

// checkClientFormat checks one client-format event (SPEC-NOTES §11).
func checkClientFormat(c *C, where string, ev map[string]any) {
	if _, ok := ev["sender"]; ok {
		c.Errorf("%s: event %v has a sender (%v); MLS rooms have none", where, ev["event_id"], ev["sender"])
	}
	for _, f := range []string{"event_id", "type", "content", "origin", "origin_server_ts", "room_id"} {
		if _, ok := ev[f]; !ok {
			c.Errorf("%s: event %v has no %s", where, ev["event_id"], f)
		}
	}
	for _, f := range []string{"depth", "hashes", "signatures", "auth_events", "prev_events"} {
		if _, ok := ev[f]; ok {
			c.Errorf("%s: event %v in client format has %s", where, ev["event_id"], f)
		}
	}
}

// refusalChecks are the refusals of SPEC-NOTES §11 in an MLS room.
func refusalChecks() []Check {
	const about = "SPEC-NOTES §11"
	type refusal struct {
		name, method, path string
		body               any
		status             int
		errcode, msg       string
	}
	list := func(c *C, u *testclient.Client, roomID string) []refusal {
		rp := func(s string) string { return testclient.RoomPath(roomID, s) }
		bad := testclient.Content(roomversion.EventTypeEncrypted, u.Alg, []byte{1, 2, 3})
		bad["ciphertext"] = "!!not base64"
		return []refusal{
			{"members", "GET", rp("/members"), nil, 403, "M_FORBIDDEN", "inside MLS"},
			{"joined-members", "GET", rp("/joined_members"), nil, 403, "M_FORBIDDEN", "inside MLS"},
			{"kick", "POST", rp("/kick"), map[string]string{"user_id": u.UserID}, 403, "M_FORBIDDEN", "inside MLS"},
			{"ban", "POST", rp("/ban"), map[string]string{"user_id": u.UserID}, 403, "M_FORBIDDEN", "inside MLS"},
			{"unban", "POST", rp("/unban"), map[string]string{"user_id": u.UserID}, 403, "M_FORBIDDEN", "inside MLS"},
			{"member-state", "PUT", rp("/state/m.room.member/" + url.PathEscape(u.UserID)), map[string]string{"membership": "join"}, 403, "M_FORBIDDEN", ""},
			{"other-state-type", "PUT", rp("/state/m.room.topic/"), map[string]string{"topic": "x"}, 403, "M_FORBIDDEN", ""},
			{"other-event-type", "PUT", rp("/send/m.room.message/" + u.NextTxn()), map[string]string{"msgtype": "m.text", "body": "plain"}, 403, "M_FORBIDDEN", ""},
			{"upgrade", "POST", rp("/upgrade"), map[string]string{"new_version": "m.mls.1"}, 400, "M_UNSUPPORTED_ROOM_VERSION", ""},
			{"bad-base64", "PUT", rp("/send/m.room.encrypted/" + u.NextTxn()), bad, 400, "M_BAD_JSON", ""},
		}
	}
	setup := func(c *C) (*testclient.Client, string) {
		u := c.User("refusals")
		return u, u.CreateRoom(soloFedMap(c))
	}
	abouts := map[string]string{
		"members": "GET /rooms/{roomId}/members: 403 M_FORBIDDEN", "joined-members": "GET /rooms/{roomId}/joined_members: 403 M_FORBIDDEN",
		"kick": "POST /rooms/{roomId}/kick: 403 M_FORBIDDEN", "ban": "POST /rooms/{roomId}/ban: 403 M_FORBIDDEN",
		"unban": "POST /rooms/{roomId}/unban: 403 M_FORBIDDEN", "member-state": "PUT /state/m.room.member: 403 M_FORBIDDEN",
		"other-state-type": "PUT /state/m.room.topic: 403 M_FORBIDDEN", "other-event-type": "PUT /send/m.room.message: 403 M_FORBIDDEN",
		"upgrade": "POST /rooms/{roomId}/upgrade: 400 M_UNSUPPORTED_ROOM_VERSION", "bad-base64": "PUT /send/m.room.encrypted with a ciphertext that is not base64: 400 M_BAD_JSON",
	}
	names := []string{"members", "joined-members", "kick", "ban", "unban", "member-state", "other-state-type", "other-event-type", "upgrade", "bad-base64"}
	var out []Check
	for i, name := range names {
		out = append(out, Check{Section: "client/refusals", Name: name, About: abouts[name] + ", " + about, Run: func(c *C) {
			u, roomID := setup(c)
			rf := list(c, u, roomID)[i]
			before := u.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=50"), nil)
			r := u.Do(rf.method, rf.path, rf.body)
			expect(c, r, fmt.Sprintf("%s %s", rf.method, strings.Replace(rf.path, roomID, "{roomId}", 1)), rf.status, rf.errcode, rf.msg)
			after := u.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=50"), nil)
			if n, m := len(chunkOf(after)), len(chunkOf(before)); n != m {
				c.Errorf("%s %s: the refused request added an event to the room", rf.method, rf.path)
			}
		}})
	}
	return out
}

// chunkOf is the chunk of a /messages answer.
func chunkOf(r testclient.Response) []any {
	l, _ := r.Body["chunk"].([]any)
	return l
}

// commitChecks are the commit flow: the epoch race and the pending commit
// on powers[0], and the commit refused off powers[0].
func commitChecks() []Check {
	return []Check{
		{Section: "client/commits", Name: "epoch-race-409", About: "PUT /state/m.mls.commit: 409 DE.BWI.MLS.WRONG_EPOCH, SPEC-NOTES §11", Run: func(c *C) {
			u := c.User("race")
			fm := soloFedMap(c)
			roomID := u.CreateRoom(fm)
			first := u.Stage(fm, nil)
			second := u.Stage(fm, nil)
			id := u.PutCommit(roomID, first).Str("event_id")
			if id == "" {
				c.Fatal("PUT /state/m.mls.commit: the first commit was not accepted")
			}
			r := u.PutCommit(roomID, second)
			expect(c, r, "PUT /state/m.mls.commit on a commit already replaced", 409, "DE.BWI.MLS.WRONG_EPOCH", "")
			if r.Str("current_commit") != id {
				c.Errorf("409: current_commit %q, want the winning commit %s", r.Str("current_commit"), id)
			}
			u.AwaitCommit(roomID, id, first)
			if e, ok := r.Body["current_epoch"].(float64); !ok || uint64(e) != u.Group.Epoch() {
				c.Errorf("409: current_epoch %v, want %d (the epoch of the group after the winning commit)", r.Body["current_epoch"], u.Group.Epoch())
			}
		}},
		{Section: "client/commits", Name: "pending-commit-on-powers0", About: "PUT /send/m.mls.pending_commit and its status, SPEC-NOTES §6, §11", Run: func(c *C) {
			u := c.User("pending")
			fm := testclient.FedMap([]string{c.Env.ServerName}, []string{c.Env.ServerName}, []string{c.Env.ServerName})
			roomID := u.CreateRoom(fm)
			sc := u.Stage(fm, nil)
			r := u.SendPending(roomID, sc)
			expect(c, r, "PUT /send/m.mls.pending_commit", 200, "", "")
			pid := r.Str("event_id")
			path := "/_matrix/client/unstable/de.bwi.mls/rooms/" + url.PathEscape(roomID) + "/pending_commit/" + url.PathEscape(pid)
			deadline := time.Now().Add(20 * time.Second)
			var st testclient.Response
			for time.Now().Before(deadline) {
				st = u.Do("GET", path, nil)
				expect(c, st, "GET pending_commit status", 200, "", "")
				if st.Str("status") != "waiting" {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if st.Str("status") != "applied" || st.Str("commit_event_id") == "" {
				c.Fatalf("pending commit on the server at powers[0]: status %s, want applied with commit_event_id", clip(st.Raw))
			}
			u.AwaitCommit(roomID, st.Str("commit_event_id"), sc)
		}},
		{Section: "client/commits", Name: "send-idempotent", About: "PUT /send/{type}/{txnId} is idempotent per device and transaction ID, SPEC-NOTES §11", Run: func(c *C) {
			u := c.User("idem")
			fm := testclient.FedMap([]string{c.Env.ServerName}, []string{c.Env.ServerName}, []string{c.Env.ServerName})
			roomID := u.CreateRoom(fm)
			pt := []byte(`{"type":"m.room.message","content":{"msgtype":"m.text","body":"once"}}`)
			m, err := u.Group.Encrypt(pt, nil)
			if err != nil {
				c.Fatal(err)
			}
			content := testclient.Content(roomversion.EventTypeEncrypted, u.Alg, testclient.Wire(c, m))
			path := testclient.RoomPath(roomID, "/send/m.room.encrypted/"+u.NextTxn()) + "?de.bwi.mls.commit_id=" + url.QueryEscape(u.CommitID)
			first := u.Do("PUT", path, content)
			expect(c, first, "PUT /send/m.room.encrypted", 200, "", "")
			before := chunkOf(u.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=50"), nil))
			again := u.Do("PUT", path, content)
			expect(c, again, "PUT /send/m.room.encrypted again with the same transaction ID", 200, "", "")
			if again.Str("event_id") != first.Str("event_id") {
				c.Errorf("PUT /send again with the same transaction ID: event_id %q, want the first one's %q", again.Str("event_id"), first.Str("event_id"))
			}
			if after := chunkOf(u.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=50"), nil)); len(after) != len(before) {
				c.Errorf("PUT /send again with the same transaction ID added an event (%d events, were %d)", len(after), len(before))
			}
		}},
		{Section: "client/commits", Name: "pending-commit-status-unknown", About: "GET pending_commit/{eventId} of an unknown event: 404 M_NOT_FOUND", Run: func(c *C) {
			u := c.User("unknownpending")
			roomID := u.CreateRoom(soloFedMap(c))
			r := u.Do("GET", "/_matrix/client/unstable/de.bwi.mls/rooms/"+url.PathEscape(roomID)+"/pending_commit/"+url.PathEscape("$nosuchevent"), nil)
			expect(c, r, "GET pending_commit status of an unknown event", 404, "M_NOT_FOUND", "")
		}},
		{Section: "client/commits", Name: "commit-refused-off-powers0", About: "PUT /state/m.mls.commit off powers[0]: 403 M_FORBIDDEN pointing at pending commits, SPEC-NOTES §11", Run: func(c *C) {
			u := c.User("offpowers")
			// powers[0] is another server: the suite's, which takes the
			// room's events (the room is only on the server under test).
			other := SuiteNameA
			fm := testclient.FedMap([]string{c.Env.ServerName}, []string{c.Env.ServerName, other}, nil)
			roomID := u.CreateRoom(fm)
			hand := testclient.FedMap([]string{other, c.Env.ServerName}, []string{c.Env.ServerName, other}, nil)
			sc := u.Stage(hand, nil)
			id := u.PutCommit(roomID, sc).Str("event_id")
			if id == "" {
				c.Fatal("PUT /state/m.mls.commit handing powers[0] over was not accepted")
			}
			u.AwaitCommit(roomID, id, sc)
			r := u.PutCommit(roomID, u.Stage(hand, nil))
			expect(c, r, "PUT /state/m.mls.commit on a server not at powers[0]", 403, "M_FORBIDDEN", "pending_commit")
		}},
	}
}

// keyChecks are the key package upload checks (SPEC-NOTES §9), claims and
// /keys/list.
func keyChecks() []Check {
	var out []Check
	for _, b := range badKeyPackages() {
		out = append(out, Check{Section: "client/keys", Name: "refuses-" + b.name, About: "POST /keys/upload: " + b.about + " is 400 M_BAD_JSON, SPEC-NOTES §9", Run: func(c *C) {
			u, dev := keyUser(c)
			good := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
			bad := b.make(c, u, dev)
			r := u.Do("POST", v3+"/keys/upload", map[string]any{"device_keys": dev.DeviceKeys(c), "one_time_keys": map[string]string{good.KeyID: good.Value, bad.KeyID: bad.Value}})
			expect(c, r, "POST /keys/upload with a key package that is "+b.about, 400, "M_BAD_JSON", "")
			l := u.Do("GET", v3+"/keys/list", nil)
			expect(c, l, "GET /keys/list", 200, "", "")
			if ids := keyIDs(l.Body, "one_time_keys"); len(ids) != 0 {
				c.Errorf("the refused upload stored key packages: /keys/list %s", clip(l.Raw))
			}
		}})
	}
	out = append(out, Check{Section: "client/keys", Name: "accepts-good-corpus", About: "POST /keys/upload accepts good key packages of other suites and of de.bwi.mls.v1's algorithm names, SPEC-NOTES §9", Run: func(c *C) {
		u, dev := keyUser(c)
		good := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
		// The unstable room version's algorithm names the same suite.
		unstable, err := roomversion.V1Unstable.Algorithm(testclient.Suite)
		if err != nil {
			c.Fatal(err)
		}
		_, ref, _ := strings.Cut(good.KeyID, ":")
		other := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
		// A P-256 device of the same user and device ID, under its own
		// algorithm.
		p256 := userapitest.NewDevice(c, u.UserID, u.DeviceID, mls.P256AES128GCMSHA256P256).NewKeyPackage(c, userapitest.KeyPackageOptions{})
		otks := map[string]string{unstable + ":" + ref: good.Value, other.KeyID: other.Value, p256.KeyID: p256.Value}
		r := u.Do("POST", v3+"/keys/upload", map[string]any{"device_keys": dev.DeviceKeys(c), "one_time_keys": otks})
		expect(c, r, "POST /keys/upload of good key packages (suite 1 under de.bwi.mls.v1's algorithm, suite 1, suite 2)", 200, "", "")
		l := u.Do("GET", v3+"/keys/list", nil)
		expect(c, l, "GET /keys/list", 200, "", "")
		want := []string{unstable + ":" + ref, other.KeyID, p256.KeyID}
		slices.Sort(want)
		if got := keyIDs(l.Body, "one_time_keys"); !slices.Equal(got, want) {
			c.Errorf("GET /keys/list: one_time_keys %v, want %v", got, want)
		}
	}})
	out = append(out, Check{Section: "client/keys", Name: "upload-and-list", About: "POST /keys/upload, GET /keys/list, the counts in /sync, SPEC-NOTES §9", Run: func(c *C) {
		u, dev := keyUser(c)
		kps := []userapitest.KeyPackage{dev.NewKeyPackage(c, userapitest.KeyPackageOptions{}), dev.NewKeyPackage(c, userapitest.KeyPackageOptions{}), dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})}
		fb := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
		otks := map[string]string{}
		for _, k := range kps {
			otks[k.KeyID] = k.Value
		}
		r := u.Do("POST", v3+"/keys/upload", map[string]any{"device_keys": dev.DeviceKeys(c), "one_time_keys": otks, "fallback_keys": map[string]string{fb.KeyID: fb.Value}})
		expect(c, r, "POST /keys/upload", 200, "", "")
		counts, _ := r.Body["one_time_key_counts"].(map[string]any)
		if n, _ := counts[u.Alg].(float64); n != 3 {
			c.Errorf("POST /keys/upload: one_time_key_counts[%s] = %v, want 3: %s", u.Alg, counts[u.Alg], clip(r.Raw))
		}
		l := u.Do("GET", v3+"/keys/list", nil)
		expect(c, l, "GET /keys/list", 200, "", "")
		got := keyIDs(l.Body, "one_time_keys")
		want := []string{kps[0].KeyID, kps[1].KeyID, kps[2].KeyID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			c.Errorf("GET /keys/list: one_time_keys %v, want %v", got, want)
		}
		if fbs := keyIDs(l.Body, "fallback_keys"); !slices.Equal(fbs, []string{fb.KeyID}) {
			c.Errorf("GET /keys/list: fallback_keys %v, want [%s]", fbs, fb.KeyID)
		}
		// /sync reports the counts per algorithm and the unused fallback
		// (SPEC-NOTES §9, §11).
		sync := u.Sync(0)
		sc, _ := sync["device_one_time_keys_count"].(map[string]any)
		if n, _ := sc[u.Alg].(float64); n != 3 {
			c.Errorf("/sync: device_one_time_keys_count[%s] = %v, want 3", u.Alg, sc[u.Alg])
		}
		fbTypes, _ := sync["device_unused_fallback_key_types"].([]any)
		if !slices.Contains(fbTypes, any(u.Alg)) {
			c.Errorf("/sync: device_unused_fallback_key_types %v, want %s listed", fbTypes, u.Alg)
		}
	}})
	out = append(out, Check{Section: "client/keys", Name: "claim-once-under-concurrency", About: "POST /keys/claim hands each key package out once, then the fallback, SPEC-NOTES §9", Run: func(c *C) {
		u, dev := keyUser(c)
		const n, claimers = 4, 10
		otks := map[string]string{}
		for range n {
			k := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
			otks[k.KeyID] = k.Value
		}
		fb := dev.NewKeyPackage(c, userapitest.KeyPackageOptions{})
		expect(c, u.Do("POST", v3+"/keys/upload", map[string]any{"device_keys": dev.DeviceKeys(c), "one_time_keys": otks,
			"fallback_keys": map[string]string{fb.KeyID: fb.Value}}), "POST /keys/upload", 200, "", "")
		claimer := c.User("claimer")
		var wg sync.WaitGroup
		results := make([]testclient.Response, claimers)
		for i := range claimers {
			wg.Go(func() {
				results[i] = claimer.Request("POST", v3+"/keys/claim", claimer.Token, map[string]any{
					"one_time_keys": map[string]any{u.UserID: map[string]string{u.DeviceID: u.Alg}}})
			})
		}
		wg.Wait()
		seen := map[string]int{}
		for _, r := range results {
			expect(c, r, "POST /keys/claim", 200, "", "")
			otk, _ := r.Body["one_time_keys"].(map[string]any)
			user, _ := otk[u.UserID].(map[string]any)
			dk, _ := user[u.DeviceID].(map[string]any)
			if len(dk) != 1 {
				c.Fatalf("POST /keys/claim: want one key package of the device: %s", clip(r.Raw))
			}
			for id := range dk {
				seen[id]++
			}
		}
		for id := range otks {
			if seen[id] != 1 {
				c.Errorf("POST /keys/claim: one-time key package %s handed out %d times under %d concurrent claims, want once", id, seen[id], claimers)
			}
		}
		if seen[fb.KeyID] != claimers-n {
			c.Errorf("POST /keys/claim: the fallback handed out %d times, want %d (once the one-time ones ran out)", seen[fb.KeyID], claimers-n)
		}
	}})
	return out
}

// keyIDs reads a sorted list of key IDs of a /keys/list body.
func keyIDs(body map[string]any, field string) []string {
	l, _ := body[field].([]any)
	var out []string
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// badKeyPackage is one entry of the corpus of bad key packages.
type badKeyPackage struct {
	name, about string
	make        func(c *C, u *testclient.Client, dev *userapitest.Device) userapitest.KeyPackage
}

// keyUser registers a user and returns it with an MLS device of its
// device ID (suite 1) whose key packages the check uploads.
func keyUser(c *C) (*testclient.Client, *userapitest.Device) {
	u := c.User("keys")
	return u, userapitest.NewDevice(c, u.UserID, u.DeviceID, testclient.Suite)
}

func badKeyPackages() []badKeyPackage {
	return []badKeyPackage{
		{"bad-keypackage-signature", "signed wrongly", func(c *C, _ *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{Mutate: func(kp *mls.KeyPackage) { kp.Signature[0] ^= 1 }})
		}},
		{"bad-leafnode-signature", "a leaf node signed wrongly", func(c *C, _ *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{Mutate: func(kp *mls.KeyPackage) { kp.LeafNode.Signature[0] ^= 1 }})
		}},
		{"wrong-suite", "of another cipher suite than its algorithm", func(c *C, u *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			other := userapitest.NewDevice(c, u.UserID, u.DeviceID, mls.X25519ChaCha20Poly1305SHA256Ed25519)
			kp := other.NewKeyPackage(c, userapitest.KeyPackageOptions{})
			_, ref, _ := strings.Cut(kp.KeyID, ":")
			kp.KeyID = u.Alg + ":" + ref
			return kp
		}},
		{"expired", "expired", func(c *C, _ *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			past := time.Now().Add(-48 * time.Hour)
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{NotBefore: past.Add(-time.Hour), NotAfter: past})
		}},
		{"identity-of-another-user", "of another user's identity", func(c *C, u *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: "@someone-else:" + c.Env.ServerName, DeviceID: u.DeviceID, SignatureKey: d.Signer.PublicKey()})
			if err != nil {
				c.Fatal(err)
			}
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{Credential: &cred})
		}},
		{"init-key-equals-encryption-key", "one whose init_key equals its encryption_key", func(c *C, _ *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{Resign: true, Mutate: func(kp *mls.KeyPackage) { kp.InitKey = slices.Clone(kp.LeafNode.EncryptionKey) }})
		}},
		{"no-0xF6D0-capability", "without extension 0xF6D0 in its capabilities", func(c *C, _ *testclient.Client, d *userapitest.Device) userapitest.KeyPackage {
			return d.NewKeyPackage(c, userapitest.KeyPackageOptions{Capabilities: &mls.Capabilities{}})
		}},
	}
}
