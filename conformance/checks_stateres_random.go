package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// stateResRandomSeeds are the seeds of the random rooms StateResRandomChecks
// plays: fixed, so that every run plays rooms of the same shape.
var stateResRandomSeeds = []uint64{1, 2, 3, 4, 5, 6}

// stateResRandomSteps bounds the rooms' commits and messages after the
// epoch-0 commit (stateresttest.RandomOptions.MaxSteps).
const stateResRandomSteps = 24

// StateResRandomChecks are random rooms of stateresttest.RandomDAG (the
// generator the stateres package's property tests use), one per fixed
// seed, generated at run time with the suite's servers as the servers that
// make events (A creates the room; with an even seed A, B and D are
// members, with an odd one A and B are, and D is an outsider never in
// servers) and the server under test in servers of every commit, never in
// powers, making nothing. The suite invites a local user with the room's
// epoch-0 commit, the user joins, and the suite sends the other events in
// one /send, in the order made or in a random order (seeded by the room's
// seed) in which prev and auth events come first. The expected outcome is
// what the reference packages give when they take the events in the same
// order as a server must (SPEC-NOTES §4, §5): authrules.CheckAuthEvents and
// authrules.Check against the state before each event (stateres.Resolve of
// its prev events' states), authrules.CheckSoftFail against the current
// state, and the current state the stateres.Resolve of the forward
// extremities' states. Each event's verdict is read back (the /send answer;
// GET /event: 404 for rejected, unsigned de.bwi.mls.soft_failed naming the
// case for soft-failed) and the room's current commit from GET /state.
func StateResRandomChecks() []Check {
	var out []Check
	for _, seed := range stateResRandomSeeds {
		for _, shuffled := range []bool{false, true} {
			name, order := fmt.Sprintf("room-%d/in-order-made", seed), "events in the order made"
			if shuffled {
				name, order = fmt.Sprintf("room-%d/shuffled", seed), "events in a random order, prev and auth events first"
			}
			out = append(out, Check{Section: "federation/stateres-random", Name: name,
				About: fmt.Sprintf("state resolution and soft-fail, SPEC-NOTES §4, §5, on random room %d of stateresttest.RandomDAG, %s", seed, order),
				Run:   func(c *C) { c.NeedFederation(); runStateResRandom(c, seed, shuffled) }, Parallel: true})
		}
	}
	return out
}

// randomStateResDAG makes the random room of seed in the rooms of p, with
// sut passive.
func randomStateResDAG(p stateresttest.Params, seed uint64, sut string) *stateresttest.DAG {
	p.Servers, p.Real = []string{SuiteNameA, SuiteNameB, SuiteNameD}, false
	o := stateresttest.RandomOptions{MaxSteps: stateResRandomSteps, Params: &p, Passive: []string{sut}}
	if seed%2 == 1 {
		p.Servers, o.Outsider = []string{SuiteNameA, SuiteNameB}, SuiteNameD
	}
	return stateresttest.RandomDAG(rand.New(rand.NewPCG(seed, 17)), o)
}

