package authrulestest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Case is one event with what it is checked against and the verdict the
// auth rules must give. Run checks it.
type Case struct {
	// Name is unique among the cases: "<about>-<verdict>-<what>", for
	// example "9.9-rejected-lower-server-promotes-itself", or
	// "room-<step>-<what>" for the steps of the room scenario.
	Name string
	// About is the rule, "chain", "soft-fail-a/b/c" or "room" (a step of the
	// room scenario) the case is about.
	About string
	// Description says what the event is, for people.
	Description string
	// Rule is the rule that must reject the event ("" when it is allowed).
	Rule string
	// SoftFail is the soft-fail case ("a", "b", "c") the allowed event must
	// get, "" when it is not soft-failed.
	SoftFail string

	// Version is the room version.
	Version roomversion.Version
	// JSON is the event in federation format.
	JSON []byte
	// Event is JSON parsed, nil when roomversion.Parse refuses it (cases of
	// rules that Parse enforces: authrules.ParseEvent names the rule).
	Event *roomversion.Event
	// AuthEvents are the events of the event's auth_events, in that order;
	// a nil entry is an event the server never received.
	AuthEvents []*roomversion.Event
	// RejectedAuthEvents are the IDs of auth events the server rejected
	// (rule 4.4).
	RejectedAuthEvents []string
	// Create is the room's create event.
	Create *roomversion.Event
	// State is the commit of the state before the event (the chain rule
	// checks against it), nil for none yet.
	State *roomversion.Event
	// Current is the commit of the room's current state when the event is
	// received (soft-fail checks against it), nil for none yet.
	Current *roomversion.Event
	// Room are the events the room holds when the event arrives (they
	// passed the auth rules; soft-failed ones included), in the order of
	// receipt, the create event first. They hold the mainlines of State and
	// Current and, for soft-fail, the events (b) and (c) look at.
	Room []*roomversion.Event
}

// world holds the events the cases share.
type world struct {
	*gen
	A, B, C, D string
	create     *roomversion.Event
	fm0        []byte
	c0, c1, c2 *roomversion.Event // the mainline
	c1b, c2b   *roomversion.Event // B's fork from c0
	c2e        *roomversion.Event // B's commit equivalent to c2
	nfCreate   *roomversion.Event // a room with m.federate false
	nfC0       *roomversion.Event
}

// Cases returns every case for p: at least one allowed and one rejected
// case for every rule that can reject, the chain rule, every soft-fail case
// (soft-failed and not), and the steps of the room scenario RoomScenario. It
// panics if p is invalid.
func Cases(p Params) []Case {
	if err := p.check(); err != nil {
		panic(err)
	}
	w := newWorld(p)
	var out []Case
	out = append(out, w.createCases()...)
	out = append(out, w.authEventCases()...)
	out = append(out, w.commonCases()...)
	out = append(out, w.commitCases()...)
	out = append(out, w.pendingCases()...)
	out = append(out, w.messageCases()...)
	out = append(out, w.chainCases()...)
	out = append(out, w.softFailCases()...)
	out = append(out, RoomScenario(p)...)
	seen := map[string]bool{}
	for _, c := range out {
		if seen[c.Name] {
			panic("authrulestest: two cases named " + c.Name)
		}
		seen[c.Name] = true
	}
	return out
}

func newWorld(p Params) *world {
	g := newGen(p)
	w := &world{gen: g, A: p.A.Name, B: p.B.Name, C: p.C.Name, D: p.D.Name}
	w.create = g.create(createOpts{federate: true})
	w.fm0 = fm([]string{w.A, w.B}, []string{w.A, w.B, w.C}, []string{w.C})
	w.c0 = w.commitOn(w.A, nil, w.fm0)
	w.c1 = w.commitOn(w.A, w.c0, w.fm0)
	w.c2 = w.commitOn(w.A, w.c1, w.fm0)
	w.c1b = w.commitOn(w.B, w.c0, w.fm0)
	w.c2b = w.commitOn(w.B, w.c1b, w.fm0)
	w.c2e = g.commit(mlsOpts{origin: w.B, auth: []*roomversion.Event{w.create, w.c1}, prev: []*roomversion.Event{w.c1}, epoch: 2, content: w.c2.Ciphertext()})
	nf := p.NoFederateRoomID
	if nf == "" {
		nf = "!nofederate:" + w.A
	}
	w.nfCreate = g.create(createOpts{roomID: nf, federate: false})
	w.nfC0 = g.commit(mlsOpts{roomID: nf, origin: w.A, auth: []*roomversion.Event{w.nfCreate}, prev: []*roomversion.Event{w.nfCreate},
		ad: fm([]string{w.A}, []string{w.A, w.B}, nil)})
	return w
}

