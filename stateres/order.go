package stateres

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Placed is one event in the order of Order.
type Placed struct {
	Event *roomversion.Event
	// Position is the mainline position: the epoch of the last commit of the
	// resolved mainline that the event's chain of auth commits reaches (its
	// auth commit itself when that is on the mainline), -1 when it reaches
	// none (an event with no auth commit).
	Position int64
	// OnMainline reports whether the event's auth commit is on the resolved
	// mainline (an equivalent commit counts): the event belongs to the
	// resolved chain, in MLS epoch Epoch. False means it belongs to a fork
	// (see Losers).
	OnMainline bool
	// Epoch is the event's MLS epoch (the epoch its auth commit moved the
	// group to).
	Epoch uint64
}

// Order sorts events (typically the room's non-state events) by the
// mainline of the resolved state: by mainline position of their auth
// commit, then origin_server_ts, then event ID (SPEC-NOTES §5). It returns
// them with their positions.
func Order(events []*roomversion.Event, resolved StateSet, store Store) ([]Placed, error) {
	if resolved.Create == nil {
		return nil, errors.New("stateres: the resolved state has no create event")
	}
	r := newResolver(store, resolved.Create)
	ml, err := r.mainline(resolved.Commit)
	if resolved.Commit == nil {
		ml, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Placed, 0, len(events))
	for _, ev := range events {
		p := Placed{Event: ev, Position: -1, Epoch: ev.Epoch()}
		a, err := r.authCommit(ev)
		if err != nil {
			return nil, err
		}
		for c, first := a, true; c != nil; first = false {
			if m := at(ml, c.Epoch()); m != nil && Equivalent(m, c) {
				p.Position, p.OnMainline = int64(c.Epoch()), first
				break
			}
			if c, err = r.authCommit(c); err != nil {
				return nil, err
			}
		}
		if a == nil && ev.Kind() == roomversion.EventCommit {
			// The epoch-0 commit: on the mainline if it is the mainline's.
			p.OnMainline = at(ml, 0) != nil && Equivalent(ml[0], ev)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Placed) int {
		if c := cmp.Compare(a.Position, b.Position); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Event.OriginServerTS(), b.Event.OriginServerTS()); c != 0 {
			return c
		}
		return cmp.Compare(a.Event.EventID(), b.Event.EventID())
	})
	return out, nil
}

// at returns ml[e] or nil.
func at(ml []*roomversion.Event, e uint64) *roomversion.Event {
	if e < uint64(len(ml)) {
		return ml[e]
	}
	return nil
}

// Loss kinds.
const (
	// LostFork: the event is on a fork that lost to the mainline at its
	// fork point.
	LostFork = "fork"
	// LostRejected: the commit fails the auth rules against its auth
	// commit, so it never takes part.
	LostRejected = "rejected"
	// LostBeyond: the event's branch continues the resolved commit but is not
	// part of the resolved state (it was in none of the resolved state sets).
	LostBeyond = "beyond"
)

// Loss says why an event is not part of the resolved chain.
type Loss struct {
	Event *roomversion.Event
	// Kind is LostFork, LostRejected or LostBeyond.
	Kind string
	// ForkPoint is the last mainline commit the event's chain reaches (nil:
	// the genesis commit), Branch the commit after it on the event's branch
	// and Winner the mainline's commit after it (nil for LostBeyond and
	// LostRejected).
	ForkPoint, Branch, Winner *roomversion.Event
	// Reason says why, for people.
	Reason string
}

