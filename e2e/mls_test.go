//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/internal/testdb"
)

// pairName is the server name both processes of startPair serve.
const pairName = "pair.test"

// startPair starts two mlsserver processes serving pairName from one fresh
// PostgreSQL schema with one signing key, on different ports.
func startPair(t *testing.T) (p1, p2 *process) {
	t.Helper()
	bin := buildServer(t)
	dir := t.TempDir()
	common := []string{"--server-name", pairName, "--database", testdb.PostgresDSN(t),
		"--signing-key", filepath.Join(dir, "signing.key"), "--data-dir", filepath.Join(dir, "data")}
	p1 = startProcess(t, bin, "process 1", common...)
	p2 = startProcess(t, bin, "process 2", common...)
	return p1, p2
}

// httpClient is the clients' HTTP client: a /sync long-poll of 30 s fits.
var httpClient = &http.Client{Timeout: 60 * time.Second}

// A message sent through process 1 wakes a /sync long-poll held on process
// 2 (PostgreSQL NOTIFY), long before the poll's timeout, and the member
// polling there decrypts it.
func TestSyncWakesAcrossProcesses(t *testing.T) {
	p1, p2 := startPair(t)
	alice := testclient.New(t, p1.url, httpClient, "alice")
	bob := testclient.New(t, p1.url, httpClient, "bob")
	alice.UploadKeys(1, false)
	bob.UploadKeys(1, false)
	// Bob's client syncs before the invite, as a running client does.
	bob.Sync(0)

	fm := testclient.FedMap([]string{pairName}, []string{pairName}, nil)
	roomID := alice.CreateRoom(fm)
	welcome := alice.Add(roomID, fm, alice.ClaimKeyPackage(bob.UserID, bob.DeviceID))
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, alice.CommitID)

	// Bob moves to process 2 and catches up there.
	bob.BaseURL = p2.url
	if _, ok := joined(bob.Sync(0), roomID); !ok {
		t.Fatalf("bob's first /sync on process 2 after joining has no %s under rooms.join", roomID)
	}

	type delivery struct {
		ev  map[string]any
		at  time.Time
		err error
	}
	got := make(chan delivery, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	go func() {
		// Polls until the room's timeline has an event: the first poll is
		// held until alice's send wakes it.
		for {
			body, err := bob.TrySync(ctx, 30000)
			if err != nil {
				got <- delivery{err: err}
				return
			}
			if evs := testclient.Timeline(body, roomID); len(evs) > 0 {
				got <- delivery{ev: evs[len(evs)-1], at: time.Now()}
				return
			}
		}
	}()
	// Give the poll time to reach process 2 and wait there.
	select {
	case d := <-got:
		t.Fatalf("bob's /sync on process 2 returned before anything was sent: %+v", d)
	case <-time.After(time.Second):
	}

	sent := time.Now()
	msgID := alice.SendMessage(roomID, "across processes").Must(t, 200, "message on process 1").Str("event_id")
	var d delivery
	select {
	case d = <-got:
	case <-time.After(35 * time.Second):
		t.Fatal("bob's /sync long-poll on process 2 never returned")
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	lat := d.at.Sub(sent)
	t.Logf("send on process 1 to delivery on process 2: %v", lat)
	if lat > 5*time.Second {
		t.Fatalf("the message took %v to reach the long-poll on process 2, want at most 5s", lat)
	}
	if d.ev["event_id"] != msgID {
		t.Fatalf("bob's poll returned %v, want alice's message %s", d.ev["event_id"], msgID)
	}
	if text := bob.MessageText(d.ev); text != "across processes" {
		t.Fatalf("bob decrypted %q", text)
	}
}

// joined returns the room's entry under rooms.join of a sync body.
func joined(body map[string]any, roomID string) (map[string]any, bool) {
	rooms, _ := body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	room, ok := join[roomID].(map[string]any)
	return room, ok
}

// A pending commit sent through process 1 is applied exactly once although
// both processes' commit queues see it: one commit event with its
// ciphertext, and both processes report it applied as that event.
func TestPendingCommitAppliedOnceAcrossProcesses(t *testing.T) {
	p1, p2 := startPair(t)
	alice := testclient.New(t, p1.url, httpClient, "alice")
	alice.UploadKeys(1, false)
	// The one server at powers[0] (its window is open at once) and in
	// can_propose (it may queue pending commits).
	fm := testclient.FedMap([]string{pairName}, []string{pairName}, []string{pairName})
	roomID := alice.CreateRoom(fm)

	sc := alice.Stage(fm, nil)
	ct := testclient.Content(alice.Version.CommitType(), alice.Alg, testclient.Wire(t, sc.Message))["ciphertext"]
	sent := time.Now()
	pid := alice.SendPending(roomID, sc).Must(t, 200, "pending commit on process 1").Str("event_id")
	statusPath := "/_matrix/client/unstable/de.bwi.mls/rooms/" + url.PathEscape(roomID) + "/pending_commit/" + url.PathEscape(pid)

	// Both processes report it applied, as the same commit.
	applied := map[*process]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(applied) < 2 {
		for _, p := range []*process{p1, p2} {
			if applied[p] != "" {
				continue
			}
			st, body := p.do("GET", statusPath, alice.Token, nil)
			if st != http.StatusOK {
				t.Fatalf("%s pending commit status: %d %v", p.name, st, body)
			}
			switch body["status"] {
			case "applied":
				id, _ := body["commit_event_id"].(string)
				if id == "" {
					t.Fatalf("%s: applied without commit_event_id: %v", p.name, body)
				}
				applied[p] = id
			case "waiting":
			default:
				t.Fatalf("%s pending commit status: %v", p.name, body)
			}
		}
		if len(applied) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("pending commit not applied on both processes within 10s: %v", applied)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("pending commit applied, as both processes say, %v after it was sent", time.Since(sent))
	commitID := applied[p1]
	if applied[p2] != commitID {
		t.Fatalf("process 1 says applied as %s, process 2 as %s", commitID, applied[p2])
	}

	// Let both queues poll storage a few more times (every second): a
	// second application would show now.
	time.Sleep(3 * time.Second)
	for _, p := range []*process{p1, p2} {
		st, body := p.do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?dir=b&limit=1000", alice.Token, nil)
		if st != http.StatusOK {
			t.Fatalf("%s /messages: %d %v", p.name, st, body)
		}
		chunk, _ := body["chunk"].([]any)
		var ids []string
		for _, e := range chunk {
			ev, _ := e.(map[string]any)
			content, _ := ev["content"].(map[string]any)
			if ev["type"] == alice.Version.CommitType() && content["ciphertext"] == ct {
				id, _ := ev["event_id"].(string)
				ids = append(ids, id)
			}
		}
		if len(ids) != 1 || ids[0] != commitID {
			t.Fatalf("%s: commit events with the pending commit's ciphertext: %v, want exactly [%s]", p.name, ids, commitID)
		}
		if st, body := p.do("GET", statusPath, alice.Token, nil); st != http.StatusOK || body["status"] != "applied" || body["commit_event_id"] != commitID {
			t.Fatalf("%s pending commit status after the wait: %d %v", p.name, st, body)
		}
	}
	// The commit comes back in alice's /sync on process 2, and her group
	// moves to it.
	alice.BaseURL = p2.url
	alice.AwaitCommit(roomID, commitID, sc)
	if alice.Group.Epoch() != 2 {
		t.Fatalf("alice's group at epoch %d after the applied commit, want 2", alice.Group.Epoch())
	}
}