type evs = []*roomversion.Event

// commitOn makes a commit by origin on parent (nil: the epoch-0 commit).
func (w *world) commitOn(origin string, parent *roomversion.Event, ad []byte) *roomversion.Event {
	return w.commit(w.on(origin, parent, ad))
}

// on returns the options of an MLS event by origin on parent: auth events
// [create, parent], prev events [parent], epoch parent's + 1.
func (w *world) on(origin string, parent *roomversion.Event, ad []byte) mlsOpts {
	if parent == nil {
		return mlsOpts{origin: origin, auth: evs{w.create}, prev: evs{w.create}, ad: ad}
	}
	return mlsOpts{origin: origin, auth: evs{w.create, parent}, prev: evs{parent}, epoch: parent.Epoch() + 1, ad: ad}
}

// msgOn makes a message by origin on commit (epoch commit's + 1).
func (w *world) msgOn(origin string, commit *roomversion.Event) *roomversion.Event {
	return w.message(w.on(origin, commit, nil))
}

// pendingOn makes a pending commit by origin on commit.
func (w *world) pendingOn(origin string, commit *roomversion.Event, ad []byte) *roomversion.Event {
	return w.pending(w.on(origin, commit, ad))
}

// caseName builds a case name.
func caseName(about, rule, softFail, slug string) string {
	verdict := "allowed"
	switch {
	case rule != "":
		verdict = "rejected"
	case strings.HasPrefix(about, "soft-fail") && softFail != "":
		verdict = "soft-failed"
	case strings.HasPrefix(about, "soft-fail"):
		verdict = "not-soft-failed"
	}
	return about + "-" + verdict + "-" + slug
}

// mk makes a case of ev against state (also the current state), with the
// room holding the create event, the mainline of state and the auth
// events' chains.
func (w *world) mk(about, rule, slug, desc string, ev, state *roomversion.Event) Case {
	c := Case{Name: caseName(about, rule, "", slug), About: about, Description: desc, Rule: rule, Version: w.p.Version,
		JSON: ev.JSON(), Event: ev, Create: w.create, State: state, Current: state}
	c.AuthEvents = w.authOf(ev)
	c.Room = w.roomFor(append(evs{state}, c.AuthEvents...)...)
	return c
}

// parseCase makes a case of JSON that Parse refuses; base is the event it
// was forged from (its auth events and state are the case's).
func (w *world) parseCase(about, rule, slug, desc string, forged []byte, base, state *roomversion.Event) Case {
	c := w.mk(about, rule, slug, desc, base, state)
	c.JSON, c.Event = forged, nil
	return c
}

// authOf returns the events ev names in auth_events (nil for unknown).
func (w *world) authOf(ev *roomversion.Event) []*roomversion.Event {
	var out []*roomversion.Event
	for _, id := range ev.AuthEventIDs() {
		out = append(out, w.all[id])
	}
	return out
}

// roomFor returns the create event and the given events with their auth
// chains, in the order they were made.
func (w *world) roomFor(events ...*roomversion.Event) []*roomversion.Event {
	set := map[string]*roomversion.Event{w.create.EventID(): w.create}
	var walk func(e *roomversion.Event)
	walk = func(e *roomversion.Event) {
		if e == nil {
			return
		}
		if _, ok := set[e.EventID()]; ok && e != w.create {
			return
		}
		set[e.EventID()] = e
		for _, id := range e.AuthEventIDs() {
			walk(w.all[id])
		}
	}
	for _, e := range events {
		walk(e)
	}
	out := make([]*roomversion.Event, 0, len(set))
	for _, e := range set {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *roomversion.Event) int { return w.order[a.EventID()] - w.order[b.EventID()] })
	return out
}

// withState returns c checked against state and current.
func withState(c Case, state, current *roomversion.Event) Case {
	c.State, c.Current = state, current
	return c
}

// editJSON returns an edit setting top-level key k to v (nil deletes it).
func editJSON(k string, v any) func(map[string]json.RawMessage) {
	return func(m map[string]json.RawMessage) {
		if v == nil {
			delete(m, k)
			return
		}
		m[k] = raw(v)
	}
}

