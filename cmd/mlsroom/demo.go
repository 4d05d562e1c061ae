package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

const demoUsage = `usage: mlsroom demo [--json] [--seed N] [--security-window SECONDS]
       mlsroom demo --http [--server-bin PATH] [--clock-speed N] [--keep] [--json] [--seed N] [--security-window SECONDS]

Tells, in one process, the story of one MLS mode room shared by three
servers: a.example, b.example and c.example, with powers [a, b], servers
[a, b, c] and can_propose [a, b, c]. Everything is real: MLS clients
(alice on a, bob on b, carol on c) with their own groups, signed events,
the auth rules, soft-fail, state resolution and the pending-commit queue,
with each server's storage in memory (SQLite). A virtual clock moves
through the pending-commit windows, so the run takes seconds.

The story: a creates the room; alice sends the epoch-0 commit and adds bob
and carol by commits with Welcomes; messages; carol's pending commit is
applied by a in its window; the network splits (a | b, c); alice commits
on a, bob's pending commit is applied by b in its own window for the same
epoch; messages on both sides; the network heals, state resolution picks
a's commit, and the transcript says which member can read which message
and who needs a new Welcome.

Flags:
  --json                 print the same facts as one JSON document
  --seed N               seed of the run (message texts, delays, keys);
                         the same seed gives the same output (default 1)
  --security-window S    security.window of the room in seconds (default
                         0); clients keep their state from before a commit
                         this long, so with a window longer than the
                         partition bob and carol roll back and follow the
                         winning commit instead of needing a new Welcome

  --http                 tell the same story over HTTP instead: start three
                         mlsserver processes on 127.0.0.1 (each with its
                         own SQLite database in a temporary directory,
                         federating over HTTPS through link proxies of the
                         demo, which cut the network), run alice, bob and
                         carol with package client against them, and
                         print the same transcript from what the servers'
                         client API and the clients report; about a
                         minute; the servers are stopped at the end, on
                         error and on interrupt
  --server-bin PATH      (--http) the mlsserver binary to run; default:
                         build cmd/mlsserver with "go build" into the
                         temporary directory (run from inside the module)
  --clock-speed N        (--http) server seconds per real second, 1 to 600
                         (default 60: the 5-minute pending-commit windows
                         pass in 5 s); the clients follow the same clock
  --keep                 (--http) keep the temporary directory (each
                         server's data dir, SQLite database and log) after
                         a successful run too, and name it on stderr

Events are named by labels (C4a: the commit of epoch 4 sent by a.example;
P3c: a pending commit of epoch 3 from c.example; M1: the first message),
since event IDs hash random MLS ciphertexts and differ from run to run.

Exit status: 0 when the story ran as told, 1 when it did not, 2 for usage
errors.
`

// runDemo is the demo subcommand.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	asJSON := fs.Bool("json", false, "")
	seed := fs.Int64("seed", 1, "")
	window := fs.Uint64("security-window", 0, "")
	httpMode := fs.Bool("http", false, "")
	serverBin := fs.String("server-bin", "", "")
	speed := fs.Float64("clock-speed", demoHTTPSpeed, "")
	keep := fs.Bool("keep", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, demoUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "\n%s", demoUsage)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mlsroom demo: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	httpOpts, err := demoHTTPFlags(fs, *httpMode, *serverBin, *speed, *keep)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom demo: %v\n", err)
		return exitUsage
	}
	var rep *demoReport
	if *httpMode {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		rep, err = demoHTTP(ctx, *seed, *window, httpOpts, stderr)
		stop()
	} else {
		rep, _, err = demo(context.Background(), *seed, *window)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom demo: %v\n", err)
		return exitInvalid
	}
	out := bufio.NewWriter(stdout)
	if *asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "mlsroom demo: %v\n", err)
			return exitInvalid
		}
		out.Write(b)
		out.WriteByte('\n')
	} else {
		rep.writeText(out)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "mlsroom demo: writing the transcript: %v\n", err)
		return exitInvalid
	}
	return exitOK
}

