package stateres_test

import (
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// Two servers in powers commit at the same epoch; the more powerful one's
// commit wins and the other's fork, with its message, is reported lost.
func ExampleResolve() {
	g := stateresttest.New(stateresttest.DefaultParams())
	f := stateresttest.Fed{Powers: []string{"a.example", "b.example"}, Servers: []string{"a.example", "b.example", "c.example"}}
	c0 := g.Commit("a.example", nil, f)
	c1b := g.Commit("b.example", c0, f)
	g.Message("c.example", c1b)
	c1a := g.Commit("a.example", c0, f)

	res, err := stateres.Resolve([]stateres.StateSet{{Create: g.Create(), Commit: c1b}, {Create: g.Create(), Commit: c1a}}, g.Store())
	if err != nil {
		panic(err)
	}
	fmt.Println("resolved to a.example's commit:", res.Commit == c1a)
	losers, err := stateres.Losers(g.Events(), res, g.Store())
	if err != nil {
		panic(err)
	}
	for _, l := range losers {
		fmt.Println(l.Event.Origin(), kind(l.Event), "lost:", l.Kind)
	}
	// Output:
	// resolved to a.example's commit: true
	// b.example commit lost: fork
	// c.example message lost: fork
}

func kind(e *roomversion.Event) string {
	if e.Kind() == roomversion.EventCommit {
		return "commit"
	}
	return "message"
}
