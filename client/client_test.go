package client_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func register(t *testing.T, url, name string, store client.Store) *client.Client {
	t.Helper()
	c, err := client.Register(ctxT(t), client.Config{BaseURL: url, Store: store, OneTimeKeyPackages: 3}, name, "pw-"+name)
	if err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return c
}

// syncUntil syncs c until cond holds.
func syncUntil(t *testing.T, c *client.Client, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 40 && !cond(); i++ {
		if err := c.Sync(ctxT(t), 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if !cond() {
		t.Fatalf("%s: %s never happened", c.UserID(), what)
	}
}

func bodies(ms []client.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Sender+": "+m.Body())
	}
	return out
}

func hasBody(c *client.Client, roomID, sender, body string) func() bool {
	return func() bool {
		return slices.Contains(bodies(c.Messages(roomID)), sender+": "+body)
	}
}

// TestRoomLifecycle runs one room on one server through the library:
// cross-signed devices, verification before adding, invite and join from
// the Welcome, messages both ways, room name and topic in 0xF6D0, remove,
// and a restart of a client from its SQLite store in the middle.
func TestRoomLifecycle(t *testing.T) {
	url := newServer(t, "a.test")
	ctx := ctxT(t)
	dir := t.TempDir()
	bobStore, err := client.OpenSQLiteStore(ctx, filepath.Join(dir, "bob.db"))
	if err != nil {
		t.Fatal(err)
	}
	alice := register(t, url, "alice", nil)
	bob := register(t, url, "bob", bobStore)
	carol := register(t, url, "carol", nil)
	for _, c := range []*client.Client{alice, bob, carol} {
		if err := c.Sync(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}

	roomID, err := alice.CreateRoom(ctx, client.RoomOptions{Name: "Plans", Topic: "Where to meet", Window: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	st, err := alice.Status(roomID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 1 || st.Name != "Plans" || st.Topic != "Where to meet" || st.Window != client.MaxWindow ||
		st.RequiredVerification != client.VerifyCross || !slices.Equal(st.Powers, []string{"a.test"}) {
		t.Fatalf("new room status: %+v", st)
	}

	// m.cross: bob is not verified yet; the add is refused and nothing
	// is committed.
	err = alice.Invite(ctx, roomID, bob.UserID())
	var ve *client.VerificationError
	if !errors.As(err, &ve) || ve.UserID != bob.UserID() || ve.DeviceID != bob.DeviceID() || ve.Required != client.VerifyCross ||
		!strings.Contains(ve.Reason, "not signed by") {
		t.Fatalf("invite of an unverified user: %v", err)
	}
	if st2, _ := alice.Status(roomID); st2.Epoch != 1 || st2.CommitID != st.CommitID || len(st2.Members) != 1 {
		t.Fatalf("a refused add changed the room: %+v", st2)
	}
	// The wrong fingerprint is refused; the right one verifies bob.
	if err := alice.VerifyUser(ctx, bob.UserID(), "AAAA"); err == nil {
		t.Fatal("VerifyUser accepted a wrong fingerprint")
	}
	fp, err := bob.MasterKey(ctx, bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.VerifyUser(ctx, bob.UserID(), fp); err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, roomID, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	bst, _ := bob.Status(roomID)
	if bst.Epoch != 2 || bst.Name != "Plans" || len(bst.Members) != 2 {
		t.Fatalf("bob after joining: %+v", bst)
	}

	if _, err := alice.Send(ctx, roomID, "hello bob"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "reading alice's message", hasBody(bob, roomID, alice.UserID(), "hello bob"))
	if _, err := bob.Send(ctx, roomID, "hello alice"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, alice, "reading bob's message", hasBody(alice, roomID, bob.UserID(), "hello alice"))

	// Bob restarts from his store and keeps following the room.
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	bobStore, err = client.OpenSQLiteStore(ctx, filepath.Join(dir, "bob.db"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err = client.Open(ctx, client.Config{BaseURL: url, Store: bobStore, OneTimeKeyPackages: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetState(ctx, roomID, "m.room.name", "", map[string]string{"name": "Plans v2"}); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "seeing the new name", func() bool { s, _ := bob.Status(roomID); return s.Name == "Plans v2" })
	if _, err := bob.Send(ctx, roomID, "after restart"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, alice, "reading bob after his restart", hasBody(alice, roomID, bob.UserID(), "after restart"))
	if err := alice.SetState(ctx, roomID, "bad\x01type", "", map[string]string{}); err == nil {
		t.Fatal("a state event type with a control character was accepted")
	}

	// Bob (a member now) cross-checks carol the m.tofu way? The room is
	// m.cross: bob has not verified carol, so his invite is refused.
	if err := bob.Invite(ctx, roomID, carol.UserID()); !errors.As(err, &ve) || ve.UserID != carol.UserID() {
		t.Fatalf("bob inviting unverified carol: %v", err)
	}

	// Alice removes bob; bob learns he is out and cannot read what follows.
	if err := alice.Remove(ctx, roomID, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	after, err := alice.Send(ctx, roomID, "bob is gone")
	if err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "learning of the removal", func() bool {
		s, _ := bob.Status(roomID)
		for _, u := range s.Undecryptable {
			if u.EventID == after {
				return s.NeedsWelcome != "" && u.Reason == client.ReasonNotMember
			}
		}
		return false
	})
	if ast, _ := alice.Status(roomID); len(ast.Members) != 1 {
		t.Fatalf("alice's members after removing bob: %+v", ast.Members)
	}
}

// TestVerificationLevels checks m.none and m.tofu: m.tofu pins the first
// master key seen, m.none adds a device whatever its cross-signing.
func TestVerificationLevels(t *testing.T) {
	url := newServer(t, "a.test")
	ctx := ctxT(t)
	alice := register(t, url, "alice", nil)
	bob := register(t, url, "bob", nil)
	dave := register(t, url, "dave", nil)
	for _, c := range []*client.Client{alice, bob, dave} {
		if err := c.Sync(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	tofu, err := alice.CreateRoom(ctx, client.RoomOptions{RequiredVerification: client.VerifyTOFU})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, tofu, bob.UserID()); err != nil {
		t.Fatalf("m.tofu invite of a cross-signed user: %v", err)
	}
	// A second device of bob, not cross-signed: refused under m.tofu.
	bob2, err := client.Login(ctx, client.Config{BaseURL: url, OneTimeKeyPackages: 2}, "bob", "pw-bob")
	if err != nil {
		t.Fatal(err)
	}
	_ = bob2
	none, err := alice.CreateRoom(ctx, client.RoomOptions{RequiredVerification: client.VerifyNone})
	if err != nil {
		t.Fatal(err)
	}
	tofu2, err := alice.CreateRoom(ctx, client.RoomOptions{RequiredVerification: client.VerifyTOFU})
	if err != nil {
		t.Fatal(err)
	}
	var ve *client.VerificationError
	if err := alice.Invite(ctx, tofu2, bob.UserID()); !errors.As(err, &ve) || ve.DeviceID != bob2.DeviceID() {
		t.Fatalf("m.tofu invite with a device not cross-signed: %v", err)
	}
	if err := alice.Invite(ctx, none, bob.UserID()); err != nil {
		t.Fatalf("m.none invite: %v", err)
	}
	if s, _ := alice.Status(none); len(s.Members) != 3 {
		t.Fatalf("m.none room members: %+v", s.Members)
	}
	// Bob cross-signs his new device: m.tofu accepts it now.
	if err := bob.CrossSignDevice(ctx, bob2.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, tofu2, bob.UserID()); err != nil {
		t.Fatalf("m.tofu invite after cross-signing: %v", err)
	}
	// m.direct: dave's device must be verified directly.
	direct, err := alice.CreateRoom(ctx, client.RoomOptions{RequiredVerification: client.VerifyDirect})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, direct, dave.UserID()); !errors.As(err, &ve) || ve.Required != client.VerifyDirect {
		t.Fatalf("m.direct invite of an unverified device: %v", err)
	}
	devs, err := alice.Devices(ctx, dave.UserID())
	if err != nil || len(devs) != 1 || devs[0].Identity == nil {
		t.Fatalf("dave's devices: %v %+v", err, devs)
	}
	if err := alice.VerifyDevice(ctx, dave.UserID(), dave.DeviceID(), b64(devs[0].Identity.SignatureKey)); err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, direct, dave.UserID()); err != nil {
		t.Fatalf("m.direct invite after direct verification: %v", err)
	}
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