// demo runs the story and reports it.
func demo(ctx context.Context, seed int64, window uint64) (*demoReport, *demoWorld, error) {
	w, notes, err := simulateDemo(ctx, seed, window)
	if err != nil {
		return nil, nil, err
	}
	rep, err := w.report(notes)
	if cerr := w.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	return rep, w, nil
}

// demoReport is what the demo prints: the story, the resolved chain, the
// fork and who can read what.
type demoReport struct {
	Seed           int64                `json:"seed"`
	SecurityWindow uint64               `json:"security_window"`
	RoomID         string               `json:"room_id"`
	RoomVersion    string               `json:"room_version"`
	Algorithm      string               `json:"algorithm"`
	Start          string               `json:"start"`
	Servers        []demoReportServer   `json:"servers"`
	Members        []demoReportMember   `json:"members"`
	Steps          []demoStep           `json:"steps"`
	Chain          []demoReportCommit   `json:"chain"`
	Fork           *demoReportFork      `json:"fork"`
	Losers         []demoReportLoss     `json:"losers"`
	PendingCommits []demoReportPending  `json:"pending_commits"`
	Messages       []demoReportMessage  `json:"messages"`
	NeedsWelcome   []string             `json:"needs_welcome"`
	RolledBack     []demoReportRollback `json:"rolled_back"`
	// HTTP is set when the story ran over mlsserver processes (--http).
	HTTP *demoReportHTTP `json:"http,omitempty"`
}

type demoReportServer struct {
	Name          string                 `json:"name"`
	PowersIndex   *int                   `json:"powers_index"` // null: not in powers
	Users         []string               `json:"users"`
	CurrentCommit string                 `json:"current_commit"`
	SoftFailed    []demoReportSoftFailed `json:"soft_failed"`
}

type demoReportSoftFailed struct {
	Event  string `json:"event"`
	Case   string `json:"case"`
	Reason string `json:"reason"`
}

type demoReportMember struct {
	Name         string `json:"name"`
	UserID       string `json:"user_id"`
	Server       string `json:"server"`
	Commit       string `json:"commit"` // the commit its MLS state is at
	Epoch        uint64 `json:"epoch"`
	RoomName     string `json:"room_name"`
	NeedsWelcome bool   `json:"needs_welcome"`
	Reason       string `json:"reason,omitempty"`
	RolledBack   bool   `json:"rolled_back"`
}

type demoReportCommit struct {
	Commit     string   `json:"commit"`
	Epoch      uint64   `json:"epoch"`
	Origin     string   `json:"origin"`
	Time       string   `json:"time"`
	Powers     []string `json:"powers"`
	Servers    []string `json:"servers"`
	CanPropose []string `json:"can_propose"`
	Window     uint64   `json:"security_window"`
	What       string   `json:"what"`
}

type demoReportFork struct {
	Epoch     uint64         `json:"epoch"`
	ForkPoint string         `json:"fork_point"`
	Winner    demoReportSide `json:"winner"`
	Loser     demoReportSide `json:"loser"`
	Reason    string         `json:"reason"`
}

type demoReportSide struct {
	Commit      string `json:"commit"`
	Origin      string `json:"origin"`
	PowersIndex int    `json:"powers_index"`
	Time        string `json:"time"`
}

type demoReportLoss struct {
	Event     string `json:"event"`
	Type      string `json:"type"`
	Epoch     uint64 `json:"epoch"`
	Origin    string `json:"origin"`
	Kind      string `json:"kind"`
	ForkPoint string `json:"fork_point,omitempty"`
	Winner    string `json:"winner,omitempty"`
	Reason    string `json:"reason"`
}

type demoReportPending struct {
	Event     string `json:"event"`
	Epoch     uint64 `json:"epoch"`
	Origin    string `json:"origin"`
	AppliedBy string `json:"applied_by"`
	Commit    string `json:"commit"`
	// WindowIndex is the index in powers whose window it was applied in.
	WindowIndex int    `json:"window_index"`
	AppliedAt   string `json:"applied_at"`
	// Status is each server's view (commitqueue.Status).
	Status map[string]demoReportStatus `json:"status"`
}