func (w *world) createCases() []Case {
	p := w.p
	alg := must(p.Version.Algorithm(p.Suite))
	otherVersion := roomversion.V1Unstable
	if p.Version == roomversion.V1Unstable {
		otherVersion = roomversion.V1
	}
	otherAlg := must(otherVersion.Algorithm(p.Suite))
	ofCreate := func(about, rule, slug, desc string, ev *roomversion.Event) Case {
		c := w.mk(about, rule, slug, desc, ev, nil)
		c.Room = evs{w.create}
		return c
	}
	forged := func(about, rule, slug, desc string, edit func(map[string]json.RawMessage)) Case {
		c := ofCreate(about, rule, slug, desc, w.create)
		c.JSON, c.Event = w.forge(w.create, edit), nil
		return c
	}
	content := func(kv ...string) func(map[string]json.RawMessage) {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return editJSON("content", m)
	}
	v := string(p.Version)
	return []Case{
		ofCreate("1", "", "create-with-empty-state-key", "the room's create event", w.create),
		ofCreate("1", "1", "create-with-state-key", `a create event with state key "x"`,
			w.gen.create(createOpts{federate: true, stateKey: sp("x")})),

		ofCreate("3.1", "", "create-with-state-key", "the room's create event has the empty state key", w.create),
		forged("3.1", "3.1", "create-without-state-key", "a create event without state_key (Parse refuses it)", editJSON("state_key", nil)),

		ofCreate("3.2", "", "create-without-prev-or-auth-events", "the room's create event", w.create),
		ofCreate("3.2", "3.2", "create-with-prev-events", "a create event naming a prev event",
			w.gen.create(createOpts{federate: true, prev: ids(w.c0)})),
		ofCreate("3.2", "3.2", "create-with-auth-events", "a create event naming an auth event",
			w.gen.create(createOpts{federate: true, auth: ids(w.c0)})),

		ofCreate("3.3", "", "create-with-another-suite", "a create event of the room version with another algorithm of it",
			w.gen.create(createOpts{content: must(p.Version.CreateContentJSON(p.otherSuite(), true))})),
		forged("3.3", "3.3", "create-of-room-version-11", `content.room_version "11" (Parse refuses it)`,
			content("algorithm", alg, "room_version", "11")),
		forged("3.3", "3.3", "create-with-algorithm-of-other-room-version", fmt.Sprintf("algorithm %q, of room version %s (Parse refuses it)", otherAlg, otherVersion),
			content("algorithm", otherAlg, "room_version", v)),

		ofCreate("3.4", "", "create-from-room-id-domain", "the create event's origin is the room ID's domain", w.create),
		ofCreate("3.4", "3.4", "create-from-other-server", "a create event for the room sent by another server",
			w.gen.create(createOpts{federate: true, origin: w.B})),

		ofCreate("3.5", "", "create-without-encryption-algorithm", "only algorithm; encryption_algorithm is optional",
			w.gen.create(createOpts{content: encode(map[string]string{"algorithm": alg, "room_version": v})})),
		forged("3.5", "3.5", "create-without-algorithm", "only encryption_algorithm (Parse refuses it)",
			content("encryption_algorithm", alg, "room_version", v)),
		forged("3.5", "3.5", "create-with-empty-algorithm", `algorithm "" (Parse refuses it)`,
			content("algorithm", "", "room_version", v)),
		forged("3.5", "3.5", "create-encryption-algorithm-differs", "encryption_algorithm is another suite's algorithm (Parse refuses it)",
			content("algorithm", alg, "encryption_algorithm", must(p.Version.Algorithm(p.otherSuite())), "room_version", v)),
	}
}

