package authrules

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// ErrAuthEventsMismatch is wrapped by CheckAuthEvents' error when the events
// it is given are not the ones the event names in auth_events: a mistake of
// the caller, not a rejection.
var ErrAuthEventsMismatch = errors.New("authrules: the auth events given are not the event's auth_events")

// CheckAuthEvents checks ev against its own auth events, as on receipt of a
// PDU: rule 4 on authEvents, then Check against the state they make (their
// create event and commit). authEvents are the events ev names in
// auth_events, in that order; a nil entry is an event the server does not
// hold (it never passed the checks on receipt: rule 4.4). rejected, if not
// nil, reports whether the server rejected an event it holds (rule 4.4).
//
// Rule 4 as SPEC-NOTES §4 reads it: the auth events are exactly [create] for
// the epoch-0 commit and [create, commit] (in any order) for every other
// event but the create event, whose auth events rule 3.2 wants empty. 4.1:
// not exactly one create event; 4.2: no commit, for an event other than the
// epoch-0 commit (so a commit of epoch > 0 without a commit fails here);
// 4.3: anything else (a second commit, a pending commit or message, a commit
// in the auth events of the epoch-0 commit); 4.4: an auth event rejected or
// unknown. Unknown auth events are reported first, since nothing else can be
// judged without them.
//
// The returned error is nil, an *Error naming the rule, or (for a mistake of
// the caller) an error wrapping ErrAuthEventsMismatch.
func CheckAuthEvents(ev *roomversion.Event, authEvents []*roomversion.Event, rejected func(eventID string) bool) error {
	if ev == nil {
		return errNilEvent
	}
	ids := ev.AuthEventIDs()
	if len(authEvents) != len(ids) {
		return fmt.Errorf("%w: %d given, the event names %d", ErrAuthEventsMismatch, len(authEvents), len(ids))
	}
	for i, a := range authEvents {
		if a == nil {
			return reject("4.4", fmt.Sprintf("auth event %s is not known: it has not passed the checks done on PDU receipt", ids[i]))
		}
		if a.EventID() != ids[i] {
			return fmt.Errorf("%w: auth_events[%d] is %s, given %s", ErrAuthEventsMismatch, i, ids[i], a.EventID())
		}
	}
	if ev.Kind() == roomversion.EventCreate {
		// Rule 3.2 rejects any auth events; rule 4 is never reached.
		return Check(ev, nil, nil)
	}

	var create, commit *roomversion.Event
	creates, commits := 0, 0
	for _, a := range authEvents {
		switch a.Kind() {
		case roomversion.EventCreate:
			creates++
			create = a
		case roomversion.EventCommit:
			commits++
			if commit == nil {
				commit = a
			}
		}
	}
	// 4.1
	if creates != 1 {
		return reject("4.1", fmt.Sprintf("the auth events hold %d m.room.create events, want exactly one", creates))
	}
	// 4.2
	genesis := ev.Kind() == roomversion.EventCommit && ev.Epoch() == 0
	if !genesis && commits == 0 {
		what := "a " + typeName(ev)
		if ev.Kind() == roomversion.EventCommit {
			what = fmt.Sprintf("a commit of epoch %d (only the epoch-0 commit has none)", ev.Epoch())
		}
		return reject("4.2", fmt.Sprintf("no commit in the auth events of %s", what))
	}
	// 4.3
	if genesis && commits > 0 {
		return reject("4.3", fmt.Sprintf("the auth events of the epoch-0 commit must be exactly the create event; it also names commit %s", commit.EventID()))
	}
	if commits > 1 {
		return reject("4.3", fmt.Sprintf("the auth events hold %d commits, want one", commits))
	}
	for _, a := range authEvents {
		if k := a.Kind(); k != roomversion.EventCreate && k != roomversion.EventCommit {
			return reject("4.3", fmt.Sprintf("auth event %s is a %s event; only the create event and one commit are allowed", a.EventID(), typeName(a)))
		}
	}
	// 4.4
	if rejected != nil {
		for _, a := range authEvents {
			if rejected(a.EventID()) {
				return reject("4.4", fmt.Sprintf("auth event %s (%s) was rejected: it did not pass the checks done on PDU receipt", a.EventID(), typeName(a)))
			}
		}
	}
	return Check(ev, commit, &Snapshot{CreateEvent: create, CommitEvent: commit})
}