type demoReportStatus struct {
	Status string `json:"status"`
	Commit string `json:"commit,omitempty"`
	Lost   bool   `json:"lost"`
}

type demoReportMessage struct {
	Message string `json:"message"`
	Sender  string `json:"sender"`
	Server  string `json:"server"`
	Text    string `json:"text"`
	Epoch   uint64 `json:"epoch"`
	Commit  string `json:"commit"` // its auth commit
	Time    string `json:"time"`
	// Branch is "" for messages on the resolved chain's common history,
	// "winner" or "loser" for those after the fork.
	Branch          string            `json:"branch"`
	DecryptableBy   []string          `json:"decryptable_by"`
	UndecryptableBy map[string]string `json:"undecryptable_by"`
}

type demoReportRollback struct {
	Member         string `json:"member"`
	From           string `json:"from"`
	Back           string `json:"back_to"`
	To             string `json:"to"`
	ElapsedSeconds int64  `json:"elapsed_seconds"`
	Window         uint64 `json:"security_window"`
}

// report gathers the facts from the servers and clients.
func (w *demoWorld) report(notes demoNotes) (*demoReport, error) {
	a := w.servers[0]
	create := a.rr.replay.Room().Create()
	alg, _ := w.version.Algorithm(w.suite)
	rep := &demoReport{Seed: w.seed, SecurityWindow: w.window, RoomID: w.roomID, RoomVersion: string(w.version), Algorithm: alg,
		Start: demoStart().Format("2006-01-02T15:04:05Z"), Steps: w.steps, Losers: []demoReportLoss{}, NeedsWelcome: []string{}, RolledBack: []demoReportRollback{}}
	hhmmss := func(ev *roomversion.Event) string { return ev.OriginServerTS().Time().UTC().Format("15:04:05") }

	// Every server ends on the same commit.
	cur := a.current()
	for _, s := range w.servers {
		if s.current().EventID() != cur.EventID() {
			return nil, fmt.Errorf("%s ends on %s, %s on %s: %w", s.name, w.name(s.current().EventID()), a.name, w.name(cur.EventID()), errDemo)
		}
	}
	final, err := cur.FederationMap()
	if err != nil {
		return nil, err
	}
	for _, s := range w.servers {
		rs := demoReportServer{Name: s.name, Users: []string{}, CurrentCommit: w.name(s.current().EventID()), SoftFailed: []demoReportSoftFailed{}}
		if i := slices.Index(final.Federation.Powers, s.name); i >= 0 {
			rs.PowersIndex = &i
		}
		for _, c := range s.clients {
			rs.Users = append(rs.Users, c.userID)
		}
		for _, x := range s.softFailed {
			rs.SoftFailed = append(rs.SoftFailed, demoReportSoftFailed{Event: w.name(x.ev.EventID()), Case: x.kase, Reason: w.relabel(x.reason)})
		}
		rep.Servers = append(rep.Servers, rs)
	}

	// The resolved chain.
	ml, err := stateres.Mainline(cur, create, a.rr.replay.Room())
	if err != nil {
		return nil, err
	}
	for _, c := range ml {
		fm, err := c.FederationMap()
		if err != nil {
			return nil, err
		}
		rep.Chain = append(rep.Chain, demoReportCommit{Commit: w.name(c.EventID()), Epoch: c.Epoch(), Origin: c.Origin(), Time: hhmmss(c),
			Powers: fm.Federation.Powers, Servers: fm.Federation.Servers, CanPropose: fm.Federation.CanPropose, Window: fm.Window(),
			What: notes[w.name(c.EventID())]})
	}

	// Who lost: every event of the room, as the servers together hold it.
	all, store := w.allEvents()
	losses, err := stateres.Losers(all, stateres.StateSet{Create: create, Commit: cur}, store)
	if err != nil {
		return nil, err
	}
	lostBy := map[string]stateres.Loss{}
	for _, l := range losses {
		rl := demoReportLoss{Event: w.name(l.Event.EventID()), Type: l.Event.Type(), Epoch: l.Event.Epoch(), Origin: l.Event.Origin(), Kind: l.Kind, Reason: w.relabel(l.Reason)}
		if l.ForkPoint != nil {
			rl.ForkPoint = w.name(l.ForkPoint.EventID())
		}
		if l.Winner != nil {
			rl.Winner = w.name(l.Winner.EventID())
		}
		rep.Losers = append(rep.Losers, rl)
		lostBy[l.Event.EventID()] = l
		if l.Kind == stateres.LostFork && l.Event.Kind() == roomversion.EventCommit && l.Branch == l.Event && rep.Fork == nil {
			fp := l.ForkPoint
			rep.Fork = &demoReportFork{Epoch: l.Event.Epoch(), ForkPoint: w.name(fp.EventID()),
				Winner: demoReportSide{Commit: w.name(l.Winner.EventID()), Origin: l.Winner.Origin(), PowersIndex: stateres.Power(l.Winner, fp), Time: hhmmss(l.Winner)},
				Loser:  demoReportSide{Commit: w.name(l.Event.EventID()), Origin: l.Event.Origin(), PowersIndex: stateres.Power(l.Event, fp), Time: hhmmss(l.Event)},
				Reason: w.relabel(l.Reason)}
		}
	}
	if rep.Fork == nil {
		return nil, fmt.Errorf("no commit lost a fork: %w", errDemo)
	}

	// Pending commits and each server's view of them.
	for _, ap := range w.applied {
		rp := demoReportPending{Event: w.name(ap.pending.EventID()), Epoch: ap.pending.Epoch(), Origin: ap.pending.Origin(),
			AppliedBy: ap.server.name, Commit: w.name(ap.commit.EventID()), WindowIndex: ap.windowIndex,
			AppliedAt: ap.at.Format("15:04:05"), Status: map[string]demoReportStatus{}}
		for _, s := range w.servers {
			st, err := s.sched.Status(w.ctx, ap.pending.EventID())
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			rs := demoReportStatus{Status: string(st.Status), Lost: st.Lost}
			if st.CommitEventID != "" {
				rs.Commit = w.name(st.CommitEventID)
			}
			rp.Status[s.name] = rs
		}
		rep.PendingCommits = append(rep.PendingCommits, rp)
	}

	// Members afterwards.
	for _, c := range w.clients {
		rm := demoReportMember{Name: c.name, UserID: c.userID, Server: c.srv.name, Commit: c.lastCommit, Epoch: c.group.Epoch(),
			RoomName: c.roomName(), NeedsWelcome: c.stuck != "", Reason: c.stuck, RolledBack: len(c.rollbacks) > 0}
		rep.Members = append(rep.Members, rm)
		if rm.NeedsWelcome {
			rep.NeedsWelcome = append(rep.NeedsWelcome, c.name)
		}
		for _, rb := range c.rollbacks {
			rep.RolledBack = append(rep.RolledBack, demoReportRollback{Member: c.name, From: rb.From, Back: rb.Back, To: rb.To,
				ElapsedSeconds: int64(rb.Elapsed.Seconds()), Window: rb.Window})
		}
	}

	// Messages: who could read which, as the clients report it.
	for _, m := range w.msgs {
		rm := demoReportMessage{Message: m.label, Sender: m.sender.name, Server: m.sender.srv.name, Text: m.text, Epoch: m.epoch,
			Commit: m.commit, Time: hhmmss(m.ev), DecryptableBy: []string{}, UndecryptableBy: map[string]string{}}
		l, lost := lostBy[m.ev.EventID()]
		auth := store.Event(stateres.AuthCommitID(m.ev, create.EventID()))
		switch {
		case lost:
			rm.Branch = "loser"
		case auth != nil && auth.Epoch() >= rep.Fork.Epoch:
			rm.Branch = "winner"
		}
		for _, c := range w.clients {
			if c == m.sender {
				continue
			}
			res, ok := c.results[m.label]
			switch {
			case ok && res.decrypted:
				rm.DecryptableBy = append(rm.DecryptableBy, c.name)
			case !ok:
				rm.UndecryptableBy[c.name] = "never delivered to " + c.name
			case lost:
				why := fmt.Sprintf("sent on the losing branch: %s lost to %s", w.name(l.Branch.EventID()), w.name(l.Winner.EventID()))
				if res.lostFork {
					why += "; delivered flagged de.bwi.mls.lost_fork"
				}
				rm.UndecryptableBy[c.name] = why
			case c.stuck != "":
				rm.UndecryptableBy[c.name] = fmt.Sprintf("%s's client stayed on %s, the losing branch, and has no keys for epoch %d of %s; it needs a new Welcome", c.name, c.lastCommit, m.epoch, m.commit)
			default:
				rm.UndecryptableBy[c.name] = "could not decrypt"
			}
		}
		rep.Messages = append(rep.Messages, rm)
	}
	return rep, nil
}

