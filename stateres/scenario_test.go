package stateres_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

const (
	A = "a.example"
	B = "b.example"
	C = "c.example"
	D = "d.example"
)

type room struct {
	t *testing.T
	*stateresttest.Gen
}

func newRoom(t *testing.T) *room {
	return &room{t: t, Gen: stateresttest.New(stateresttest.DefaultParams())}
}

func fed(powers, servers, canPropose []string) stateresttest.Fed {
	return stateresttest.Fed{Powers: powers, Servers: servers, CanPropose: canPropose}
}

func l(s ...string) []string { return s }

// resolve resolves the states whose commits are given (nil: no commit), in
// every rotation and a few shuffles, and checks that the result is the same.
func (r *room) resolve(commits ...*roomversion.Event) *roomversion.Event {
	r.t.Helper()
	states := make([]stateres.StateSet, len(commits))
	for i, c := range commits {
		states[i] = stateres.StateSet{Create: r.Create(), Commit: c}
	}
	got, err := stateres.Resolve(states, r.Store())
	if err != nil {
		r.t.Fatalf("Resolve: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 8 {
		p := slices.Clone(states)
		rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		if i%2 == 1 {
			p = append(p, p[0])
		}
		again, err := stateres.Resolve(p, r.Store())
		if err != nil {
			r.t.Fatalf("Resolve (permutation %d): %v", i, err)
		}
		if id(again.Commit) != id(got.Commit) {
			r.t.Fatalf("Resolve depends on the input order: %s, then %s", id(got.Commit), id(again.Commit))
		}
	}
	return got.Commit
}

func id(e *roomversion.Event) string {
	if e == nil {
		return "<none>"
	}
	return e.EventID()
}

func (r *room) want(got, want *roomversion.Event, what string) {
	r.t.Helper()
	if id(got) != id(want) {
		r.t.Errorf("%s: resolved to %s, want %s", what, id(got), id(want))
	}
}

// losers returns the losses of the room's events against commit, by ID.
func (r *room) losers(commit *roomversion.Event) map[string]stateres.Loss {
	r.t.Helper()
	ls, err := stateres.Losers(r.Events(), stateres.StateSet{Create: r.Create(), Commit: commit}, r.Store())
	if err != nil {
		r.t.Fatalf("Losers: %v", err)
	}
	out := map[string]stateres.Loss{}
	for _, l := range ls {
		out[l.Event.EventID()] = l
	}
	return out
}

func (r *room) wantLost(ls map[string]stateres.Loss, kind string, evs ...*roomversion.Event) {
	r.t.Helper()
	for _, e := range evs {
		l, ok := ls[e.EventID()]
		switch {
		case !ok:
			r.t.Errorf("%s (%s from %s, epoch %d) is not among the losers", e.EventID(), e.Type(), e.Origin(), e.Epoch())
		case l.Kind != kind:
			r.t.Errorf("%s lost as %q (%s), want %q", e.EventID(), l.Kind, l.Reason, kind)
		case l.Reason == "":
			r.t.Errorf("%s lost without a reason", e.EventID())
		}
	}
}

func (r *room) wantKept(ls map[string]stateres.Loss, evs ...*roomversion.Event) {
	r.t.Helper()
	for _, e := range evs {
		if l, ok := ls[e.EventID()]; ok {
			r.t.Errorf("%s (%s from %s) lost (%s: %s), want it on the resolved chain", e.EventID(), e.Type(), e.Origin(), l.Kind, l.Reason)
		}
	}
}

// base makes the epoch-0 and epoch-1 commits of A with powers [A, B],
// servers [A, B, C, D] and can_propose [C].
func (r *room) base() (c0, c1 *roomversion.Event, f stateresttest.Fed) {
	f = fed(l(A, B), l(A, B, C, D), l(C))
	c0 = r.Commit(A, nil, f)
	c1 = r.Commit(A, c0, f)
	return c0, c1, f
}

func TestConcurrentCommitsPowers0Wins(t *testing.T) {
	for _, bFirst := range []bool{false, true} {
		r := newRoom(t)
		_, c1, f := r.base()
		var c2a, c2b *roomversion.Event
		if bFirst { // B's commit has the earlier origin_server_ts
			c2b = r.Commit(B, c1, f)
			c2a = r.Commit(A, c1, f)
		} else {
			c2a = r.Commit(A, c1, f)
			c2b = r.Commit(B, c1, f)
		}
		mA, mB := r.Message(C, c2a), r.Message(C, c2b)
		got := r.resolve(c2a, c2b)
		r.want(got, c2a, "A's and B's commits at epoch 2")
		ls := r.losers(got)
		r.wantLost(ls, stateres.LostFork, c2b, mB)
		r.wantKept(ls, c2a, mA, c1)
		if l := ls[c2b.EventID()]; l.Winner == nil || l.Winner.EventID() != c2a.EventID() || l.ForkPoint.EventID() != c1.EventID() {
			t.Errorf("c2b's loss: fork point %s, winner %s; want c1, c2a", id(l.ForkPoint), id(l.Winner))
		}
	}
}

func TestLongerWeakerForkLoses(t *testing.T) {
	r := newRoom(t)
	_, c1, f := r.base()
	c2b := r.Commit(B, c1, f)
	c3b := r.Commit(B, c2b, f)
	c4b := r.Commit(B, c3b, f)
	m4b := r.Message(B, c4b)
	c2a := r.Commit(A, c1, f)
	got := r.resolve(c4b, c2a)
	r.want(got, c2a, "B's three commits against A's one")
	ls := r.losers(got)
	r.wantLost(ls, stateres.LostFork, c2b, c3b, c4b, m4b)
	for _, e := range []*roomversion.Event{c3b, c4b, m4b} {
		if ls[e.EventID()].Branch.EventID() != c2b.EventID() {
			t.Errorf("%s: branch commit %s, want c2b", e.EventID(), id(ls[e.EventID()].Branch))
		}
	}
	// A later commit on A's side keeps winning; B's fork never comes back.
	c3a := r.Commit(B, c2a, f)
	r.want(r.resolve(c4b, c3a, c2a), c3a, "after B built on c2a")
}

func TestCommitOutsidePowersNeverSurvives(t *testing.T) {
	r := newRoom(t)
	_, c1, f := r.base()
	c2c := r.Commit(C, c1, f) // C is in servers, not powers: rule 9.7
	m := r.Message(C, c2c)
	r.want(r.resolve(c2c, c1), c1, "C's commit against its auth commit")
	r.want(r.resolve(c2c, nil), c1, "C's commit against a state without commit")
	c2b := r.Commit(B, c1, f)
	r.want(r.resolve(c2c, c2b), c2b, "C's commit against B's")
	c2d := r.Commit(D, c1, f)
	r.want(r.resolve(c2c, c2d), c1, "C's and D's commits")
	ls := r.losers(c1)
	r.wantLost(ls, stateres.LostRejected, c2c, m, c2d)
}

func TestPowerTransferThenConcurrentCommits(t *testing.T) {
	r := newRoom(t)
	_, c1, f := r.base()
	fBA := fed(l(B, A), f.Servers, f.CanPropose)
	c2 := r.Commit(A, c1, fBA) // A hands its place over to B
	c3a := r.Commit(A, c2, fBA)
	c3b := r.Commit(B, c2, fBA)
	got := r.resolve(c3a, c3b)
	r.want(got, c3b, "concurrent commits after the transfer")
	r.wantLost(r.losers(got), stateres.LostFork, c3a)
	// A backdated fork at c1, where A still ranked first, does win state
	// resolution (soft-fail (c) is what stops it on receipt; see doc.go).
	// Backdated: its origin_server_ts is before c2's, so it wins the tie
	// with c2 (both from A, powers index 0 at c1).
	r.At(r.Create().OriginServerTS().Time())
	c2x := r.Commit(A, c1, f)
	r.want(r.resolve(c3b, c2x), c2x, "A's backdated fork at c1")
}

func TestSamePendingCommitAppliedTwice(t *testing.T) {
	r := newRoom(t)
	_, c1, f := r.base()
	p := r.Pending(C, c1, f)
	c2a := r.Apply(A, p)
	c2b := r.Apply(B, p)
	mA, mB := r.Message(C, c2a), r.Message(C, c2b)
	got := r.resolve(c2a, c2b)
	if !stateres.Equivalent(got, c2a) {
		t.Fatalf("resolved to %s, want one of the two copies", id(got))
	}
	ls := r.losers(got)
	r.wantKept(ls, c2a, c2b, mA, mB, p)
	// Later commits built on either copy survive.
	c3 := r.Commit(B, c2b, f)
	r.want(r.resolve(c2a, c3), c3, "B's commit on B's copy against A's copy")
	c3x := r.Commit(A, c2a, f)
	r.want(r.resolve(c2b, c3x), c3x, "A's commit on A's copy against B's copy")
	// A real fork at the copies: A (powers[0]) wins whichever copy it built on.
	got = r.resolve(c3, c3x)
	r.want(got, c3x, "A's and B's commits on different copies")
	ls = r.losers(got)
	r.wantLost(ls, stateres.LostFork, c3)
	r.wantKept(ls, c2a, c2b, mA, mB)
	c4 := r.Commit(A, c3, f) // A goes on from B's branch
	r.want(r.resolve(c4, c2a, c2b), c4, "a chain over B's copy")
}

func TestThreeWayPartitionHeals(t *testing.T) {
	r := newRoom(t)
	f := fed(l(A, B, C), l(A, B, C, D), l(D))
	c0 := r.Commit(A, nil, f)
	c1 := r.Commit(A, c0, f)
	// Three partitions: {A}, {B}, {C, D}.
	c2a := r.Commit(A, c1, f)
	mA := r.Message(A, c2a)
	c2b := r.Commit(B, c1, f)
	c3b := r.Commit(B, c2b, f)
	mB := r.Message(B, c3b)
	c2c := r.Commit(C, c1, f)
	c3c := r.Commit(C, c2c, f)
	p := r.Pending(D, c3c, f)
	c4c := r.Apply(C, p)
	mD := r.Message(D, c4c)
	// B and C heal first: B's branch wins over C's.
	got := r.resolve(c3b, c4c)
	r.want(got, c3b, "B and C heal")
	c4b := r.Commit(C, c3b, f, c3b, mD) // C goes on from B's branch
	// Then A comes back: its branch wins over everything.
	got = r.resolve(c2a, c4b, c4c)
	r.want(got, c2a, "A comes back")
	ls := r.losers(got)
	r.wantLost(ls, stateres.LostFork, c2b, c3b, mB, c4b, c2c, c3c, c4c, mD, p)
	r.wantKept(ls, c2a, mA, c1, c0)
	// Everyone builds on A's branch; the old extremities change nothing.
	c3 := r.Commit(B, c2a, f, c2a, c4b)
	c4 := r.Commit(C, c3, f)
	r.want(r.resolve(c4, c4b, c4c, c3b, c2a, nil), c4, "after the healing")
	placed, err := stateres.Order([]*roomversion.Event{mD, mB, mA}, stateres.StateSet{Create: r.Create(), Commit: c4}, r.Store())
	if err != nil {
		t.Fatal(err)
	}
	// Messages on forks sort by their fork point (c1), before mA (c2a).
	if last := placed[2]; last.Event != mA || !last.OnMainline || last.Epoch != 3 || last.Position != 2 {
		t.Errorf("Order: last %s (on mainline %v, epoch %d, position %d), want mA on the mainline in epoch 3 at position 2", id(last.Event), last.OnMainline, last.Epoch, last.Position)
	}
	for _, pl := range placed[:2] {
		if pl.OnMainline || pl.Position != 1 {
			t.Errorf("Order: %s on mainline %v at position %d, want a fork at c1 (position 1)", id(pl.Event), pl.OnMainline, pl.Position)
		}
	}
}

func TestUnconflictedAndErrors(t *testing.T) {
	r := newRoom(t)
	c0, c1, _ := r.base()
	r.want(r.resolve(c1, c1), c1, "the same commit twice")
	r.want(r.resolve(nil, c1), c1, "no commit and c1")
	r.want(r.resolve(nil), nil, "no commit")
	r.want(r.resolve(c0, c1), c1, "a commit and its descendant")
	if _, err := stateres.Resolve(nil, r.Store()); err == nil {
		t.Error("Resolve(nil): no error")
	}
	other := stateresttest.New(stateresttest.DefaultParams())
	if _, err := stateres.Resolve([]stateres.StateSet{{Create: r.Create(), Commit: c1}, {Create: r.Create(), Commit: c0}}, other.Store()); err == nil {
		t.Error("Resolve with a store missing the auth chain: no error")
	}
}

func TestOrderTiesAndBeyond(t *testing.T) {
	r := newRoom(t)
	_, c1, f := r.base()
	ts := r.Now()
	r.At(ts)
	m1 := r.Message(A, c1)
	r.At(ts)
	m2 := r.Message(B, c1) // same origin_server_ts: event ID decides
	r.At(ts.Add(-time.Hour))
	early := r.Message(C, c1) // earlier origin_server_ts
	c2 := r.Commit(A, c1, f)
	c3 := r.Commit(A, c2, f) // not in any state set below
	m3 := r.Message(B, c3)
	res := stateres.StateSet{Create: r.Create(), Commit: c2}
	evs := []*roomversion.Event{m3, m2, m1, early}
	placed, err := stateres.Order(evs, res, r.Store())
	if err != nil {
		t.Fatal(err)
	}
	first, second := m1, m2
	if m2.EventID() < m1.EventID() {
		first, second = m2, m1
	}
	want := []*roomversion.Event{early, first, second, m3}
	for i, p := range placed {
		if p.Event != want[i] {
			t.Errorf("Order[%d] = %s, want %s", i, id(p.Event), id(want[i]))
		}
	}
	if p := placed[3]; p.OnMainline || p.Position != 2 || p.Epoch != 4 {
		t.Errorf("m3: on mainline %v, position %d, epoch %d; want off the mainline at position 2 (c2), epoch 4", p.OnMainline, p.Position, p.Epoch)
	}
	// The same order whatever the input order.
	slices.Reverse(evs)
	again, err := stateres.Order(evs, res, r.Store())
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].Event != placed[i].Event {
			t.Fatalf("Order depends on the input order at %d", i)
		}
	}
	ls := r.losers(c2)
	r.wantLost(ls, stateres.LostBeyond, c3, m3)
	r.wantKept(ls, m1, m2, early, c2)
}

func TestDifferentCreateEvents(t *testing.T) {
	r := newRoom(t)
	p := stateresttest.DefaultParams()
	p.RoomID = "!other:a.example"
	other := stateresttest.New(p)
	if _, err := stateres.Resolve([]stateres.StateSet{{Create: r.Create()}, {Create: other.Create()}}, r.Store()); err == nil {
		t.Error("state sets of two rooms: no error")
	}
	if _, err := stateres.Resolve([]stateres.StateSet{{}}, r.Store()); err == nil {
		t.Error("a state set without create event: no error")
	}
}
