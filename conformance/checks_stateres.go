package conformance

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// StateResChecks are the named state-resolution scenarios of
// stateresttest.NamedScenarios (the rooms the stateres package and its
// vectors are made of), generated at run time with the suite's servers as
// A, B and C and the server under test as D (in servers of every commit):
// the suite invites a local user with the room's epoch-0 commit, the user
// joins, the suite sends every event of the scenario in the order it was
// made (and again with the winning commit's ancestors first: a server
// that lets the last commit it received win fails one of the two) over
// /send, and the room's current commit (GET /state) must be
// the commit the scenario's state sets resolve to (SPEC-NOTES §5). A
// scenario with an event of D's is left out (the suite cannot sign as the
// server under test).
func StateResChecks() []Check {
	var out []Check
	for _, sc := range stateresttest.NamedScenarios(stateresParams("!placeholder:"+SuiteNameA, "sut.conformance.localhost", "placeholder")) {
		if stateresUnplayable(sc, "sut.conformance.localhost") {
			continue
		}
		for _, winnerFirst := range []bool{false, true} {
			name, order := sc.Name+"/in-order-made", "events in the order made"
			if winnerFirst {
				name, order = sc.Name+"/winner-first", "the winning commit and its ancestors first, the other branches after"
			}
			out = append(out, Check{Section: "federation/stateres", Name: name, About: "state resolution, SPEC-NOTES §5, " + order + ": " + sc.Description,
				Run: func(c *C) { c.NeedFederation(); runStateRes(c, sc.Name, winnerFirst) }, Parallel: true})
		}
	}
	return out
}

// StateResScenariosLeftOut lists the named scenarios StateResChecks
// leaves out.
func StateResScenariosLeftOut() []LeftOut {
	var out []LeftOut
	for _, sc := range stateresttest.NamedScenarios(stateresParams("!placeholder:"+SuiteNameA, "sut.conformance.localhost", "placeholder")) {
		if stateresUnplayable(sc, "sut.conformance.localhost") {
			out = append(out, LeftOut{sc.Name, "an event of the server under test (D)"})
		}
	}
	return out
}

func stateresParams(roomID, sut, seed string) stateresttest.Params {
	p := stateresttest.DefaultParams()
	p.Servers = []string{SuiteNameA, SuiteNameB, SuiteNameD, sut}
	p.RoomID, p.Seed = roomID, seed
	return p
}

func stateresUnplayable(sc stateresttest.Scenario, sut string) bool {
	return slices.ContainsFunc(sc.Gen.Events(), func(e *roomversion.Event) bool { return e.Origin() == sut })
}

// runStateRes plays one named scenario against the server under test.
func runStateRes(c *C, name string, winnerFirst bool) {
	roomID := fmt.Sprintf("!%ssr%d:%s", c.Env.Prefix, c.Env.seq.Add(1), SuiteNameA)
	p := c.Env.Suite.GenParams()
	p.Servers = []string{SuiteNameA, SuiteNameB, SuiteNameD, c.Env.ServerName}
	p.RoomID = roomID
	var sc *stateresttest.Scenario
	for _, x := range stateresttest.NamedScenarios(p) {
		if x.Name == name {
			sc = &x
		}
	}
	if sc == nil || sc.Want == nil {
		c.Fatalf("no named scenario %s with a wanted commit", name)
	}
	evs := sc.Gen.Events()
	for _, e := range evs {
		c.Env.Suite.Serve(e.JSON())
	}
	if len(evs) < 2 || evs[1].Kind() != roomversion.EventCommit || evs[1].Epoch() != 0 {
		c.Fatalf("scenario %s does not start with the create event and the epoch-0 commit", name)
	}
	create, c0 := evs[0], evs[1]
	u := c.SharedUser("stateres")
	status, body := invite(c, roomID, "@inviter:"+SuiteNameA, u.UserID, create.JSON(), c0.JSON())
	if status != 200 {
		c.Fatalf("setting up the scenario: PUT invite with its epoch-0 commit: %d %s", status, clip(body))
	}
	expect(c, u.Do("POST", testclient.RoomPath(roomID, "/join"), map[string]any{}), "setting up the scenario: POST /join", 200, "", "")
	order := evs[2:]
	if winnerFirst {
		order = ancestorsFirst(order, sc.Want)
	}
	var pdus []json.RawMessage
	for _, e := range order {
		pdus = append(pdus, e.JSON())
	}
	status, body, _ = sendPDUs(c, SuiteNameA, pdus...)
	if status != 200 {
		c.Fatalf("PUT /send of the scenario's events: %d %s", status, clip(body))
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
	if got != sc.Want.EventID() {
		c.Errorf("after the scenario's %d events (%s), the current commit is %q (epoch %s); state resolution gives %s (%s's commit of epoch %d)",
			len(evs), sc.Description, got, epochOf(evs, got), sc.Want.EventID(), sc.Want.Origin(), sc.Want.Epoch())
	}
}

// epochOf names the epoch and origin of the event id among evs.
func epochOf(evs []*roomversion.Event, id string) string {
	for _, e := range evs {
		if e.EventID() == id {
			return fmt.Sprintf("%d, %s's", e.Epoch(), e.Origin())
		}
	}
	return "unknown"
}

// ancestorsFirst orders evs (in an order where prev events come first)
// so that want and its ancestors come as early as their prev events
// allow, the others after them, prev events still first.
func ancestorsFirst(evs []*roomversion.Event, want *roomversion.Event) []*roomversion.Event {
	byID := map[string]*roomversion.Event{}
	for _, e := range evs {
		byID[e.EventID()] = e
	}
	anc := map[string]bool{}
	var mark func(e *roomversion.Event)
	mark = func(e *roomversion.Event) {
		if anc[e.EventID()] {
			return
		}
		anc[e.EventID()] = true
		for _, id := range append(e.PrevEventIDs(), e.AuthEventIDs()...) {
			if p, ok := byID[id]; ok {
				mark(p)
			}
		}
	}
	mark(want)
	done := map[string]bool{}
	ready := func(e *roomversion.Event) bool {
		for _, id := range append(e.PrevEventIDs(), e.AuthEventIDs()...) {
			if _, ours := byID[id]; ours && !done[id] {
				return false
			}
		}
		return true
	}
	var out []*roomversion.Event
	for len(out) < len(evs) {
		pick := -1
		for i, e := range evs {
			if !done[e.EventID()] && ready(e) && (pick < 0 || anc[e.EventID()] && !anc[evs[pick].EventID()]) {
				pick = i
			}
		}
		if pick < 0 {
			return evs // not in an order where prev events come first: keep it
		}
		done[evs[pick].EventID()] = true
		out = append(out, evs[pick])
	}
	return out
}