var errNilEvent = errors.New("authrules: nil event")

// Check checks ev against state: rules 1-3 and 5-12 of MSC4256 with the
// readings of SPEC-NOTES §4, then the chain rule. It returns nil when ev is
// allowed and an *Error naming the first rule it fails otherwise (rules in
// their numeric order, the chain rule last).
//
// authCommit is the commit ev names in its auth events: nil for the create
// event and the epoch-0 commit. It is "the previous m.mls.commit" of rules
// 6 and 9 and "the current m.mls.commit" of rules 10 and 11 (SPEC-NOTES §4);
// the epoch-0 commit is checked against the virtual genesis commit instead
// (epoch -1, powers and servers [the room ID's domain]; rule 6 skipped).
// Check trusts that authCommit is the commit ev names (CheckAuthEvents makes
// sure, on receipt); it does check that one is given exactly when it must
// be (rules 4.2 and 4.3).
//
// state is the state the chain rule checks against: the state before the
// event, or the partially resolved state during state resolution (where
// that has no commit yet, pass a state whose commit is authCommit, as state
// resolution v2 does). Its create event is the one rules 5, 7 and 8 read.
// For the create event state may be nil.
//
// Rules 3.6, 9.11, 10.8 and 12 are "otherwise, allow". Rule 4 is
// CheckAuthEvents'. Some rules can only fail for events that
// roomversion.Parse refuses anyway (2, 3.1, 3.3, 3.5, 9.1, 9.4, 10.2, and
// parts of 7 and 8); Check still tests them where the Event shows them, and
// ParseEvent names the rule when Parse refuses such an event.
//
// Check does not allocate when it allows an event (once the room's create
// event is in its small cache of create contents: the first check of a
// room reads it).
func Check(ev, authCommit *roomversion.Event, state State) error {
	if ev == nil {
		return errNilEvent
	}
	kind := ev.Kind()
	hasStateKey := ev.StateKey() != nil
	// Rule 1.
	if hasStateKey && !ev.StateKeyEquals("") {
		return reject("1", fmt.Sprintf("state key %q is not empty", *ev.StateKey()))
	}
	// Rule 2.
	if hasStateKey && kind != roomversion.EventCreate && kind != roomversion.EventCommit {
		return reject("2", fmt.Sprintf("a %s event has a state key; only m.room.create and the commit may", typeName(ev)))
	}
	// Rule 3.
	if kind == roomversion.EventCreate {
		return checkCreate(ev, hasStateKey)
	}

	if state == nil {
		return errors.New("authrules: nil state")
	}
	create := state.Create()
	if create == nil || create.Kind() != roomversion.EventCreate {
		return reject("4.1", "the state has no m.room.create event")
	}
	ci, err := createInfoOf(create)
	if err != nil {
		return reject("4.1", fmt.Sprintf("the state's create event: %v", err))
	}

	// Rule 4, as far as Check sees it: a commit is given exactly when the
	// event is not the epoch-0 commit.
	epoch := ev.Epoch()
	if authCommit == nil {
		if kind != roomversion.EventCommit {
			return reject("4.2", fmt.Sprintf("no commit in the auth events of a %s event", typeName(ev)))
		}
		if epoch != 0 {
			return reject("4.2", fmt.Sprintf("no commit in the auth events of a commit of epoch %d (only the epoch-0 commit has none)", epoch))
		}
	} else {
		if kind == roomversion.EventCommit && epoch == 0 {
			return reject("4.3", fmt.Sprintf("the auth events of the epoch-0 commit must be exactly the create event; it also names commit %s", authCommit.EventID()))
		}
		if authCommit.Kind() != roomversion.EventCommit {
			return reject("4.3", fmt.Sprintf("auth event %s is a %s event, not a commit", authCommit.EventID(), typeName(authCommit)))
		}
	}

	origin := ev.Origin()
	// Rule 5.
	if !ci.federate && origin != create.Origin() {
		return reject("5", fmt.Sprintf("the create event has m.federate false and the origin %s is not the create event's origin %s", origin, create.Origin()))
	}

	// Rule 6: the previous commit's servers (skipped for the epoch-0
	// commit).
	var prev *fedmap.Federation
	if authCommit != nil {
		fm, err := authCommit.FederationMap()
		if err != nil {
			return &Error{Rule: "6", Reason: fmt.Sprintf("the federation map of auth commit %s does not decode: %v", authCommit.EventID(), err), Err: err}
		}
		prev = &fm.Federation
		if !contains(prev.Servers, origin) {
			return reject("6", fmt.Sprintf("origin %s is not in servers %s of commit %s", origin, list(prev.Servers), authCommit.EventID()))
		}
	}

	// Rule 7.
	roomID := create.RoomID().String()
	if r := ev.RoomID().String(); r != roomID {
		return reject("7", fmt.Sprintf("room_id %s is not the create event's room %s", r, roomID))
	}
	h, _ := ev.MLSHeader()
	if string(h.GroupID) != roomID {
		return reject("7", fmt.Sprintf("MLS group_id %q is not the create event's room %s", h.GroupID, roomID))
	}
	if authCommit != nil {
		if r := authCommit.RoomID().String(); r != roomID {
			return reject("7", fmt.Sprintf("auth commit %s belongs to room %s, not to the create event's room %s", authCommit.EventID(), r, roomID))
		}
	}

	// Rule 8.
	if ev.Algorithm() != ci.algorithm {
		return reject("8", fmt.Sprintf("algorithm %q is not the create event's %q", ev.Algorithm(), ci.algorithm))
	}

	switch kind {
	case roomversion.EventCommit:
		if err := checkCommit(ev, hasStateKey, authCommit, prev, roomID, &h); err != nil {
			return err
		}
		// Chain rule: the auth commit is (equivalent to) the current one.
		if cur := state.Commit(); !equivalent(authCommit, cur) {
			return chainCommit(ev, authCommit, cur)
		}
		return nil // 9.11
	case roomversion.EventPendingCommit:
		if err := checkPending(ev, authCommit, prev, &h); err != nil {
			return err
		}
		if cur := state.Commit(); !equivalent(authCommit, cur) {
			return chainCommit(ev, authCommit, cur)
		}
		return nil // 10.8
	case roomversion.EventEncrypted:
		// Rule 11.
		if epoch != authCommit.Epoch()+1 {
			return reject("11", fmt.Sprintf("the message's epoch %d is not the epoch %d of commit %s plus one", epoch, authCommit.Epoch(), authCommit.EventID()))
		}
		// Chain rule: the auth commit is on the state's mainline.
		if OnMainline(state, authCommit) == nil {
			return chainMessage(authCommit, state.Commit())
		}
		return nil // 12
	}
	return fmt.Errorf("authrules: event %s of unknown kind %v", ev.EventID(), kind)
}

