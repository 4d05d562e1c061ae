package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
)

const checkUsage = `usage: mlsroom check [FILE|-]

Reads the events of one MLS room (room versions m.mls.1 and de.bwi.mls.v1)
from FILE (standard input when FILE is "-" or absent) as JSON lines: one
event in federation format per line, in the order a server received them
(soft-fail depends on that order). Blank lines are skipped. The room version
is the content.room_version of the first m.room.create event in the input.

Each event is parsed (the event format, content hash and MLS framing of its
room version) and checked with the auth rules of MSC4256 as the project
reads them (SPEC-NOTES §4):
  - against its auth events (rules 1-12; an auth event not seen earlier in
    the input, or rejected, fails rule 4.4),
  - against the state before it (the chain rule), and
  - if it passed, for soft-fail against the room's current state.
Signatures are NOT verified: the input is trusted to come from its origins.

The states are simplified; the full state resolution is another package's:
  - the state before an event is the commit its prev events lead to: the
    event itself after an accepted commit, else the state before it. Prev
    events on two branches resolve by the first commits after their fork
    point: the one whose origin ranks higher in the fork point's powers
    wins (an absent server ranks last), then the lower origin_server_ts,
    then the lower event ID. Prev events that are rejected or not in the
    input are ignored; with none left the state has no commit yet.
  - the current state starts without a commit; an accepted commit that is
    not soft-failed becomes the current commit (it extends the room, or its
    fork wins), unless it is equivalent (same ciphertext) to the commit
    already on the current mainline at its epoch.

For every event one JSON object is printed on its own line:
  {"event_id": ..., "allowed": true|false, "rule": ..., "reason": ...,
   "soft_failed": false|"a"|"b"|"c", "soft_fail_reason": ...}
rule and reason only for rejected events (rule is "1" to "11" with
sub-rules such as "9.9", or "chain"); soft_fail_reason only when
soft-failed. An event that the room version's format refuses for a reason
that is one of the auth rules (say a create event without state key, rule
3.1) is reported as rejected, its event_id the reference hash of its
redacted JSON. A repeated event gets the verdict of its first occurrence.

Exit status: 0 when every line was checked (whatever the verdicts), 1 for a
malformed line (not a JSON object, or not an event of the room version for
a reason that is not an auth rule: the line is named on stderr and nothing
after it is checked) or unreadable input, 2 for usage errors.
`

// maxCheckLine bounds one input line: Parse reads at most
// roomversion.MaxInputSize bytes.
const maxCheckLine = roomversion.MaxInputSize

// checkVerdict is the line printed for one event.
type checkVerdict struct {
	EventID        string `json:"event_id"`
	Allowed        bool   `json:"allowed"`
	Rule           string `json:"rule,omitempty"`
	Reason         string `json:"reason,omitempty"`
	SoftFailed     any    `json:"soft_failed"` // false or the case letter
	SoftFailReason string `json:"soft_fail_reason,omitempty"`
}

// runCheck is the check subcommand. It returns the exit status.
func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, checkUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "\n%s", checkUsage)
		return exitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "mlsroom check: want at most one FILE, got %d: %q\n", fs.NArg(), fs.Args())
		return exitUsage
	}
	name, r := "stdin", stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "mlsroom check: reading input: %v\n", err)
			return exitInvalid
		}
		defer f.Close()
		name, r = fs.Arg(0), f
	}
	lines, err := checkReadLines(r)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom check: reading %s: %v\n", name, err)
		return exitInvalid
	}
	out := bufio.NewWriter(stdout)
	err = checkRoom(lines, func(v checkVerdict) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		out.Write(b)
		return out.WriteByte('\n')
	})
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("writing the verdicts: %w", ferr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom check: %s: %v\n", name, err)
		return exitInvalid
	}
	return exitOK
}

// checkLine is one non-blank input line.
type checkLine struct {
	n    int // 1-based line number
	text []byte
}

