package authrulestest

import (
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
)

// RoomScenario returns the events of one small room in the order a server
// receives them, each as a Case against the room as it stands then (Room:
// the events accepted before it; State: the state at its prev events;
// Current: the room's current commit). It is the room of
// testdata/authrules/room.jsonl and exercises the chain rule and every
// soft-fail case, with A, B and C in the room (powers [A, B]) and D outside:
//
//	 1 create (A); 2 c0: A's epoch-0 commit, powers [A, B], servers [A, B, C], can_propose [C]
//	 3 m1: C's message on c0; 4 c1: A's commit; 5 m2: B's message on c1
//	   A is cut off from B and C:
//	 6 c2b: B commits on c1; 7 m3: C's message on c2b; 8 m4: B's message on c2b
//	   the partition heals; A's events arrive:
//	 9 c2a: A's commit on c1, a fork at c1 that wins (A ranks above B): not soft-failed, and the current commit
//	10 m5: A's message on c2a
//	11 m6: C's message on c2b, late: on the losing fork, soft-failed (c)
//	12 c3b: B's commit on c2b, late: soft-failed (c)
//	13 m7: C's message on c2a, prev events on both branches (m5 and m4)
//	   A hands its place over:
//	14 c3: B commits on c2a; 15 m8: A's message on c3; 16 c4: A commits powers [B]
//	17 fa: A's backdated commit on c2a (A ranked first at c2a), after A built on c3: soft-failed (c)
//	18 m9: A's message on fa: soft-failed (c)
//	   a pending commit, its conversion and replays:
//	19 p1: C's pending commit on c4; 20 c5: B converts it (same ciphertext): not soft-failed
//	21 p1r: the pending commit's ciphertext again: soft-failed (b)
//	22 m10: B sends m5's ciphertext again: soft-failed (b)
//	   C is removed:
//	23 c6: B commits servers [A, B]; 24 m11: C's message on c5: soft-failed (a); 25 m12: A's message on c6
//	   rejections:
//	26 x1: D's message (rule 6); 27 x2: A's commit, A no longer in powers (9.7); 28 x3: A's message on x2 (4.4)
//
// It panics if p is invalid.
func RoomScenario(p Params) []Case {
	if err := p.check(); err != nil {
		panic(err)
	}
	g := newGen(p)
	g.tag, g.n = "room/", 3600 // its own keys; timestamps an hour after the other cases'
	w := &world{gen: g, A: p.A.Name, B: p.B.Name, C: p.C.Name, D: p.D.Name}
	A, B, C, D := w.A, w.B, w.C, w.D
	l := func(s ...string) []string { return s }
	w.create = g.create(createOpts{federate: true})
	fm0 := fm(l(A, B), l(A, B, C), l(C))
	fm1 := fm(l(B), l(A, B, C), l(C))
	fm3 := fm(l(B), l(A, B), nil)

	type step struct {
		slug, about, desc string
		ev                *roomversion.Event
		rule, softFail    string
		state, current    *roomversion.Event
		rejectedAuth      []string
	}
	var steps []step
	add := func(s step) *roomversion.Event { steps = append(steps, s); return s.ev }
	withPrev := func(o mlsOpts, prev ...*roomversion.Event) mlsOpts { o.prev = prev; return o }

	create := add(step{slug: "create", about: "room", desc: "A creates the room", ev: w.create})
	c0 := add(step{slug: "c0-epoch-0-commit", about: "room", desc: "A's epoch-0 commit: powers [A, B], servers [A, B, C], can_propose [C]",
		ev: w.commitOn(A, nil, fm0)})
	m1 := add(step{slug: "m1-message", about: "room", desc: "C's message on c0", ev: w.msgOn(C, c0), state: c0, current: c0})
	c1 := add(step{slug: "c1-commit", about: "room", desc: "A's commit on c0", ev: w.commit(withPrev(w.on(A, c0, fm0), m1)), state: c0, current: c0})
	m2 := add(step{slug: "m2-message", about: "room", desc: "B's message on c1", ev: w.msgOn(B, c1), state: c1, current: c1})
	c2b := add(step{slug: "c2b-partitioned-commit", about: "room", desc: "B commits on c1 while A is cut off",
		ev: w.commit(withPrev(w.on(B, c1, fm0), m2)), state: c1, current: c1})
	m3 := add(step{slug: "m3-message", about: "room", desc: "C's message on c2b", ev: w.msgOn(C, c2b), state: c2b, current: c2b})
	m4 := add(step{slug: "m4-message", about: "room", desc: "B's message on c2b", ev: w.message(withPrev(w.on(B, c2b, nil), m3)), state: c2b, current: c2b})
	c2a := add(step{slug: "healing-partition-winning-fork", about: "soft-fail-c",
		desc: "A's commit on c1 made during the partition arrives: a fork at c1 whose commit is from A, ranked above B (c2b's origin) in c1's powers, and A never built on c2b: it wins",
		ev:   w.commit(withPrev(w.on(A, c1, fm0), m2)), state: c1, current: c2b})
	m5 := add(step{slug: "m5-message", about: "room", desc: "A's message on c2a", ev: w.msgOn(A, c2a), state: c2a, current: c2a})
	add(step{slug: "late-message-on-losing-fork", about: "soft-fail-c", desc: "C's message on c2b arrives after the healing: its fork lost",
		ev: w.message(withPrev(w.on(C, c2b, nil), m4)), softFail: "c", state: c2b, current: c2a})
	add(step{slug: "late-commit-on-losing-fork", about: "soft-fail-c", desc: "B's commit on c2b arrives after the healing",
		ev: w.commit(withPrev(w.on(B, c2b, fm0), m4)), softFail: "c", state: c2b, current: c2a})
	m7 := add(step{slug: "m7-merge", about: "room", desc: "C's message on c2a with prev events on both branches (m5, m4): the state before it resolves to c2a",
		ev: w.message(withPrev(w.on(C, c2a, nil), m5, m4)), state: c2a, current: c2a})
	c3 := add(step{slug: "c3-commit", about: "room", desc: "B commits on c2a", ev: w.commit(withPrev(w.on(B, c2a, fm0), m7)), state: c2a, current: c2a})
	m8 := add(step{slug: "m8-message", about: "room", desc: "A's message on c3: A builds on c3", ev: w.msgOn(A, c3), state: c3, current: c3})
	c4 := add(step{slug: "c4-hand-over", about: "room", desc: "A commits powers [B], leaving powers", ev: w.commit(withPrev(w.on(A, c3, fm1), m8)), state: c3, current: c3})
	fa := add(step{slug: "demoted-server-backdated-fork", about: "soft-fail-c",
		desc: "A, no longer in powers, commits on c2a (where it ranked first) with prev events from before c3: it outranks c3's origin B at c2a, but A has itself sent events on c3",
		ev:   w.commit(withPrev(w.on(A, c2a, fm0), m5)), softFail: "c", state: c2a, current: c4})
	add(step{slug: "message-on-backdated-fork", about: "soft-fail-c", desc: "A's message on its backdated commit",
		ev: w.msgOn(A, fa), softFail: "c", state: fa, current: c4})
	p1 := add(step{slug: "p1-pending-commit", about: "room", desc: "C's pending commit on c4", ev: w.pendingOn(C, c4, fm1), state: c4, current: c4})
	c5 := add(step{slug: "pending-commit-converted", about: "soft-fail-b",
		desc: "B applies C's pending commit: a commit with the same ciphertext, the exception to (b)",
		ev:   g.commit(mlsOpts{origin: B, auth: evs{create, c4}, prev: evs{p1}, epoch: p1.Epoch(), content: p1.Ciphertext()}), state: c4, current: c4})
	add(step{slug: "pending-commit-replayed", about: "soft-fail-b", desc: "the pending commit's ciphertext again, in a new pending commit",
		ev: g.pending(mlsOpts{origin: C, auth: evs{create, c4}, prev: evs{p1}, epoch: p1.Epoch(), content: p1.Ciphertext()}), softFail: "b", state: c4, current: c5})
	add(step{slug: "message-replayed", about: "soft-fail-b", desc: "B sends A's message m5 again (same ciphertext, auth commit c2a)",
		ev: g.message(mlsOpts{origin: B, auth: evs{create, c2a}, prev: evs{c5}, epoch: m5.Epoch(), content: m5.Ciphertext()}), softFail: "b", state: c5, current: c5})
	c6 := add(step{slug: "c6-removes-c", about: "room", desc: "B commits servers [A, B]", ev: w.commitOn(B, c5, fm3), state: c5, current: c5})
	add(step{slug: "removed-server-message", about: "soft-fail-a", desc: "C's message on c5 arrives after c6 removed C: it extends the room from a server not in servers",
		ev: w.msgOn(C, c5), softFail: "a", state: c5, current: c6})
	add(step{slug: "member-message", about: "soft-fail-a", desc: "A's message on c6", ev: w.msgOn(A, c6), state: c6, current: c6})
	add(step{slug: "x1-outsider-message", about: "room", desc: "D, never in servers, sends a message", ev: w.msgOn(D, c6), rule: "6", state: c6, current: c6})
	x2 := add(step{slug: "x2-commit-not-in-powers", about: "room", desc: "A commits although powers are [B]", ev: w.commitOn(A, c6, fm3), rule: "9.7", state: c6, current: c6})
	add(step{slug: "x3-message-on-rejected-commit", about: "room", desc: "A's message on its rejected commit", ev: w.msgOn(A, x2), rule: "4.4",
		rejectedAuth: []string{x2.EventID()}, state: nil, current: c6})

	var out []Case
	var held []*roomversion.Event
	for i, s := range steps {
		c := Case{Name: fmt.Sprintf("room-%02d-%s", i+1, s.slug), About: s.about, Description: s.desc, Rule: s.rule, SoftFail: s.softFail,
			Version: p.Version, JSON: s.ev.JSON(), Event: s.ev, Create: create, State: s.state, Current: s.current,
			RejectedAuthEvents: s.rejectedAuth, Room: append([]*roomversion.Event(nil), held...)}
		if s.ev == create {
			c.Room = nil
		}
		c.AuthEvents = w.authOf(s.ev)
		out = append(out, c)
		if s.rule == "" {
			held = append(held, s.ev)
		}
	}
	return out
}
