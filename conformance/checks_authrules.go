package conformance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// AuthRuleChecks are the auth-rule cases of authrulestest.Cases (the
// table the authrules package tests with), generated at run time with the
// suite's servers in three of the roles A, B, C and D and the server
// under test in the fourth (C, else B, else D: the first the suite can
// play the case in), each in a room of its own. Most cases are played over
// /send: the suite invites a user of the server under test with the
// room's epoch-0 commit, the user joins, the suite sends the events the
// room holds in the case and then the case's event, and the verdict is
// read back (the /send answer; GET /event: 404 for rejected, unsigned
// de.bwi.mls.soft_failed naming the case for soft-failed, SPEC-NOTES §11).
// Cases of a create event or an epoch-0 commit are played through the
// remote invite itself (inviteMode). The verdict is compared with the
// table's.
//
// A case is left out, by what it is made of, when the suite cannot play
// it in any role (AuthRuleCasesLeftOut says which and why): an event of
// the server under test's (the suite cannot sign as it), a state before
// the event that its prev events do not lead to, an auth event the server
// must never have received (the suite serves every event it sends).
func AuthRuleChecks() []Check {
	var out []Check
	for _, pc := range playableCases() {
		cs, role, how := pc.cs, pc.role, pc.how
		if role == 0 {
			continue
		}
		about := "auth rule " + cs.About
		if cs.About == "chain" || cs.About == "room" {
			about = cs.About
		}
		want := "accepted"
		switch {
		case cs.Rule != "":
			want = "rejected by rule " + cs.Rule
		case cs.SoftFail != "":
			want = "soft-failed (" + cs.SoftFail + ")"
		}
		out = append(out, Check{Section: "federation/authrules", Name: cs.Name,
			About: fmt.Sprintf("%s: %s %s, the server as %c, SPEC-NOTES §4", about, want, how, role),
			Run:   func(c *C) { c.NeedFederation(); runAuthCase(c, cs.Name, role) }, Parallel: true})
	}
	return out
}

// playable is a case of the table and the role the server under test
// takes in it (0: none works; reason says why not as C).
type playable struct {
	cs     authrulestest.Case
	role   byte
	reason string
	// how is "over /send" or "through the remote invite".
	how string
}

// playableCases tries the roles C, B and D for the server under test in
// each case of the table (with placeholder names: what a case is made of
// does not depend on them) and keeps the first that the suite can play.
func playableCases() []playable {
	const sut = "sut.conformance.localhost"
	zero := func(string) []byte { return make([]byte, ed25519.SeedSize) }
	byRole := map[byte][]authrulestest.Case{}
	for _, role := range []byte("CBD") {
		byRole[role] = authrulestest.Cases(authParams("!placeholder:"+SuiteNameA, role, sut, zero(""), zero))
	}
	var out []playable
	for i, cs := range byRole['C'] {
		pc := playable{cs: cs, reason: unplayable(&cs, sut)}
		for _, role := range []byte("CBD") {
			if unplayable(&byRole[role][i], sut) == "" {
				pc.role, pc.how = role, "over /send"
				if inviteMode(&byRole[role][i], sut) != "" {
					pc.how = "through the remote invite"
				}
				break
			}
		}
		out = append(out, pc)
	}
	return out
}

// LeftOut is a case of a table the suite cannot play, and why.
type LeftOut struct {
	Name, Reason string
}

// AuthRuleCasesLeftOut lists the cases of authrulestest.Cases that
// AuthRuleChecks leaves out, with the reason the server under test
// cannot take role C in it (nor B or D), reported with the run's summary
// and in docs/CONFORMANCE.md.
func AuthRuleCasesLeftOut() []LeftOut {
	var out []LeftOut
	for _, pc := range playableCases() {
		if pc.role == 0 {
			out = append(out, LeftOut{pc.cs.Name, pc.reason})
		}
	}
	return out
}

