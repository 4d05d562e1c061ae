package clientapi_test

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/mls"
)

// keyList is GET /keys/list for a user.
func (u *mlsUser) keyList() (oneTime, fallback []string) {
	u.t.Helper()
	r := u.e.do("GET", "/_matrix/client/v3/keys/list", u.token, nil).must(u.t, 200, "keys/list")
	for _, k := range r.body["one_time_keys"].([]any) {
		oneTime = append(oneTime, k.(string))
	}
	for _, k := range r.body["fallback_keys"].([]any) {
		fallback = append(fallback, k.(string))
	}
	return oneTime, fallback
}

// otkCount reads this user's one-time key count for its algorithm from a
// sync body.
func (u *mlsUser) otkCount(body map[string]any) int {
	counts, _ := body["device_one_time_keys_count"].(map[string]any)
	n, _ := counts[u.alg].(float64)
	return int(n)
}

// messageBody decrypts an m.room.encrypted event and returns its body.
func (u *mlsUser) messageBody(ev map[string]any) string {
	u.t.Helper()
	rec, err := u.decrypt(ev)
	if err != nil {
		u.t.Fatalf("%s decrypting %v: %v", u.userID, ev["event_id"], err)
	}
	var pt struct {
		Type    string `json:"type"`
		Content struct {
			Body string `json:"body"`
		} `json:"content"`
	}
	if err := json.Unmarshal(rec.Application, &pt); err != nil {
		u.t.Fatal(err)
	}
	return pt.Content.Body
}

