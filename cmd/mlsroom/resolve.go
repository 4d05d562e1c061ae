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
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
)

const resolveUsage = `usage: mlsroom resolve [FILE|-]

Reads the events of one MLS room (room versions m.mls.1 and de.bwi.mls.v1)
from FILE (standard input when FILE is "-" or absent) as JSON lines, one
event in federation format per line, in the order a server received them,
and prints the room's resolved state as one JSON object.

The events are taken in as a server takes them (the input must hold each
event's auth and prev events before it; others are ignored as prev events
and fail rule 4.4 as auth events):
  - each event is checked against its auth events (rules 1-12) and against
    the state before it (the chain rule), where the state before it is the
    state resolution (package stateres, SPEC-NOTES §5) of the states after
    its prev events; a rejected event is dropped;
  - an accepted event is checked for soft-fail against the room's current
    state; one that is not soft-failed becomes a forward extremity in place
    of its prev events (soft-failed events never do), and the current state
    is the state resolution of the states at the forward extremities.
Signatures are NOT verified: the input is trusted to come from its origins.

Output:
  {"room_id", "room_version",
   "state": {"create": ID, "commit": ID or null},
   "chain": [{"event_id", "epoch", "origin", "powers", "servers",
              "can_propose"}, ...],          the resolved commit chain,
                                             epoch 0 first
   "forward_extremities": [ID, ...],
   "losing_commits": [{"event_id", "epoch", "origin", "type", "kind",
                       "fork_point", "winner", "reason"}, ...],
   "lost_messages": [...same fields...],     messages and pending commits
                                             that belong to losing forks
   "rejected": [{"event_id", "rule", "reason"}, ...],
   "soft_failed": [{"event_id", "case", "reason"}, ...]}
kind is "fork" (on a fork that lost at fork_point to winner), "rejected"
(its fork's commit fails the auth rules) or "beyond" (it builds on the
resolved commit but never became a forward extremity). Losers are listed in
the mainline order of stateres.Order.

Exit status: 0 when the input was read, 1 for a malformed line (not a JSON
object, or not an event of the room version for a reason that is not an
auth rule) or unreadable input, 2 for usage errors.
`

// resolveCommit is one commit of the resolved chain.
type resolveCommit struct {
	EventID    string   `json:"event_id"`
	Epoch      uint64   `json:"epoch"`
	Origin     string   `json:"origin"`
	Powers     []string `json:"powers"`
	Servers    []string `json:"servers"`
	CanPropose []string `json:"can_propose"`
}

// resolveLoss is one event that lost.
type resolveLoss struct {
	EventID   string  `json:"event_id"`
	Epoch     uint64  `json:"epoch"`
	Origin    string  `json:"origin"`
	Type      string  `json:"type"`
	Kind      string  `json:"kind"`
	ForkPoint *string `json:"fork_point"`
	Winner    *string `json:"winner"`
	Reason    string  `json:"reason"`
}

type resolveRejected struct {
	EventID string `json:"event_id"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason"`
}

type resolveSoftFailed struct {
	EventID string `json:"event_id"`
	Case    string `json:"case"`
	Reason  string `json:"reason"`
}

// resolveOutput is what resolve prints.
type resolveOutput struct {
	RoomID      string `json:"room_id"`
	RoomVersion string `json:"room_version"`
	State       struct {
		Create string  `json:"create"`
		Commit *string `json:"commit"`
	} `json:"state"`
	Chain              []resolveCommit     `json:"chain"`
	ForwardExtremities []string            `json:"forward_extremities"`
	LosingCommits      []resolveLoss       `json:"losing_commits"`
	LostMessages       []resolveLoss       `json:"lost_messages"`
	Rejected           []resolveRejected   `json:"rejected"`
	SoftFailed         []resolveSoftFailed `json:"soft_failed"`
}

// runResolve is the resolve subcommand.
func runResolve(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, resolveUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "\n%s", resolveUsage)
		return exitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "mlsroom resolve: want at most one FILE, got %d: %q\n", fs.NArg(), fs.Args())
		return exitUsage
	}
	name, r := "stdin", stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "mlsroom resolve: reading input: %v\n", err)
			return exitInvalid
		}
		defer f.Close()
		name, r = fs.Arg(0), f
	}
	lines, err := checkReadLines(r)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom resolve: reading %s: %v\n", name, err)
		return exitInvalid
	}
	res, err := resolveRoom(lines)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom resolve: %s: %v\n", name, err)
		return exitInvalid
	}
	b, err := json.MarshalIndent(res.output, "", "  ")
	if err == nil {
		w := bufio.NewWriter(stdout)
		w.Write(b)
		w.WriteByte('\n')
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom resolve: writing the result: %v\n", err)
		return exitInvalid
	}
	return exitOK
}

// resolved is resolveRoom's result: the output and each event's verdict in
// input order (for comparison with mlsroom check).
type resolved struct {
	output   resolveOutput
	verdicts []checkVerdict
}

// resolver takes a room's events in as a server does.
type roomResolver struct {
	version  roomversion.Version
	replay   *stateres.Replay
	verdicts map[string]checkVerdict
}

// resolveRoom takes the lines in and resolves the room.
func resolveRoom(lines []checkLine) (*resolved, error) {
	v, err := roomVersionOf(lines)
	if err != nil {
		return nil, err
	}
	rr := &roomResolver{version: v, replay: stateres.NewReplay(), verdicts: map[string]checkVerdict{}}
	res := &resolved{}
	for _, l := range lines {
		if !json.Valid(l.text) || l.text[0] != '{' {
			return nil, fmt.Errorf("line %d: not a JSON object", l.n)
		}
		verdict, err := rr.take(l.text, &res.output)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", l.n, err)
		}
		res.verdicts = append(res.verdicts, verdict)
	}
	if rr.replay.Room() == nil {
		return nil, errors.New("no accepted m.room.create event in the input")
	}
	if err := rr.finish(&res.output); err != nil {
		return nil, err
	}
	return res, nil
}