// checkCreate is rule 3.
func checkCreate(ev *roomversion.Event, hasStateKey bool) error {
	// 3.1
	if !hasStateKey {
		return reject("3.1", "the create event has no state key")
	}
	// 3.2
	if n, m := len(ev.PrevEventIDs()), len(ev.AuthEventIDs()); n > 0 || m > 0 {
		return reject("3.2", fmt.Sprintf("the create event has %d prev_events and %d auth_events, want none", n, m))
	}
	// 3.3
	c, err := ev.Create()
	if err != nil {
		return &Error{Rule: "3.3", Reason: "the create content cannot be read", Err: err}
	}
	if !ev.RoomVersion().Known() || c.RoomVersion != ev.RoomVersion() {
		return reject("3.3", fmt.Sprintf("room version %q is not an MLS room version", string(c.RoomVersion)))
	}
	// 3.4
	if d := roomversion.Domain(ev.RoomID().String()); ev.Origin() != d {
		return reject("3.4", fmt.Sprintf("origin %s is not the room ID's domain %s", ev.Origin(), d))
	}
	// 3.5 (with SPEC-NOTES §4's reading of encryption_algorithm)
	if c.Algorithm == "" {
		return reject("3.5", "the create content has no algorithm")
	}
	if c.EncryptionAlgorithm != "" && c.EncryptionAlgorithm != c.Algorithm {
		return reject("3.5", fmt.Sprintf("encryption_algorithm %q differs from algorithm %q", c.EncryptionAlgorithm, c.Algorithm))
	}
	return nil // 3.6
}

