package clientapi_test

import (
	"context"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// snapshot is what a refused request must leave as it was.
type snapshot struct {
	positions   storage.StreamPositions
	current     storage.RoomState
	extremities []string
	pending     []storage.PendingCommit
}

func (e *roomEnv) snapshot(roomID string) snapshot {
	e.t.Helper()
	ctx := context.Background()
	var s snapshot
	var err error
	if s.positions, err = e.db.MaxStreamPositions(ctx); err != nil {
		e.t.Fatal(err)
	}
	if roomID != "" {
		if s.current, err = e.db.CurrentState(ctx, roomID); err != nil {
			e.t.Fatal(err)
		}
		if s.extremities, err = e.db.ForwardExtremities(ctx, roomID); err != nil {
			e.t.Fatal(err)
		}
		if s.pending, err = e.db.PendingCommits(ctx, roomID, storage.PendingWaiting); err != nil {
			e.t.Fatal(err)
		}
	}
	return s
}

// unchanged fails the test if storage moved since before.
func (e *roomEnv) unchanged(before snapshot, roomID, what string) {
	e.t.Helper()
	if after := e.snapshot(roomID); !reflect.DeepEqual(before, after) {
		e.t.Fatalf("%s changed storage:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// twoMembers makes a room on a.test with alice (creator) and bob joined,
// both MLS members at the add commit.
func twoMembers(t *testing.T, e *roomEnv, powers []string) (alice, bob *mlsUser, roomID string) {
	t.Helper()
	alice, bob = newMLSUser(e, "alice"), newMLSUser(e, "bob")
	alice.uploadKeys(1, false)
	bob.uploadKeys(1, false)
	var kpID string
	for id := range bob.kps {
		kpID = id
	}
	servers := []string{"a.test", "b.test"}
	for _, p := range powers {
		if !containsID(servers, p) {
			servers = append(servers, p)
		}
	}
	fm := fedMap(powers, servers, nil)
	roomID = alice.createRoom(fm)
	sc := alice.stage(fm, []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *bob.kps[kpID].kp}}})
	addID := alice.putCommit(roomID, sc).must(t, 200, "add").str("event_id")
	alice.awaitCommit(roomID, addID, sc)
	var err error
	if bob.group, err = mls.JoinFromWelcome(sc.Welcome.Welcome, mls.JoinParams{KeyPackage: bob.kps[kpID].kp, Secrets: bob.kps[kpID].sec, Signer: bob.signer}); err != nil {
		t.Fatal(err)
	}
	bob.commitID = addID
	e.do("POST", roomPath(roomID, "/invite"), alice.token, map[string]string{"user_id": bob.userID}).must(t, 200, "invite")
	e.do("POST", roomPath(roomID, "/join"), bob.token, nil).must(t, 200, "join")
	bob.sync(0)
	return alice, bob, roomID
}

// TestSendRefusals sends events the room must refuse, each checked for
// status, errcode and that storage did not change.
func TestSendRefusals(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, bob, roomID := twoMembers(t, e, []string{"a.test"})
		v := alice.v
		encPath := func(txn string) string { return roomPath(roomID, "/send/m.room.encrypted/"+txn) }
		appMsg := func(g *mls.Group) []byte {
			m, err := g.Encrypt([]byte(`{"type":"m.room.message","content":{}}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			return wire(t, m)
		}

		cases := []struct {
			name    string
			method  string
			path    string
			body    any
			status  int
			errcode string
			msg     string
		}{
			{"ciphertext of another group", "PUT", encPath("g1"), nil, 403, "M_FORBIDDEN", "rule 7"},
			{"commit in m.room.encrypted", "PUT", encPath("c1"), nil, 400, "M_BAD_JSON", ""},
			{"PublicMessage framing", "PUT", encPath("p1"), nil, 400, "M_BAD_JSON", ""},
			{"non-empty state key", "PUT", roomPath(roomID, "/state/"+v.CommitType()+"/x"), nil, 403, "M_FORBIDDEN", "rule 1"},
			{"wrong epoch", "PUT", encPath("e1"), nil, 409, "DE.BWI.MLS.WRONG_EPOCH", ""},
			{"not JSON", "PUT", encPath("j1"), "{nope", 400, "M_NOT_JSON", ""},
			{"content not an object", "PUT", encPath("j2"), "[1]", 400, "M_BAD_JSON", ""},
			{"bad base64", "PUT", encPath("b1"), map[string]string{"algorithm": alice.alg, "ciphertext": "!!"}, 400, "M_BAD_JSON", ""},
			{"other event type", "PUT", roomPath(roomID, "/send/m.room.message/t1"), map[string]string{"body": "plain"}, 403, "M_FORBIDDEN", "not allowed"},
			{"member state", "PUT", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(bob.userID)), map[string]string{"membership": "join"}, 403, "M_FORBIDDEN", "managed inside MLS"},
			{"topic state", "PUT", roomPath(roomID, "/state/m.room.topic/"), map[string]string{"topic": "x"}, 403, "M_FORBIDDEN", "rule 2"},
			{"unknown room", "PUT", roomPath("!nope:a.test", "/send/m.room.encrypted/u1"), map[string]string{}, 404, "M_NOT_FOUND", ""},
		}
		// Bodies that need MLS.
		other, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte("!other:a.test"), Signer: alice.signer, Credential: alice.cred})
		if err != nil {
			t.Fatal(err)
		}
		cases[0].body = mlsContent(v, roomversion.EventTypeEncrypted, alice.alg, appMsg(other))
		commit := alice.stage(fedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil), nil)
		cases[1].body = mlsContent(v, roomversion.EventTypeEncrypted, alice.alg, wire(t, commit.Message))
		pub, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte(roomID), Signer: alice.signer, Credential: alice.cred,
			Config: mls.GroupConfig{PublicHandshake: true}})
		if err != nil {
			t.Fatal(err)
		}
		psc, err := pub.Commit(mls.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cases[2].body = mlsContent(v, roomversion.EventTypeEncrypted, alice.alg, wire(t, psc.Message))
		cases[3].body = mlsContent(v, v.CommitType(), alice.alg, wire(t, commit.Message))
		// A message of an epoch no commit starts (the group two epochs on).
		future, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte(roomID), Signer: alice.signer, Credential: alice.cred})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			fsc, err := future.Commit(mls.CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := future.Merge(fsc); err != nil {
				t.Fatal(err)
			}
		}
		cases[4].body = mlsContent(v, roomversion.EventTypeEncrypted, alice.alg, appMsg(future))

		for _, c := range cases {
			before := e.snapshot(roomID)
			r := e.do(c.method, c.path, alice.token, c.body)
			r.refused(t, c.status, c.errcode, c.name)
			if c.msg != "" && !strings.Contains(r.str("error"), c.msg) {
				t.Fatalf("%s: error %q does not mention %q", c.name, r.str("error"), c.msg)
			}
			e.unchanged(before, roomID, c.name)
		}
		if r := e.do("PUT", encPath("e1"), alice.token, cases[4].body); r.body["current_commit"] != alice.commitID || r.body["current_epoch"] != float64(2) {
			t.Fatalf("409 body: %s", r.raw)
		}
	})
}

// TestCommitRules covers commits: powers[0] only, the epoch race, named
// commits, replayed transactions, and messages one epoch behind.
func TestCommitRules(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		alice, bob, roomID := twoMembers(t, e, []string{"a.test"})
		fm := fedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil)
		epoch1 := alice.commitID
		alice.keep()

		// Two clients commit on the same epoch at once: one wins, the other
		// gets 409 with the current epoch and commit.
		sa, sb := alice.stage(fm, nil), bob.stage(fm, nil)
		var wg sync.WaitGroup
		var ra, rb resp
		wg.Add(2)
		go func() { defer wg.Done(); ra = alice.putCommit(roomID, sa) }()
		go func() { defer wg.Done(); rb = bob.putCommit(roomID, sb) }()
		wg.Wait()
		winner, loser := ra, rb
		if ra.status != 200 {
			winner, loser = rb, ra
		}
		winner.must(t, 200, "race winner")
		loser.refused(t, 409, "DE.BWI.MLS.WRONG_EPOCH", "race loser")
		if loser.body["current_commit"] != winner.str("event_id") || loser.body["current_epoch"] != float64(3) {
			t.Fatalf("loser's 409: %s (winner %s)", loser.raw, winner.str("event_id"))
		}
		win := winner.str("event_id")
		if ra.status == 200 {
			alice.awaitCommit(roomID, win, sa)
			for _, ev := range timeline(bob.sync(0), roomID) {
				if ev["event_id"] == win {
					if _, err := bob.decrypt(ev); err != nil {
						t.Fatal(err)
					}
				}
			}
			bob.group.ClearProposals()
		} else {
			bob.awaitCommit(roomID, win, sb)
			for _, ev := range timeline(alice.sync(0), roomID) {
				if ev["event_id"] == win {
					if _, err := alice.decrypt(ev); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		alice.commitID, bob.commitID = win, win

		// A message one epoch behind is accepted with the older commit as
		// its auth commit: a client that has not processed the latest commit
		// yet. Build it from a group state kept at epoch 2.
		behind := e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/behind?de.bwi.mls.commit_id="+url.QueryEscape(epoch1)),
			alice.token, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, keptMessage(t, alice, roomID, epoch1)))
		behind.must(t, 200, "message one epoch behind")
		se, err := e.db.Event(context.Background(), behind.str("event_id"))
		if err != nil {
			t.Fatal(err)
		}
		if auth := se.Event.AuthEventIDs(); !containsID(auth, epoch1) {
			t.Fatalf("auth events of the late message %v, want %s", auth, epoch1)
		}

		// A commit naming a commit that is not current: 409.
		before := e.snapshot(roomID)
		stale := alice.stage(fm, nil)
		alice.group.ClearProposals()
		r := e.do("PUT", roomPath(roomID, "/state/"+alice.v.CommitType()+"/?de.bwi.mls.commit_id="+url.QueryEscape(epoch1)),
			alice.token, mlsContent(alice.v, alice.v.CommitType(), alice.alg, wire(t, stale.Message)))
		r.refused(t, 409, "DE.BWI.MLS.WRONG_EPOCH", "commit naming an old commit")
		e.unchanged(before, roomID, "commit naming an old commit")
		// A message naming a commit the room does not know: 409.
		r = e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/nm?de.bwi.mls.commit_id="+url.QueryEscape("$notacommit")),
			alice.token, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessage(t, alice.group)))
		r.refused(t, 409, "DE.BWI.MLS.WRONG_EPOCH", "message naming an unknown commit")
		e.unchanged(before, roomID, "message naming an unknown commit")
		// A message naming a commit that lost a fork: the race loser's
		// commit as another server would have accepted it, held here
		// soft-failed (case c) as federation stores it. 409.
		ctx := context.Background()
		cur, err := e.db.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		lost := sb
		if ra.status != 200 {
			lost = sa
		}
		empty := ""
		fork, err := (&roomversion.Builder{Version: alice.v, RoomID: roomID, Type: alice.v.CommitType(), StateKey: &empty,
			Content:    mustJSON(t, mlsContent(alice.v, alice.v.CommitType(), alice.alg, wire(t, lost.Message))),
			AuthEvents: []string{cur.CreateID, epoch1}, PrevEvents: []string{epoch1}, Origin: "b.test"}).Build(ctx, "ed25519:x", testKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.StoreEvent(ctx, fork, storage.StoreEventOptions{SoftFailed: true,
			SoftFailReason: "soft-fail (c): loses to the commit on the mainline", StateBefore: storage.RoomState{CreateID: cur.CreateID, CommitID: epoch1}}); err != nil {
			t.Fatal(err)
		}
		before = e.snapshot(roomID)
		r = e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/lf?de.bwi.mls.commit_id="+url.QueryEscape(fork.EventID())),
			alice.token, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessage(t, alice.group)))
		r.refused(t, 409, "DE.BWI.MLS.WRONG_EPOCH", "message naming a commit not on the mainline")
		if !strings.Contains(r.str("error"), "mainline") {
			t.Fatalf("409 for a lost commit: %s", r.raw)
		}
		e.unchanged(before, roomID, "message naming a lost commit")
		// A commit naming it is refused the same way.
		r = e.do("PUT", roomPath(roomID, "/state/"+alice.v.CommitType()+"/?de.bwi.mls.commit_id="+url.QueryEscape(fork.EventID())),
			alice.token, mlsContent(alice.v, alice.v.CommitType(), alice.alg, wire(t, stale.Message)))
		r.refused(t, 409, "DE.BWI.MLS.WRONG_EPOCH", "commit naming a lost commit")
		e.unchanged(before, roomID, "commit naming a lost commit")

		// A replayed transaction returns the same event, stored once.
		content := mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessage(t, alice.group))
		first := e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/same"), alice.token, content).must(t, 200, "first send")
		mid := e.snapshot(roomID)
		again := e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/same"), alice.token, content).must(t, 200, "replayed send")
		if again.str("event_id") != first.str("event_id") {
			t.Fatalf("replay gave %s, first %s", again.str("event_id"), first.str("event_id"))
		}
		e.unchanged(mid, roomID, "replayed transaction")
		// The same transaction ID from another device is a new event.
		other := e.do("PUT", roomPath(roomID, "/send/m.room.encrypted/same"), bob.token,
			mlsContent(bob.v, roomversion.EventTypeEncrypted, bob.alg, appMessage(t, bob.group))).must(t, 200, "bob's same txn ID")
		if other.str("event_id") == first.str("event_id") {
			t.Fatal("another device's transaction answered with alice's event")
		}
		// The own event carries transaction_id, the other's does not.
		r = e.do("GET", roomPath(roomID, "/event/"+url.PathEscape(first.str("event_id"))), alice.token, nil).must(t, 200, "event")
		if r.body["unsigned"].(map[string]any)["transaction_id"] != "same" {
			t.Fatalf("own event's unsigned: %v", r.body["unsigned"])
		}
		r = e.do("GET", roomPath(roomID, "/event/"+url.PathEscape(first.str("event_id"))), bob.token, nil).must(t, 200, "event")
		if _, ok := r.body["unsigned"].(map[string]any)["transaction_id"]; ok {
			t.Fatalf("another device sees transaction_id: %v", r.body["unsigned"])
		}
	})
}

// keptMessage encrypts a message from the group state u kept at commitID
// (MLS encrypts only in a group's current epoch).
func keptMessage(t *testing.T, u *mlsUser, roomID, commitID string) []byte {
	t.Helper()
	if u.kept == nil || u.keptAt != commitID {
		t.Fatalf("no kept group state at %s", commitID)
	}
	return appMessage(t, u.kept)
}

// appMessage encrypts an application message in g.
func appMessage(t *testing.T, g *mls.Group) []byte {
	t.Helper()
	m, err := g.Encrypt([]byte(`{"type":"m.room.message","content":{"body":"x"}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, m)
}

func containsID(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