// checkReadLines reads the input's non-blank lines.
func checkReadLines(r io.Reader) ([]checkLine, error) {
	br := bufio.NewReader(r)
	var lines []checkLine
	for n := 1; ; n++ {
		text, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			var long bytes.Buffer
			long.Write(text)
			for errors.Is(err, bufio.ErrBufferFull) && long.Len() <= maxCheckLine {
				text, err = br.ReadSlice('\n')
				long.Write(text)
			}
			if long.Len() > maxCheckLine {
				return nil, fmt.Errorf("line %d: longer than %d bytes", n, maxCheckLine)
			}
			text = long.Bytes()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if t := bytes.TrimSpace(text); len(t) > 0 {
			lines = append(lines, checkLine{n: n, text: bytes.Clone(t)})
		}
		if errors.Is(err, io.EOF) {
			return lines, nil
		}
	}
}

// checkRoom checks the lines in order and hands each verdict to emit.
func checkRoom(lines []checkLine, emit func(checkVerdict) error) error {
	// The room version: the first create event's.
	var v roomversion.Version
	for _, l := range lines {
		var top struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(l.text, &top) != nil || top.Type != roomversion.EventTypeCreate {
			continue
		}
		var content struct {
			RoomVersion string `json:"room_version"`
		}
		_ = json.Unmarshal(top.Content, &content)
		var err error
		if v, err = roomversion.Lookup(content.RoomVersion); err != nil {
			return fmt.Errorf("line %d: the create event's room_version %q is not an MLS room version (rule 3.3): nothing to check", l.n, content.RoomVersion)
		}
		break
	}
	if v == "" {
		return errors.New("no m.room.create event in the input")
	}

	c := &checker{version: v, verdicts: map[string]checkVerdict{}, rejected: map[string]*roomversion.Event{}, after: map[string]*roomversion.Event{}}
	for _, l := range lines {
		if !json.Valid(l.text) || l.text[0] != '{' {
			return fmt.Errorf("line %d: not a JSON object", l.n)
		}
		verdict, err := c.check(l.text)
		if err != nil {
			return fmt.Errorf("line %d: %w", l.n, err)
		}
		if err := emit(verdict); err != nil {
			return err
		}
	}
	return nil
}

// checker holds the room as the lines so far built it.
type checker struct {
	version  roomversion.Version
	room     *authrules.MemRoom // nil until the create event is accepted
	verdicts map[string]checkVerdict
	rejected map[string]*roomversion.Event // rejected events that parsed
	// after is the commit of the state after each accepted event (nil:
	// none yet).
	after map[string]*roomversion.Event
}

// check checks one event.
func (c *checker) check(line []byte) (checkVerdict, error) {
	ev, err := authrules.ParseEvent(context.Background(), c.version, line)
	if err != nil {
		var ae *authrules.Error
		if !errors.As(err, &ae) {
			return checkVerdict{}, fmt.Errorf("not an event of room version %s: %w", c.version, err)
		}
		return checkVerdict{EventID: roomversion.ReferenceIDOf(line), Rule: ae.Rule, Reason: ae.Reason, SoftFailed: false}, nil
	}
	id := ev.EventID()
	if v, ok := c.verdicts[id]; ok {
		return v, nil
	}
	v := c.judge(ev)
	c.verdicts[id] = v
	return v, nil
}

