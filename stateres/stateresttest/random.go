package stateresttest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
)

// DAG is a random room: its generator (events, store) and the state sets
// of its forward extremities.
type DAG struct {
	*Gen
	// Commits are the commits made, Valid those of them that pass the auth
	// rules against their auth commit (the others fail rule 6, 9.7 or 9.9).
	Commits, Valid []*roomversion.Event
	// States are the state sets to resolve: those of the valid commits
	// without valid children (the forks' tips), a few random commits (valid
	// or not), the auth commits of a few messages and sometimes a state with
	// no commit. There are at least two distinct ones whenever a commit in
	// them fails the auth rules.
	States []stateres.StateSet
}

// RandomOptions bound RandomDAG.
type RandomOptions struct {
	// MaxServers is the most servers in the room (at least 2); one outsider
	// server, never in servers, is added.
	MaxServers int
	// MaxSteps is the most commits and messages made after the epoch-0
	// commit.
	MaxSteps int
	// Real makes real MLS ciphertexts (slower); see the package doc.
	Real bool
	// Monotone makes every server's events build on commits of
	// non-decreasing epochs, and never two commits of one server on the
	// same commit: servers never fork themselves nor go back to an older
	// commit after building on a newer one (as honest servers that take
	// commits one at a time do).
	Monotone bool
	// Params, when set, is the room's parameters in place of DefaultParams
	// with a seed drawn from rng (its Version, Suite, RoomID, Clock, Step
	// and Seed are used; Real comes from Real above), and its Servers are
	// the servers that make the room's events, all of them, in place of a
	// random number of s0.example...: Servers[0] creates the room. There
	// must be at least two. The rng is drawn from as without it, so the
	// same rng state gives a room of the same shape.
	Params *Params
	// Outsider, with Params, is the server never in servers that makes a
	// few commits (they fail the auth rules); "" means none: those draws
	// make commits of a random member instead. Without Params it is
	// x.example.
	Outsider string
	// Passive are servers in servers of every commit that never make an
	// event and are never in powers or can_propose: a server that takes
	// part in the room only by receiving it (the server under test of the
	// conformance suite). They must not be among the other servers.
	Passive []string
}

