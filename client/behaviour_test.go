package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// rawDo sends one JSON request with token and returns status and body.
func rawDo(t *testing.T, method, u, token string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, u, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// claim claims one key package of user/device and returns its key ID.
func claim(t *testing.T, srv string, by *client.Client, user, device string) string {
	t.Helper()
	st, body := rawDo(t, "POST", srv+"/_matrix/client/v3/keys/claim", by.AccessToken(), map[string]any{
		"one_time_keys": map[string]any{user: map[string]string{device: by.Algorithm()}}})
	if st != 200 {
		t.Fatalf("claim: %d %v", st, body)
	}
	otks, _ := body["one_time_keys"].(map[string]any)
	u, _ := otks[user].(map[string]any)
	d, _ := u[device].(map[string]any)
	for id := range d {
		return id
	}
	t.Fatalf("claim: no key package: %v", body)
	return ""
}

// TestKeyPackageReplenishment: once a device's one-time key packages run
// out and the fallback has been handed out once, one /sync refills both,
// so the next claim gets a fresh one-time key package rather than the
// used fallback again.
func TestKeyPackageReplenishment(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil) // 3 one-time key packages + a fallback
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		id := claim(t, srv, alice, bob.UserID(), bob.DeviceID())
		if seen[id] {
			t.Fatalf("one-time key package %s handed out twice", id)
		}
		seen[id] = true
	}
	fallback := claim(t, srv, alice, bob.UserID(), bob.DeviceID())
	if seen[fallback] {
		t.Fatalf("the fallback %s is one of the one-time packages", fallback)
	}
	if again := claim(t, srv, alice, bob.UserID(), bob.DeviceID()); again != fallback {
		t.Fatalf("without a sync the server should hand out the fallback again, got %s", again)
	}
	if err := bob.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		id := claim(t, srv, alice, bob.UserID(), bob.DeviceID())
		if id == fallback || seen[id] {
			t.Fatalf("after bob's sync claim %d got %s (fallback %s): not refilled", i, id, fallback)
		}
		seen[id] = true
	}
	newFallback := claim(t, srv, alice, bob.UserID(), bob.DeviceID())
	if newFallback == fallback || seen[newFallback] {
		t.Fatalf("the fallback was not replaced: %s", newFallback)
	}
	// The refilled packages work: alice adds bob with one.
	roomID, err := alice.CreateRoom(ctx, client.RoomOptions{RequiredVerification: client.VerifyNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Sync(ctx, 0); err != nil { // refills again
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, roomID, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
}

// TestCommitRaceCatchesUp: bob's client has not seen alice's commit when
// it commits; the server answers 409 naming the current commit, and the
// client catches up, rebuilds its change on the new state and commits it
// again, so both changes survive.
func TestCommitRaceCatchesUp(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone}, bob)
	if err := alice.SetState(ctx, roomID, "m.room.name", "", map[string]string{"name": "Alice's name"}); err != nil {
		t.Fatal(err)
	}
	before, _ := bob.Status(roomID)
	if err := bob.SetState(ctx, roomID, "m.room.topic", "", map[string]string{"topic": "Bob's topic"}); err != nil {
		t.Fatal(err)
	}
	after, _ := bob.Status(roomID)
	if after.Epoch != before.Epoch+2 || after.Name != "Alice's name" || after.Topic != "Bob's topic" {
		t.Fatalf("bob before %d, after: %+v", before.Epoch, after)
	}
	if len(after.LostCommits) != 0 {
		t.Fatalf("a 409 was counted as a lost commit: %v", after.LostCommits)
	}
	syncUntil(t, alice, "seeing bob's topic", func() bool { s, _ := alice.Status(roomID); return s.Topic == "Bob's topic" && s.Name == "Alice's name" })
}