// unplayable says why a case cannot be played over federation ("" when
// it can).
func unplayable(cs *authrulestest.Case, sut string) string {
	evs := append([]*roomversion.Event{cs.Event}, cs.Room...)
	for _, a := range cs.AuthEvents {
		if a == nil {
			return "an auth event the server never received"
		}
		evs = append(evs, a)
	}
	for _, e := range evs {
		if e != nil && e.Origin() == sut {
			return "an event of the server under test"
		}
	}
	if inviteMode(cs, sut) != "" {
		return ""
	}
	if inviteCommit(cs, sut) == nil {
		return "no epoch-0 commit listing the server under test"
	}
	if cs.Event == nil {
		return ""
	}
	state := ""
	if cs.State != nil {
		state = cs.State.EventID()
	}
	// The state before the event, as a server derives it from the prev
	// events, must be the table's State: cases that set the state apart
	// from the DAG are for the rules alone.
	known := map[string]*roomversion.Event{}
	for _, e := range cs.Room {
		known[e.EventID()] = e
	}
	for _, id := range cs.Event.PrevEventIDs() {
		e, ok := known[id]
		if !ok {
			return "a prev event the room does not hold"
		}
		if stateCommitAfter(e) != state {
			return "a state before the event that its prev events do not lead to"
		}
	}
	for _, e := range cs.Room {
		if e.RoomID().String() != cs.Create.RoomID().String() {
			return "events of another room"
		}
	}
	return ""
}

// stateCommitAfter is the commit of the state after e: e itself if it is
// a commit, else its auth commit.
func stateCommitAfter(e *roomversion.Event) string {
	if e.Kind() == roomversion.EventCommit {
		return e.EventID()
	}
	auth := e.AuthEventIDs()
	if len(auth) < 2 {
		return ""
	}
	return auth[len(auth)-1]
}

// inviteMode says how a case whose room holds at most its create event
// is played through the remote invite itself ("" when it is not one):
// "create" when the case's event is a create event (the suite commits
// epoch 0 on it and invites with both), "commit" when it is an epoch-0
// commit listing sut (the suite invites with the create event and it).
// The verdict is the invite's: 200 for an allowed event, a refusal for a
// rejected one (SPEC-NOTES §12: both PDUs must be valid events of the
// room).
func inviteMode(cs *authrulestest.Case, sut string) string {
	if len(cs.Room) > 1 || cs.SoftFail != "" {
		return ""
	}
	var top struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(cs.JSON, &top)
	if top.Type == roomversion.EventTypeCreate {
		return "create"
	}
	e := cs.Event
	if e == nil || e.Kind() != roomversion.EventCommit || e.Epoch() != 0 || len(cs.Room) != 1 || cs.Room[0].EventID() != cs.Create.EventID() {
		return ""
	}
	if fm, err := e.FederationMap(); err == nil && slices.Contains(fm.Federation.Servers, sut) && slices.Contains(fm.Federation.Servers, SuiteNameA) {
		return "commit"
	}
	return ""
}

// inviteCommit is the room's epoch-0 commit if it lists sut in servers.
func inviteCommit(cs *authrulestest.Case, sut string) *roomversion.Event {
	for _, e := range cs.Room {
		if e.Kind() != roomversion.EventCommit || e.Epoch() != 0 || e.RoomID().String() != cs.Create.RoomID().String() {
			continue
		}
		if fm, err := e.FederationMap(); err == nil && slices.Contains(fm.Federation.Servers, sut) {
			return e
		}
	}
	return nil
}

// authParams are the cases' parameters: sut in role ('B', 'C' or 'D'),
// the suite's three servers in the other roles (SuiteNameA as A).
func authParams(roomID string, role byte, sut string, sutSeed []byte, seed func(string) []byte) authrulestest.Params {
	srv := func(name string, s []byte) authrulestest.Server {
		return authrulestest.Server{Name: name, KeyID: SuiteKeyID, Seed: s}
	}
	suite := []string{SuiteNameA, SuiteNameB, SuiteNameD}
	var servers [4]authrulestest.Server
	for i, r := range []byte("ABCD") {
		if r == role {
			servers[i] = srv(sut, sutSeed)
		} else {
			servers[i], suite = srv(suite[0], seed(suite[0])), suite[1:]
		}
	}
	p := authrulestest.DefaultParams()
	p.RoomID = roomID
	p.A, p.B, p.C, p.D = servers[0], servers[1], servers[2], servers[3]
	// Three hours back: every event (the room scenario's start an hour
	// after the others) is in the past.
	p.Clock = time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	return p
}