func (w *world) authEventCases() []Case {
	msg := func(auth evs) *roomversion.Event {
		o := w.on(w.C, w.c2, nil)
		o.auth = auth
		return w.message(o)
	}
	other := w.msgOn(w.C, w.c2)
	pend := w.pendingOn(w.C, w.c2, w.fm0)
	epoch0 := w.commit(mlsOpts{origin: w.A, auth: evs{w.create, w.c0}, prev: evs{w.create}, ad: w.fm0, label: "second epoch-0 commit"})
	noCommit := w.commit(mlsOpts{origin: w.A, auth: evs{w.create}, prev: evs{w.c2}, epoch: 3, ad: w.fm0})
	pendNoCommit := w.pending(mlsOpts{origin: w.C, auth: evs{w.create}, prev: evs{w.c2}, epoch: 3, ad: w.fm0})

	// A commit that is itself rejected (C is not in powers: 9.7), and a
	// commit never received.
	bad := w.commitOn(w.C, w.c2, w.fm0)
	onBad := w.msgOn(w.C, bad)
	rejected := w.mk("4.4", "4.4", "auth-commit-rejected", "a message whose auth commit was rejected (under 9.7)", onBad, w.c2)
	rejected.RejectedAuthEvents = []string{bad.EventID()}
	rejected.Room = w.roomFor(w.c2)
	unknownCommit := w.commitOn(w.A, w.c2, w.fm0)
	onUnknown := w.msgOn(w.C, unknownCommit)
	unknown := w.mk("4.4", "4.4", "auth-commit-unknown", "a message whose auth commit the server never received", onUnknown, w.c2)
	unknown.AuthEvents[1] = nil
	unknown.Room = w.roomFor(w.c2)

	return []Case{
		w.mk("4.1", "", "message-with-create-and-commit", "auth events [create, commit]", msg(evs{w.create, w.c2}), w.c2),
		w.mk("4.1", "", "message-with-commit-and-create", "auth events [commit, create]: order does not matter", msg(evs{w.c2, w.create}), w.c2),
		w.mk("4.1", "4.1", "message-without-create", "auth events [commit]", msg(evs{w.c2}), w.c2),
		w.mk("4.1", "4.1", "message-with-two-creates", "auth events [create, another room's create, commit]", msg(evs{w.create, w.nfCreate, w.c2}), w.c2),

		withState(w.mk("4.2", "", "epoch-0-commit-with-only-create", "the epoch-0 commit names only the create event", w.c0, nil), nil, nil),
		w.mk("4.2", "4.2", "message-without-commit", "a message naming only the create event", msg(evs{w.create}), w.c2),
		w.mk("4.2", "4.2", "commit-of-epoch-3-without-commit", "a commit of epoch 3 naming only the create event", noCommit, w.c2),
		w.mk("4.2", "4.2", "pending-commit-without-commit", "a pending commit naming only the create event", pendNoCommit, w.c2),

		w.mk("4.3", "", "message-with-exactly-create-and-commit", "auth events [create, commit]", msg(evs{w.create, w.c2}), w.c2),
		w.mk("4.3", "4.3", "message-with-two-commits", "auth events [create, commit, older commit]", msg(evs{w.create, w.c2, w.c1}), w.c2),
		w.mk("4.3", "4.3", "message-with-message-in-auth-events", "auth events [create, commit, message]", msg(evs{w.create, w.c2, other}), w.c2),
		w.mk("4.3", "4.3", "message-with-pending-commit-in-auth-events", "auth events [create, commit, pending commit]", msg(evs{w.create, w.c2, pend}), w.c2),
		withState(w.mk("4.3", "4.3", "epoch-0-commit-naming-a-commit", "an epoch-0 commit with auth events [create, commit]", epoch0, w.c0), w.c0, w.c0),

		w.mk("4.4", "", "auth-commit-accepted", "a message whose auth events were accepted", w.msgOn(w.C, w.c2), w.c2),
		rejected,
		unknown,
	}
}