// TestBrokenRoomAndSuccessor: an accepted commit that the members cannot
// process (the server cannot tell: its content is encrypted) marks the
// room broken, naming the commit and its origin; StartSuccessor makes a
// new room with the same members, who talk there.
func TestBrokenRoomAndSuccessor(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone, Name: "Old"}, bob)
	st, _ := alice.Status(roomID)
	// A commit whose framing is right but whose ciphertext is garbage.
	ad, err := (&fedmap.Map{Federation: fedmap.Federation{Powers: st.Powers, Servers: st.Servers, CanPropose: st.CanPropose}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	junk := func(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }
	bad := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(roomID), Epoch: st.Epoch, ContentType: mls.ContentTypeCommit, AuthenticatedData: ad,
		EncryptedSenderData: junk(32), Ciphertext: junk(200)}}
	wire, err := bad.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	code, body := rawDo(t, "PUT", srv+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.mls.commit/?de.bwi.mls.commit_id="+url.QueryEscape(st.CommitID),
		alice.AccessToken(), map[string]string{"algorithm": alice.Algorithm(), "ciphertext": base64.RawURLEncoding.EncodeToString(wire)})
	if code != 200 {
		t.Fatalf("the server refused the crafted commit: %d %v", code, body)
	}
	badID, _ := body["event_id"].(string)
	syncUntil(t, bob, "seeing the room broken", func() bool { s, _ := bob.Status(roomID); return s.Broken != nil })
	bs, _ := bob.Status(roomID)
	if bs.Broken.EventID != badID || bs.Broken.Origin != "a.test" {
		t.Fatalf("broken: %+v, want commit %s from a.test", bs.Broken, badID)
	}
	if _, err := bob.Send(ctx, roomID, "into a broken room"); err == nil {
		t.Fatal("sending into a broken room succeeded")
	}
	newID, failed, err := bob.StartSuccessor(ctx, roomID, client.RoomOptions{})
	if err != nil || len(failed) != 0 {
		t.Fatalf("successor: %v %v", err, failed)
	}
	if err := alice.Join(ctx, newID); err != nil {
		t.Fatal(err)
	}
	ns, _ := alice.Status(newID)
	if len(ns.Members) != 2 || ns.RequiredVerification != client.VerifyNone {
		t.Fatalf("successor room: %+v", ns)
	}
	if _, err := alice.Send(ctx, newID, "we moved"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "reading in the successor", hasBody(bob, newID, alice.UserID(), "we moved"))
}

// TestLeaveIsCommittedByAMember: a leaving device proposes its own
// removal; the remaining member chosen to commit (lowest leaf, on
// powers[0]) commits it during its sync, and everyone's group shrinks.
func TestLeaveIsCommittedByAMember(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil)
	carol := register(t, srv, "carol", nil)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone}, bob, carol)
	if st, _ := alice.Status(roomID); len(st.Members) != 3 || st.Epoch != 2 {
		t.Fatalf("one commit should add both: %+v", st)
	}
	if err := carol.Leave(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	members := func(c *client.Client) int { s, _ := c.Status(roomID); return len(s.Members) }
	syncUntil(t, alice, "committing carol's removal", func() bool { return members(alice) == 2 })
	syncUntil(t, bob, "seeing carol's removal", func() bool { return members(bob) == 2 })
	if st, _ := bob.Status(roomID); len(st.Undecryptable) != 0 || st.Waiting != 0 {
		t.Fatalf("bob after carol left: %+v", st)
	}
	// Bob updates his keys: a commit with only a path, a new epoch.
	before, _ := bob.Status(roomID)
	if err := bob.UpdateKeys(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if after, _ := bob.Status(roomID); after.Epoch != before.Epoch+1 || len(after.Members) != 2 {
		t.Fatalf("bob after updating his keys: %+v (before epoch %d)", after, before.Epoch)
	}
	syncUntil(t, alice, "following bob's key update", func() bool { s, _ := alice.Status(roomID); return s.Epoch == before.Epoch+1 })
	if _, err := alice.Send(ctx, roomID, "just us"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "reading after carol left", hasBody(bob, roomID, alice.UserID(), "just us"))
}

// TestLimitedTimelineGapFilled: while bob does not sync, alice sends more
// events than a /sync timeline holds (20), with a commit among them; bob's
// next sync is limited and the client pages /messages back to the last
// event it processed, so it misses neither the commit nor any message.
func TestLimitedTimelineGapFilled(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone}, bob)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := alice.Send(ctx, roomID, fmt.Sprintf("m%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 25)
	if err := alice.SetState(ctx, roomID, "m.room.topic", "", map[string]string{"topic": "gap"}); err != nil {
		t.Fatal(err)
	}
	send(25, 50)
	syncUntil(t, bob, "reading the last message", hasBody(bob, roomID, alice.UserID(), "m49"))
	got := bodies(bob.Messages(roomID))
	if len(got) != 50 {
		t.Fatalf("bob read %d messages, want 50: %v", len(got), got)
	}
	for i, b := range got {
		if b != fmt.Sprintf("%s: m%d", alice.UserID(), i) {
			t.Fatalf("message %d is %q", i, b)
		}
	}
	if st, _ := bob.Status(roomID); st.Topic != "gap" || len(st.Undecryptable) != 0 || st.NeedsWelcome != "" {
		t.Fatalf("bob after the gap: %+v", st)
	}
}

// sharedRoom: creator makes a room with opts and adds the members in one
// commit; each joins from the Welcome.
func sharedRoom(t *testing.T, creator *client.Client, opts client.RoomOptions, members ...*client.Client) string {
	t.Helper()
	ctx := ctxT(t)
	var ids []string
	for _, m := range members {
		if err := m.Sync(ctx, 0); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.UserID())
	}
	roomID, err := creator.CreateRoom(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		return roomID
	}
	if err := creator.Invite(ctx, roomID, ids...); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if err := m.Join(ctx, roomID); err != nil {
			t.Fatal(err)
		}
	}
	return roomID
}

