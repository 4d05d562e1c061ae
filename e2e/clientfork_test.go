//go:build e2e

package e2e

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// A partition in which users on a and on b each add someone, long enough
// for b's window to open; then the heal: a's commit wins (a is powers[0]).
// With a security.window longer than the partition, bob (on the losing
// side) rolls back, applies the winner, reads what follows it and adds
// carol again with a new Welcome; with a window of 0, bob and carol are
// told they need a new Welcome. In both, alice and dave (the winning side)
// list exactly the messages of the losing fork as undecryptable (lost
// fork).
func TestClientForkWithinWindow(t *testing.T) { runClientFork(t, time.Hour) }

func TestClientForkWithoutWindow(t *testing.T) { runClientFork(t, 0) }

func runClientFork(t *testing.T, window time.Duration) {
	h := newFedHarness(t, pendingClockSpeed, "a.test", "b.test", "c.test")
	ctx := libCtx(t, 4*time.Minute)
	alice := h.libUser(ctx, "a.test", "alice", nil)
	dave := h.libUser(ctx, "a.test", "dave", nil)
	bob := h.libUser(ctx, "b.test", "bob", nil)
	carol := h.libUser(ctx, "c.test", "carol", nil)
	all := []string{"a.test", "b.test", "c.test"}
	roomID, err := alice.CreateRoom(ctx, client.RoomOptions{Powers: []string{"a.test", "b.test"}, Servers: all, CanPropose: all, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ctx, alice, bob)
	verify(t, ctx, alice, dave)
	verify(t, ctx, bob, carol)
	if err := alice.Invite(ctx, roomID, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	base, _ := alice.Status(roomID)
	await(t, ctx, "bob at the add commit", 20*time.Second, atCommit(roomID, func() string { return base.CommitID }), bob)

	for _, other := range []string{"b.test", "c.test"} {
		h.Block("a.test", other)
		h.Block(other, "a.test")
	}
	partitioned := time.Now()

	// a's side: alice adds dave (a commit, a is powers[0]); both talk.
	if err := alice.Invite(ctx, roomID, dave.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := dave.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	winner, _ := alice.Status(roomID)
	a1, err := alice.Send(ctx, roomID, "A1 during the partition")
	if err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "dave reads A1", 20*time.Second, reads(roomID, alice.UserID(), "A1 during the partition"), dave)

	// b's side: bob adds carol; his pending commit waits for a's window,
	// then b applies it in its own.
	if err := bob.Invite(ctx, roomID, carol.UserID()); err != nil {
		t.Fatal(err)
	}
	if err := carol.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	loser, _ := bob.Status(roomID)
	if loser.Epoch != winner.Epoch || loser.CommitID == winner.CommitID {
		t.Fatalf("no fork: alice at %d %s, bob at %d %s", winner.Epoch, winner.CommitID, loser.Epoch, loser.CommitID)
	}
	b1, err := bob.Send(ctx, roomID, "B1 during the partition")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := carol.Send(ctx, roomID, "C1 during the partition")
	if err != nil {
		t.Fatal(err)
	}
	await(t, ctx, "carol reads B1", 20*time.Second, reads(roomID, bob.UserID(), "B1 during the partition"), carol)
	t.Logf("partition of %v (virtual %v)", time.Since(partitioned), time.Duration(float64(time.Since(partitioned))*h.speed))

	for _, other := range []string{"b.test", "c.test"} {
		h.Unblock("a.test", other)
		h.Unblock(other, "a.test")
	}

	// The winning side lists exactly B1 and C1 as lost to the fork.
	lostFork := []string{b1, c1}
	sort.Strings(lostFork)
	await(t, ctx, "the winning side lists the losing fork's messages", 45*time.Second, func(c *client.Client) bool {
		st, _ := c.Status(roomID)
		var ids []string
		for _, u := range st.Undecryptable {
			if u.Reason != client.ReasonLostFork {
				return false
			}
			ids = append(ids, u.EventID)
		}
		sort.Strings(ids)
		return slices.Equal(ids, lostFork)
	}, alice, dave)

	if window > 0 {
		// Bob rolls back and applies alice's commit; his lost add of carol
		// is redone (a pending commit a applies) and carol rejoins from
		// the new Welcome.
		await(t, ctx, "bob rolls back and re-adds carol; carol rejoins", 60*time.Second, func(c *client.Client) bool {
			st, _ := c.Status(roomID)
			return st.NeedsWelcome == "" && len(st.Members) == 4
		}, bob, carol, alice)
		if st, _ := bob.Status(roomID); st.Rollbacks != 1 {
			t.Fatalf("bob's rollbacks: %d, want 1", st.Rollbacks)
		}
		await(t, ctx, "bob reads A1 after rolling back", 20*time.Second, reads(roomID, alice.UserID(), "A1 during the partition"), bob)
		if _, err := alice.Send(ctx, roomID, "after the heal"); err != nil {
			t.Fatal(err)
		}
		await(t, ctx, "everyone reads after the heal", 30*time.Second, reads(roomID, alice.UserID(), "after the heal"), bob, carol, dave)
		if _, err := carol.Send(ctx, roomID, "carol is back"); err != nil {
			t.Fatal(err)
		}
		await(t, ctx, "everyone reads carol", 30*time.Second, reads(roomID, carol.UserID(), "carol is back"), alice, bob, dave)
		_ = a1
	} else {
		await(t, ctx, "the losing side is told to rejoin", 45*time.Second, func(c *client.Client) bool {
			st, _ := c.Status(roomID)
			return strings.Contains(st.NeedsWelcome, "won")
		}, bob, carol)
		after, err := alice.Send(ctx, roomID, "after the heal")
		if err != nil {
			t.Fatal(err)
		}
		await(t, ctx, "bob cannot read after the heal", 30*time.Second, func(c *client.Client) bool {
			st, _ := c.Status(roomID)
			for _, u := range st.Undecryptable {
				if u.EventID == after {
					return u.Reason == client.ReasonNotMember
				}
			}
			return false
		}, bob)
		await(t, ctx, "dave reads after the heal", 30*time.Second, reads(roomID, alice.UserID(), "after the heal"), dave)
	}
	// Alice and dave still list only the losing fork's messages.
	for _, c := range []*client.Client{alice, dave} {
		st, _ := c.Status(roomID)
		if len(st.Undecryptable) != 2 {
			t.Fatalf("%s lists %+v as undecryptable, want only B1 and C1", c.UserID(), st.Undecryptable)
		}
	}
}