// Losers returns, for the events of a room and its resolved state, the
// commits, pending commits and messages that are not part of the resolved
// chain, and why, in the order of Order. Events on the chain (equivalent
// commits included) and the create event are not listed.
//
// A commit's fork loses when its commit after the fork point (the branch
// commit) fails the auth rules, or ranks below the mainline's commit there
// in the power ordering (power in the fork point's powers, then
// origin_server_ts, then event ID). A branch commit that ranks above the
// mainline's but lost anyway was not among the state sets resolved.
func Losers(events []*roomversion.Event, resolved StateSet, store Store) ([]Loss, error) {
	placed, err := Order(events, resolved, store)
	if err != nil {
		return nil, err
	}
	r := newResolver(store, resolved.Create)
	var ml []*roomversion.Event
	if resolved.Commit != nil {
		if ml, err = r.mainline(resolved.Commit); err != nil {
			return nil, err
		}
	}
	var out []Loss
	for _, p := range placed {
		ev := p.Event
		switch ev.Kind() {
		case roomversion.EventCreate:
			continue
		case roomversion.EventCommit:
			if m := at(ml, ev.Epoch()); m != nil && Equivalent(m, ev) {
				continue
			}
		default:
			if p.OnMainline {
				continue
			}
		}
		l, err := r.loss(ev, ml)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// loss explains why ev is off the mainline ml.
func (r *resolver) loss(ev *roomversion.Event, ml []*roomversion.Event) (Loss, error) {
	l := Loss{Event: ev}
	// Find the fork point P (nil: genesis) and the branch commit F.
	var f *roomversion.Event
	if ev.Kind() == roomversion.EventCommit {
		f = ev
	}
	a, err := r.authCommit(ev)
	if err != nil {
		return l, err
	}
	var p *roomversion.Event
	for c := a; c != nil; {
		if m := at(ml, c.Epoch()); m != nil && Equivalent(m, c) {
			p = c
			break
		}
		f = c
		if c, err = r.authCommit(c); err != nil {
			return l, err
		}
	}
	l.ForkPoint, l.Branch = p, f
	if f == nil {
		// Not a commit, and its auth commit is on the mainline.
		return l, fmt.Errorf("stateres: %s is on the mainline", ev.EventID())
	}
	fp, err := r.authCommit(f)
	if err != nil {
		return l, err
	}
	var b strings.Builder
	if f != ev {
		fmt.Fprintf(&b, "its %s is on the branch of commit %s: ", describe(ev, a), f.EventID())
	}
	// Does F pass the auth rules against its auth commit?
	if err := authrules.Check(f, fp, &authrules.Snapshot{CreateEvent: r.create, CommitEvent: fp}); err != nil {
		l.Kind = LostRejected
		var ae *authrules.Error
		if errors.As(err, &ae) {
			fmt.Fprintf(&b, "commit %s fails auth rule %s: %s", f.EventID(), ae.Rule, ae.Reason)
		} else {
			fmt.Fprintf(&b, "commit %s fails the auth rules: %v", f.EventID(), err)
		}
		l.Reason = b.String()
		return l, nil
	}
	var wEpoch uint64
	if p != nil {
		wEpoch = p.Epoch() + 1
	}
	w := at(ml, wEpoch)
	if w == nil {
		l.Kind = LostBeyond
		fmt.Fprintf(&b, "commit %s builds on the resolved commit %s but is in none of the resolved state sets", f.EventID(), name(p))
		l.Reason = b.String()
		return l, nil
	}
	l.Kind, l.Winner = LostFork, w
	kf := key{power: Power(f, fp), ts: int64(f.OriginServerTS()), id: f.EventID()}
	kw := key{power: Power(w, p), ts: int64(w.OriginServerTS()), id: w.EventID()}
	fmt.Fprintf(&b, "fork at %s: commit %s from %s (%s) lost to %s from %s (%s)", name(p), f.EventID(), f.Origin(), rank(kf.power),
		w.EventID(), w.Origin(), rank(kw.power))
	switch {
	case kf.compare(kw) < 0:
		b.WriteString(", which it outranks: its branch was in none of the resolved state sets")
	case kf.power != kw.power:
		b.WriteString(": lower power")
	case kf.ts != kw.ts:
		fmt.Fprintf(&b, ": equal power, later origin_server_ts (%d > %d)", kf.ts, kw.ts)
	default:
		b.WriteString(": equal power and origin_server_ts, greater event ID")
	}
	l.Reason = b.String()
	return l, nil
}

func describe(ev, a *roomversion.Event) string {
	what := "auth commit " + a.EventID()
	if ev.Kind() == roomversion.EventCommit {
		what = "chain"
	}
	return what
}

func name(c *roomversion.Event) string {
	if c == nil {
		return "the genesis commit"
	}
	return fmt.Sprintf("%s (epoch %d)", c.EventID(), c.Epoch())
}

func rank(p int) string {
	if p == Absent {
		return "not in powers"
	}
	return fmt.Sprintf("powers index %d", p)
}
