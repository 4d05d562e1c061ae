package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// TestStatusWords checks the sentences show prints for the states a
// single-server session does not reach: a pending commit waiting for
// another server, messages lost to a fork, a broken room, rollbacks and
// lost commits.
func TestStatusWords(t *testing.T) {
	a := &account{}
	expires := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	st := client.RoomStatus{InGroup: true,
		RoomID: "!r:a.test", Membership: "join", Powers: []string{"a.test", "b.test"},
		Pending: &client.PendingCommit{EventID: "$c", Pending: true, SentAt: expires.Add(-11 * time.Minute), Expires: expires},
		Undecryptable: []client.Undecryptable{
			{EventID: "$m1", Origin: "b.test", Reason: client.ReasonLostFork},
			{EventID: "$m2", Origin: "b.test", Reason: client.ReasonLostFork},
			{EventID: "$m3", Origin: "a.test", Reason: client.ReasonEpochGone},
		},
		Broken:      &client.Broken{EventID: "$bad", Origin: "b.test", Reason: "the accepted commit cannot be processed"},
		Rollbacks:   1,
		LostCommits: []string{"$x", "$y"},
		Waiting:     3,
	}
	got := strings.Join(a.statusWords(st), "\n")
	for _, want := range []string{
		"this room is broken: the change $bad accepted from b.test cannot be followed (the accepted commit cannot be processed); start a new room for the same people with: mlschat successor !r:a.test",
		"your pending change is waiting for a.test, then b.test to apply it (gives up at " + clock(expires) + ")",
		"you cannot read 2 messages: sent on a fork that lost (lost_fork)",
		"you cannot read 1 message: sent in an epoch whose keys this device no longer keeps (epoch_gone)",
		"3 messages are for a later epoch",
		"2 changes of yours were never accepted: another change won",
		"this device went back to a kept state once",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status words lack %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "broken") > strings.Index(got, "pending") {
		t.Errorf("a broken room is not said first:\n%s", got)
	}

	st = client.RoomStatus{RoomID: "!r:a.test", Membership: "join", InGroup: true, NeedsWelcome: "commit $c from b.test won at epoch 4",
		Pending: &client.PendingCommit{EventID: "$d", SentAt: expires}}
	got = strings.Join(a.statusWords(st), "\n")
	for _, want := range []string{
		"you need to be invited again: commit $c from b.test won at epoch 4",
		"your change (sent " + clock(expires) + ") is waiting to come back from the server",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status words lack %q:\n%s", want, got)
		}
	}
	past := time.Now().Add(-time.Minute)
	st = client.RoomStatus{Membership: "join", InGroup: true, Pending: &client.PendingCommit{EventID: "$p", Pending: true, SentAt: past.Add(-11 * time.Minute), Expires: past}}
	if got := strings.Join(a.statusWords(st), "\n"); !strings.Contains(got, "your pending change was not applied by "+clock(past)+", when the room's ordering servers' windows ended: it is most likely lost") {
		t.Errorf("words of an expired pending commit: %q", got)
	}
	st = client.RoomStatus{RoomID: "!r:a.test", Membership: "invite", Inviter: "@alice:a.test"}
	if got := a.statusWords(st); len(got) != 1 || got[0] != "you are invited by @alice:a.test; join with: mlschat join !r:a.test" {
		t.Errorf("invite words: %q", got)
	}
	if got := a.statusWords(client.RoomStatus{RoomID: "!r:a.test"}); len(got) != 1 || got[0] != "a Welcome for this room arrived, but no invite for you: mlschat join !r:a.test waits for it" {
		t.Errorf("words of a room known only by its Welcome: %q", got)
	}
	if got := a.statusWords(client.RoomStatus{Membership: "join", InGroup: true}); len(got) != 0 {
		t.Errorf("a healthy room has words: %q", got)
	}
}

func TestStatusWordsDeviceNotInGroup(t *testing.T) {
	a := &account{}
	got := a.statusWords(client.RoomStatus{RoomID: "!r:a.test", Membership: "join"})
	if len(got) != 1 || got[0] != "your account is in this room from another device, this device not yet: mlschat join !r:a.test" {
		t.Fatalf("words of a room joined from another device: %q", got)
	}
}
