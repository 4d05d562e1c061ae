package stateres_test

import (
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// TestReplayFork: a and b commit the same epoch (powers [a, b]). Taken
// with a's commit first, b's is soft-failed (case c) and a's stays
// current; taken with b's first, b's is current until a's arrives, and
// then the resolution at the forward extremities makes a's current. A
// commit by a server outside powers is rejected.
func TestReplayFork(t *testing.T) {
	p := stateresttest.DefaultParams()
	p.Real = false
	g := stateresttest.New(p)
	a, b, c := p.Servers[0], p.Servers[1], p.Servers[2]
	fed := stateresttest.Fed{Powers: []string{a, b}, Servers: []string{a, b, c}, CanPropose: []string{a, b, c}}
	c0 := g.Commit(a, nil, fed)
	ca := g.Commit(a, c0, fed)
	cb := g.Commit(b, c0, fed)
	bad := g.Commit(c, ca, fed) // c is not in powers
	for _, order := range []struct {
		name    string
		events  []*roomversion.Event
		softCb  bool
		current *roomversion.Event
	}{
		{"a first", []*roomversion.Event{g.Create(), c0, ca, cb}, true, ca},
		{"b first", []*roomversion.Event{g.Create(), c0, cb, ca}, false, ca},
	} {
		t.Run(order.name, func(t *testing.T) {
			r := stateres.NewReplay()
			for _, ev := range order.events {
				v, err := r.Take(ev)
				if err != nil {
					t.Fatal(err)
				}
				if v.Rejected != nil {
					t.Fatalf("%s rejected: %v", ev.EventID(), v.Rejected)
				}
				if ev == cb && (v.SoftFail != nil) != order.softCb {
					t.Fatalf("b's commit soft-failed: %+v, want %v", v.SoftFail, order.softCb)
				}
				if ev == cb && v.SoftFail != nil && v.SoftFail.Case != "c" {
					t.Fatalf("b's commit soft-failed under case %s, want c", v.SoftFail.Case)
				}
			}
			if got := r.Room().Commit(); got != order.current {
				t.Fatalf("current commit %s, want a's %s", got.EventID(), order.current.EventID())
			}
			if len(r.Accepted()) != len(order.events) {
				t.Fatalf("accepted %d events, want %d", len(r.Accepted()), len(order.events))
			}
			v, err := r.Take(bad)
			if err != nil || v.Rejected == nil || r.Rejected(bad.EventID()) != bad {
				t.Fatalf("a commit by a server outside powers: %+v %v", v, err)
			}
			if r.Room().Commit() != order.current {
				t.Fatal("a rejected commit changed the current state")
			}
		})
	}
	if v, err := stateres.NewReplay().Take(c0); err != nil || v.Rejected == nil {
		t.Fatalf("an event before the create event: %+v %v", v, err)
	}
}
