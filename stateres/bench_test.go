package stateres_test

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// benchDepth is the length of the unconflicted chain under the fork, in
// both benchmarks.
const benchDepth = 10

// mlsConflict builds an MLS room with a commit chain of benchDepth commits
// by A (powers [A, B]), then a fork: A's branch and B's branch of n/2
// commits each. Every commit of the two branches is a state set, so the
// conflicted set holds n commits, with auth chains n/2 + benchDepth deep.
func mlsConflict(n int) ([]stateres.StateSet, stateres.Store, *roomversion.Event) {
	p := stateresttest.DefaultParams()
	p.Real = false
	g := stateresttest.New(p)
	f := stateresttest.Fed{Powers: []string{A, B}, Servers: []string{A, B, C}}
	c := g.Commit(A, nil, f)
	for range benchDepth - 1 {
		c = g.Commit(A, c, f)
	}
	var states []stateres.StateSet
	a, b := c, c
	for i := range n {
		if i%2 == 0 {
			b = g.Commit(B, b, f)
			states = append(states, stateres.StateSet{Create: g.Create(), Commit: b})
		} else {
			a = g.Commit(A, a, f)
			states = append(states, stateres.StateSet{Create: g.Create(), Commit: a})
		}
	}
	return states, g.Store(), a
}

// gmslConflict builds a room of version 10 (alice at power 100, bob at 50,
// bob may send power levels) with a chain of benchDepth power-level events
// by alice, then a fork: alice's branch and bob's branch of n/2 power-level
// events each, every one authorised by the previous one on its branch. The
// n power-level events are the conflicted set; the unconflicted state is
// the create event, the two joins and the join rules; the auth events are
// every event.
func gmslConflict(n int) (conflicted, unconflicted, auth []gomatrixserverlib.PDU) {
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	_, key, _ := ed25519.GenerateKey(nil)
	const room = "!bench:example.com"
	alice, bob := "@alice:example.com", "@bob:example.com"
	empty := ""
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	depth := int64(0)
	mk := func(sender, typ string, sk *string, content any, prev []string, authIDs ...string) gomatrixserverlib.PDU {
		depth++
		ts = ts.Add(time.Second)
		if authIDs == nil {
			authIDs = []string{}
		}
		pe := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: room, Type: typ, StateKey: sk, PrevEvents: prev, AuthEvents: authIDs, Depth: depth}
		if err := pe.SetContent(content); err != nil {
			panic(err)
		}
		ev, err := ver.NewEventBuilderFromProtoEvent(&pe).Build(ts, "example.com", "ed25519:1", key)
		if err != nil {
			panic(err)
		}
		auth = append(auth, ev)
		return ev
	}
	pl := map[string]any{"users": map[string]int{alice: 100, bob: 50}, "events": map[string]int{spec.MRoomPowerLevels: 50}, "state_default": 50}
	create := mk(alice, spec.MRoomCreate, &empty, map[string]any{"creator": alice, "room_version": "10"}, []string{})
	aj := mk(alice, spec.MRoomMember, &alice, map[string]any{"membership": "join"}, []string{create.EventID()}, create.EventID())
	p := mk(alice, spec.MRoomPowerLevels, &empty, pl, []string{aj.EventID()}, create.EventID(), aj.EventID())
	jr := mk(alice, spec.MRoomJoinRules, &empty, map[string]any{"join_rule": "public"}, []string{p.EventID()}, create.EventID(), aj.EventID(), p.EventID())
	bj := mk(bob, spec.MRoomMember, &bob, map[string]any{"membership": "join"}, []string{jr.EventID()}, create.EventID(), jr.EventID(), p.EventID())
	for range benchDepth - 1 {
		p = mk(alice, spec.MRoomPowerLevels, &empty, pl, []string{p.EventID()}, create.EventID(), aj.EventID(), p.EventID())
	}
	unconflicted = []gomatrixserverlib.PDU{create, aj, jr, bj}
	a, b := p, p
	for i := range n {
		if i%2 == 0 {
			b = mk(bob, spec.MRoomPowerLevels, &empty, pl, []string{b.EventID()}, create.EventID(), bj.EventID(), b.EventID())
			conflicted = append(conflicted, b)
		} else {
			a = mk(alice, spec.MRoomPowerLevels, &empty, pl, []string{a.EventID()}, create.EventID(), aj.EventID(), a.EventID())
			conflicted = append(conflicted, a)
		}
	}
	return conflicted, unconflicted, auth
}