// runAuthCase plays one case against the server under test.
func runAuthCase(c *C, name string, role byte) {
	roomID := fmt.Sprintf("!%sar%d:%s", c.Env.Prefix, c.Env.seq.Add(1), SuiteNameA)
	sutSeed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(sutSeed)
	p := authParams(roomID, role, c.Env.ServerName, sutSeed, c.Env.Suite.Seed)
	p.MLSSeed = []byte(roomID)
	p.NoFederateRoomID = fmt.Sprintf("!%snf%d:%s", c.Env.Prefix, c.Env.seq.Add(1), SuiteNameA)
	var cs *authrulestest.Case
	for _, x := range authrulestest.Cases(p) {
		if x.Name == name {
			cs = &x
			break
		}
	}
	if cs == nil {
		c.Fatalf("no case %s in the table", name)
	}
	if reason := unplayable(cs, c.Env.ServerName); reason != "" {
		c.Fatalf("case %s cannot be played: %s", name, reason)
	}
	// The table's own verdict, by the authrules package: a case the
	// reference does not agree with is the suite's fault, not the server's.
	ref, err := authrulestest.Run(cs)
	if err != nil || ref.Rule != cs.Rule || ref.SoftFail != cs.SoftFail {
		c.Fatalf("the case table is inconsistent for %s: reference verdict %+v (%v), table rule %q soft-fail %q", name, ref, err, cs.Rule, cs.SoftFail)
	}

	// Every event the case holds is fetchable from the suite.
	serve := [][]byte{cs.JSON}
	for _, e := range cs.Room {
		serve = append(serve, e.JSON())
	}
	for _, e := range cs.AuthEvents {
		serve = append(serve, e.JSON())
	}
	for _, b := range serve {
		c.Env.Suite.Serve(b)
	}

	if mode := inviteMode(cs, c.Env.ServerName); mode != "" {
		runInviteCase(c, cs, mode)
		return
	}
	u := c.SharedUser("rules")
	c0 := inviteCommit(cs, c.Env.ServerName)
	status, body := invite(c, cs.Create.RoomID().String(), "@inviter:"+SuiteNameA, u.UserID, cs.Create.JSON(), c0.JSON())
	if status != 200 {
		c.Fatalf("setting up the case: PUT invite with the room's epoch-0 commit %s: %d %s", c0.EventID(), status, clip(body))
	}
	expect(c, u.Do("POST", testclient.RoomPath(cs.Create.RoomID().String(), "/join"), map[string]any{}), "setting up the case: POST /join", 200, "", "")

	var pdus []json.RawMessage
	for _, e := range cs.Room {
		if e.EventID() != cs.Create.EventID() && e.EventID() != c0.EventID() {
			pdus = append(pdus, e.JSON())
		}
	}
	id := roomversion.ReferenceIDOf(cs.JSON)
	pdus = append(pdus, json.RawMessage(cs.JSON))
	status, body, res := sendPDUs(c, SuiteNameA, pdus...)
	if status != 200 {
		c.Fatalf("PUT /send of the case's events: %d %s", status, clip(body))
	}
	for _, e := range cs.Room {
		if e.EventID() == cs.Create.EventID() || e.EventID() == c0.EventID() || bytes.Equal(e.JSON(), cs.JSON) {
			continue
		}
		if r, ok := res[e.EventID()]; !ok || r != "" {
			c.Fatalf("setting up the case: the room's event %s (%s of %s) was not accepted: %q", e.EventID(), e.Type(), e.Origin(), r)
		}
	}
	sendErr, ok := res[id]
	if !ok {
		c.Fatalf("PUT /send: no answer for the case's event %s: %s", id, clip(body))
	}
	if cs.Rule != "" {
		if sendErr == "" {
			c.Errorf("the event (%s) must be rejected by auth rule %s; /send accepted it", cs.Description, cs.Rule)
		}
		if cs.Event != nil {
			r := u.Do("GET", testclient.RoomPath(cs.Create.RoomID().String(), "/event/"+url.PathEscape(id)), nil)
			if r.Status != 404 {
				c.Errorf("the event (%s) must be rejected by auth rule %s; GET /event answered %d %s", cs.Description, cs.Rule, r.Status, clip(r.Raw))
			}
		}
		return
	}
	if sendErr != "" {
		c.Fatalf("the event (%s) must be accepted; /send answered %q", cs.Description, sendErr)
	}
	r := u.Do("GET", testclient.RoomPath(cs.Create.RoomID().String(), "/event/"+url.PathEscape(id)), nil)
	if r.Status != 200 {
		c.Fatalf("the event (%s) must be accepted; GET /event answered %d %s", cs.Description, r.Status, clip(r.Raw))
	}
	unsigned, _ := r.Body["unsigned"].(map[string]any)
	sf, _ := unsigned["de.bwi.mls.soft_failed"].(map[string]any)
	got, _ := sf["case"].(string)
	switch {
	case cs.SoftFail == "" && sf != nil:
		c.Errorf("the event (%s) must not be soft-failed; GET /event says soft-failed %v", cs.Description, sf)
	case cs.SoftFail != "" && got != cs.SoftFail:
		c.Errorf("the event (%s) must be soft-failed under case (%s); GET /event unsigned: %v", cs.Description, cs.SoftFail, unsigned)
	}
}

