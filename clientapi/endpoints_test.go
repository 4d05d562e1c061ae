package clientapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// TestRoomEndpoints checks each room endpoint's happy path and a bad input,
// with storage unchanged after every refusal.
func TestRoomEndpoints(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, bob, roomID := twoMembers(t, e, []string{"a.test"})
		carol := newMLSUser(e, "carol")
		tok := alice.token
		v3 := "/_matrix/client/v3"

		// Public endpoints.
		r := e.do("GET", "/_matrix/client/versions", "", nil).must(t, 200, "versions")
		if len(r.body["versions"].([]any)) == 0 {
			t.Fatalf("versions: %s", r.raw)
		}
		e.do("GET", "/.well-known/matrix/client", "", nil).must(t, 200, "well-known")
		r = e.do("GET", v3+"/capabilities", tok, nil).must(t, 200, "capabilities")
		avail := r.body["capabilities"].(map[string]any)["m.room_versions"].(map[string]any)["available"].(map[string]any)
		if avail["m.mls.1"] != "unstable" || avail["de.bwi.mls.v1"] != "unstable" {
			t.Fatalf("capabilities: %s", r.raw)
		}
		e.do("GET", v3+"/capabilities", "", nil).refused(t, 401, "M_MISSING_TOKEN", "no token")
		e.do("GET", v3+"/capabilities", "nope", nil).refused(t, 401, "M_UNKNOWN_TOKEN", "unknown token")
		e.do("GET", v3+"/no/such/endpoint", tok, nil).refused(t, 404, "M_UNRECOGNIZED", "unknown endpoint")
		e.do("DELETE", v3+"/createRoom", tok, nil).refused(t, 405, "M_UNRECOGNIZED", "wrong method")

		// createRoom refusals.
		before := e.snapshot("")
		alg := alice.alg
		for _, c := range []struct {
			body    any
			status  int
			errcode string
			field   string
		}{
			{map[string]any{"room_version": "10", "creation_content": map[string]any{"algorithm": alg}}, 400, "M_UNSUPPORTED_ROOM_VERSION", "room_version"},
			{map[string]any{"room_version": "m.mls.1"}, 400, "M_BAD_JSON", "algorithm"},
			{map[string]any{"room_version": "m.mls.1", "creation_content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}, 400, "M_BAD_JSON", "algorithm"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "name": "x"}, 400, "M_BAD_JSON", "name"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "initial_state": []any{}}, 400, "M_BAD_JSON", "initial_state"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "invite": []string{bob.userID}}, 400, "M_BAD_JSON", "invite"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "topic": "t"}, 400, "M_BAD_JSON", "topic"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "room_alias_name": "x"}, 400, "M_BAD_JSON", "room_alias_name"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "power_level_content_override": map[string]any{}}, 400, "M_BAD_JSON", "power_level_content_override"},
			{map[string]any{"creation_content": map[string]any{"algorithm": alg}, "invite_3pid": []any{}}, 400, "M_BAD_JSON", "invite_3pid"},
			{map[string]any{"creation_content": "x"}, 400, "M_BAD_JSON", "creation_content"},
			{"{", 400, "M_NOT_JSON", ""},
		} {
			r := e.do("POST", v3+"/createRoom", tok, c.body).refused(t, c.status, c.errcode, "createRoom")
			if !strings.Contains(r.str("error"), c.field) {
				t.Fatalf("createRoom error %q does not name %s", r.str("error"), c.field)
			}
		}
		e.unchanged(before, "", "refused createRoom")
		r = e.do("POST", v3+"/createRoom", carol.token, map[string]any{"room_version": "de.bwi.mls.v1",
			"creation_content": map[string]any{"algorithm": "de.bwi.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", "m.federate": false}}).must(t, 200, "unstable createRoom")
		carolRoom := r.str("room_id")
		create, err := e.db.CurrentState(context.Background(), carolRoom)
		if err != nil {
			t.Fatal(err)
		}
		se, _ := e.db.Event(context.Background(), create.CreateID)
		if se.Event.RoomVersion() != roomversion.V1Unstable || !strings.Contains(string(se.Event.Content()), `"m.federate":false`) {
			t.Fatalf("create event %s", se.Event.JSON())
		}

		// State.
		r = e.do("GET", roomPath(roomID, "/state"), tok, nil).must(t, 200, "state")
		if !strings.Contains(string(r.raw), alice.commitID) || strings.Contains(string(r.raw), `"sender"`) {
			t.Fatalf("state: %s", r.raw)
		}
		e.do("GET", roomPath(roomID, "/state"), carol.token, nil).refused(t, 403, "M_FORBIDDEN", "state of a room not joined")
		e.do("GET", roomPath("!none:a.test", "/state"), tok, nil).refused(t, 404, "M_NOT_FOUND", "state of an unknown room")
		r = e.do("GET", roomPath(roomID, "/state/m.mls.commit/"), tok, nil).must(t, 200, "commit state")
		if _, ok := r.body["ciphertext"]; !ok {
			t.Fatalf("commit content: %s", r.raw)
		}
		e.do("GET", roomPath(roomID, "/state/m.room.create"), tok, nil).must(t, 200, "create state")
		e.do("GET", roomPath(roomID, "/state/m.room.name/"), tok, nil).refused(t, 404, "M_NOT_FOUND", "name state")

		// Single events.
		r = e.do("GET", roomPath(roomID, "/event/"+url.PathEscape(alice.commitID)), tok, nil).must(t, 200, "event")
		if r.str("event_id") != alice.commitID || r.str("origin") != "a.test" {
			t.Fatalf("event: %s", r.raw)
		}
		e.do("GET", roomPath(roomID, "/event/$nope"), tok, nil).refused(t, 404, "M_NOT_FOUND", "unknown event")

		// Messages.
		m := alice.sendMessage(roomID, "one").must(t, 200, "message").str("event_id")
		r = e.do("GET", roomPath(roomID, "/messages?dir=f&limit=100"), bob.token, nil).must(t, 200, "messages forward")
		chunk := r.body["chunk"].([]any)
		if last := chunk[len(chunk)-1].(map[string]any); last["event_id"] != m || chunk[0].(map[string]any)["type"] != "m.room.create" {
			t.Fatalf("forward messages: %s", r.raw)
		}
		// Paging backwards two at a time reaches the create event.
		from, seen := "", 0
		for range 10 {
			p := roomPath(roomID, "/messages?dir=b&limit=2")
			if from != "" {
				p += "&from=" + url.QueryEscape(from)
			}
			r = e.do("GET", p, bob.token, nil).must(t, 200, "messages page")
			seen += len(r.body["chunk"].([]any))
			from = r.str("end")
			if from == "" {
				break
			}
		}
		if seen != len(chunk) {
			t.Fatalf("paging backwards saw %d events, forward %d", seen, len(chunk))
		}
		e.do("GET", roomPath(roomID, "/messages?dir=x"), tok, nil).refused(t, 400, "M_INVALID_PARAM", "bad dir")
		e.do("GET", roomPath(roomID, "/messages?from=zz"), tok, nil).refused(t, 400, "M_INVALID_PARAM", "bad from")

		// Invite, join, leave refusals.
		before = e.snapshot(roomID)
		e.do("POST", roomPath(roomID, "/invite"), tok, map[string]string{"user_id": "@dave:c.test"}).refused(t, 403, "M_FORBIDDEN", "invitee's server not in servers")
		e.do("POST", roomPath(roomID, "/invite"), tok, map[string]string{"user_id": "@dave:b.test"}).refused(t, 403, "M_FORBIDDEN", "remote invitee without federation")
		e.do("POST", roomPath(roomID, "/invite"), tok, map[string]string{}).refused(t, 400, "M_BAD_JSON", "invite without user_id")
		e.do("POST", roomPath(roomID, "/invite"), carol.token, map[string]string{"user_id": carol.userID}).refused(t, 403, "M_FORBIDDEN", "invite by a non-member")
		e.do("POST", roomPath(roomID, "/join"), carol.token, nil).refused(t, 403, "M_FORBIDDEN", "join without invite")
		e.do("POST", v3+"/join/%23alias:a.test", carol.token, nil).refused(t, 404, "M_NOT_FOUND", "join by alias")
		e.do("POST", roomPath(roomID, "/leave"), carol.token, nil).refused(t, 403, "M_FORBIDDEN", "leave a room not in")
		e.unchanged(before, roomID, "refused invite/join/leave")
		e.do("POST", roomPath(roomID, "/invite"), tok, map[string]string{"user_id": carol.userID}).must(t, 200, "invite carol")
		e.do("POST", v3+"/join/"+url.PathEscape(roomID), carol.token, nil).must(t, 200, "join by ID")

		// The member APIs and upgrade are refused.
		for _, p := range []struct{ method, path string }{
			{"GET", roomPath(roomID, "/members")}, {"GET", roomPath(roomID, "/joined_members")},
			{"POST", roomPath(roomID, "/kick")}, {"POST", roomPath(roomID, "/ban")},
			{"POST", roomPath(roomID, "/unban")}, {"POST", v3 + "/knock/" + url.PathEscape(roomID)},
		} {
			r := e.do(p.method, p.path, tok, map[string]string{"user_id": bob.userID}).refused(t, 403, "M_FORBIDDEN", p.path)
			if !strings.Contains(r.str("error"), "inside MLS") {
				t.Fatalf("%s: %s", p.path, r.raw)
			}
		}
		e.do("POST", roomPath(roomID, "/upgrade"), tok, map[string]string{"new_version": "m.mls.1"}).refused(t, 400, "M_UNSUPPORTED_ROOM_VERSION", "upgrade")

		// /sync refusals.
		e.do("GET", v3+"/sync?since=garbage", tok, nil).refused(t, 400, "M_INVALID_PARAM", "bad since")
		e.do("GET", v3+"/sync?full_state=maybe", tok, nil).refused(t, 400, "M_INVALID_PARAM", "bad full_state")
		e.do("GET", v3+"/sync?filter=999", tok, nil).refused(t, 404, "M_NOT_FOUND", "unknown filter")
		r = e.do("GET", v3+`/sync?filter=`+url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`), tok, nil).must(t, 200, "inline filter")
		if evs := timeline(r.body, roomID); len(evs) != 1 {
			t.Fatalf("timeline with limit 1: %d events", len(evs))
		}

		// The pending-commit status of an unknown event.
		e.do("GET", "/_matrix/client/unstable/de.bwi.mls/rooms/"+url.PathEscape(roomID)+"/pending_commit/$nope", tok, nil).
			refused(t, 404, "M_NOT_FOUND", "unknown pending commit")
	})
}

// TestSoftFailedEventMarking reads a soft-failed message and a lost-fork
// message through /event: each says which case it was.
func TestSoftFailedEventMarking(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, _, roomID := twoMembers(t, e, []string{"a.test"})
		ctx := context.Background()
		cur, err := e.db.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		// Events as federation would store them: built and signed like any
		// other, stored with their soft-fail verdict.
		build := func(reason string) string {
			ev, err := (&roomversion.Builder{Version: alice.v, RoomID: roomID, Type: roomversion.EventTypeEncrypted,
				Content:    mustJSON(t, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessage(t, alice.group))),
				AuthEvents: []string{cur.CreateID, cur.CommitID}, PrevEvents: []string{cur.CommitID}, Origin: "b.test"}).Build(ctx, "ed25519:x", testKey)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.db.StoreEvent(ctx, ev, storage.StoreEventOptions{SoftFailed: true, SoftFailReason: reason, StateBefore: cur}); err != nil {
				t.Fatal(err)
			}
			return ev.EventID()
		}
		a := build("soft-fail (a): origin b.test is not in servers")
		c := build("soft-fail (c): the fork loses state resolution")
		for _, x := range []struct{ id, c string }{{a, "a"}, {c, "c"}} {
			r := e.do("GET", roomPath(roomID, "/event/"+url.PathEscape(x.id)), alice.token, nil).must(t, 200, "soft-failed event")
			sf, _ := r.body["unsigned"].(map[string]any)["de.bwi.mls.soft_failed"].(map[string]any)
			if sf["case"] != x.c || sf["reason"] == "" {
				t.Fatalf("event %s: unsigned %v", x.id, r.body["unsigned"])
			}
		}
		// /messages: the case-(c) message comes marked lost_fork; the
		// case-(a) one does not come at all.
		r := e.do("GET", roomPath(roomID, "/messages?dir=b&limit=10"), alice.token, nil).must(t, 200, "messages")
		var gotC bool
		for _, ev := range r.body["chunk"].([]any) {
			m := ev.(map[string]any)
			switch m["event_id"] {
			case a:
				t.Fatal("a case-(a) soft-failed event was delivered")
			case c:
				gotC = m["unsigned"].(map[string]any)["de.bwi.mls.lost_fork"] == true
			}
		}
		if !gotC {
			t.Fatalf("lost-fork message missing or unmarked: %s", r.raw)
		}
	})
}

// TestPendingCommitFlow: on a server that is not powers[0], a commit is
// refused and the pending commit is applied in this server's window; the
// sender sees its status move to applied and the commit in /sync.
func TestPendingCommitFlow(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{fakeClock: true})
		alice, _, roomID := twoMembers(t, e, []string{"a.test"})
		// a.test hands powers[0] to z.test: from now on it is at index 1.
		fm := fedMap([]string{"z.test", "a.test"}, []string{"a.test", "b.test", "z.test"}, []string{"a.test"})
		sc := alice.stage(fm, nil)
		hand := alice.putCommit(roomID, sc).must(t, 200, "handing powers[0] over").str("event_id")
		alice.awaitCommit(roomID, hand, sc)
		sc = alice.stage(fm, nil)
		before := e.snapshot(roomID)
		r := alice.putCommit(roomID, sc).refused(t, 403, "M_FORBIDDEN", "commit not at powers[0]")
		if !strings.Contains(r.str("error"), "pending_commit") {
			t.Fatalf("refusal does not point at pending commits: %s", r.raw)
		}
		e.unchanged(before, roomID, "refused commit")

		pid := alice.sendPending(roomID, sc).must(t, 200, "pending commit").str("event_id")
		status := func() resp {
			return e.do("GET", "/_matrix/client/unstable/de.bwi.mls/rooms/"+url.PathEscape(roomID)+"/pending_commit/"+url.PathEscape(pid),
				alice.token, nil).must(t, 200, "status")
		}
		if s := status(); s.str("status") != "waiting" {
			t.Fatalf("status %s", s.raw)
		}
		ctx := context.Background()
		// Inside z.test's window nothing happens here.
		e.clock.Advance(time.Minute)
		if err := e.rooms.Queue().Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if s := status(); s.str("status") != "waiting" {
			t.Fatalf("status in z.test's window: %s", s.raw)
		}
		// In a.test's window (5 minutes on) it is applied.
		e.clock.Advance(5 * time.Minute)
		if err := e.rooms.Queue().Tick(ctx); err != nil {
			t.Fatal(err)
		}
		s := status()
		commitID := s.str("commit_event_id")
		if s.str("status") != "applied" || commitID == "" {
			t.Fatalf("status after a.test's window opened: %s", s.raw)
		}
		alice.awaitCommit(roomID, commitID, sc)
		cur, err := e.db.CurrentState(ctx, roomID)
		if err != nil || cur.CommitID != commitID {
			t.Fatalf("current commit %s, want %s (%v)", cur.CommitID, commitID, err)
		}
		// Ticking again applies nothing twice.
		e.clock.Advance(time.Minute)
		if err := e.rooms.Queue().Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if after, _ := e.db.CurrentState(ctx, roomID); after != cur {
			t.Fatalf("second tick moved the room to %+v", after)
		}
	})
}

// TestRequestLimits: body size, rate limit.
func TestRequestLimits(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{maxBody: 1024, rateLimit: clientapi.RateLimit{PerSecond: 0.001, Burst: 5}})
		_, _, tok := e.register("rita")
		before := e.snapshot("")
		big := `{"creation_content":{"algorithm":"` + strings.Repeat("x", 2048) + `"}}`
		e.do("POST", "/_matrix/client/v3/createRoom", tok, big).refused(t, 413, "M_TOO_LARGE", "big body")
		e.unchanged(before, "", "too large createRoom")
		var last resp
		for range 6 {
			last = e.do("GET", "/_matrix/client/v3/joined_rooms", tok, nil)
		}
		last.refused(t, 429, "M_LIMIT_EXCEEDED", "rate limit")
		if ms, _ := last.body["retry_after_ms"].(float64); ms <= 0 {
			t.Fatalf("429 without retry_after_ms: %s", last.raw)
		}
	})
}

// testKey signs events the tests store as if received over federation.
var testKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSyncLongPoll: a /sync with nothing new waits, and a message wakes it
// long before its timeout; full_state and a timeline limit shape the
// answer.
func TestSyncLongPoll(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, bob, roomID := twoMembers(t, e, []string{"a.test"})
		done := make(chan map[string]any, 1)
		since := bob.since
		start := time.Now()
		go func() {
			r := e.do("GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), bob.token, nil)
			done <- r.body
		}()
		time.Sleep(200 * time.Millisecond)
		select {
		case body := <-done:
			t.Fatalf("sync returned with nothing new: %v", body)
		default:
		}
		id := alice.sendMessage(roomID, "wake up").must(t, 200, "send").str("event_id")
		select {
		case body := <-done:
			evs := timeline(body, roomID)
			if len(evs) != 1 || evs[0]["event_id"] != id {
				t.Fatalf("woken sync: %v", body)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("woken after %v", el)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not wake within 5 s")
		}
		// A to-device message (a change keyed by the user, not the room)
		// wakes a poll too.
		r0 := e.do("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), bob.token, nil).must(t, 200, "sync")
		tdSince := r0.str("next_batch")
		go func() {
			r := e.do("GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(tdSince), bob.token, nil)
			done <- r.body
		}()
		for e.rooms.LongPolls() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		e.do("PUT", "/_matrix/client/v3/sendToDevice/m.mls.welcome/"+e.nextTxn(), alice.token, map[string]any{
			"messages": map[string]any{bob.userID: map[string]any{bob.deviceID: map[string]string{"welcome": "x"}}}}).must(t, 200, "sendToDevice")
		select {
		case body := <-done:
			if evs := body["to_device"].(map[string]any)["events"].([]any); len(evs) != 1 {
				t.Fatalf("poll woken by a to-device message: %v", body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a to-device message did not wake the long-poll within 5 s")
		}
		// With nothing new and a short timeout, it returns empty after it.
		start = time.Now()
		r := e.do("GET", "/_matrix/client/v3/sync?timeout=300&since="+url.QueryEscape(since), bob.token, nil).must(t, 200, "sync")
		if el := time.Since(start); len(timeline(r.body, roomID)) != 1 || el > 5*time.Second {
			t.Fatalf("sync from the old token: %v after %v", r.body, el)
		}
		next := r.str("next_batch")
		start = time.Now()
		r = e.do("GET", "/_matrix/client/v3/sync?timeout=300&since="+url.QueryEscape(next), bob.token, nil).must(t, 200, "empty sync")
		if el := time.Since(start); el < 250*time.Millisecond || len(timeline(r.body, roomID)) != 0 {
			t.Fatalf("empty sync returned after %v: %s", el, r.raw)
		}
		// full_state brings the room's state again; a limit of 1 marks the
		// timeline limited with a prev_batch that pages back.
		alice.sendMessage(roomID, "two").must(t, 200, "send")
		alice.sendMessage(roomID, "three").must(t, 200, "send")
		r = e.do("GET", "/_matrix/client/v3/sync?full_state=true&since="+url.QueryEscape(next)+"&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`),
			bob.token, nil).must(t, 200, "full state sync")
		room := r.body["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
		tl := room["timeline"].(map[string]any)
		if len(room["state"].(map[string]any)["events"].([]any)) != 2 || tl["limited"] != true || len(tl["events"].([]any)) != 1 {
			t.Fatalf("full-state limited sync: %s", r.raw)
		}
		r = e.do("GET", roomPath(roomID, "/messages?dir=b&limit=1&from="+url.QueryEscape(tl["prev_batch"].(string))), bob.token, nil).must(t, 200, "messages from prev_batch")
		if c := r.body["chunk"].([]any); len(c) != 1 || bob.messageBody(c[0].(map[string]any)) != "two" {
			t.Fatalf("page before the limited timeline: %s", r.raw)
		}
	})
}

// TestInitialSyncShowsInvites: a user invited before their first /sync
// finds the invite (and a joined room its state) in the initial sync.
func TestInitialSyncShowsInvites(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice := newMLSUser(e, "alice")
		_, _, daveTok := e.register("dave")
		roomID := alice.createRoom(fedMap([]string{"a.test"}, []string{"a.test"}, nil))
		e.do("POST", roomPath(roomID, "/invite"), alice.token, map[string]string{"user_id": "@dave:a.test"}).must(t, 200, "invite")
		r := e.do("GET", "/_matrix/client/v3/sync", daveTok, nil).must(t, 200, "initial sync")
		if _, ok := r.body["rooms"].(map[string]any)["invite"].(map[string]any)[roomID]; !ok {
			t.Fatalf("initial sync without the invite: %s", r.raw)
		}
		r = e.do("GET", "/_matrix/client/v3/sync", alice.token, nil).must(t, 200, "alice's initial sync")
		join, ok := r.body["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
		if !ok || len(join["state"].(map[string]any)["events"].([]any)) != 2 {
			t.Fatalf("initial sync of the creator: %s", r.raw)
		}
	})
}