// allEvents returns every event the servers hold (accepted, soft-failed
// included), in building order, and a store of them.
func (w *demoWorld) allEvents() ([]*roomversion.Event, stateres.MapStore) {
	store := stateres.MapStore{}
	var all []*roomversion.Event
	for _, ev := range w.order {
		for _, s := range w.servers {
			if s.rr.replay.Room().Event(ev.EventID()) != nil {
				all = append(all, ev)
				store.Add(ev)
				break
			}
		}
	}
	return all, store
}

// writeText prints the transcript.
func (r *demoReport) writeText(out io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	p("mlsroom demo: one MLS mode room (MSC4256) on three servers, a fork and its healing\n")
	if r.HTTP == nil {
		p("seed %d, security.window %ds, room %s (%s), virtual clock from %s\n\n", r.Seed, r.SecurityWindow, r.RoomID, r.RoomVersion, r.Start)
	} else {
		p("over HTTP: three mlsserver processes (%s), clock speed %v from %s\n", strings.Join(r.HTTP.URLs, ", "), r.HTTP.ClockSpeed, r.Start)
		p("seed %d, security.window %ds, room %s (%s), %ds of real time from the servers' start\n\n", r.Seed, r.SecurityWindow, r.RoomID, r.RoomVersion, r.HTTP.WallSeconds)
	}
	for _, s := range r.Servers {
		rank := "not in powers"
		if s.PowersIndex != nil {
			rank = fmt.Sprintf("powers index %d", *s.PowersIndex)
		}
		p("  %-10s %-16s %s\n", s.Name, rank, strings.Join(s.Users, ", "))
	}
	p("\nWhat happens\n\n")
	for _, st := range r.Steps {
		p("%s\n", demoWrap(fmt.Sprintf("%2d. [%s] %s", st.N, st.Time, st.Text), 78, "              "))
	}
	p("\nThe resolved commit chain (the same on every server)\n\n")
	for _, c := range r.Chain {
		p("  epoch %-2d %-4s from %-10s %s  %s\n", c.Epoch, c.Commit, c.Origin, c.Time, c.What)
	}
	f := r.Fork
	p("\nThe fork\n\n")
	p("%s\n", demoWrap(fmt.Sprintf("  After %s two commits claimed epoch %d: %s from %s (powers index %d, %s) and %s from %s (powers index %d, %s). %s wins: state resolution ranks commits by their origin's place in powers of the fork point, then origin_server_ts, then event ID.",
		f.ForkPoint, f.Epoch, f.Winner.Commit, f.Winner.Origin, f.Winner.PowersIndex, f.Winner.Time, f.Loser.Commit, f.Loser.Origin, f.Loser.PowersIndex, f.Loser.Time, f.Winner.Commit), 78, "  "))
	if r.HTTP == nil {
		p("\n  What lost (stateres.Losers):\n")
	} else {
		p("\n  What lost (soft-failed as a lost fork, case c, by the servers):\n")
	}
	for _, l := range r.Losers {
		p("    %-4s %-22s epoch %d from %s\n", l.Event, l.Type, l.Epoch, l.Origin)
	}
	for _, pc := range r.PendingCommits {
		var views []string
		for _, s := range r.Servers {
			if st, ok := pc.Status[s.Name]; ok {
				v := s.Name + " " + st.Status
				if st.Lost {
					v += " (lost)"
				}
				views = append(views, v)
			}
		}
		p("%s\n", demoWrap(fmt.Sprintf("  Pending commit %s (from %s): applied by %s as %s at %s in the window of powers index %d; now %s.",
			pc.Event, pc.Origin, pc.AppliedBy, pc.Commit, pc.AppliedAt, pc.WindowIndex, strings.Join(views, ", ")), 78, "    "))
	}
	p("\nWho can read what (as each client reports it)\n\n")
	p("  %-4s %-9s %-6s %-6s %-7s", "msg", "time", "from", "epoch", "branch")
	for _, m := range r.Members {
		p(" %-8s", m.Name)
	}
	p(" text\n")
	var notes []string
	for _, m := range r.Messages {
		branch := m.Branch
		if branch == "" {
			branch = "-"
		}
		p("  %-4s %-9s %-6s %-6d %-7s", m.Message, m.Time, m.Sender, m.Epoch, branch)
		for _, mem := range r.Members {
			cell := "sent"
			switch {
			case mem.Name == m.Sender:
			case slices.Contains(m.DecryptableBy, mem.Name):
				cell = "read"
			default:
				cell = "LOST"
				notes = append(notes, fmt.Sprintf("%s for %s: %s.", m.Message, mem.Name, m.UndecryptableBy[mem.Name]))
			}
			p(" %-8s", cell)
		}
		p(" %q\n", m.Text)
	}
	if len(notes) > 0 {
		p("\n")
		for _, n := range notes {
			p("%s\n", demoWrap("  "+n, 78, "    "))
		}
	}
	p("\nAfterwards\n\n")
	for _, m := range r.Members {
		state := "follows the room"
		if m.RolledBack {
			state = "rolled back and follows the room"
		}
		if m.NeedsWelcome {
			state = "NEEDS A NEW WELCOME"
		}
		p("  %-6s at %-4s epoch %d, room name %-20q %s\n", m.Name, m.Commit, m.Epoch, m.RoomName, state)
	}
	switch {
	case len(r.NeedsWelcome) > 0:
		p("\n%s\n", demoWrap(fmt.Sprintf("  %s merged the losing commit and, with security.window %ds, kept no state to return to: a member on the winning side must add them again with a new Welcome. Run with --security-window 600 to see them roll back instead.",
			strings.Join(r.NeedsWelcome, " and "), r.SecurityWindow), 78, "  "))
	case len(r.RolledBack) > 0:
		var who []string
		for _, rb := range r.RolledBack {
			who = append(who, fmt.Sprintf("%s (%ds after leaving %s)", rb.Member, rb.ElapsedSeconds, rb.Back))
		}
		p("\n%s\n", demoWrap(fmt.Sprintf("  Rolled back within security.window %ds: %s. Nobody needs a new Welcome; only the messages of the losing branch stay unreadable to those who were not on it.",
			r.SecurityWindow, strings.Join(who, ", ")), 78, "  "))
	}
}

// demoWrap breaks text into lines of at most width runes, continuing lines with
// indent.
func demoWrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		n := len([]rune(word))
		switch {
		case i == 0:
			if lead := len(text) - len(strings.TrimLeft(text, " ")); lead > 0 {
				b.WriteString(text[:lead])
				line = lead
			}
		case line+1+n > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += n
	}
	return b.String()
}