func (w *world) commonCases() []Case {
	p := w.p
	nf := func(about, rule, slug, desc, origin string) Case {
		ev := w.message(mlsOpts{roomID: w.nfCreate.RoomID().String(), origin: origin, auth: evs{w.nfCreate, w.nfC0}, prev: evs{w.nfC0}, epoch: 1})
		c := w.mk(about, rule, slug, desc, ev, w.nfC0)
		c.Create, c.Room = w.nfCreate, evs{w.nfCreate, w.nfC0}
		return c
	}
	otherRoom := "!other:" + w.A
	inOtherRoom := w.message(mlsOpts{roomID: otherRoom, origin: w.A, auth: evs{w.create, w.c2}, prev: evs{w.c2}, epoch: 3})
	otherGroupBase := w.message(mlsOpts{roomID: otherRoom, origin: w.A, auth: evs{w.create, w.c2}, prev: evs{w.c2}, epoch: 3})
	onOtherRoomCommit := w.message(mlsOpts{origin: w.A, auth: evs{w.create, w.nfC0}, prev: evs{w.c2}, epoch: 1})
	onOtherRoomCase := w.mk("7", "7", "auth-commit-of-another-room", "a message naming another room's commit", onOtherRoomCommit, w.c2)

	otherSuite := w.message(mlsOpts{origin: w.B, auth: evs{w.create, w.c2}, prev: evs{w.c2}, epoch: 3, suite: p.otherSuite()})
	otherVersion := roomversion.V1Unstable
	if p.Version == roomversion.V1Unstable {
		otherVersion = roomversion.V1
	}
	algBase := w.msgOn(w.B, w.c2)

	return []Case{
		nf("5", "", "non-federating-room-message-from-creator", "m.federate false; a message from the create event's origin", w.A),
		nf("5", "5", "non-federating-room-message-from-other-server", "m.federate false; a message from another server listed in servers", w.B),

		w.mk("6", "", "message-from-server-in-servers", "a message from a server in servers but not in powers", w.msgOn(w.C, w.c2), w.c2),
		w.mk("6", "6", "message-from-server-not-in-servers", "a message from a server not in servers", w.msgOn(w.D, w.c2), w.c2),
		w.mk("6", "6", "pending-commit-from-server-not-in-servers", "a pending commit from a server not in servers", w.pendingOn(w.D, w.c2, w.fm0), w.c2),
		w.mk("6", "6", "commit-from-server-not-in-servers", "a commit from a server not in servers", w.commitOn(w.D, w.c2, w.fm0), w.c2),

		w.mk("7", "", "message-of-the-room", "room_id and MLS group_id are the create event's room", w.msgOn(w.A, w.c2), w.c2),
		w.mk("7", "7", "message-with-other-room-id", "room_id and group_id of another room, auth events of this one", inOtherRoom, w.c2),
		onOtherRoomCase,
		w.parseCase("7", "7", "group-id-not-room-id", "an MLS group_id of another room (Parse refuses it)",
			w.forge(otherGroupBase, editJSON("room_id", p.RoomID)), otherGroupBase, w.c2),

		w.mk("8", "", "message-with-create-algorithm", "a message of the create event's algorithm", w.msgOn(w.B, w.c2), w.c2),
		w.mk("8", "8", "message-with-another-suite", "a real MLS message of another suite of the room version", otherSuite, w.c2),
		w.parseCase("8", "8", "message-with-algorithm-of-other-room-version", "content.algorithm of the other MLS room version (Parse refuses it)",
			w.forge(algBase, editJSON("content", map[string]string{
				"algorithm":  must(otherVersion.Algorithm(p.Suite)),
				"ciphertext": base64.RawStdEncoding.EncodeToString(algBase.Ciphertext())})), algBase, w.c2),
	}
}