// roomVersionOf returns the room version of the first create event.
func roomVersionOf(lines []checkLine) (roomversion.Version, error) {
	for _, l := range lines {
		var top struct {
			Type    string `json:"type"`
			Content struct {
				RoomVersion string `json:"room_version"`
			} `json:"content"`
		}
		if json.Unmarshal(l.text, &top) != nil || top.Type != roomversion.EventTypeCreate {
			continue
		}
		v, err := roomversion.Lookup(top.Content.RoomVersion)
		if err != nil {
			return "", fmt.Errorf("line %d: the create event's room_version %q is not an MLS room version (rule 3.3)", l.n, top.Content.RoomVersion)
		}
		return v, nil
	}
	return "", errors.New("no m.room.create event in the input")
}

// take takes one event in.
func (rr *roomResolver) take(line []byte, out *resolveOutput) (checkVerdict, error) {
	ev, err := authrules.ParseEvent(context.Background(), rr.version, line)
	if err != nil {
		var ae *authrules.Error
		if !errors.As(err, &ae) {
			return checkVerdict{}, fmt.Errorf("not an event of room version %s: %w", rr.version, err)
		}
		v := checkVerdict{EventID: roomversion.ReferenceIDOf(line), Rule: ae.Rule, Reason: ae.Reason, SoftFailed: false}
		out.Rejected = append(out.Rejected, resolveRejected{EventID: v.EventID, Rule: v.Rule, Reason: v.Reason})
		return v, nil
	}
	if v, ok := rr.verdicts[ev.EventID()]; ok {
		return v, nil
	}
	v, err := rr.judge(ev, out)
	if err != nil {
		return v, err
	}
	rr.verdicts[ev.EventID()] = v
	return v, nil
}

// judge checks a parsed event and records it.
func (rr *roomResolver) judge(ev *roomversion.Event, out *resolveOutput) (checkVerdict, error) {
	v := checkVerdict{EventID: ev.EventID(), SoftFailed: false}
	got, err := rr.replay.Take(ev)
	if err != nil {
		return v, err
	}
	if got.Rejected != nil {
		v.Rule, v.Reason = "error", got.Rejected.Error()
		var ae *authrules.Error
		if errors.As(got.Rejected, &ae) {
			v.Rule, v.Reason = ae.Rule, ae.Reason
		}
		out.Rejected = append(out.Rejected, resolveRejected{EventID: v.EventID, Rule: v.Rule, Reason: v.Reason})
		return v, nil
	}
	v.Allowed = true
	if sf := got.SoftFail; sf != nil {
		v.SoftFailed, v.SoftFailReason = sf.Case, sf.Reason
		out.SoftFailed = append(out.SoftFailed, resolveSoftFailed{EventID: ev.EventID(), Case: sf.Case, Reason: sf.Reason})
	}
	return v, nil
}

// finish fills in the resolved state, its chain and the losers.
func (rr *roomResolver) finish(out *resolveOutput) error {
	create, cur := rr.replay.Room().Create(), rr.replay.Room().Commit()
	out.RoomID, out.RoomVersion = create.RoomID().String(), string(rr.version)
	out.State.Create = create.EventID()
	out.Chain, out.LosingCommits, out.LostMessages = []resolveCommit{}, []resolveLoss{}, []resolveLoss{}
	if out.Rejected == nil {
		out.Rejected = []resolveRejected{}
	}
	if out.SoftFailed == nil {
		out.SoftFailed = []resolveSoftFailed{}
	}
	out.ForwardExtremities = rr.replay.ForwardExtremities()
	slices.Sort(out.ForwardExtremities)
	if cur != nil {
		id := cur.EventID()
		out.State.Commit = &id
	}
	ml, err := stateres.Mainline(cur, create, rr.replay.Room())
	if err != nil {
		return err
	}
	for _, c := range ml {
		rc := resolveCommit{EventID: c.EventID(), Epoch: c.Epoch(), Origin: c.Origin(), Powers: []string{}, Servers: []string{}, CanPropose: []string{}}
		if fm, err := c.FederationMap(); err == nil {
			rc.Powers = append(rc.Powers, fm.Federation.Powers...)
			rc.Servers = append(rc.Servers, fm.Federation.Servers...)
			rc.CanPropose = append(rc.CanPropose, fm.Federation.CanPropose...)
		}
		out.Chain = append(out.Chain, rc)
	}
	losses, err := stateres.Losers(rr.replay.Accepted(), stateres.StateSet{Create: create, Commit: cur}, rr.replay.Room())
	if err != nil {
		return err
	}
	for _, l := range losses {
		rl := resolveLoss{EventID: l.Event.EventID(), Epoch: l.Event.Epoch(), Origin: l.Event.Origin(), Type: l.Event.Type(), Kind: l.Kind, Reason: l.Reason}
		if l.ForkPoint != nil {
			id := l.ForkPoint.EventID()
			rl.ForkPoint = &id
		}
		if l.Winner != nil {
			id := l.Winner.EventID()
			rl.Winner = &id
		}
		if l.Event.Kind() == roomversion.EventCommit {
			out.LosingCommits = append(out.LosingCommits, rl)
		} else {
			out.LostMessages = append(out.LostMessages, rl)
		}
	}
	return nil
}