// TestSecondDeviceJoins: bob has two devices; alice's invite adds both in
// one commit. After the first joins, the room reaches the second under
// rooms.join (the user is joined on the server); the second still joins
// from its own Welcome, and both read alice.
func TestSecondDeviceJoins(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", nil)
	bob2, err := client.Login(ctx, client.Config{BaseURL: srv, OneTimeKeyPackages: 2}, "bob", "pw-bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.CrossSignDevice(ctx, bob2.DeviceID()); err != nil {
		t.Fatal(err)
	}
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyTOFU}, bob)
	if st, _ := alice.Status(roomID); len(st.Members) != 3 {
		t.Fatalf("alice's invite should add both of bob's devices: %+v", st.Members)
	}
	if err := bob2.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, roomID, "to both devices"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{bob, bob2} {
		syncUntil(t, c, "reading alice", hasBody(c, roomID, alice.UserID(), "to both devices"))
	}
}

// TestSyncDoesNotHoldTheLock: a long-polling Sync leaves the client free
// for other calls (a chat sends while its sync waits).
func TestSyncDoesNotHoldTheLock(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone})
	done := make(chan error, 1)
	go func() { done <- alice.Sync(ctx, 5*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	sent := make(chan error, 1)
	go func() { _, err := alice.Send(ctx, roomID, "while syncing"); sent <- err }()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Send waited for the long-poll")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPendingCommitWaitLetsGo: while a pending commit waits for a
// power's window (here minutes: a.test is powers[1]), the client serves
// other calls (a message is sent), refuses a second change to the room
// with ErrCommitInFlight, and reports the pending commit in Status.
func TestPendingCommitWaitLetsGo(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, srv, "alice", nil)
	roomID, err := alice.CreateRoom(ctx, client.RoomOptions{Powers: []string{"b.test", "a.test"},
		Servers: []string{"a.test", "b.test"}, CanPropose: []string{"a.test"}, RequiredVerification: client.VerifyNone})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { waited <- alice.SetState(wctx, roomID, "m.room.name", "", map[string]string{"name": "later"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := alice.Status(roomID)
		if st.Pending != nil && st.Pending.Pending && st.Pending.EventID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending commit reported: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sendCtx, sendCancel := context.WithTimeout(ctx, 5*time.Second)
	defer sendCancel()
	if _, err := alice.Send(sendCtx, roomID, "while the commit waits"); err != nil {
		t.Fatalf("sending while the pending commit waits: %v", err)
	}
	if err := alice.SetState(ctx, roomID, "m.room.topic", "", map[string]string{"topic": "t"}); !errors.Is(err, client.ErrCommitInFlight) {
		t.Fatalf("a second change while the first waits: %v", err)
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting SetState ended with %v", err)
	}
	if st, _ := alice.Status(roomID); st.Pending == nil || st.Epoch != 1 {
		t.Fatalf("after giving up the wait: %+v", st)
	}
}

// TestMessagesStoredOneByOne: messages are store entries of their own,
// so the room's entry (written at every sync) does not grow with the
// history, and they are all there, in order, after a restart.
func TestMessagesStoredOneByOne(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	dir := t.TempDir()
	st, err := client.OpenSQLiteStore(ctx, filepath.Join(dir, "bob.db"))
	if err != nil {
		t.Fatal(err)
	}
	alice := register(t, srv, "alice", nil)
	bob := register(t, srv, "bob", st)
	roomID := sharedRoom(t, alice, client.RoomOptions{RequiredVerification: client.VerifyNone}, bob)
	size := func() int {
		b, err := st.Get(ctx, "room/"+roomID)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	before := size()
	for i := range 60 {
		if _, err := alice.Send(ctx, roomID, fmt.Sprintf("message %d with some text to make it longer", i)); err != nil {
			t.Fatal(err)
		}
	}
	syncUntil(t, bob, "reading all", hasBody(bob, roomID, alice.UserID(), "message 59 with some text to make it longer"))
	if after := size(); after > before+2000 {
		t.Fatalf("the room's store entry grew from %d to %d bytes with 60 messages", before, after)
	}
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = client.OpenSQLiteStore(ctx, filepath.Join(dir, "bob.db")); err != nil {
		t.Fatal(err)
	}
	bob, err = client.Open(ctx, client.Config{BaseURL: srv, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	got := bodies(bob.Messages(roomID))
	if len(got) != 60 {
		t.Fatalf("after the restart bob has %d messages", len(got))
	}
	for i, b := range got {
		if b != fmt.Sprintf("%s: message %d with some text to make it longer", alice.UserID(), i) {
			t.Fatalf("message %d after the restart: %q", i, b)
		}
	}
}