// runStateResRandom plays the random room of seed against the server
// under test.
func runStateResRandom(c *C, seed uint64, shuffled bool) {
	roomID := fmt.Sprintf("!%ssrr%d:%s", c.Env.Prefix, c.Env.seq.Add(1), SuiteNameA)
	p := c.Env.Suite.GenParams()
	p.RoomID = roomID
	d := randomStateResDAG(p, seed, c.Env.ServerName)
	evs := d.Events()
	for _, e := range evs {
		if e.Origin() == c.Env.ServerName {
			c.Fatalf("room %d: the generator made an event of the server under test (%s)", seed, e.EventID())
		}
		c.Env.Suite.Serve(e.JSON())
	}
	if len(evs) < 2 || evs[1].Kind() != roomversion.EventCommit || evs[1].Epoch() != 0 {
		c.Fatalf("room %d does not start with the create event and the epoch-0 commit", seed)
	}
	create, c0 := evs[0], evs[1]
	order := evs[2:]
	if shuffled {
		order = topologicalShuffle(rand.New(rand.NewPCG(seed, 18)), order)
	}

	// The expected outcome, by the reference packages.
	ref := newRefServer(create)
	want := map[string]refVerdict{}
	for _, e := range append([]*roomversion.Event{c0}, order...) {
		v, err := ref.take(e)
		if err != nil {
			c.Fatalf("room %d: the reference packages cannot take %s in: %v", seed, e.EventID(), err)
		}
		want[e.EventID()] = v
	}
	if want[c0.EventID()].rule != "" || want[c0.EventID()].softFailed != "" {
		c.Fatalf("room %d: the reference packages do not accept the epoch-0 commit: %+v", seed, want[c0.EventID()])
	}
	lost := map[string]string{}
	if ls, err := stateres.Losers(ref.Accepted(), stateres.StateSet{Create: create, Commit: ref.Room().Commit()}, ref.Room()); err == nil {
		for _, l := range ls {
			lost[l.Event.EventID()] = l.Reason
		}
	}
	what := func(e *roomversion.Event) string {
		s := fmt.Sprintf("room %d's %s %s of %s (epoch %d", seed, e.Type(), e.EventID(), e.Origin(), e.Epoch())
		if r, ok := lost[e.EventID()]; ok {
			s += "; off the resolved chain: " + r
		}
		return s + ")"
	}

	// The invite: from a suite server in servers of the epoch-0 commit.
	fm, err := c0.FederationMap()
	if err != nil {
		c.Fatalf("room %d: the epoch-0 commit's federation map: %v", seed, err)
	}
	inviter := ""
	for _, s := range fm.Federation.Servers {
		if s != c.Env.ServerName && inviter == "" {
			inviter = s
		}
	}
	u := c.SharedUser("stateres")
	status, body := invite(c, roomID, "@inviter:"+inviter, u.UserID, create.JSON(), c0.JSON())
	if status != 200 {
		c.Fatalf("setting up room %d: PUT invite with its epoch-0 commit: %d %s", seed, status, clip(body))
	}
	expect(c, u.Do("POST", testclient.RoomPath(roomID, "/join"), map[string]any{}), "setting up the room: POST /join", 200, "", "")

	var pdus []json.RawMessage
	for _, e := range order {
		pdus = append(pdus, e.JSON())
	}
	status, body, res := sendPDUs(c, inviter, pdus...)
	if status != 200 {
		c.Fatalf("room %d: PUT /send of its %d events: %d %s", seed, len(pdus), status, clip(body))
	}
	for _, e := range order {
		w := want[e.EventID()]
		sendErr, ok := res[e.EventID()]
		switch {
		case !ok:
			c.Errorf("%s: /send gave no answer for it", what(e))
			continue
		case w.rule != "" && sendErr == "":
			c.Errorf("%s must be rejected (auth rule %s: %s); /send accepted it", what(e), w.rule, w.reason)
			continue
		case w.rule == "" && sendErr != "":
			c.Errorf("%s must be accepted%s; /send answered %q", what(e), w.soft(), sendErr)
			continue
		}
		r := u.Do("GET", testclient.RoomPath(roomID, "/event/"+url.PathEscape(e.EventID())), nil)
		if w.rule != "" {
			if r.Status != 404 {
				c.Errorf("%s must be rejected (auth rule %s: %s); GET /event answered %d %s", what(e), w.rule, w.reason, r.Status, clip(r.Raw))
			}
			continue
		}
		if r.Status != 200 {
			c.Errorf("%s must be accepted%s; GET /event answered %d %s", what(e), w.soft(), r.Status, clip(r.Raw))
			continue
		}
		unsigned, _ := r.Body["unsigned"].(map[string]any)
		sf, _ := unsigned["de.bwi.mls.soft_failed"].(map[string]any)
		got, _ := sf["case"].(string)
		switch {
		case w.softFailed == "" && sf != nil:
			c.Errorf("%s must not be soft-failed; GET /event says soft-failed %v", what(e), sf)
		case w.softFailed != "" && got != w.softFailed:
			c.Errorf("%s must be soft-failed under case (%s): %s; GET /event unsigned: %v", what(e), w.softFailed, w.reason, unsigned)
		}
	}

	r := u.Do("GET", testclient.RoomPath(roomID, "/state"), nil)
	expect(c, r, "GET /rooms/{roomId}/state", 200, "", "")
	var state []map[string]any
	_ = json.Unmarshal(r.Raw, &state)
	got := ""
	for _, ev := range state {
		if ev["type"] == roomversion.V1.CommitType() {
			got, _ = ev["event_id"].(string)
		}
	}
	if wantC := ref.Room().Commit(); got != wantC.EventID() {
		c.Errorf("after room %d's %d events, the current commit is %q (epoch %s); state resolution of the forward extremities gives %s (%s's commit of epoch %d)",
			seed, len(evs), got, epochOf(evs, got), wantC.EventID(), wantC.Origin(), wantC.Epoch())
	}
}

// topologicalShuffle returns evs in a random order in which every event
// comes after its prev and auth events among evs.
func topologicalShuffle(rng *rand.Rand, evs []*roomversion.Event) []*roomversion.Event {
	in := map[string]bool{}
	for _, e := range evs {
		in[e.EventID()] = true
	}
	done := map[string]bool{}
	rest := slices.Clone(evs)
	var out []*roomversion.Event
	for len(rest) > 0 {
		var ready []int
		for i, e := range rest {
			if !slices.ContainsFunc(append(e.PrevEventIDs(), e.AuthEventIDs()...), func(id string) bool { return in[id] && !done[id] }) {
				ready = append(ready, i)
			}
		}
		if len(ready) == 0 {
			return evs // a cycle cannot happen for hashed IDs; keep the order made
		}
		i := ready[rng.IntN(len(ready))]
		done[rest[i].EventID()] = true
		out = append(out, rest[i])
		rest = slices.Delete(rest, i, i+1)
	}
	return out
}

// refVerdict is what the reference packages make of an event: rejected by
// rule (reason), soft-failed under a case (reason), or accepted.
type refVerdict struct {
	rule, softFailed, reason string
}

// soft says " and soft-failed under case (x)" or " and not soft-failed".
func (v refVerdict) soft() string {
	if v.softFailed != "" {
		return fmt.Sprintf(" and soft-failed under case (%s): %s", v.softFailed, v.reason)
	}
	return " and not soft-failed"
}

// refServer takes a room's events in as SPEC-NOTES §4 and §5 say a server
// does (stateres.Replay, with the authrules and stateres packages): the
// reference the server under test is compared with.
type refServer struct{ *stateres.Replay }

func newRefServer(create *roomversion.Event) *refServer {
	r := &refServer{stateres.NewReplay()}
	_, _ = r.Take(create)
	return r
}

// take takes one event in (never the create event); the error is for a
// room the packages cannot resolve.
func (s *refServer) take(ev *roomversion.Event) (refVerdict, error) {
	got, err := s.Take(ev)
	if err != nil {
		return refVerdict{}, err
	}
	if got.Rejected != nil {
		v := refVerdict{rule: "error", reason: got.Rejected.Error()}
		var ae *authrules.Error
		if errors.As(got.Rejected, &ae) {
			v.rule, v.reason = ae.Rule, ae.Reason
		}
		return v, nil
	}
	if sf := got.SoftFail; sf != nil {
		return refVerdict{softFailed: sf.Case, reason: sf.Reason}, nil
	}
	return refVerdict{}, nil
}
