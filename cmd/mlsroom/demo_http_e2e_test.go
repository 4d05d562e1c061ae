//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// demoHTTPFacts checks what every run of demo --http must report,
// whatever the security window: the chain, the fork, what lost, the
// pending commits, and what alice could read.
func demoHTTPFacts(t *testing.T, rep *demoReport) {
	t.Helper()
	var chain []string
	for _, c := range rep.Chain {
		chain = append(chain, c.Commit)
		if c.Origin != "a.example" || !slices.Equal(c.Powers, []string{"a.example", "b.example"}) ||
			!slices.Equal(c.Servers, []string{"a.example", "b.example", "c.example"}) || c.Window != rep.SecurityWindow {
			t.Errorf("chain commit %+v", c)
		}
	}
	if want := []string{"C0a", "C1a", "C2a", "C3a", "C4a"}; !slices.Equal(chain, want) {
		t.Errorf("chain %v, want %v", chain, want)
	}
	for _, s := range rep.Servers {
		if s.CurrentCommit != "C4a" {
			t.Errorf("%s ends on %s, want C4a", s.Name, s.CurrentCommit)
		}
	}
	if f := rep.Fork; f == nil || f.Epoch != 4 || f.ForkPoint != "C3a" || f.Winner.Commit != "C4a" || f.Winner.PowersIndex != 0 ||
		f.Loser.Commit != "C4b" || f.Loser.Origin != "b.example" || f.Loser.PowersIndex != 1 {
		t.Errorf("fork %+v", rep.Fork)
	}
	var losers []string
	for _, l := range rep.Losers {
		losers = append(losers, l.Event)
	}
	if want := []string{"C4b", "M6", "M7"}; !slices.Equal(losers, want) {
		t.Errorf("losers %v, want %v", losers, want)
	}
	pending := map[string]demoReportPending{}
	for _, p := range rep.PendingCommits {
		pending[p.Event] = p
	}
	if p := pending["P3c"]; p.AppliedBy != "a.example" || p.Commit != "C3a" || p.WindowIndex != 0 || p.Status["c.example"].Status != "applied" {
		t.Errorf("P3c: %+v", p)
	}
	if p := pending["P4b"]; p.AppliedBy != "b.example" || p.Commit != "C4b" || p.WindowIndex != 1 || !p.Status["b.example"].Lost {
		t.Errorf("P4b: %+v", p)
	}
	if _, ok := pending["P4b"].Status["a.example"]; ok {
		// a.example may learn of P4b after the heal; it must not have
		// applied it itself.
		if s := pending["P4b"].Status["a.example"]; s.Commit != "" && s.Commit != "C4b" {
			t.Errorf("a.example applied P4b as %s", s.Commit)
		}
	}
	if len(rep.Messages) != 8 {
		t.Fatalf("%d messages, want 8", len(rep.Messages))
	}
	for _, m := range rep.Messages {
		if m.Sender == "alice" {
			continue
		}
		lost := m.Message == "M6" || m.Message == "M7"
		if got := slices.Contains(m.DecryptableBy, "alice"); got == lost {
			t.Errorf("%s: alice reads it %v", m.Message, got)
		}
		if lost && !strings.Contains(m.UndecryptableBy["alice"], "lost_fork") {
			t.Errorf("%s for alice: %q, want lost_fork", m.Message, m.UndecryptableBy["alice"])
		}
		if (m.Branch == "loser") != lost {
			t.Errorf("%s on branch %q", m.Message, m.Branch)
		}
	}
}

// readers returns, for each message, who read it.
func demoHTTPReaders(rep *demoReport) map[string][]string {
	out := map[string][]string{}
	for _, m := range rep.Messages {
		out[m.Message] = m.DecryptableBy
	}
	return out
}