// TestScenarioAliceInvitesBob is the whole client flow of the proposal
// over HTTP with real MLS clients: keys, room creation, the add commit and
// its Welcome, the invite, the join, messages through /sync and
// /messages, encrypted room state, and leaving.
func TestScenarioAliceInvitesBob(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, bob := newMLSUser(e, "alice"), newMLSUser(e, "bob")

		// Keys: credentials and key packages, counted in /sync and listed.
		alice.uploadKeys(2, true)
		if n := bob.uploadKeys(3, true)[bob.alg]; n != float64(3) {
			t.Fatalf("bob's upload counts %v", n)
		}
		if n := bob.otkCount(bob.sync(0)); n != 3 {
			t.Fatalf("bob's one-time count in /sync: %d, want 3", n)
		}
		ot, fb := bob.keyList()
		if len(ot) != 3 || len(fb) != 1 {
			t.Fatalf("bob's /keys/list: %v %v", ot, fb)
		}
		alice.sync(0)

		fm := fedMap([]string{"a.test"}, []string{"a.test"}, nil)
		roomID := alice.createRoom(fm)

		// Alice claims one of bob's key packages and commits the add.
		r := e.do("POST", "/_matrix/client/v3/keys/claim", alice.token, map[string]any{
			"one_time_keys": map[string]any{bob.userID: map[string]string{bob.deviceID: bob.alg}}}).must(t, 200, "keys/claim")
		claimed := r.body["one_time_keys"].(map[string]any)[bob.userID].(map[string]any)[bob.deviceID].(map[string]any)
		if len(claimed) != 1 {
			t.Fatalf("claimed %v", claimed)
		}
		var kpID, kpVal string
		for k, v := range claimed {
			kpID, kpVal = k, v.(string)
		}
		raw, err := base64.RawStdEncoding.DecodeString(kpVal)
		if err != nil {
			t.Fatal(err)
		}
		var kpMsg mls.MLSMessage
		if err := kpMsg.UnmarshalMLS(raw); err != nil {
			t.Fatal(err)
		}
		ot, _ = bob.keyList()
		if len(ot) != 2 || slices.Contains(ot, kpID) {
			t.Fatalf("after the claim bob's /keys/list is %v (claimed %s)", ot, kpID)
		}
		if n := bob.otkCount(bob.sync(0)); n != 2 {
			t.Fatalf("bob's count after the claim: %d", n)
		}
		sc := alice.stage(fm, []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kpMsg.KeyPackage}}})
		addID := alice.putCommit(roomID, sc).must(t, 200, "add commit").str("event_id")
		alice.awaitCommit(roomID, addID, sc)

		// The Welcome by to-device, then the invite.
		welcome := base64.RawStdEncoding.EncodeToString(wire(t, sc.Welcome))
		e.do("PUT", "/_matrix/client/v3/sendToDevice/m.mls.welcome/"+e.nextTxn(), alice.token, map[string]any{
			"messages": map[string]any{bob.userID: map[string]any{bob.deviceID: map[string]string{
				"algorithm": alice.alg, "room_id": roomID, "welcome": welcome}}}}).must(t, 200, "sendToDevice")
		e.do("POST", roomPath(roomID, "/invite"), alice.token, map[string]string{"user_id": bob.userID}).must(t, 200, "invite")

		body := bob.sync(0)
		invites := body["rooms"].(map[string]any)["invite"].(map[string]any)
		inv, ok := invites[roomID].(map[string]any)
		if !ok {
			t.Fatalf("bob's sync has no invite to %s: %v", roomID, body["rooms"])
		}
		stripped := inv["invite_state"].(map[string]any)["events"].([]any)
		member := stripped[1].(map[string]any)
		if member["sender"] != alice.userID || member["state_key"] != bob.userID {
			t.Fatalf("stripped member event %v", member)
		}
		tds := body["to_device"].(map[string]any)["events"].([]any)
		if len(tds) != 1 {
			t.Fatalf("bob's to-device events: %v", tds)
		}
		td := tds[0].(map[string]any)
		wb, _ := base64.RawStdEncoding.DecodeString(td["content"].(map[string]any)["welcome"].(string))
		var wm mls.MLSMessage
		if err := wm.UnmarshalMLS(wb); err != nil || td["sender"] != alice.userID {
			t.Fatalf("welcome: %v (sender %v)", err, td["sender"])
		}
		kp := bob.kps[kpID]
		if kp == nil {
			t.Fatalf("claimed key package %s is not bob's", kpID)
		}
		if bob.group, err = mls.JoinFromWelcome(wm.Welcome, mls.JoinParams{KeyPackage: kp.kp, Secrets: kp.sec, Signer: bob.signer}); err != nil {
			t.Fatal(err)
		}
		bob.commitID = addID
		e.do("POST", roomPath(roomID, "/join"), bob.token, map[string]any{}).must(t, 200, "join")
		body = bob.sync(0)
		join := body["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
		if st := join["state"].(map[string]any)["events"].([]any); len(st) != 2 {
			t.Fatalf("joined room state: %v", st)
		}
		r = e.do("GET", "/_matrix/client/v3/joined_rooms", bob.token, nil).must(t, 200, "joined_rooms")
		if rooms := r.body["joined_rooms"].([]any); len(rooms) != 1 || rooms[0] != roomID {
			t.Fatalf("bob's joined rooms %v", rooms)
		}

		// Messages both ways, read through /sync and /messages.
		m1 := alice.sendMessage(roomID, "hello bob").must(t, 200, "alice's message").str("event_id")
		var got []string
		for _, ev := range timeline(bob.sync(5000), roomID) {
			if ev["event_id"] == m1 {
				got = append(got, bob.messageBody(ev))
				if ev["origin"] != "a.test" || ev["sender"] != nil {
					t.Fatalf("client format: %v", ev)
				}
			}
		}
		if !slices.Equal(got, []string{"hello bob"}) {
			t.Fatalf("bob read %v", got)
		}
		m2 := bob.sendMessage(roomID, "hi alice").must(t, 200, "bob's message").str("event_id")
		r = e.do("GET", roomPath(roomID, "/messages?dir=b&limit=5"), alice.token, nil).must(t, 200, "messages")
		chunk := r.body["chunk"].([]any)
		if len(chunk) < 2 || chunk[0].(map[string]any)["event_id"] != m2 || chunk[1].(map[string]any)["event_id"] != m1 {
			t.Fatalf("/messages backwards: %s", r.raw)
		}
		if got := alice.messageBody(chunk[0].(map[string]any)); got != "hi alice" {
			t.Fatalf("alice read %q", got)
		}

		// Room name in 0xF6D0, set by alice, read by bob.
		st, err := client.ParseRoomState(alice.group.Extensions())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Set("m.room.name", "", map[string]string{"name": "Plans"}); err != nil {
			t.Fatal(err)
		}
		p, err := client.RoomStateProposal(alice.group.Extensions(), st)
		if err != nil {
			t.Fatal(err)
		}
		sc = alice.stage(fm, []*mls.Proposal{p})
		nameID := alice.putCommit(roomID, sc).must(t, 200, "room name commit").str("event_id")
		alice.awaitCommit(roomID, nameID, sc)
		seen := false
		for range 5 {
			for _, ev := range timeline(bob.sync(2000), roomID) {
				if ev["event_id"] == nameID {
					if _, err := bob.decrypt(ev); err != nil {
						t.Fatalf("bob processing the name commit: %v", err)
					}
					seen = true
				}
			}
			if seen {
				break
			}
		}
		bst, _ := client.ParseRoomState(bob.group.Extensions())
		if name, ok := bst.Get("m.room.name", ""); !seen || !ok || string(name) != `{"name":"Plans"}` {
			t.Fatalf("bob reads the room name %s (commit seen %v)", name, seen)
		}

		// Bob leaves: the room moves to rooms.leave and no longer syncs.
		e.do("POST", roomPath(roomID, "/leave"), bob.token, map[string]any{}).must(t, 200, "leave")
		body = bob.sync(0)
		if _, ok := body["rooms"].(map[string]any)["leave"].(map[string]any)[roomID]; !ok {
			t.Fatalf("after leaving: %v", body["rooms"])
		}
		e.do("GET", roomPath(roomID, "/messages"), bob.token, nil).refused(t, 403, "M_FORBIDDEN", "messages after leaving")
		if ot, fb := bob.keyList(); len(ot) != 2 || len(fb) != 1 {
			t.Fatalf("bob's keys at the end: %v %v", ot, fb)
		}
	})
}