// runInviteCase plays a case through the remote invite (inviteMode).
func runInviteCase(c *C, cs *authrulestest.Case, mode string) {
	roomID := cs.Create.RoomID().String()
	create, commit := cs.Create.JSON(), json.RawMessage(cs.JSON)
	what := "the invite's commit"
	if mode == "create" {
		// The case's create event, and an epoch-0 commit of A on it.
		create, what = cs.JSON, "the invite's create event"
		suite := testclient.Suite
		if cs.Event != nil {
			suite = cs.Event.CipherSuite()
		}
		commit = epochZeroCommit(c, roomID, roomversion.ReferenceIDOf(cs.JSON), suite, []string{SuiteNameA, c.Env.ServerName}).JSON()
	}
	c.Env.Suite.Serve(create, commit)
	u := c.SharedUser("rules")
	status, body := invite(c, roomID, "@inviter:"+SuiteNameA, u.UserID, create, commit)
	join := u.Do("POST", testclient.RoomPath(roomID, "/join"), map[string]any{})
	if cs.Rule != "" {
		if status == 200 {
			c.Errorf("%s (%s) must be rejected by auth rule %s; PUT invite answered 200", what, cs.Description, cs.Rule)
		}
		if join.Status == 200 {
			c.Errorf("%s (%s) must be rejected by auth rule %s; the invitee could join the room", what, cs.Description, cs.Rule)
		}
		return
	}
	if status != 200 {
		c.Fatalf("%s (%s) must be accepted; PUT invite answered %d %s", what, cs.Description, status, clip(body))
	}
	expect(c, join, "POST /join after the invite", 200, "", "")
}

// epochZeroCommit is an epoch-0 commit of SuiteNameA in room roomID on
// the create event createID, listing servers, with a header-valid MLS
// message of suite.
func epochZeroCommit(c *C, roomID, createID string, suite mls.CipherSuite, servers []string) *roomversion.Event {
	ad, err := testclient.FedMap([]string{SuiteNameA}, servers, nil).Encode()
	if err != nil {
		c.Fatal(err)
	}
	body := make([]byte, 64)
	_, _ = rand.Read(body)
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(roomID), Epoch: 0, ContentType: mls.ContentTypeCommit, AuthenticatedData: ad,
		EncryptedSenderData: body[:28], Ciphertext: body,
	}}
	msg, err := m.MarshalMLS()
	if err != nil {
		c.Fatal(err)
	}
	typ := roomversion.V1.CommitType()
	content, err := roomversion.V1.MLSContent(typ, suite, msg)
	if err != nil {
		c.Fatal(err)
	}
	ev, err := (&roomversion.Builder{Version: roomversion.V1, RoomID: roomID, Type: typ, StateKey: new(string), Content: content,
		AuthEvents: []string{createID}, PrevEvents: []string{createID}, Origin: SuiteNameA, Timestamp: time.Now().Add(-time.Minute)}).
		Build(context.Background(), SuiteKeyID, c.Env.Suite.Key(SuiteNameA))
	if err != nil {
		c.Fatalf("building the epoch-0 commit: %v", err)
	}
	return ev
}
