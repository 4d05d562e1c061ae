package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
)

// runDemoCLI runs "mlsroom demo args..." and returns stdout.
func runDemoCLI(t *testing.T, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"demo"}, args...), strings.NewReader(""), &stdout, &stderr); code != exitOK {
		t.Fatalf("mlsroom demo %v: exit %d, stderr %s", args, code, stderr.String())
	}
	return stdout.Bytes()
}

// TestDemo runs the story and checks its report against what state
// resolution computes over the servers' events and what the MLS clients
// hold, and that the command prints that report.
func TestDemo(t *testing.T) {
	for _, tc := range []struct {
		seed   int64
		window uint64
	}{{1, 0}, {2, 600}, {3, 60}, {4, 60}} {
		t.Run("seed "+strconv.FormatInt(tc.seed, 10)+" window "+strconv.FormatUint(tc.window, 10), func(t *testing.T) {
			start := time.Now()
			rep, w, err := demo(context.Background(), tc.seed, tc.window)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the demo took %v", d)
			}
			checkDemoReport(t, rep, w)

			// The command prints this report: the JSON holds no random
			// bytes, so a second run with the same seed prints it again.
			want, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got := runDemoCLI(t, "--json", "--seed", strconv.FormatInt(tc.seed, 10), "--security-window", strconv.FormatUint(tc.window, 10))
			if !bytes.Equal(got, append(want, '\n')) {
				t.Errorf("mlsroom demo --json printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// checkDemoReport checks a report against the world it came from.
func checkDemoReport(t *testing.T, rep *demoReport, w *demoWorld) {
	t.Helper()
	label := func(ev *roomversion.Event) string { return w.name(ev.EventID()) }

	// State resolution over the events the servers hold, from the state
	// sets of every commit that no other commit builds on.
	all, store := w.allEvents()
	create := all[0]
	if create.Kind() != roomversion.EventCreate {
		t.Fatalf("the first event is %s", create.Type())
	}
	parents := map[string]bool{}
	for _, ev := range all {
		if ev.Kind() == roomversion.EventCommit {
			parents[stateres.AuthCommitID(ev, create.EventID())] = true
		}
	}
	var sets []stateres.StateSet
	var tips []string
	for _, ev := range all {
		if ev.Kind() == roomversion.EventCommit && !parents[ev.EventID()] {
			sets = append(sets, stateres.StateSet{Create: create, Commit: ev})
			tips = append(tips, label(ev))
		}
	}
	if len(sets) != 2 {
		t.Fatalf("branch tips %v; want the two commits of the fork", tips)
	}
	resolved, err := stateres.Resolve(sets, store)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range w.servers {
		if s.current().EventID() != resolved.Commit.EventID() {
			t.Errorf("%s is at %s; state resolution gives %s", s.name, label(s.current()), label(resolved.Commit))
		}
	}
	ml, err := stateres.Mainline(resolved.Commit, create, store)
	if err != nil {
		t.Fatal(err)
	}
	var chain, repChain []string
	for _, c := range ml {
		chain = append(chain, label(c))
	}
	for _, c := range rep.Chain {
		repChain = append(repChain, c.Commit)
	}
	if !slices.Equal(chain, repChain) {
		t.Errorf("chain %v; state resolution gives %v", repChain, chain)
	}

	// The fork: the winner is the resolved commit, the loser the other
	// tip, and the winner's origin ranks higher at the fork point.
	f := rep.Fork
	if f.Winner.Commit != label(resolved.Commit) || !slices.Contains(tips, f.Loser.Commit) || f.Loser.Commit == f.Winner.Commit {
		t.Errorf("fork %+v; tips %v, resolved %s", f, tips, label(resolved.Commit))
	}
	fp := w.byLabel[f.ForkPoint]
	winner, loser := w.byLabel[f.Winner.Commit], w.byLabel[f.Loser.Commit]
	if fp == nil || winner == nil || loser == nil || winner.Epoch() != loser.Epoch() || winner.Epoch() != fp.Epoch()+1 {
		t.Fatalf("fork %+v does not name two commits of one epoch after the fork point", f)
	}
	if pw, pl := stateres.Power(winner, fp), stateres.Power(loser, fp); pw >= pl || pw != f.Winner.PowersIndex || pl != f.Loser.PowersIndex {
		t.Errorf("fork powers: winner %d, loser %d; report %+v", pw, pl, f)
	}

	// Losers: exactly what stateres.Losers says.
	losses, err := stateres.Losers(all, resolved, store)
	if err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	var want, got []string
	for _, l := range losses {
		lost[label(l.Event)] = true
		want = append(want, label(l.Event)+"/"+l.Kind)
	}
	for _, l := range rep.Losers {
		got = append(got, l.Event+"/"+l.Kind)
	}
	if !slices.Equal(got, want) || !lost[f.Loser.Commit] {
		t.Errorf("losers %v; stateres.Losers gives %v", got, want)
	}

	// Members: those who need a Welcome are exactly those whose MLS state
	// is not the winner's (epoch authenticators differ); a rollback
	// happened within the window.
	var alice *demoClient
	for _, c := range w.clients {
		if c.srv == w.servers[0] {
			alice = c
		}
	}
	auth := alice.group.EpochAuthenticator()
	var needs []string
	for i, c := range w.clients {
		inSync := bytes.Equal(c.group.EpochAuthenticator(), auth)
		m := rep.Members[i]
		if m.Name != c.name || m.NeedsWelcome == inSync || (m.Commit == f.Winner.Commit) != inSync {
			t.Errorf("member %+v; its MLS state is the winner's: %v", m, inSync)
		}
		if !inSync {
			needs = append(needs, c.name)
		}
		if m.RolledBack && m.Commit != f.Winner.Commit {
			t.Errorf("%s rolled back but is at %s", m.Name, m.Commit)
		}
	}
	if !slices.Equal(needs, rep.NeedsWelcome) && !(len(needs) == 0 && len(rep.NeedsWelcome) == 0) {
		t.Errorf("needs_welcome %v; out of sync: %v", rep.NeedsWelcome, needs)
	}
	for _, rb := range rep.RolledBack {
		if uint64(rb.ElapsedSeconds) > rep.SecurityWindow || rb.Back != f.ForkPoint || rb.To != f.Winner.Commit || rb.From != f.Loser.Commit {
			t.Errorf("rollback %+v; window %d, fork %+v", rb, rep.SecurityWindow, f)
		}
	}
	if rep.SecurityWindow == 0 && (len(rep.RolledBack) != 0 || len(rep.NeedsWelcome) != 2) {
		t.Errorf("window 0: rolled back %v, needs a Welcome %v; want none and two", rep.RolledBack, rep.NeedsWelcome)
	}
	if rep.SecurityWindow == 600 && (len(rep.RolledBack) != 2 || len(rep.NeedsWelcome) != 0) {
		t.Errorf("window 600: rolled back %v, needs a Welcome %v; want two and none", rep.RolledBack, rep.NeedsWelcome)
	}

	// Messages: who read what is what the clients decrypted; a message on
	// the losing branch is unreadable to members that never merged the
	// losing commit, and one on the winning branch after the fork to
	// members that did not follow the winner.
	if len(rep.Messages) != len(w.msgs) {
		t.Fatalf("%d messages reported, %d sent", len(rep.Messages), len(w.msgs))
	}
	sawLost := false
	for i, m := range rep.Messages {
		msg := w.msgs[i]
		if m.Message != msg.label || m.Sender != msg.sender.name || m.Epoch != msg.ev.Epoch() || m.Text != msg.text {
			t.Errorf("message %+v; sent %s by %s in epoch %d", m, msg.label, msg.sender.name, msg.ev.Epoch())
		}
		if (m.Branch == "loser") != lost[m.Message] {
			t.Errorf("%s: branch %q; lost per stateres: %v", m.Message, m.Branch, lost[m.Message])
		}
		for j, c := range w.clients {
			if c == msg.sender {
				continue
			}
			res, ok := c.results[m.Message]
			read := slices.Contains(m.DecryptableBy, c.name)
			_, unread := m.UndecryptableBy[c.name]
			if read != (ok && res.decrypted) || read == unread {
				t.Errorf("%s for %s: reported read %v; the client decrypted it: %v", m.Message, c.name, read, ok && res.decrypted)
			}
			onLoser := rep.Members[j].NeedsWelcome || rep.Members[j].RolledBack
			switch m.Branch {
			case "loser":
				sawLost = true
				if read != onLoser {
					t.Errorf("%s (losing branch) for %s: read %v", m.Message, c.name, read)
				}
			case "winner":
				if read == rep.Members[j].NeedsWelcome {
					t.Errorf("%s (winning branch) for %s: read %v, needs a Welcome %v", m.Message, c.name, read, rep.Members[j].NeedsWelcome)
				}
			default:
				if !read {
					t.Errorf("%s (before the fork) unread by %s: %s", m.Message, c.name, m.UndecryptableBy[c.name])
				}
			}
		}
	}
	if !sawLost {
		t.Error("no message was lost to the fork")
	}
}

// TestDemoSameSeed checks that a seed fixes the transcript and the JSON.
func TestDemoSameSeed(t *testing.T) {
	a := runDemoCLI(t, "--seed", "42", "--security-window", "300")
	b := runDemoCLI(t, "--seed", "42", "--security-window", "300")
	if !bytes.Equal(a, b) {
		t.Fatalf("two runs with seed 42 differ:\n%s\n---\n%s", a, b)
	}
	c := runDemoCLI(t, "--seed", "43", "--security-window", "300")
	if bytes.Equal(a, c) {
		t.Error("seeds 42 and 43 give the same transcript")
	}
	// The transcript names the fork, the winner and the lost messages.
	rep, _, err := demo(context.Background(), 42, 300)
	if err != nil {
		t.Fatal(err)
	}
	text := string(a)
	for _, s := range []string{"After " + rep.Fork.ForkPoint + " two commits claimed epoch", rep.Fork.Winner.Commit + " wins", "LOST"} {
		if !strings.Contains(text, s) {
			t.Errorf("the transcript lacks %q", s)
		}
	}
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{{"demo", "extra"}, {"demo", "--seed", "x"}, {"demo", "--security-window", "-1"}, {"demo", "--nope"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), &stdout, &stderr); code != exitUsage || stdout.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q; want %d and nothing", args, code, stdout.String(), exitUsage)
		}
	}
	for _, args := range [][]string{{"demo", "-h"}, {"help", "demo"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), &stdout, &stderr); code != exitOK || !strings.HasPrefix(stdout.String(), "usage: mlsroom demo") {
			t.Errorf("%v: exit %d, stdout %q", args, code, stdout.String())
		}
	}
}
