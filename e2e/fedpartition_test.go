//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// SPEC-NOTES §4 (soft-fail (c)), §5 and §6 across three processes: in a
// room with powers [a, b], servers and can_propose [a, b, c], a is cut off
// from b and c. On a, alice commits epoch N (Ca) and sends M_a; on b, bob's
// pending commit for the same epoch is applied by b in its window (Cb), and
// bob and carol (on c) merge it and send M_b and M_c. After the partition
// heals, every server's current commit is Ca (a ranks above b); on a, Cb,
// M_b and M_c are soft-failed under (c), Cb never reaches alice and M_b and
// M_c reach her marked de.bwi.mls.lost_fork. Each client reports the
// messages of the others it cannot decrypt: alice M_b and M_c, bob and
// carol M_a and M_a2 (alice's message after the heal): their groups merged
// Cb, so they cannot process Ca either, and b refuses bob's next message
// built on Cb (they would need a new Welcome).
func TestPartitionHealsToFirstPowersFork(t *testing.T) {
	begin := time.Now()
	h := newFedHarness(t, pendingClockSpeed, "a.test", "b.test", "c.test")
	fm := testclient.FedMap([]string{"a.test", "b.test"}, []string{"a.test", "b.test", "c.test"},
		[]string{"a.test", "b.test", "c.test"})
	alice, bob, carol, roomID, addID := h.threeServerRoom(t, fm)
	// All three servers have the add commit before the partition.
	for _, c := range []*testclient.Client{alice, bob, carol} {
		partitionAwaitCurrent(t, c, roomID, addID, 20*time.Second)
	}
	epochN := alice.Group.Epoch()
	if bob.Group.Epoch() != epochN || carol.Group.Epoch() != epochN {
		t.Fatalf("before the partition: alice at epoch %d, bob %d, carol %d", epochN, bob.Group.Epoch(), carol.Group.Epoch())
	}
	t.Logf("room %s with alice, bob and carol at epoch %d (commit %s) after %v", roomID, epochN, addID, time.Since(begin))

	ra := newPartitionReader(alice, roomID)
	rb := newPartitionReader(bob, roomID)
	rc := newPartitionReader(carol, roomID)

	// Partition: a from b and c, both directions.
	for _, other := range []string{"b.test", "c.test"} {
		h.Block("a.test", other)
		h.Block(other, "a.test")
	}
	partitioned := time.Now()

	// a's side: alice commits epoch N directly and sends M_a after it.
	ca := alice.Stage(fm, nil)
	caID := alice.PutCommit(roomID, ca).Must(t, 200, "alice's commit during the partition").Str("event_id")
	ra.expectOwnCommit(caID, ca)
	ra.await(t, 20*time.Second, caID)
	if alice.CommitID != caID || alice.Group.Epoch() != epochN+1 {
		t.Fatalf("alice at %s epoch %d after her commit, want %s epoch %d", alice.CommitID, alice.Group.Epoch(), caID, epochN+1)
	}
	mA := alice.SendMessage(roomID, "M_a").Must(t, 200, "M_a").Str("event_id")

	// b's side: bob's pending commit for epoch N; a cannot answer, so b
	// applies it in its own window.
	pending := bob.Stage(fm, nil)
	pendingCT := testclient.Content(bob.Version.CommitType(), bob.Alg, testclient.Wire(t, pending.Message))["ciphertext"]
	sent := time.Now()
	pid := bob.SendPending(roomID, pending).Must(t, 200, "bob's pending commit on b.test").Str("event_id")
	statusPath := "/_matrix/client/unstable/de.bwi.mls/rooms/" + url.PathEscape(roomID) + "/pending_commit/" + url.PathEscape(pid)
	var cbID string
	for deadline := sent.Add(virtualToReal(10*time.Minute) + 5*time.Second); cbID == ""; {
		r := bob.Do("GET", statusPath, nil).Must(t, http.StatusOK, "b.test pending commit status")
		switch r.Str("status") {
		case "waiting":
		case "applied":
			if el := time.Since(sent); el < virtualToReal(5*time.Minute) {
				t.Fatalf("b.test applied bob's pending commit %v after it was sent, before its window (5 virtual minutes = %v): %s",
					el, virtualToReal(5*time.Minute), r.Raw)
			}
			if cbID = r.Str("commit_event_id"); cbID == "" {
				t.Fatalf("b.test: applied without commit_event_id: %s", r.Raw)
			}
		default:
			t.Fatalf("b.test pending commit status: %s", r.Raw)
		}
		if cbID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("b.test did not apply bob's pending commit within %v", deadline.Sub(sent))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("b.test applied bob's pending commit as %s %v after it was sent", cbID, time.Since(sent))
	rb.expectOwnCommit(cbID, pending)
	rb.await(t, 20*time.Second, cbID)
	rc.await(t, 20*time.Second, cbID)
	if err, ok := rc.commits[cbID]; !ok || err != nil {
		t.Fatalf("carol processing b's commit %s: %v", cbID, err)
	}
	if bob.CommitID != cbID || carol.CommitID != cbID || bob.Group.Epoch() != epochN+1 || carol.Group.Epoch() != epochN+1 {
		t.Fatalf("bob at %s epoch %d, carol at %s epoch %d; want both at b's commit %s epoch %d",
			bob.CommitID, bob.Group.Epoch(), carol.CommitID, carol.Group.Epoch(), cbID, epochN+1)
	}
	mB := bob.SendMessage(roomID, "M_b").Must(t, 200, "M_b").Str("event_id")
	mC := carol.SendMessage(roomID, "M_c").Must(t, 200, "M_c").Str("event_id")
	rb.await(t, 20*time.Second, mC)
	rc.await(t, 20*time.Second, mB)
	if cur := currentCommit(t, bob, roomID); cur != cbID {
		t.Fatalf("b.test's current commit during the partition is %s, want b's commit %s", cur, cbID)
	}
	if cur := currentCommit(t, alice, roomID); cur != caID {
		t.Fatalf("a.test's current commit during the partition is %s, want a's commit %s", cur, caID)
	}
	names := map[string]string{addID: "add", caID: "Ca", cbID: "Cb", pid: "P", mA: "M_a", mB: "M_b", mC: "M_c"}
	t.Logf("partition of %v: Ca %s, M_a %s, P %s, Cb %s, M_b %s, M_c %s", time.Since(partitioned), caID, mA, pid, cbID, mB, mC)

	// Heal. Each server's current commit becomes a's; the clients get the
	// other side's events.
	for _, other := range []string{"b.test", "c.test"} {
		h.Unblock("a.test", other)
		h.Unblock(other, "a.test")
	}
	healed := time.Now()
	servers := []struct {
		name string
		r    *partitionReader
	}{{"a.test", ra}, {"b.test", rb}, {"c.test", rc}}
	for deadline := healed.Add(45 * time.Second); ; {
		var waiting []string
		for _, s := range servers {
			if cur := currentCommit(t, s.r.c, roomID); cur != caID {
				if s.name == "a.test" {
					t.Fatalf("a.test's current commit after the heal is %s (%s), want its own %s", cur, names[cur], caID)
				}
				waiting = append(waiting, fmt.Sprintf("%s at %s (%s)", s.name, cur, names[cur]))
			}
		}
		for _, w := range []struct {
			r   *partitionReader
			ids []string
		}{{ra, []string{mB, mC}}, {rb, []string{caID, mA}}, {rc, []string{caID, mA}}} {
			for _, id := range w.ids {
				if _, ok := w.r.seen[id]; !ok {
					waiting = append(waiting, w.r.c.UserID+" to get "+names[id])
				}
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the heal, still waiting for: %s", time.Since(healed).Round(time.Millisecond), strings.Join(waiting, ", "))
		}
		for _, s := range servers {
			s.r.sync(t, 200)
		}
	}
	t.Logf("all servers on Ca and all messages delivered %v after the heal", time.Since(healed))
	// Alice's next message, built on Ca, reaches b and c, unmarked; bob
	// and carol cannot decrypt it either.
	mA2 := alice.SendMessage(roomID, "M_a2").Must(t, 200, "M_a2 after the heal").Str("event_id")
	names[mA2] = "M_a2"
	rb.await(t, 20*time.Second, mA2)
	rc.await(t, 20*time.Second, mA2)
	// A little later it is still so (nothing resolves back to Cb), and
	// nothing more arrives that changes the sets below.
	time.Sleep(2 * time.Second)
	for _, s := range servers {
		s.r.sync(t, 500)
		if cur := currentCommit(t, s.r.c, roomID); cur != caID {
			t.Fatalf("%s's current commit %v after the heal is %s (%s), want a's commit %s", s.name, time.Since(healed).Round(time.Millisecond), cur, names[cur], caID)
		}
	}

	for _, r := range []*partitionReader{ra, rb, rc} {
		var got []string
		for id, ev := range r.seen {
			n := names[id]
			if n == "" {
				n = fmt.Sprint(ev["type"], " ", id)
			}
			if partitionLostFork(ev) {
				n += " (lost_fork)"
			}
			got = append(got, n)
		}
		slices.Sort(got)
		t.Logf("%s got, since the partition: %s", r.c.UserID, strings.Join(got, ", "))
	}

	// What each client cannot decrypt, and what it can, among the others'
	// messages of the partition.
	for _, w := range []struct {
		r                        *partitionReader
		undecryptable, decrypted []string
	}{
		{ra, []string{mB, mC}, nil},
		{rb, []string{mA, mA2}, []string{mC}},
		{rc, []string{mA, mA2}, []string{mB}},
	} {
		got := slices.Sorted(maps.Keys(w.r.undecryptable))
		want := slices.Sorted(slices.Values(w.undecryptable))
		if !slices.Equal(got, want) {
			t.Errorf("%s cannot decrypt %s, want exactly %s (errors: %v)", w.r.c.UserID, partitionNames(got, names), partitionNames(want, names), w.r.undecryptable)
		}
		got = slices.Sorted(maps.Keys(w.r.decrypted))
		want = slices.Sorted(slices.Values(w.decrypted))
		if !slices.Equal(got, want) {
			t.Errorf("%s decrypted %s, want exactly %s", w.r.c.UserID, partitionNames(got, names), partitionNames(want, names))
		}
		for id, err := range w.r.undecryptable {
			t.Logf("%s cannot decrypt %s: %v", w.r.c.UserID, names[id], err)
		}
	}
	// Bob's and carol's groups merged Cb: a's commit does not process in
	// them, and they stay at Cb.
	for _, r := range []*partitionReader{rb, rc} {
		err, ok := r.commits[caID]
		if !ok || err == nil {
			t.Errorf("%s processed a's commit Ca (received %v), want an error: its group merged Cb", r.c.UserID, ok)
		} else {
			t.Logf("%s cannot process Ca: %v", r.c.UserID, err)
		}
		if r.c.CommitID != cbID || r.c.Group.Epoch() != epochN+1 {
			t.Errorf("%s's group at %s epoch %d, want still at Cb %s epoch %d", r.c.UserID, names[r.c.CommitID], r.c.Group.Epoch(), cbID, epochN+1)
		}
	}
	// Alice: Cb never reaches her; M_b and M_c reach her marked lost_fork,
	// nothing else is so marked, for anyone.
	if _, ok := ra.seen[cbID]; ok {
		t.Errorf("a.test delivered b's soft-failed commit Cb to alice")
	}
	for _, r := range []*partitionReader{ra, rb, rc} {
		var lost []string
		for id, ev := range r.seen {
			if partitionLostFork(ev) {
				lost = append(lost, id)
			}
		}
		slices.Sort(lost)
		var want []string
		if r == ra {
			want = slices.Sorted(slices.Values([]string{mB, mC}))
		}
		if !slices.Equal(lost, want) {
			t.Errorf("%s got %s marked de.bwi.mls.lost_fork in /sync, want exactly %s", r.c.UserID, partitionNames(lost, names), partitionNames(want, names))
		}
	}
	if alice.CommitID != caID || alice.Group.Epoch() != epochN+1 {
		t.Errorf("alice's group at %s epoch %d, want Ca %s epoch %d", names[alice.CommitID], alice.Group.Epoch(), caID, epochN+1)
	}

	// On a: Cb, M_b and M_c are soft-failed under (c); /messages has M_b
	// and M_c marked lost_fork and no commit with P's ciphertext (a never
	// applies the stale pending commit, and Cb is not delivered).
	for _, id := range []string{cbID, mB, mC} {
		r := alice.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(id)), nil).Must(t, 200, "a.test /event "+names[id])
		unsigned, _ := r.Body["unsigned"].(map[string]any)
		sf, _ := unsigned["de.bwi.mls.soft_failed"].(map[string]any)
		if sf["case"] != "c" {
			t.Errorf("a.test: %s (%s) soft_failed %v, want case c: %s", names[id], id, sf, r.Raw)
		}
	}
	// For the record: P itself on a (delivered to alice in /sync).
	rp := alice.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(pid)), nil)
	t.Logf("a.test /event P: %d unsigned %v", rp.Status, rp.Body["unsigned"])
	for _, id := range []string{caID, mA, mA2} {
		r := alice.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(id)), nil).Must(t, 200, "a.test /event "+names[id])
		if unsigned, _ := r.Body["unsigned"].(map[string]any); unsigned["de.bwi.mls.soft_failed"] != nil || unsigned["de.bwi.mls.lost_fork"] != nil {
			t.Errorf("a.test: its own %s is marked: %s", names[id], r.Raw)
		}
	}
	onA := map[string]map[string]any{}
	for _, ev := range roomMessages(t, alice, roomID) {
		id, _ := ev["event_id"].(string)
		onA[id] = ev
		content, _ := ev["content"].(map[string]any)
		if ev["type"] == alice.Version.CommitType() && content["ciphertext"] == pendingCT {
			t.Errorf("a.test /messages has a commit with bob's pending commit's ciphertext: %s (%s)", id, names[id])
		}
	}
	for _, id := range []string{mB, mC} {
		if ev, ok := onA[id]; !ok || !partitionLostFork(ev) {
			t.Errorf("a.test /messages: %s present %v, lost_fork %v; want present and marked", names[id], ok, ok && partitionLostFork(ev))
		}
	}
	// The status endpoint reports the commit that applied P, b's Cb (on a
	// as well), never one a made, and that it lost.
	for _, c := range []*testclient.Client{alice, bob} {
		r := c.Do("GET", statusPath, nil)
		t.Logf("%s pending commit status of P after the heal: %d %s", c.UserID, r.Status, r.Raw)
		switch {
		case c == alice && r.Status == http.StatusNotFound:
		case r.Status == http.StatusOK && r.Str("status") == "stale" && c == alice:
		case r.Status == http.StatusOK && r.Str("status") == "applied" && r.Str("commit_event_id") == cbID && r.Body["lost"] == true:
		default:
			t.Errorf("%s: status of P after the heal %d %s; want applied by Cb %s and lost (or, on a.test, stale or unknown)", c.UserID, r.Status, r.Raw, cbID)
		}
	}
	// For the record: how b and c now list the messages of their lost fork.
	for _, c := range []*testclient.Client{bob, carol} {
		for _, ev := range roomMessages(t, c, roomID) {
			if id, _ := ev["event_id"].(string); id == mB || id == mC || id == cbID {
				t.Logf("%s /messages after the heal: %s unsigned %v", c.UserID, names[id], ev["unsigned"])
			}
		}
	}

	// Bob's group is at Cb, which is no longer on the room's mainline: b
	// refuses a message built on it (he needs a new Welcome).
	r := bob.SendMessage(roomID, "after the heal")
	if r.Status != http.StatusConflict || r.Errcode() != "DE.BWI.MLS.WRONG_EPOCH" || r.Str("current_commit") != caID {
		t.Errorf("b.test took bob's message built on Cb after the heal: %d %s; want 409 DE.BWI.MLS.WRONG_EPOCH with current_commit %s", r.Status, r.Raw, caID)
	}

	t.Logf("whole scenario: %v (heal took %v)", time.Since(begin), time.Since(healed))
	if el := time.Since(begin); el > 90*time.Second {
		t.Fatalf("took %v, want at most 90 s", el)
	}
}

