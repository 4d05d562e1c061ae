//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// clientClock is the harness's virtual clock, as its servers run it.
func (h *fedHarness) clientClock() func() time.Time {
	start, err := time.Parse(time.RFC3339Nano, h.start)
	if err != nil {
		h.t.Fatal(err)
	}
	return func() time.Time {
		return start.Add(time.Duration(float64(time.Since(start)) * h.speed))
	}
}

// libUser registers name on server through package client, with a
// store (nil: memory) and the harness clock.
func (h *fedHarness) libUser(ctx context.Context, server, name string, store client.Store) *client.Client {
	h.t.Helper()
	c, err := client.Register(ctx, h.libConfig(server, store), name, "pw-"+name)
	if err != nil {
		h.t.Fatalf("registering %s on %s: %v", name, server, err)
	}
	if err := c.Sync(ctx, 0); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *fedHarness) libConfig(server string, store client.Store) client.Config {
	return client.Config{BaseURL: h.server(server).URL, Store: store, Now: h.clientClock(), OneTimeKeyPackages: 3}
}

func libCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// verify makes by verify who's master key (compared out of band here
// by reading it from who's own client).
func verify(t testing.TB, ctx context.Context, by, who *client.Client) {
	t.Helper()
	fp, err := who.MasterKey(ctx, who.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if err := by.VerifyUser(ctx, who.UserID(), fp); err != nil {
		t.Fatalf("%s verifying %s: %v", by.UserID(), who.UserID(), err)
	}
}

// await syncs the clients until cond holds for all of them.
func await(t *testing.T, ctx context.Context, what string, within time.Duration, cond func(c *client.Client) bool, cs ...*client.Client) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var waiting []string
		for _, c := range cs {
			if !cond(c) {
				waiting = append(waiting, c.UserID())
			}
		}
		if len(waiting) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, c := range cs {
				for _, id := range c.Rooms() {
					st, _ := c.Status(id)
					t.Logf("%s in %s: epoch %d commit %s needs_welcome=%q broken=%v undecryptable=%+v messages=%v",
						c.UserID(), id, st.Epoch, st.CommitID, st.NeedsWelcome, st.Broken, st.Undecryptable, bodiesOf(c.Messages(id)))
				}
			}
			t.Fatalf("%s: still waiting for %v after %v", what, waiting, within)
		}
		for _, c := range cs {
			if !cond(c) {
				if err := c.Sync(ctx, 300*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func bodiesOf(ms []client.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Sender+": "+m.Body())
	}
	return out
}

func reads(roomID, sender, body string) func(c *client.Client) bool {
	return func(c *client.Client) bool {
		return slices.Contains(bodiesOf(c.Messages(roomID)), sender+": "+body)
	}
}

func atCommit(roomID string, want func() string) func(c *client.Client) bool {
	return func(c *client.Client) bool {
		st, err := c.Status(roomID)
		return err == nil && st.CommitID == want()
	}
}

// TestClientFlowsAcrossServers runs the client library's flows over
// three federating mlsserver processes: cross-server invites with
// Welcomes, joins, messages every way, a pending commit (room name) from
// b applied by a, a refused add of a device that fails m.cross, a client
// restart from its SQLite store, remove and leave.
func TestClientFlowsAcrossServers(t *testing.T) {
	h := newFedHarness(t, pendingClockSpeed, "a.test", "b.test", "c.test")
	ctx := libCtx(t, 4*time.Minute)
	bobPath := filepath.Join(t.TempDir(), "bob.db")
	bobStore, err := client.OpenSQLiteStore(ctx, bobPath)
	if err != nil {
		t.Fatal(err)
	}
	alice := h.libUser(ctx, "a.test", "alice", nil)
	bob := h.libUser(ctx, "b.test", "bob", bobStore)
	carol := h.libUser(ctx, "c.test", "carol", nil)
	eve := h.libUser(ctx, "c.test", "eve", nil)

	roomID, err := alice.CreateRoom(ctx, client.RoomOptions{Powers: []string{"a.test", "b.test"},
		Servers: []string{"a.test", "b.test"}, CanPropose: []string{"a.test", "b.test"}, Name: "Trip"})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ctx, alice, bob)
	if err := alice.Invite(ctx, roomID, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, roomID, "hi bob"); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "bob reads alice", 20*time.Second, reads(roomID, alice.UserID(), "hi bob"), bob)
	if _, err := bob.Send(ctx, roomID, "hi alice"); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "alice reads bob", 20*time.Second, reads(roomID, bob.UserID(), "hi alice"), alice)

	// Bob's server is powers[1]: his change of the room name is a pending
	// commit, which a applies in its own (first) window.
	sent := h.clientClock()()
	if err := bob.SetState(ctx, roomID, "m.room.name", "", map[string]string{"name": "Trip to Lisbon"}); err != nil {
		t.Fatal(err)
	}
	if el := h.clientClock()().Sub(sent); el >= 5*time.Minute {
		t.Fatalf("bob's pending commit took %v of server time: applied after a's window", el)
	}
	await(t, ctx, "the new name", 20*time.Second, func(c *client.Client) bool {
		st, _ := c.Status(roomID)
		return st.Name == "Trip to Lisbon"
	}, alice, bob)

	// Eve's device is not verified by alice: m.cross refuses the add and
	// nothing is committed.
	before, _ := alice.Status(roomID)
	var ve *client.VerificationError
	if err := alice.Invite(ctx, roomID, eve.UserID()); !errors.As(err, &ve) || ve.UserID != eve.UserID() ||
		ve.DeviceID != eve.DeviceID() || ve.Required != client.VerifyCross {
		t.Fatalf("adding eve's unverified device: %v", err)
	}
	if after, _ := alice.Status(roomID); after.CommitID != before.CommitID || len(after.Members) != 2 {
		t.Fatalf("the refused add changed the room: %+v", after)
	}

	// Carol on c.test (not yet in servers: the add puts her server in).
	// Alice's verification of carol is kept by a.test: carol's master key,
	// as a.test shows it to alice, carries alice's signature.
	verify(t, ctx, alice, carol)
	if !signedBy(t, h.server("a.test").URL, alice, carol.UserID()) {
		t.Fatal("a.test does not show alice's signature on carol's master key")
	}
	if err := alice.Invite(ctx, roomID, carol.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := carol.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if st, _ := carol.Status(roomID); st.Name != "Trip to Lisbon" || len(st.Members) != 3 || !slices.Contains(st.Servers, "c.test") {
		t.Fatalf("carol after joining: %+v", st)
	}
	if _, err := carol.Send(ctx, roomID, "hi from c"); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "everyone reads carol", 20*time.Second, reads(roomID, carol.UserID(), "hi from c"), alice, bob)

	// Bob restarts from his store.
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if bobStore, err = client.OpenSQLiteStore(ctx, bobPath); err != nil {
		t.Fatal(err)
	}
	if bob, err = client.Open(ctx, h.libConfig("b.test", bobStore)); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, roomID, "while bob was away"); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "bob reads after his restart", 20*time.Second, reads(roomID, alice.UserID(), "while bob was away"), bob)
	if _, err := bob.Send(ctx, roomID, "back again"); err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "everyone reads bob after his restart", 20*time.Second, reads(roomID, bob.UserID(), "back again"), alice, carol)

	// Alice removes carol; carol learns she is out.
	if err := alice.Remove(ctx, roomID, carol.UserID()); err != nil {
		t.Fatal(err)
	}
	secret, err := alice.Send(ctx, roomID, "carol cannot read this")
	if err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "bob reads after the removal", 20*time.Second, reads(roomID, alice.UserID(), "carol cannot read this"), bob)
	await(t, ctx, "carol learns of her removal", 20*time.Second, func(c *client.Client) bool {
		st, _ := c.Status(roomID)
		for _, u := range st.Undecryptable {
			if u.EventID == secret && u.Reason == client.ReasonNotMember {
				return strings.Contains(st.NeedsWelcome, "removed")
			}
		}
		return false
	}, carol)
	if err := bob.Leave(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if st, _ := bob.Status(roomID); st.Membership != "leave" {
		t.Fatalf("bob after leaving: %+v", st)
	}
}

// signedBy reports whether target's master key, as by's server answers
// by's /keys/query, carries a signature of by.
func signedBy(t *testing.T, url string, by *client.Client, target string) bool {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"device_keys": map[string][]string{target: {}}})
	req, _ := http.NewRequest("POST", url+"/_matrix/client/v3/keys/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+by.AccessToken())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		MasterKeys map[string]struct {
			Signatures map[string]map[string]string `json:"signatures"`
		} `json:"master_keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return len(out.MasterKeys[target].Signatures[by.UserID()]) > 0
}