// With security.window 0, bob and carol merged b's losing commit and
// kept nothing to return to: they need a new Welcome and read nothing
// alice sends on the winning commit.
func TestDemoHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := demoHTTP(ctx, 1, 0, demoHTTPOptions{speed: demoHTTPSpeed}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo --http took %v", time.Since(start))
	demoHTTPFacts(t, rep)
	if !slices.Equal(rep.NeedsWelcome, []string{"bob", "carol"}) || len(rep.RolledBack) != 0 {
		t.Errorf("needs welcome %v, rolled back %v; want bob and carol, nobody", rep.NeedsWelcome, rep.RolledBack)
	}
	want := map[string][]string{
		"M1": {"bob", "carol"}, "M2": {"alice", "carol"}, "M3": {"alice", "bob"},
		"M4": {}, "M5": {"alice", "carol"}, "M6": {"bob"}, "M7": {"carol"}, "M8": {},
	}
	for m, r := range demoHTTPReaders(rep) {
		if !slices.Equal(r, want[m]) {
			t.Errorf("%s read by %v, want %v", m, r, want[m])
		}
	}
	for _, m := range rep.Messages {
		if m.Message == "M4" || m.Message == "M8" {
			for _, who := range []string{"bob", "carol"} {
				if !strings.Contains(m.UndecryptableBy[who], "not_member") {
					t.Errorf("%s for %s: %q, want not_member", m.Message, who, m.UndecryptableBy[who])
				}
			}
		}
	}
	for _, m := range rep.Members {
		if (m.Name != "alice") != m.NeedsWelcome || m.Name != "alice" && m.Commit != "C4b" {
			t.Errorf("member %+v", m)
		}
	}
	var out bytes.Buffer
	rep.writeText(&out)
	for _, w := range []string{"over HTTP: three mlsserver processes", "C4a wins", "bob    at C4b  epoch 5", "NEEDS A NEW WELCOME"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("the transcript lacks %q:\n%s", w, out.String())
		}
	}
}

// With security.window 600 s, longer than the partition, bob and carol
// roll back to C3a's state and follow C4a: they read alice's messages on
// it, and only the losing branch's messages stay unreadable to alice.
// This runs through the command line (--http --json).
func TestDemoHTTPRollback(t *testing.T) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if code := run([]string{"demo", "--http", "--security-window", "600", "--seed", "2", "--json"}, strings.NewReader(""), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	t.Logf("demo --http --security-window 600 took %v", time.Since(start))
	var rep demoReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	demoHTTPFacts(t, &rep)
	if rep.HTTP == nil || rep.HTTP.ClockSpeed != demoHTTPSpeed || len(rep.HTTP.URLs) != 3 {
		t.Errorf("http: %+v", rep.HTTP)
	}
	if len(rep.NeedsWelcome) != 0 || len(rep.RolledBack) != 2 {
		t.Fatalf("needs welcome %v, rolled back %+v; want nobody, bob and carol", rep.NeedsWelcome, rep.RolledBack)
	}
	for _, rb := range rep.RolledBack {
		if rb.From != "C4b" || rb.Back != "C3a" || rb.To != "C4a" || rb.ElapsedSeconds > 600 || rb.ElapsedSeconds <= 0 {
			t.Errorf("rollback %+v", rb)
		}
	}
	want := map[string][]string{
		"M1": {"bob", "carol"}, "M2": {"alice", "carol"}, "M3": {"alice", "bob"},
		"M4": {"bob", "carol"}, "M5": {"alice", "carol"}, "M6": {"bob"}, "M7": {"carol"}, "M8": {"bob", "carol"},
	}
	for m, r := range demoHTTPReaders(&rep) {
		if !slices.Equal(r, want[m]) {
			t.Errorf("%s read by %v, want %v", m, r, want[m])
		}
	}
	for _, m := range rep.Members {
		if m.NeedsWelcome || m.Commit != "C4a" || m.Epoch != 5 || (m.Name != "alice") != m.RolledBack {
			t.Errorf("member %+v", m)
		}
	}
	// The servers are stopped: their client API no longer answers.
	for _, u := range rep.HTTP.URLs {
		addr := u[strings.Index(u, " ")+1:]
		if res, err := http.Get(addr + "/health"); err == nil {
			res.Body.Close()
			t.Errorf("%s still answers after the demo", u)
		}
	}
}

// An interrupt (the context ends) in the middle of the story stops the
// servers and returns at once; the data dirs and logs are kept and named.
func TestDemoHTTPInterrupt(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mlsserver")
	if _, err := buildMLSServer(context.Background(), "", filepath.Dir(bin), io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	start := time.Now()
	_, err := demoHTTP(ctx, 1, 0, demoHTTPOptions{serverBin: bin, speed: demoHTTPSpeed}, &stderr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("demo ended with %v after %v, want the context's end", err, time.Since(start))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the demo returned %v after the interrupt", d-4*time.Second)
	}
	_, dir, ok := strings.Cut(stderr.String(), "kept in ")
	if !ok {
		t.Fatalf("stderr does not name the kept dir: %s", stderr.String())
	}
	dir = strings.TrimSpace(dir)
	defer os.RemoveAll(dir)
	for _, name := range []string{"a.example", "b.example", "c.example"} {
		log, err := os.ReadFile(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("storage closed")) {
			t.Errorf("%s did not shut down cleanly:\n%s", name, log)
		}
	}
}
