//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
)

// pendingClockSpeed runs the servers of the pending-commit scenario 60
// times as fast as real time: a 5-minute window offset is 5 real seconds.
const pendingClockSpeed = 60

// virtualToReal is how long d of server time takes at pendingClockSpeed.
func virtualToReal(d time.Duration) time.Duration { return d / pendingClockSpeed }

// SPEC-NOTES §6 across three processes: in a room with powers [a, b],
// servers and can_propose [a, b, c], messages are decrypted on all three
// servers and a pending commit from c is applied by a at once; then a
// stops; carol's pending commit on c
// is not applied before b's window (5 minutes after b received it, b being
// powers[1]) and is applied by b in it: its m.mls.commit, with the pending
// commit's ciphertext, reaches b and c, and the members there merge it.
// Then a restarts on its data dir and catches up: its current commit is
// b's, alice's client merges it, and her next message reaches bob.
func TestPendingCommitAppliedBySecondPowerWhileFirstIsDown(t *testing.T) {
	begin := time.Now()
	h := newFedHarness(t, pendingClockSpeed, "a.test", "b.test", "c.test")
	fm := testclient.FedMap([]string{"a.test", "b.test"}, []string{"a.test", "b.test", "c.test"},
		[]string{"a.test", "b.test", "c.test"})
	alice, bob, carol, roomID, _ := h.threeServerRoom(t, fm)
	t.Logf("room %s with alice, bob and carol after %v", roomID, time.Since(begin))

	// Messages reach and are decrypted on all three servers.
	for _, m := range []struct {
		from *testclient.Client
		text string
		to   []*testclient.Client
	}{{alice, "from a", []*testclient.Client{bob, carol}}, {bob, "from b", []*testclient.Client{alice, carol}}, {carol, "from c", []*testclient.Client{alice, bob}}} {
		id := m.from.SendMessage(roomID, m.text).Must(t, 200, "message "+m.text).Str("event_id")
		for _, u := range m.to {
			awaitTimelineEvent(t, u, roomID, id, 20*time.Second, func(ev map[string]any) {
				if got := u.MessageText(ev); got != m.text {
					t.Fatalf("%s decrypted %q, want %q", u.UserID, got, m.text)
				}
			})
		}
	}

	// With a up, carol's pending commit is applied by a at once (a is
	// powers[0]: its window opens on receipt).
	first := carol.Stage(fm, nil)
	firstID := carol.SendPending(roomID, first).Must(t, 200, "carol's first pending commit").Str("event_id")
	firstStatus := "/_matrix/client/unstable/de.bwi.mls/rooms/" + url.PathEscape(roomID) + "/pending_commit/" + url.PathEscape(firstID)
	var appliedByA string
	for deadline := time.Now().Add(20 * time.Second); appliedByA == ""; {
		r := carol.Do("GET", firstStatus, nil).Must(t, 200, "first pending commit status")
		if r.Str("status") == "applied" {
			appliedByA = r.Str("commit_event_id")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's first pending commit not applied by a within 20 s: %s", r.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := alice.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(appliedByA)), nil).Must(t, 200, "the commit applying it")
	if r.Str("origin") != "a.test" {
		t.Fatalf("carol's first pending commit applied by %s, want a.test", r.Str("origin"))
	}
	carol.AwaitCommit(roomID, appliedByA, first)
	for _, u := range []*testclient.Client{alice, bob} {
		awaitTimelineEvent(t, u, roomID, appliedByA, 20*time.Second, func(ev map[string]any) {
			if rec, err := u.Decrypt(ev); err != nil || rec.Commit == nil {
				t.Fatalf("%s processing the commit a applied: %v", u.UserID, err)
			}
		})
	}

	h.Stop("a.test")
	stopped := time.Now()

	pending := carol.Stage(fm, nil)
	ct := testclient.Content(carol.Version.CommitType(), carol.Alg, testclient.Wire(t, pending.Message))["ciphertext"]
	sent := time.Now()
	pid := carol.SendPending(roomID, pending).Must(t, 200, "carol's pending commit on c.test").Str("event_id")
	statusPath := "/_matrix/client/unstable/de.bwi.mls/rooms/" + url.PathEscape(roomID) + "/pending_commit/" + url.PathEscape(pid)

	// b's window opens 5 virtual minutes after b received it (not before
	// c did: sent), and closes 3 minutes later; then 2 minutes of grace.
	opens := sent.Add(virtualToReal(5 * time.Minute))
	deadline := sent.Add(virtualToReal(10*time.Minute) + 5*time.Second)
	applied := map[string]string{} // server -> commit event ID
	for len(applied) < 2 {
		for _, w := range []struct {
			server string
			user   *testclient.Client
		}{{"c.test", carol}, {"b.test", bob}} {
			if applied[w.server] != "" {
				continue
			}
			r := w.user.Do("GET", statusPath, nil)
			switch {
			case r.Status == http.StatusNotFound && w.server == "b.test":
				// Not yet received over federation.
				continue
			case r.Status != http.StatusOK:
				t.Fatalf("%s pending commit status: %d %s", w.server, r.Status, r.Raw)
			}
			switch r.Str("status") {
			case "waiting":
			case "applied":
				at := time.Now()
				if at.Before(opens) {
					t.Fatalf("%s reports the pending commit applied %v after carol sent it, before b's window opens (5 virtual minutes = %v): %s",
						w.server, at.Sub(sent), opens.Sub(sent), r.Raw)
				}
				if r.Str("commit_event_id") == "" {
					t.Fatalf("%s: applied without commit_event_id: %s", w.server, r.Raw)
				}
				applied[w.server] = r.Str("commit_event_id")
				t.Logf("%s reports it applied as %s, %v after it was sent", w.server, applied[w.server], at.Sub(sent))
			default:
				t.Fatalf("%s pending commit status while b's window is to come: %s", w.server, r.Raw)
			}
		}
		if len(applied) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("the pending commit was not applied within %v of being sent (b's window: 5 to 8 virtual minutes = %v to %v): applied %v",
					deadline.Sub(sent), virtualToReal(5*time.Minute), virtualToReal(8*time.Minute), applied)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	commitID := applied["b.test"]
	if applied["c.test"] != commitID {
		t.Fatalf("b.test says applied as %s, c.test as %s", commitID, applied["c.test"])
	}

	// On b and on c: exactly one commit with the pending commit's
	// ciphertext, b's, sent in b's window by the servers' clock.
	for _, w := range []struct {
		server string
		user   *testclient.Client
	}{{"b.test", bob}, {"c.test", carol}} {
		evs := roomMessages(t, w.user, roomID)
		var ids []string
		var commitTS, pendingTS float64
		for _, ev := range evs {
			content, _ := ev["content"].(map[string]any)
			ts, _ := ev["origin_server_ts"].(float64)
			if ev["type"] == carol.Version.CommitType() && content["ciphertext"] == ct {
				id, _ := ev["event_id"].(string)
				ids = append(ids, id)
				commitTS = ts
			}
			if ev["event_id"] == pid {
				pendingTS = ts
			}
		}
		if len(ids) != 1 || ids[0] != commitID {
			t.Fatalf("%s: commit events with the pending commit's ciphertext: %v, want exactly [%s]", w.server, ids, commitID)
		}
		if pendingTS == 0 || commitTS == 0 {
			t.Fatalf("%s: no origin_server_ts of the pending commit %s (%v) or of the commit (%v) in /messages", w.server, pid, pendingTS, commitTS)
		}
		after := time.Duration(commitTS-pendingTS) * time.Millisecond
		if after < 5*time.Minute || after >= 10*time.Minute {
			t.Fatalf("%s: the commit's origin_server_ts is %v after the pending commit's, want in b's window and grace [5 min, 10 min)", w.server, after)
		}
		t.Logf("%s: commit %v (server time) after the pending commit", w.server, after)
	}

	// Carol's client accepts its commit as it comes back; bob's merges it.
	carol.AwaitCommit(roomID, commitID, pending)
	awaitTimelineEvent(t, bob, roomID, commitID, 20*time.Second, func(ev map[string]any) {
		if rec, err := bob.Decrypt(ev); err != nil || rec.Commit == nil {
			t.Fatalf("bob processing b's commit: %v", err)
		}
	})
	if bob.Group.Epoch() != carol.Group.Epoch() || bob.CommitID != commitID {
		t.Fatalf("bob at epoch %d (%s), carol at %d (%s)", bob.Group.Epoch(), bob.CommitID, carol.Group.Epoch(), carol.CommitID)
	}

	// a comes back on its data dir and catches up with b's commit.
	downFor := time.Since(stopped)
	h.Restart("a.test")
	restarted := time.Now()
	catchUp := restarted.Add(30 * time.Second)
	for {
		cur := currentCommit(t, alice, roomID)
		if cur == commitID {
			break
		}
		if time.Now().After(catchUp) {
			t.Fatalf("a.test's current commit %v after restart, want b's commit %s (a was down %v)", time.Since(restarted).Round(time.Millisecond), commitID, downFor)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("a.test's current commit is b's %v after its restart (down %v)", time.Since(restarted), downFor)
	awaitTimelineEvent(t, alice, roomID, commitID, 20*time.Second, func(ev map[string]any) {
		if rec, err := alice.Decrypt(ev); err != nil || rec.Commit == nil {
			t.Fatalf("alice processing b's commit: %v", err)
		}
	})
	if alice.Group.Epoch() != bob.Group.Epoch() {
		t.Fatalf("alice at epoch %d, bob at %d", alice.Group.Epoch(), bob.Group.Epoch())
	}
	// Federation from a works again: alice's message reaches bob.
	msgID := alice.SendMessage(roomID, "back").Must(t, 200, "alice's message after the restart").Str("event_id")
	awaitTimelineEvent(t, bob, roomID, msgID, 20*time.Second, func(ev map[string]any) {
		if got := bob.MessageText(ev); got != "back" {
			t.Fatalf("bob decrypted %q", got)
		}
	})
	t.Logf("whole scenario: %v", time.Since(begin))
	if el := time.Since(begin); el > 90*time.Second {
		t.Fatalf("took %v, want at most 90 s", el)
	}
}

// roomMessages returns the room's events as the user's server has them
// (/messages backwards from the end).
func roomMessages(t *testing.T, c *testclient.Client, roomID string) []map[string]any {
	t.Helper()
	r := c.Do("GET", testclient.RoomPath(roomID, "/messages?dir=b&limit=1000"), nil).Must(t, 200, c.UserID+" /messages")
	chunk, _ := r.Body["chunk"].([]any)
	var out []map[string]any
	for _, e := range chunk {
		if ev, ok := e.(map[string]any); ok {
			out = append(out, ev)
		}
	}
	return out
}

// currentCommit returns the event ID of the room's m.mls.commit state
// event on the user's server ("" if none).
func currentCommit(t *testing.T, c *testclient.Client, roomID string) string {
	t.Helper()
	r := c.Do("GET", testclient.RoomPath(roomID, "/state"), nil).Must(t, 200, c.UserID+" room state")
	var evs []map[string]any
	if err := json.Unmarshal(r.Raw, &evs); err != nil {
		t.Fatalf("%s room state: %v: %s", c.UserID, err, r.Raw)
	}
	for _, ev := range evs {
		if ev["type"] == c.Version.CommitType() && ev["state_key"] == "" {
			id, _ := ev["event_id"].(string)
			return id
		}
	}
	return ""
}

// awaitTimelineEvent syncs the user until eventID is in the room's
// timeline and hands it to f.
func awaitTimelineEvent(t *testing.T, c *testclient.Client, roomID, eventID string, within time.Duration, f func(map[string]any)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, ev := range testclient.Timeline(c.Sync(1000), roomID) {
			if ev["event_id"] == eventID {
				f(ev)
				return
			}
		}
	}
	t.Fatalf("%s: %s not in the timeline of %s within %v", c.UserID, eventID, roomID, within)
}