func (w *world) commitCases() []Case {
	A, B, C, D := w.A, w.B, w.C, w.D
	l := func(s ...string) []string { return s }
	on := func(origin string, ad []byte) *roomversion.Event { return w.commitOn(origin, w.c2, ad) }
	at := func(origin string, epoch uint64, ad []byte) *roomversion.Event {
		o := w.on(origin, w.c2, ad)
		o.epoch = epoch
		return w.commit(o)
	}
	genesis := func(about, rule, slug, desc string, ev *roomversion.Event) Case {
		return withState(w.mk(about, rule, slug, desc, ev, nil), nil, nil)
	}
	withSK := w.on(A, w.c2, w.fm0)
	withSK.stateKey = sp("x")
	base := on(A, w.fm0)
	appMsg := w.mlsMessage(w.p.Suite, w.p.RoomID, 3, mls.ContentTypeApplication, nil, A, "not a commit")
	noDecode := []byte{0xa1, 0x61, 0x78, 0x01} // {"x": 1}: no federation key

	return []Case{
		w.mk("1", "", "commit-with-empty-state-key", "a commit with state key \"\"", on(A, w.fm0), w.c2),
		w.mk("1", "1", "commit-with-state-key", `a commit with state key "x"`, w.commit(withSK), w.c2),

		w.mk("2", "", "commit-with-state-key", "a commit has a state key", on(A, w.fm0), w.c2),

		w.mk("9.1", "", "commit-with-state-key", "a commit with state key \"\"", on(A, w.fm0), w.c2),
		w.parseCase("9.1", "9.1", "commit-without-state-key", "a commit without state_key (Parse refuses it)",
			w.forge(base, editJSON("state_key", nil)), base, w.c2),

		genesis("9.2", "", "epoch-0-commit-from-room-id-domain", "the epoch-0 commit from the room ID's domain",
			w.commit(mlsOpts{origin: A, auth: evs{w.create}, prev: evs{w.create}, ad: w.fm0, label: "epoch 0 by A"})),
		genesis("9.2", "9.2", "epoch-0-commit-from-other-server", "an epoch-0 commit from another server",
			w.commit(mlsOpts{origin: B, auth: evs{w.create}, prev: evs{w.create}, ad: w.fm0})),

		w.mk("9.3", "", "epoch-is-previous-plus-one", "epoch 3 on the epoch-2 commit", on(A, w.fm0), w.c2),
		w.mk("9.3", "9.3", "epoch-skips-one", "epoch 4 on the epoch-2 commit", at(A, 4, w.fm0), w.c2),
		w.mk("9.3", "9.3", "epoch-repeats-previous", "epoch 2 on the epoch-2 commit", at(A, 2, w.fm0), w.c2),

		w.mk("9.4", "", "commit-carrying-commit", "the MLS content is a commit", on(A, w.fm0), w.c2),
		w.parseCase("9.4", "9.4", "commit-carrying-application-message", "the MLS content is an application message (Parse refuses it)",
			w.forge(base, editJSON("content", map[string]string{"algorithm": base.Algorithm(), "ciphertext": base64.RawURLEncoding.EncodeToString(appMsg)})), base, w.c2),

		w.mk("9.5", "", "servers-with-port-and-ipv6", "servers include a name with a port and a bracketed IPv6 literal",
			on(A, fm(l(A, B), l(A, B, C, "c.example:8448", "[2001:db8::1]:8448"), l(C))), w.c2),
		w.mk("9.5", "9.5", "servers-empty", "servers []", on(A, fm(l(A), l(), nil)), w.c2),
		w.mk("9.5", "9.5", "servers-invalid-name", `servers hold "bad name"`, on(A, fm(l(A, B), l(A, B, "bad name"), nil)), w.c2),
		w.mk("9.5", "9.5", "federation-map-does-not-decode", "authenticated data {\"x\": 1}: no federation map (9.5 is the first rule reading it)", on(A, noDecode), w.c2),

		w.mk("9.6", "", "powers-of-one-server", "powers [A]", on(A, fm(l(A), l(A, B, C), l(C))), w.c2),
		w.mk("9.6", "9.6", "powers-empty", "powers []", on(A, fm(l(), l(A, B, C), nil)), w.c2),
		w.mk("9.6", "9.6", "powers-invalid-name", `powers hold "bad name"`, on(A, fm(l(A, "bad name"), l(A, B, C), nil)), w.c2),

		w.mk("9.7", "", "commit-from-second-power", "a commit from powers[1]", on(B, w.fm0), w.c2),
		w.mk("9.7", "9.7", "commit-from-server-not-in-powers", "a commit from a server in servers but not in powers", on(C, w.fm0), w.c2),

		w.mk("9.8", "", "powers-within-servers", "powers ⊆ servers", on(A, fm(l(A, B), l(A, B, C), nil)), w.c2),
		w.mk("9.8", "9.8", "powers-not-in-servers", "powers hold D, servers do not", on(A, fm(l(A, B, D), l(A, B, C), nil)), w.c2),

		w.mk("9.9", "", "lower-server-keeps-higher-ones", "B commits powers [A, C]: A stays first, B leaves, C joins", on(B, fm(l(A, C), l(A, B, C), nil)), w.c2),
		w.mk("9.9", "", "top-server-hands-over", "A commits powers [B, A]", on(A, fm(l(B, A), l(A, B, C), nil)), w.c2),
		genesis("9.9", "", "epoch-0-commit-any-powers", "the epoch-0 commit may set any powers (nothing is above the room's server in the genesis powers)",
			w.commit(mlsOpts{origin: A, auth: evs{w.create}, prev: evs{w.create}, ad: fm(l(B, A), l(A, B), nil)})),
		w.mk("9.9", "9.9", "lower-server-promotes-itself", "B commits powers [B, A]", on(B, fm(l(B, A), l(A, B, C), nil)), w.c2),
		w.mk("9.9", "9.9", "lower-server-drops-higher-one", "B commits powers [B]", on(B, fm(l(B), l(A, B, C), nil)), w.c2),
		w.mk("9.9", "9.9", "lower-server-inserts-above-higher-one", "B commits powers [C, A, B]", on(B, fm(l(C, A, B), l(A, B, C), nil)), w.c2),

		w.mk("9.10", "", "can-propose-within-servers", "can_propose [B, C]", on(A, fm(l(A, B), l(A, B, C), l(B, C))), w.c2),
		w.mk("9.10", "9.10", "can-propose-not-in-servers", "can_propose [D], servers without D", on(A, fm(l(A, B), l(A, B, C), l(D))), w.c2),
	}
}

