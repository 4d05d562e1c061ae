package stateres_test

import (
	"cmp"
	"flag"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

var (
	propDAGs  = flag.Int("stateres.dags", 1500, "random DAGs of the property tests")
	propPerms = flag.Int("stateres.perms", 20, "random permutations of each DAG's state sets")
	propReal  = flag.Bool("stateres.real", false, "real MLS ciphertexts in every random DAG (by default every other one; the others have fake-but-valid bodies)")
)

// TestPropertiesRandomDAGs checks, over random rooms: the result does not
// depend on the order (or repetition) of the state sets; resolving the
// result again, alone or with the inputs, changes nothing; the resolved
// chain is linear and every commit on it passes the auth rules (chain rule
// included) against its predecessor; the result is what a plain greedy
// descent of the fork tree gives (an independent model of the algorithm).
func TestPropertiesRandomDAGs(t *testing.T) {
	n := *propDAGs
	if testing.Short() {
		n = 200
	}
	stats := struct{ dags, perms, forks, rejected, equivalents, events int }{}
	for seed := range n {
		rng := rand.New(rand.NewPCG(uint64(seed), 4256))
		d := stateresttest.RandomDAG(rng, stateresttest.RandomOptions{MaxServers: 6, MaxSteps: 30, Real: *propReal || seed%2 == 0, Monotone: seed%3 == 0})
		stats.dags++
		stats.events += len(d.Events())
		stats.rejected += len(d.Commits) - len(d.Valid)
		store := d.Store()
		got, err := stateres.Resolve(d.States, store)
		if err != nil {
			t.Fatalf("DAG %d: Resolve: %v", seed, err)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("DAG %d (%d events, %d state sets): "+format, append([]any{seed, len(d.Events()), len(d.States)}, args...)...)
		}
		// Order independence.
		for range *propPerms {
			p := slices.Clone(d.States)
			for range rng.IntN(3) {
				p = append(p, p[rng.IntN(len(p))])
			}
			rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			again, err := stateres.Resolve(p, store)
			if err != nil {
				fail("Resolve (permuted): %v", err)
			}
			if id(again.Commit) != id(got.Commit) {
				fail("permuted state sets resolve to %s, not %s", id(again.Commit), id(got.Commit))
			}
			stats.perms++
		}
		// Idempotence.
		if again, err := stateres.Resolve([]stateres.StateSet{got, got}, store); err != nil || again.Commit != got.Commit {
			fail("resolving the result again gives %s (%v)", id(again.Commit), err)
		}
		if again, err := stateres.Resolve(append(slices.Clone(d.States), got), store); err != nil || id(again.Commit) != id(got.Commit) {
			fail("resolving the result with the inputs gives %s, not %s (%v)", id(again.Commit), id(got.Commit), err)
		}
		// A linear chain of commits that pass the auth rules.
		ml, err := stateres.Mainline(got.Commit, d.Create(), store)
		if err != nil {
			fail("Mainline: %v", err)
		}
		for e, c := range ml {
			if c.Epoch() != uint64(e) {
				fail("mainline[%d] has epoch %d", e, c.Epoch())
			}
			var prev *roomversion.Event
			auth := []*roomversion.Event{d.Create()}
			if e > 0 {
				prev = ml[e-1]
				if a := stateres.AuthCommitID(c, d.Create().EventID()); a != prev.EventID() && !stateres.Equivalent(store.Event(a), prev) {
					fail("mainline[%d]'s auth commit %s is not mainline[%d]", e, a, e-1)
				}
				auth = nil
				for _, a := range c.AuthEventIDs() {
					auth = append(auth, store.Event(a))
				}
			}
			if err := authrules.CheckAuthEvents(c, auth, nil); err != nil {
				fail("mainline[%d] fails against its auth events: %v", e, err)
			}
			if err := authrules.Check(c, prev, &authrules.Snapshot{CreateEvent: d.Create(), CommitEvent: prev}); err != nil {
				fail("mainline[%d] fails against the state before it: %v", e, err)
			}
		}
		// The model.
		if want := greedy(d); id(want) != id(got.Commit) {
			fail("resolved to %s (epoch %d), the greedy model says %s", id(got.Commit), epochOf(got.Commit), id(want))
		}
		// Losers are consistent with the result.
		ls, err := stateres.Losers(d.Events(), got, store)
		if err != nil {
			fail("Losers: %v", err)
		}
		for _, l := range ls {
			if l.Kind == stateres.LostFork {
				stats.forks++
			}
			if l.Event.Kind() == roomversion.EventCommit && len(ml) > int(l.Event.Epoch()) && stateres.Equivalent(ml[l.Event.Epoch()], l.Event) {
				fail("Losers lists %s, which is on the chain", l.Event.EventID())
			}
		}
		for _, c := range d.Commits {
			if c != ml[min(int(c.Epoch()), len(ml)-1)] && len(ml) > int(c.Epoch()) && stateres.Equivalent(ml[c.Epoch()], c) {
				stats.equivalents++
			}
		}
	}
	t.Logf("%d random DAGs (%d events, %d commits failing the auth rules, %d equivalent copies of chain commits (counted as on the chain), %d events lost to forks), %d permuted resolutions",
		stats.dags, stats.events, stats.rejected, stats.equivalents, stats.forks, stats.perms)
}

func epochOf(c *roomversion.Event) int64 {
	if c == nil {
		return -1
	}
	return int64(c.Epoch())
}

// greedy is a model of the resolution: from the state sets' last common
// ancestor (genesis when a state set has no commit), descend the tree of
// the commits on the state sets' chains, taking at each commit the
// (equivalence class of) child with the least (power, origin_server_ts,
// event ID) that passes the auth rules.
func greedy(d *stateresttest.DAG) *roomversion.Event {
	store, createID := d.Store(), d.Create().EventID()
	parent := func(c *roomversion.Event) *roomversion.Event {
		if a := stateres.AuthCommitID(c, createID); a != "" {
			return store.Event(a)
		}
		return nil
	}
	// Chains (ancestors or self) of every state commit.
	inUnion := map[string]bool{}
	count := map[string]int{}
	hasNil := false
	distinct := map[string]*roomversion.Event{}
	for _, s := range d.States {
		if s.Commit == nil {
			hasNil = true
			continue
		}
		distinct[s.Commit.EventID()] = s.Commit
	}
	if len(distinct) == 0 {
		return nil
	}
	if len(distinct) == 1 && !hasNil {
		for _, c := range distinct {
			return c
		}
	}
	for _, s := range distinct {
		for c := s; c != nil; c = parent(c) {
			inUnion[c.EventID()] = true
			count[c.EventID()]++
		}
	}
	// The start: the deepest commit on every chain (nil: genesis).
	var cur *roomversion.Event
	if !hasNil {
		for id, n := range count {
			if n == len(distinct) {
				if c := store.Event(id); cur == nil || c.Epoch() > cur.Epoch() {
					cur = c
				}
			}
		}
	}
	type keyed struct {
		c      *roomversion.Event
		power  int
		ts     int64
		p      *roomversion.Event
		classK string
	}
	less := func(a, b keyed) int {
		if c := cmp.Compare(a.power, b.power); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		return cmp.Compare(a.c.EventID(), b.c.EventID())
	}
	for {
		// Children of cur's class among the union.
		var kids []keyed
		for _, c := range d.Commits {
			p := parent(c)
			if !inUnion[c.EventID()] || !stateres.Equivalent(p, cur) || (p == nil) != (cur == nil) {
				continue
			}
			kids = append(kids, keyed{c: c, power: stateres.Power(c, p), ts: int64(c.OriginServerTS()), p: p, classK: string(c.Ciphertext())})
		}
		// Classes in order of their least key; members in key order.
		slices.SortFunc(kids, less)
		classMin := map[string]keyed{}
		for _, k := range kids {
			if _, ok := classMin[k.classK]; !ok {
				classMin[k.classK] = k
			}
		}
		slices.SortStableFunc(kids, func(a, b keyed) int { return less(classMin[a.classK], classMin[b.classK]) })
		var next *roomversion.Event
		for _, k := range kids {
			if authrules.Check(k.c, k.p, &authrules.Snapshot{CreateEvent: d.Create(), CommitEvent: k.p}) == nil {
				next = k.c
				break
			}
		}
		if next == nil {
			return cur
		}
		cur = next
	}
}