// RandomDAG makes a random room: servers s0.example... (s0 creates the
// room; RandomOptions.Params names them instead), random powers, servers and can_propose lists in each commit (valid
// ones, mostly), commits on random earlier commits (forks), commits by
// servers not in powers or not in servers, equivalent copies of commits
// (applied pending commits), messages, and origin_server_ts drawn so that
// ties happen. The same rng state gives the same room.
func RandomDAG(rng *rand.Rand, o RandomOptions) *DAG {
	if o.MaxServers < 2 {
		o.MaxServers = 2
	}
	var members []string
	outsider := "x.example"
	p := DefaultParams()
	if o.Params != nil {
		if len(o.Params.Servers) < 2 {
			panic("stateresttest: RandomDAG needs at least two servers in Params")
		}
		p, members, outsider = *o.Params, slices.Clone(o.Params.Servers), o.Outsider
	} else {
		n := 2 + rng.IntN(o.MaxServers-1)
		for i := range n {
			members = append(members, fmt.Sprintf("s%d.example", i))
		}
	}
	p.Servers = slices.Clone(members)
	if outsider != "" {
		p.Servers = append(p.Servers, outsider)
	}
	p.Servers = append(p.Servers, o.Passive...)
	p.Real = o.Real
	if seed := fmt.Sprintf("random %d", rng.Uint64()); o.Params == nil {
		p.Seed = seed
	}
	g := New(p)
	d := &DAG{Gen: g}
	base := p.Clock
	at := func(max int) { g.At(base.Add(time.Duration(rng.IntN(max+1)) * time.Second)) }

	check := func(c, parent *roomversion.Event) bool {
		return authrules.Check(c, parent, &authrules.Snapshot{CreateEvent: g.Create(), CommitEvent: parent}) == nil
	}
	parentOf := map[string]*roomversion.Event{}
	add := func(c, parent *roomversion.Event) {
		parentOf[c.EventID()] = parent
		d.Commits = append(d.Commits, c)
		if check(c, parent) {
			d.Valid = append(d.Valid, c)
		}
	}
	randomFed := func(origin string, prevPowers []string) Fed {
		idx := slices.Index(prevPowers, origin)
		var powers []string
		if idx > 0 {
			powers = slices.Clone(prevPowers[:idx])
		}
		rest := slices.DeleteFunc(slices.Clone(members), func(s string) bool { return slices.Contains(powers, s) })
		rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		k := rng.IntN(len(rest) + 1)
		if len(powers)+k == 0 {
			k = 1
		}
		powers = append(powers, rest[:k]...)
		servers := slices.Clone(powers)
		for _, s := range members {
			if !slices.Contains(servers, s) && rng.IntN(3) > 0 {
				servers = append(servers, s)
			}
		}
		var canPropose []string
		for _, s := range servers {
			if rng.IntN(3) == 0 {
				canPropose = append(canPropose, s)
			}
		}
		servers = append(servers, o.Passive...)
		return Fed{Powers: powers, Servers: servers, CanPropose: canPropose}
	}
	fedOf := func(c *roomversion.Event) Fed {
		fm, err := c.FederationMap()
		if err != nil {
			panic(err)
		}
		return Fed{Powers: fm.Federation.Powers, Servers: fm.Federation.Servers, CanPropose: fm.Federation.CanPropose}
	}

	steps := 3 + rng.IntN(max(1, o.MaxSteps-2))
	at(0)
	c0 := g.Commit(members[0], nil, randomFed(members[0], []string{members[0]}))
	add(c0, nil)
	var messages []*roomversion.Event
	lastEpoch := map[string]uint64{members[0]: 0}
	committedOn := map[string]bool{}
	for i := range steps {
		at(i + 1)
		// The parent: mostly one of the latest valid commits.
		var parent *roomversion.Event
		if rng.IntN(2) == 0 {
			parent = d.Valid[max(0, len(d.Valid)-1-rng.IntN(3))]
		} else {
			parent = d.Valid[rng.IntN(len(d.Valid))]
		}
		pf := fedOf(parent)
		// ok reports whether origin may build on parent (Monotone).
		ok := func(origin string, commit bool) bool {
			if !o.Monotone {
				return true
			}
			if e, seen := lastEpoch[origin]; seen && parent.Epoch() < e {
				return false
			}
			return !commit || !committedOn[origin+" "+parent.EventID()]
		}
		built := func(origin string, commit bool) {
			lastEpoch[origin] = max(lastEpoch[origin], parent.Epoch())
			if commit {
				committedOn[origin+" "+parent.EventID()] = true
			}
		}
		switch r := rng.IntN(20); {
		case r < 12: // a commit
			var origin string
			switch q := rng.IntN(10); {
			case q < 8:
				origin = pf.Powers[rng.IntN(len(pf.Powers))]
			case q < 9:
				origin = members[rng.IntN(len(members))] // maybe not in powers
			case outsider != "":
				origin = outsider
			default:
				origin = members[rng.IntN(len(members))]
			}
			if !ok(origin, true) {
				continue
			}
			built(origin, true)
			c := g.Commit(origin, parent, randomFed(origin, pf.Powers))
			add(c, parent)
		case r < 15: // an equivalent copy of a commit (an applied pending commit)
			orig := d.Valid[rng.IntN(len(d.Valid))]
			op := parentOf[orig.EventID()]
			if op == nil {
				continue // the epoch-0 commit: only s0 may make it
			}
			of := fedOf(op)
			origin := of.Powers[rng.IntN(len(of.Powers))]
			if o.Monotone {
				if e, seen := lastEpoch[origin]; (seen && op.Epoch() < e) || committedOn[origin+" "+op.EventID()] {
					continue
				}
				lastEpoch[origin] = max(lastEpoch[origin], op.Epoch())
				committedOn[origin+" "+op.EventID()] = true
			}
			c := g.Apply(origin, orig)
			add(c, op)
		default: // a message
			senders := slices.DeleteFunc(slices.Clone(pf.Servers), func(s string) bool { return slices.Contains(o.Passive, s) })
			origin := senders[rng.IntN(len(senders))]
			if !ok(origin, false) {
				continue
			}
			built(origin, false)
			m := g.Message(origin, parent)
			messages = append(messages, m)
		}
	}

	// The state sets.
	state := func(c *roomversion.Event) stateres.StateSet { return stateres.StateSet{Create: g.Create(), Commit: c} }
	hasChild := map[string]bool{}
	for _, c := range d.Valid {
		if p := parentOf[c.EventID()]; p != nil {
			hasChild[p.EventID()] = true
		}
	}
	for _, c := range d.Valid {
		if !hasChild[c.EventID()] {
			d.States = append(d.States, state(c))
		}
	}
	for range rng.IntN(3) {
		d.States = append(d.States, state(d.Commits[rng.IntN(len(d.Commits))]))
	}
	if len(messages) > 0 && rng.IntN(2) == 0 {
		m := messages[rng.IntN(len(messages))]
		d.States = append(d.States, state(g.Store().Event(stateres.AuthCommitID(m, g.Create().EventID()))))
	}
	if rng.IntN(10) == 0 {
		d.States = append(d.States, state(nil))
	}
	distinct := map[string]bool{}
	for _, s := range d.States {
		if s.Commit != nil {
			distinct[s.Commit.EventID()] = true
		}
	}
	if len(distinct) < 2 {
		d.States = append(d.States, state(c0))
	}
	rng.Shuffle(len(d.States), func(i, j int) { d.States[i], d.States[j] = d.States[j], d.States[i] })
	return d
}