// checkCommit is rules 9.1-9.10. prev is the previous commit's federation
// (nil: the genesis commit).
func checkCommit(ev *roomversion.Event, hasStateKey bool, authCommit *roomversion.Event, prev *fedmap.Federation, roomID string, h *mls.Header) error {
	origin, epoch := ev.Origin(), ev.Epoch()
	domain := roomversion.Domain(roomID)
	// 9.1
	if !hasStateKey {
		return reject("9.1", "the commit has no state key")
	}
	// 9.2
	if epoch == 0 && origin != domain {
		return reject("9.2", fmt.Sprintf("the epoch-0 commit's origin %s is not the room ID's domain %s", origin, domain))
	}
	// 9.3
	var want uint64 // the genesis commit's epoch -1, plus one
	if authCommit != nil {
		want = authCommit.Epoch() + 1
	}
	prevName := func() string {
		if authCommit == nil {
			return "the genesis commit (epoch -1)"
		}
		return fmt.Sprintf("commit %s (epoch %d)", authCommit.EventID(), authCommit.Epoch())
	}
	if epoch != want {
		return reject("9.3", fmt.Sprintf("epoch %d is not the epoch of the previous commit, %s, plus one", epoch, prevName()))
	}
	// 9.4
	if h.ContentType != mls.ContentTypeCommit {
		return reject("9.4", fmt.Sprintf("the MLS content is %v, not a commit", h.ContentType))
	}
	// 9.5 is the first rule that reads the federation map: a map that does
	// not decode fails there.
	fm, err := ev.FederationMap()
	if err != nil {
		return &Error{Rule: "9.5", Reason: fmt.Sprintf("the federation map does not decode: %v", err), Err: err}
	}
	f := &fm.Federation
	if err := serverList("9.5", "servers", f.Servers); err != nil {
		return err
	}
	// 9.6
	if err := serverList("9.6", "powers", f.Powers); err != nil {
		return err
	}
	// 9.7: the previous powers (genesis: the room's domain).
	var genesis [1]string
	prevPowers := genesis[:]
	if prev != nil {
		prevPowers = prev.Powers
	} else {
		genesis[0] = domain
	}
	idx := index(prevPowers, origin)
	if idx < 0 {
		return reject("9.7", fmt.Sprintf("origin %s is not in powers %s of %s", origin, list(prevPowers), prevName()))
	}
	// 9.8
	if s, ok := subset(f.Powers, f.Servers); !ok {
		return reject("9.8", fmt.Sprintf("powers entry %s is not in servers %s", s, list(f.Servers)))
	}
	// 9.9
	above := prevPowers[:idx]
	if len(f.Powers) < len(above) || !equalLists(f.Powers[:len(above)], above) {
		return reject("9.9", fmt.Sprintf("powers %s do not start with %s, the servers above the origin %s in the previous powers %s", list(f.Powers), list(above), origin, list(prevPowers)))
	}
	// 9.10
	if s, ok := subset(f.CanPropose, f.Servers); !ok {
		return reject("9.10", fmt.Sprintf("can_propose entry %s is not in servers %s", s, list(f.Servers)))
	}
	return nil
}

// checkPending is rules 10.1-10.7; authCommit is the current commit and cur
// its federation.
func checkPending(ev, authCommit *roomversion.Event, cur *fedmap.Federation, h *mls.Header) error {
	// 10.1
	if ev.Epoch() != authCommit.Epoch()+1 {
		return reject("10.1", fmt.Sprintf("epoch %d is not the epoch %d of the current commit %s plus one", ev.Epoch(), authCommit.Epoch(), authCommit.EventID()))
	}
	// 10.2
	if h.ContentType != mls.ContentTypeCommit {
		return reject("10.2", fmt.Sprintf("the MLS content is %v, not a commit", h.ContentType))
	}
	// 10.3, the first rule that reads the federation map.
	fm, err := ev.FederationMap()
	if err != nil {
		return &Error{Rule: "10.3", Reason: fmt.Sprintf("the federation map does not decode: %v", err), Err: err}
	}
	f := &fm.Federation
	if err := serverList("10.3", "servers", f.Servers); err != nil {
		return err
	}
	// 10.4: ordered lists.
	if !equalLists(f.Powers, cur.Powers) {
		return reject("10.4", fmt.Sprintf("powers %s are not the current commit's %s", list(f.Powers), list(cur.Powers)))
	}
	// 10.5: the current commit's can_propose.
	if !contains(cur.CanPropose, ev.Origin()) {
		return reject("10.5", fmt.Sprintf("origin %s is not in can_propose %s of the current commit %s", ev.Origin(), list(cur.CanPropose), authCommit.EventID()))
	}
	// 10.6
	if s, ok := subset(f.Powers, f.Servers); !ok {
		return reject("10.6", fmt.Sprintf("powers entry %s is not in servers %s", s, list(f.Servers)))
	}
	// 10.7
	if s, ok := subset(f.CanPropose, f.Servers); !ok {
		return reject("10.7", fmt.Sprintf("can_propose entry %s is not in servers %s", s, list(f.Servers)))
	}
	return nil
}

