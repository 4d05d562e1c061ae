package stateresttest

import (
	"fmt"
	"math/rand/v2"

	"github.com/mlsmode/mlsmode/roomversion"
)

// Scenario is one room with the state sets to resolve and the commit they
// must resolve to. The vectors of testdata/stateres are made of them.
type Scenario struct {
	// Name is unique, a file name stem.
	Name string
	// Description says what happens, for people.
	Description string
	// Gen holds the room's events.
	Gen *Gen
	// States are the commits of the state sets (nil: no commit yet).
	States []*roomversion.Event
	// Want is the commit the state sets resolve to.
	Want *roomversion.Event
}

// Scenarios returns the named scenarios (real MLS ciphertexts, DefaultParams
// servers a, b, c and d.example) and random ones made by RandomDAG with
// seeds 0..random-1 (fake-but-valid ciphertexts; their Want is nil: the
// vectors record what stateres resolves them to).
func Scenarios(random int) []Scenario {
	out := NamedScenarios(DefaultParams())
	for seed := range random {
		d := RandomDAG(rand.New(rand.NewPCG(uint64(seed), 11)), RandomOptions{MaxServers: 5, MaxSteps: 16})
		var states []*roomversion.Event
		for _, s := range d.States {
			states = append(states, s.Commit)
		}
		out = append(out, Scenario{Name: fmt.Sprintf("random-%02d", seed), Description: fmt.Sprintf("random room %d of stateresttest.RandomDAG", seed), Gen: d.Gen, States: states})
	}
	return out
}

// NamedScenarios returns the named scenarios in rooms of p, whose first
// four Servers play A, B, C and D (DefaultParams: a, b, c and d.example).
// It panics if p has fewer than four servers.
func NamedScenarios(p Params) []Scenario {
	if len(p.Servers) < 4 {
		panic("stateresttest: the named scenarios need four servers")
	}
	A, B, C, D := p.Servers[0], p.Servers[1], p.Servers[2], p.Servers[3]
	l := func(s ...string) []string { return s }
	f := Fed{Powers: l(A, B), Servers: l(A, B, C, D), CanPropose: l(C)}
	var out []Scenario
	add := func(name, desc string, g *Gen, want *roomversion.Event, states ...*roomversion.Event) {
		out = append(out, Scenario{Name: name, Description: desc, Gen: g, States: states, Want: want})
	}
	base := func() (*Gen, *roomversion.Event) {
		g := New(p)
		return g, g.Commit(A, g.Commit(A, nil, f), f)
	}

	g, c1 := base()
	c2b := g.Commit(B, c1, f)
	c2a := g.Commit(A, c1, f)
	g.Message(C, c2a)
	g.Message(C, c2b)
	add("concurrent-commits", "A (powers[0]) and B (powers[1]) commit on c1 concurrently; B's commit is older: A's wins", g, c2a, c2a, c2b)

	g, c1 = base()
	c2b = g.Commit(B, c1, f)
	c4b := g.Commit(B, g.Commit(B, c2b, f), f)
	g.Message(B, c4b)
	c2a = g.Commit(A, c1, f)
	add("longer-weaker-fork", "B makes three commits on c1 while A makes one: the longer fork of the weaker server loses (chain rule)", g, c2a, c4b, c2a)

	g, c1 = base()
	c2c := g.Commit(C, c1, f)
	g.Message(C, c2c)
	c2b = g.Commit(B, c1, f)
	add("commit-outside-powers", "C (in servers, not in powers) commits on c1, concurrently with B: C's commit fails rule 9.7 and never survives", g, c2b, c2c, c2b)

	g, c1 = base()
	c2d := g.Commit(D, c1, f)
	add("commits-outside-powers-only", "C and D commit on c1, neither in powers: the state resolves to the fork point c1", g, c1, g.Commit(C, c1, f), c2d)

	g, c1 = base()
	fBA := Fed{Powers: l(B, A), Servers: f.Servers, CanPropose: f.CanPropose}
	c2 := g.Commit(A, c1, fBA)
	c3a := g.Commit(A, c2, fBA)
	c3b := g.Commit(B, c2, fBA)
	add("power-transfer", "A commits powers [B, A], then A and B commit on it concurrently: B, now powers[0], wins", g, c3b, c3a, c3b)

	g, c1 = base()
	pc := g.Pending(C, c1, f)
	c2a = g.Apply(A, pc)
	c2b = g.Apply(B, pc)
	c3 := g.Commit(B, c2b, f)
	g.Message(C, c2a)
	add("pending-commit-applied-twice", "C's pending commit is applied by A and by B (equivalent commits: no fork); B's later commit on B's copy survives against A's copy", g, c3, c2a, c3)

	g = New(p)
	f3 := Fed{Powers: l(A, B, C), Servers: l(A, B, C, D), CanPropose: l(D)}
	c1 = g.Commit(A, g.Commit(A, nil, f3), f3)
	c2a = g.Commit(A, c1, f3)
	g.Message(A, c2a)
	c3b = g.Commit(B, g.Commit(B, c1, f3), f3)
	g.Message(B, c3b)
	c3c := g.Commit(C, g.Commit(C, c1, f3), f3)
	c4c := g.Apply(C, g.Pending(D, c3c, f3))
	c4b = g.Commit(C, c3b, f3, c3b, c4c)
	c3 = g.Commit(B, c2a, f3, c2a, c4b)
	c4 := g.Commit(C, c3, f3)
	add("three-way-partition", "A, B and {C, D} are cut off from each other at c1 and each commits; B and C heal first (C builds on B's branch), then A comes back and wins, and everyone builds on A's branch", g, c4, c2a, c4b, c4c, c4)
	return out
}