// judge runs the auth rules and soft-fail on a parsed event and records it.
func (c *checker) judge(ev *roomversion.Event) checkVerdict {
	v := checkVerdict{EventID: ev.EventID(), SoftFailed: false}
	fail := func(err error) checkVerdict {
		var ae *authrules.Error
		v.Rule, v.Reason = "error", err.Error()
		if errors.As(err, &ae) {
			v.Rule, v.Reason = ae.Rule, ae.Reason
		}
		c.rejected[ev.EventID()] = ev
		return v
	}

	// Against its auth events.
	ids := ev.AuthEventIDs()
	auth := make([]*roomversion.Event, len(ids))
	var authCommit *roomversion.Event
	for i, id := range ids {
		if c.room != nil {
			auth[i] = c.room.Event(id)
		}
		if auth[i] == nil {
			auth[i] = c.rejected[id]
		}
		if auth[i] != nil && auth[i].Kind() == roomversion.EventCommit {
			authCommit = auth[i]
		}
	}
	if err := authrules.CheckAuthEvents(ev, auth, func(id string) bool { return c.rejected[id] != nil }); err != nil {
		return fail(err)
	}
	if ev.Kind() == roomversion.EventCreate {
		v.Allowed = true
		if c.room == nil {
			c.room = authrules.NewMemRoom(ev)
			c.after[ev.EventID()] = nil
		}
		return v
	}
	if c.room == nil {
		// Not reachable: the auth events name an accepted create event.
		return fail(errors.New("the room has no create event"))
	}

	// Against the state before it.
	before := c.stateBefore(ev)
	if err := authrules.Check(ev, authCommit, c.room.State(before)); err != nil {
		return fail(err)
	}

	// Soft-fail against the current state.
	sf, err := authrules.CheckSoftFail(ev, c.room)
	if err != nil {
		// Not reachable: the room holds every auth commit of an accepted
		// event.
		return fail(err)
	}
	v.Allowed = true
	if sf != nil {
		v.SoftFailed, v.SoftFailReason = sf.Case, sf.Reason
	}
	c.room.Add(ev)
	c.after[ev.EventID()] = before
	if ev.Kind() == roomversion.EventCommit {
		c.after[ev.EventID()] = ev
		if sf == nil {
			if m := c.room.MainlineAt(ev.Epoch()); m == nil || !checkEquivalent(m, ev) {
				c.room.SetCurrent(ev)
			}
		}
	}
	return v
}

// stateBefore returns the commit of the state at ev's prev events.
func (c *checker) stateBefore(ev *roomversion.Event) *roomversion.Event {
	var state *roomversion.Event
	first := true
	for _, id := range ev.PrevEventIDs() {
		s, ok := c.after[id]
		if !ok {
			continue // rejected or unknown
		}
		if first {
			state, first = s, false
			continue
		}
		state = c.resolve(state, s)
	}
	return state
}

// resolve picks between two states' commits (see checkUsage).
func (c *checker) resolve(x, y *roomversion.Event) *roomversion.Event {
	if x == nil || y == nil {
		if x == nil {
			return y // the genesis commit is on every mainline
		}
		return x
	}
	mx, my := c.room.Mainline(x), c.room.Mainline(y)
	onto := func(ml []*roomversion.Event, e *roomversion.Event) bool {
		return e.Epoch() < uint64(len(ml)) && ml[e.Epoch()] != nil && checkEquivalent(ml[e.Epoch()], e)
	}
	switch {
	case onto(my, x):
		return y
	case onto(mx, y):
		return x
	case mx == nil || my == nil: // not reachable for accepted commits
		if y.Epoch() > x.Epoch() {
			return y
		}
		return x
	}
	e := 0
	for e < len(mx) && e < len(my) && checkEquivalent(mx[e], my[e]) {
		e++
	}
	fx, fy := mx[e], my[e]
	_, domain, _ := strings.Cut(c.room.Create().RoomID().String(), ":")
	powers := []string{domain}
	if e > 0 {
		if fm, err := mx[e-1].FederationMap(); err == nil {
			powers = fm.Federation.Powers
		}
	}
	rank := func(s string) int {
		for i, p := range powers {
			if p == s {
				return i
			}
		}
		return len(powers)
	}
	rx, ry := rank(fx.Origin()), rank(fy.Origin())
	switch {
	case rx != ry:
		if rx < ry {
			return x
		}
		return y
	case fx.OriginServerTS() != fy.OriginServerTS():
		if fx.OriginServerTS() < fy.OriginServerTS() {
			return x
		}
		return y
	case fx.EventID() < fy.EventID():
		return x
	}
	return y
}

// checkEquivalent reports whether two commits are the same or equivalent
// (byte-identical ciphertext).
func checkEquivalent(a, b *roomversion.Event) bool {
	return a.EventID() == b.EventID() || bytes.Equal(a.Ciphertext(), b.Ciphertext())
}