// partitionReader follows one client's /sync in one room and tries every
// MLS event the others sent: messages are decrypted, commits processed
// (and merged if they process). Its own commits are merged from their
// staged commits when they come back.
type partitionReader struct {
	c      *testclient.Client
	roomID string
	// seen has every timeline event by ID.
	seen map[string]map[string]any
	// undecryptable and decrypted are the others' messages by ID, with
	// the error or the text.
	undecryptable map[string]error
	decrypted     map[string]string
	// commits are the others' commits by ID, with the processing error.
	commits map[string]error
	own     map[string]*mls.StagedCommit
}

func newPartitionReader(c *testclient.Client, roomID string) *partitionReader {
	return &partitionReader{c: c, roomID: roomID, seen: map[string]map[string]any{},
		undecryptable: map[string]error{}, decrypted: map[string]string{}, commits: map[string]error{},
		own: map[string]*mls.StagedCommit{}}
}

// expectOwnCommit merges sc when the commit eventID comes back.
func (r *partitionReader) expectOwnCommit(eventID string, sc *mls.StagedCommit) { r.own[eventID] = sc }

// sync runs one /sync and handles its timeline.
func (r *partitionReader) sync(t *testing.T, timeoutMS int) {
	t.Helper()
	body := r.c.Sync(timeoutMS)
	if rooms, _ := body["rooms"].(map[string]any); rooms != nil {
		join, _ := rooms["join"].(map[string]any)
		room, _ := join[r.roomID].(map[string]any)
		if tl, _ := room["timeline"].(map[string]any); tl["limited"] == true {
			t.Fatalf("%s: limited timeline: events may be missing", r.c.UserID)
		}
	}
	for _, ev := range testclient.Timeline(body, r.roomID) {
		id, _ := ev["event_id"].(string)
		if _, dup := r.seen[id]; dup {
			continue
		}
		r.seen[id] = ev
		if sc := r.own[id]; sc != nil {
			if err := r.c.Group.Merge(sc); err != nil {
				t.Fatalf("%s merging its commit %s: %v", r.c.UserID, id, err)
			}
			r.c.CommitID = id
			continue
		}
		// In this test each server has one user: the origin tells the
		// sender.
		if ev["origin"] == strings.SplitN(r.c.UserID, ":", 2)[1] {
			continue
		}
		switch ev["type"] {
		case roomversion.EventTypeEncrypted:
			rec, err := r.c.Decrypt(ev)
			switch {
			case err != nil:
				r.undecryptable[id] = err
			case rec.Application == nil:
				r.undecryptable[id] = fmt.Errorf("not an application message")
			default:
				r.decrypted[id] = string(rec.Application)
			}
		case r.c.Version.CommitType():
			_, err := r.c.Decrypt(ev)
			r.commits[id] = err
		}
	}
}

// await syncs until every event of ids is in the timeline.
func (r *partitionReader) await(t *testing.T, within time.Duration, ids ...string) {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		missing := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { _, ok := r.seen[id]; return ok })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v not in the timeline of %s within %v", r.c.UserID, missing, r.roomID, within)
		}
		r.sync(t, 1000)
	}
}

// partitionAwaitCurrent waits until the client's server has commitID as
// the room's current commit.
func partitionAwaitCurrent(t *testing.T, c *testclient.Client, roomID, commitID string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		cur := currentCommit(t, c, roomID)
		if cur == commitID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's server: current commit %s, want %s within %v", c.UserID, cur, commitID, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// partitionLostFork tells whether an event in client format is marked
// de.bwi.mls.lost_fork.
func partitionLostFork(ev map[string]any) bool {
	unsigned, _ := ev["unsigned"].(map[string]any)
	return unsigned["de.bwi.mls.lost_fork"] == true
}

// partitionNames lists event IDs by their names in the scenario.
func partitionNames(ids []string, names map[string]string) string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if n := names[id]; n != "" {
			out = append(out, n)
		} else {
			out = append(out, id)
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}