var benchSizes = []int{10, 100, 1000}

// BenchmarkResolve is stateres.Resolve on n conflicted commits
// (conflicted=n: every commit of both branches is a state set) and on the
// two branch tips only (tips/auth-difference=n: the other n-2 commits come
// from the auth difference).
func BenchmarkResolve(b *testing.B) {
	for _, n := range benchSizes {
		states, store, want := mlsConflict(n)
		tips := states[len(states)-2:]
		for _, v := range []struct {
			name   string
			states []stateres.StateSet
		}{{fmt.Sprintf("conflicted=%d", n), states}, {fmt.Sprintf("tips/auth-difference=%d", n), tips}} {
			b.Run(v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					res, err := stateres.Resolve(v.states, store)
					if err != nil || res.Commit != want {
						b.Fatalf("resolved to %v (%v), want A's tip", res.Commit, err)
					}
				}
			})
		}
	}
}

// BenchmarkGMSLResolveStateConflictsV2 is gomatrixserverlib's state
// resolution v2 on n conflicted power-level events, and on the two branch
// tips with the others in the auth difference.
func BenchmarkGMSLResolveStateConflictsV2(b *testing.B) {
	userID := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	notRejected := func(string) bool { return false }
	for _, n := range benchSizes {
		conflicted, unconflicted, auth := gmslConflict(n)
		want := conflicted[len(conflicted)-2].EventID() // bob's tip: see TestBenchmarkSetups
		// The tips variant goes through ResolveConflictsNew, which takes
		// state sets and computes the auth difference as the spec says
		// (ResolveStateConflictsV2's own auth difference, from conflicted
		// events alone, finds almost nothing here).
		sets := [][]gomatrixserverlib.PDU{append(slices.Clone(unconflicted), conflicted[len(conflicted)-2]),
			append(slices.Clone(unconflicted), conflicted[len(conflicted)-1])}
		for _, v := range []struct {
			name string
			run  func() []gomatrixserverlib.PDU
		}{
			{fmt.Sprintf("conflicted=%d", n), func() []gomatrixserverlib.PDU {
				return gomatrixserverlib.ResolveStateConflictsV2(conflicted, unconflicted, auth, userID, notRejected)
			}},
			{fmt.Sprintf("tips/auth-difference=%d", n), func() []gomatrixserverlib.PDU {
				res, err := gomatrixserverlib.ResolveConflictsNew(gomatrixserverlib.RoomVersionV10, sets, auth, userID, notRejected)
				if err != nil {
					b.Fatal(err)
				}
				return res
			}},
		} {
			b.Run(v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					res := v.run()
					found := false
					for _, e := range res {
						if e.Type() == spec.MRoomPowerLevels {
							found = e.EventID() == want
						}
					}
					if !found {
						b.Fatal("gmsl did not resolve to bob's tip")
					}
				}
			})
		}
	}
}

// TestBenchmarkSetups checks that both benchmark rooms resolve as expected.
func TestBenchmarkSetups(t *testing.T) {
	states, store, want := mlsConflict(100)
	if res, err := stateres.Resolve(states, store); err != nil || res.Commit != want {
		t.Errorf("MLS: resolved to %v (%v), want A's tip", res.Commit, err)
	}
	conflicted, unconflicted, auth := gmslConflict(100)
	userID := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	res := gomatrixserverlib.ResolveStateConflictsV2(conflicted, unconflicted, auth, userID, func(string) bool { return false })
	var pl string
	for _, e := range res {
		if e.Type() == spec.MRoomPowerLevels {
			pl = e.EventID()
		}
	}
	// v2 has no chain rule: every power-level event passes, the last in the
	// power ordering wins, and alice's (power 100) come first.
	if want := conflicted[len(conflicted)-2].EventID(); pl != want {
		t.Errorf("gmsl: resolved power levels %s, want bob's tip %s", pl, want)
	}
}