func (w *world) pendingCases() []Case {
	A, B, C, D := w.A, w.B, w.C, w.D
	l := func(s ...string) []string { return s }
	on := func(origin string, ad []byte) *roomversion.Event { return w.pendingOn(origin, w.c2, ad) }
	at := func(epoch uint64) *roomversion.Event {
		o := w.on(C, w.c2, w.fm0)
		o.epoch = epoch
		return w.pending(o)
	}
	base := on(C, w.fm0)
	appMsg := w.mlsMessage(w.p.Suite, w.p.RoomID, 3, mls.ContentTypeApplication, nil, C, "not a commit either")
	noDecode := []byte{0xff}
	return []Case{
		w.mk("2", "", "pending-commit-without-state-key", "a pending commit without state key", on(C, w.fm0), w.c2),
		w.parseCase("2", "2", "pending-commit-with-state-key", `a pending commit with state key "" (Parse refuses it)`,
			w.forge(base, editJSON("state_key", "")), base, w.c2),

		w.mk("10.1", "", "pending-epoch-current-plus-one", "epoch 3 on the epoch-2 commit", on(C, w.fm0), w.c2),
		w.mk("10.1", "10.1", "pending-epoch-skips-one", "epoch 4 on the epoch-2 commit", at(4), w.c2),
		w.mk("10.1", "10.1", "pending-epoch-of-current", "epoch 2 on the epoch-2 commit", at(2), w.c2),

		w.mk("10.2", "", "pending-carrying-commit", "the MLS content is a commit", on(C, w.fm0), w.c2),
		w.parseCase("10.2", "10.2", "pending-carrying-application-message", "the MLS content is an application message (Parse refuses it)",
			w.forge(base, editJSON("content", map[string]string{"algorithm": base.Algorithm(), "ciphertext": base64.RawURLEncoding.EncodeToString(appMsg)})), base, w.c2),

		w.mk("10.3", "", "pending-adds-a-server", "servers [A, B, C, D]", on(C, fm(l(A, B), l(A, B, C, D), l(C))), w.c2),
		w.mk("10.3", "10.3", "pending-servers-empty", "servers []", on(C, fm(l(A, B), l(), nil)), w.c2),
		w.mk("10.3", "10.3", "pending-servers-invalid-name", `servers hold "bad name"`, on(C, fm(l(A, B), l(A, B, C, "bad name"), nil)), w.c2),
		w.mk("10.3", "10.3", "pending-federation-map-does-not-decode", "authenticated data 0xff (10.3 is the first rule reading it)", on(C, noDecode), w.c2),

		w.mk("10.4", "", "pending-same-powers", "powers [A, B] as the current commit's", on(C, w.fm0), w.c2),
		w.mk("10.4", "10.4", "pending-powers-reordered", "powers [B, A]: the same servers in another order", on(C, fm(l(B, A), l(A, B, C), l(C))), w.c2),
		w.mk("10.4", "10.4", "pending-powers-changed", "powers [A]", on(C, fm(l(A), l(A, B, C), l(C))), w.c2),

		w.mk("10.5", "", "pending-from-can-propose", "a pending commit from C, in can_propose", on(C, w.fm0), w.c2),
		w.mk("10.5", "10.5", "pending-from-server-not-in-can-propose", "a pending commit from B, in powers but not in can_propose", on(B, w.fm0), w.c2),

		w.mk("10.6", "", "pending-powers-within-servers", "servers [A, B]", on(C, fm(l(A, B), l(A, B), nil)), w.c2),
		w.mk("10.6", "10.6", "pending-drops-a-power-from-servers", "servers [A, C] while powers are [A, B]", on(C, fm(l(A, B), l(A, C), l(C))), w.c2),

		w.mk("10.7", "", "pending-without-can-propose", "no can_propose", on(C, fm(l(A, B), l(A, B, C), nil)), w.c2),
		w.mk("10.7", "10.7", "pending-can-propose-not-in-servers", "can_propose [D], servers without D", on(C, fm(l(A, B), l(A, B, C), l(D))), w.c2),
	}
}

func (w *world) messageCases() []Case {
	at := func(epoch uint64) *roomversion.Event {
		o := w.on(w.C, w.c2, nil)
		o.epoch = epoch
		return w.message(o)
	}
	base := w.msgOn(w.C, w.c2)
	return []Case{
		w.mk("2", "", "message-without-state-key", "a message without state key", w.msgOn(w.C, w.c2), w.c2),
		w.parseCase("2", "2", "message-with-state-key", `a message with state key "" (Parse refuses it)`,
			w.forge(base, editJSON("state_key", "")), base, w.c2),

		w.mk("11", "", "message-epoch-current-plus-one", "epoch 3 on the epoch-2 commit", w.msgOn(w.C, w.c2), w.c2),
		w.mk("11", "11", "message-epoch-skips-one", "epoch 4 on the epoch-2 commit", at(4), w.c2),
		w.mk("11", "11", "message-epoch-of-commit", "epoch 2 on the epoch-2 commit (sent before the commit)", at(2), w.c2),
	}
}