// chainCommit is the chain rule's rejection of a commit or pending commit.
func chainCommit(ev, authCommit, cur *roomversion.Event) error {
	return reject(RuleChain, fmt.Sprintf("a %s must build on the current commit %s, but its auth commit is %s", typeName(ev), commitName(cur), commitName(authCommit)))
}

// chainMessage is the chain rule's rejection of a message.
func chainMessage(authCommit, cur *roomversion.Event) error {
	return reject(RuleChain, fmt.Sprintf("auth commit %s is not on the mainline of the current commit %s", commitName(authCommit), commitName(cur)))
}

// commitName describes a commit for reasons.
func commitName(c *roomversion.Event) string {
	if c == nil {
		return "none (genesis)"
	}
	return fmt.Sprintf("%s (epoch %d, from %s)", c.EventID(), c.Epoch(), c.Origin())
}

// typeName names an event's type for reasons.
func typeName(ev *roomversion.Event) string { return ev.Type() }

// serverList checks that list is not empty and holds valid server names.
func serverList(rule, name string, list []string) error {
	if len(list) == 0 {
		return reject(rule, name+" is empty")
	}
	for i, s := range list {
		if err := fedmap.ValidServerName(s); err != nil {
			return &Error{Rule: rule, Reason: fmt.Sprintf("%s[%d] %q is not a valid server name: %v", name, i, s, err), Err: err}
		}
	}
	return nil
}

// contains reports whether list holds s.
func contains(list []string, s string) bool { return index(list, s) >= 0 }

// index returns the index of s in list, or -1.
func index(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// equalLists compares two lists in order.
func equalLists(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// subset reports whether every entry of sub is in super, and otherwise
// returns the first entry that is not.
func subset(sub, super []string) (string, bool) {
	if len(sub)*len(super) <= 1024 {
		for _, s := range sub {
			if !contains(super, s) {
				return s, false
			}
		}
		return "", true
	}
	set := make(map[string]struct{}, len(super))
	for _, s := range super {
		set[s] = struct{}{}
	}
	for _, s := range sub {
		if _, ok := set[s]; !ok {
			return s, false
		}
	}
	return "", true
}

// createInfo is what rules 5 and 8 read of a create event. Reading it
// through Event.Create allocates, so it is kept in a small cache.
type createInfo struct {
	id        string
	federate  bool
	algorithm string
}

// createCache holds the create information of recently seen rooms, slot
// chosen by a hash of the event ID. A slot holds one room; a miss reads the
// create event again. Entries are immutable.
var (
	createCache     [256]atomic.Pointer[createInfo]
	createCacheSeed = maphash.MakeSeed()
)

// createInfoOf returns the create information of create.
func createInfoOf(create *roomversion.Event) (*createInfo, error) {
	id := create.EventID()
	slot := &createCache[maphash.String(createCacheSeed, id)%uint64(len(createCache))]
	if ci := slot.Load(); ci != nil && ci.id == id {
		return ci, nil
	}
	c, err := create.Create()
	if err != nil {
		return nil, err
	}
	ci := &createInfo{id: id, federate: c.Federate, algorithm: c.Algorithm}
	slot.Store(ci)
	return ci, nil
}

// list writes a server list for reasons: [a.example, b.example].
func list(l []string) string { return "[" + strings.Join(l, ", ") + "]" }