func (w *world) chainCases() []Case {
	c3 := w.commitOn(w.A, w.c2, w.fm0)
	onC3 := w.msgOn(w.C, c3)
	onC3Case := w.mk("chain", "chain", "message-on-commit-not-in-state", "a message on a commit that is not (yet) in the state", onC3, w.c2)
	onC3Case.Room = w.roomFor(w.c2, c3)
	losing := w.mk("chain", "chain", "commit-on-losing-fork", "epoch 2 on B's epoch-1 commit, against the state at A's epoch-1 commit: the epoch fits, the chain does not", w.c2b, w.c1)
	losing.Room = w.roomFor(w.c1, w.c2b)
	onFork := w.mk("chain", "chain", "message-on-fork", "a message on B's epoch-1 commit, against the state at A's epoch-2 commit", w.msgOn(w.C, w.c1b), w.c2)
	onFork.Room = w.roomFor(w.c2, w.c1b)
	onEquiv := func(about, slug, desc string, ev *roomversion.Event) Case {
		c := w.mk(about, "", slug, desc, ev, w.c2)
		c.Room = w.roomFor(w.c2, w.c2e)
		return c
	}
	return []Case{
		w.mk("chain", "", "commit-on-current-commit", "a commit on the current commit", w.commitOn(w.A, w.c2, w.fm0), w.c2),
		w.mk("chain", "chain", "commit-on-older-mainline-commit", "a commit on the epoch-1 commit, against the state at epoch 2", w.commitOn(w.A, w.c1, w.fm0), w.c2),
		losing,
		onEquiv("chain", "commit-on-equivalent-commit", "a commit on B's commit equivalent to the current one", w.commitOn(w.A, w.c2e, w.fm0)),
		w.mk("chain", "chain", "second-epoch-0-commit", "another epoch-0 commit, against the state at epoch 2",
			w.commit(mlsOpts{origin: w.A, auth: evs{w.create}, prev: evs{w.create}, ad: w.fm0, label: "late epoch 0"}), w.c2),
		w.mk("chain", "", "pending-on-current-commit", "a pending commit on the current commit", w.pendingOn(w.C, w.c2, w.fm0), w.c2),
		w.mk("chain", "chain", "pending-on-older-commit", "a pending commit on the epoch-1 commit, against the state at epoch 2", w.pendingOn(w.C, w.c1, w.fm0), w.c2),
		w.mk("chain", "", "message-in-older-epoch-on-mainline", "a message of epoch 1 (on the epoch-0 commit) against the state at epoch 2", w.msgOn(w.C, w.c0), w.c2),
		onEquiv("chain", "message-on-equivalent-commit", "a message on B's commit equivalent to the current one", w.msgOn(w.C, w.c2e)),
		onFork,
		onC3Case,
		withState(w.mk("chain", "chain", "message-before-any-commit", "a message on the epoch-0 commit, against the state before it", w.msgOn(w.C, w.c0), nil), nil, nil),
	}
}

func (w *world) softFailCases() []Case {
	// B applies the same pending commit as A: equivalent to the mainline's
	// commit, received when A's is current.
	equiv := w.mk("soft-fail-b", "", "equivalent-commit", "B's commit with the ciphertext of the current commit (the same pending commit applied twice)", w.c2e, w.c1)
	equiv.Name = caseName("soft-fail-b", "", "", "equivalent-commit")
	equiv.Current = w.c2
	equiv.Room = w.roomFor(w.c2)

	orig := w.msgOn(w.C, w.c2)
	replay := w.message(mlsOpts{origin: w.B, auth: evs{w.create, w.c2}, prev: evs{orig}, epoch: 3, content: orig.Ciphertext()})
	rep := w.mk("soft-fail-b", "", "replayed-message", "B sends C's ciphertext again in a new event", replay, w.c2)
	rep.Name, rep.SoftFail = caseName("soft-fail-b", "", "b", "replayed-message"), "b"
	rep.Room = w.roomFor(w.c2, orig)
	return []Case{equiv, rep}
}
