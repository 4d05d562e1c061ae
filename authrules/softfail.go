package authrules

import (
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
)

// CheckSoftFail decides whether ev, which passed the auth rules against its
// auth events and the state before it, is soft-failed against the room's
// current state (SPEC-NOTES §4). It returns nil when it is not, and an error
// only when the room does not hold an event it must (ev's auth commit, or a
// commit on that commit's chain).
//
// Let A be ev's auth commit (the genesis commit for the epoch-0 commit). ev
// extends the room when A is on the current mainline (an equivalent commit
// counts; the genesis commit is on every mainline) and A is the current
// commit or ev is not a commit. A commit equivalent to a commit already on
// the current mainline (a second server applying the same pending commit)
// also counts as extending the room: it is the mainline's own commit, not a
// fork. Every other event is on a fork: P is the last commit on the current
// mainline that ev's chain of auth commits reaches (the fork point), F the
// commit after P on ev's branch (ev itself if it is a commit with A = P), W
// the commit after P on the current mainline.
//
//   - (a) An event that extends the room is soft-failed if its origin is
//     not in servers of the current commit (genesis: the room ID's domain)
//     or it fails rule 5.
//   - (b) An event whose ciphertext is byte-identical to that of an event
//     the room holds is soft-failed, except a commit whose twin is a
//     pending commit (it converts it) or a commit (they are equivalent).
//   - (c) An event on a fork is soft-failed when the fork would lose state
//     resolution: F's origin is not ranked strictly above W's origin in
//     powers of P (an absent server ranks below everyone, so two absent
//     servers tie and F loses), or F's origin has itself sent an event
//     whose auth commit is W or a later mainline commit. When there is no W
//     (F follows the current commit but is not current: F was itself
//     soft-failed, so its branch never reaches state resolution), the event
//     is soft-failed too.
//
// The cases are tried in the order a, b, c; (a) applies only to events
// that extend the room and (c) only to events on a fork. The create event
// is never soft-failed.
//
// The cost is a few lookups, plus for an event on a fork a walk down its
// branch and over room.From(F's origin).
func CheckSoftFail(ev *roomversion.Event, room Room) (*SoftFail, error) {
	if ev == nil {
		return nil, errNilEvent
	}
	if ev.Kind() == roomversion.EventCreate {
		return nil, nil
	}
	create := room.Create()
	createID := create.EventID()
	cur := room.Commit()
	isCommit := ev.Kind() == roomversion.EventCommit

	var a *roomversion.Event
	if id := authCommitID(ev, createID); id != "" {
		if a = room.Event(id); a == nil {
			return nil, fmt.Errorf("authrules: soft-fail: the room does not hold %s, the auth commit of %s", id, ev.EventID())
		}
	}
	aOnMainline := a == nil || OnMainline(room, a) != nil
	extends := aOnMainline && (!isCommit || equivalent(a, cur))
	if isCommit && aOnMainline && !extends && OnMainline(room, ev) != nil {
		extends = true // a replay of a mainline commit
	}

	// (a)
	if extends {
		domain := roomversion.Domain(create.RoomID().String())
		servers, from := []string{domain}, "the genesis commit (the room ID's domain)"
		if cur != nil {
			fm, err := cur.FederationMap()
			if err != nil {
				return nil, fmt.Errorf("authrules: soft-fail: the current commit %s: %w", cur.EventID(), err)
			}
			servers, from = fm.Federation.Servers, "the current commit "+cur.EventID()
		}
		if !contains(servers, ev.Origin()) {
			return &SoftFail{Case: SoftFailA, Reason: fmt.Sprintf("origin %s is not in servers %s of %s", ev.Origin(), list(servers), from)}, nil
		}
		ci, err := createInfoOf(create)
		if err != nil {
			return nil, fmt.Errorf("authrules: soft-fail: the create event: %w", err)
		}
		if !ci.federate && ev.Origin() != create.Origin() {
			return &SoftFail{Case: SoftFailA, Reason: fmt.Sprintf("rule 5 fails against the current state: m.federate is false and origin %s is not %s", ev.Origin(), create.Origin())}, nil
		}
	}

	// (b)
	for _, x := range room.WithCiphertext(ev.Ciphertext()) {
		if x.EventID() == ev.EventID() {
			continue
		}
		if isCommit && (x.Kind() == roomversion.EventPendingCommit || x.Kind() == roomversion.EventCommit) {
			continue // converts a pending commit, or is equivalent to a commit
		}
		return &SoftFail{Case: SoftFailB, Reason: fmt.Sprintf("its ciphertext is byte-identical to that of %s %s (from %s), already in the room", x.Type(), x.EventID(), x.Origin())}, nil
	}
	if extends {
		return nil, nil
	}

	// (c): find P, F and W.
	var f *roomversion.Event
	if isCommit {
		f = ev
	}
	var p *roomversion.Event // nil: the genesis commit
	for c := a; c != nil; {
		if m := OnMainline(room, c); m != nil {
			p = m
			break
		}
		f = c
		id := authCommitID(c, createID)
		if id == "" {
			break // c is an epoch-0 commit off the mainline: P is genesis
		}
		next := room.Event(id)
		if next == nil {
			return nil, fmt.Errorf("authrules: soft-fail: the room does not hold %s, the auth commit of %s", id, c.EventID())
		}
		if next.Epoch() >= c.Epoch() {
			return nil, fmt.Errorf("authrules: soft-fail: commit %s (epoch %d) names %s of epoch %d", c.EventID(), c.Epoch(), id, next.Epoch())
		}
		c = next
	}
	if f == nil {
		// Not reachable: an event that is not a commit is on a fork only
		// when its auth commit is off the mainline.
		return nil, fmt.Errorf("authrules: soft-fail: no fork commit found for %s", ev.EventID())
	}
	powers, pName := []string{roomversion.Domain(create.RoomID().String())}, "the genesis commit"
	var wEpoch uint64
	if p != nil {
		fm, err := p.FederationMap()
		if err != nil {
			return nil, fmt.Errorf("authrules: soft-fail: fork point %s: %w", p.EventID(), err)
		}
		powers, pName, wEpoch = fm.Federation.Powers, "fork point "+p.EventID(), p.Epoch()+1
	}
	w := room.MainlineAt(wEpoch)
	if w == nil {
		return &SoftFail{Case: SoftFailC, Reason: fmt.Sprintf("its branch's commit %s follows %s, the current commit, but was not accepted into the current state (it was soft-failed), so its fork never reaches state resolution", f.EventID(), pName)}, nil
	}
	rank := func(s string) int {
		if i := index(powers, s); i >= 0 {
			return i
		}
		return len(powers)
	}
	rf, rw := rank(f.Origin()), rank(w.Origin())
	if rf >= rw {
		return &SoftFail{Case: SoftFailC, Reason: fmt.Sprintf("on a fork at %s that would lose: its commit %s is from %s (%s), not ranked strictly above %s (%s), origin of the mainline's %s, in powers %s", pName, f.EventID(), f.Origin(), rankName(rf, powers), w.Origin(), rankName(rw, powers), w.EventID(), list(powers))}, nil
	}
	for _, x := range room.From(f.Origin()) {
		if x.EventID() == ev.EventID() {
			continue
		}
		id := authCommitID(x, createID)
		if id == "" {
			continue
		}
		xc := room.Event(id)
		if xc == nil {
			continue
		}
		if m := OnMainline(room, xc); m != nil && m.Epoch() >= wEpoch {
			return &SoftFail{Case: SoftFailC, Reason: fmt.Sprintf("on a fork at %s that would lose: %s, origin of its commit %s, has itself built on the mainline's %s: its %s %s has auth commit %s (epoch %d)", pName, f.Origin(), f.EventID(), w.EventID(), x.Type(), x.EventID(), m.EventID(), m.Epoch())}, nil
		}
	}
	return nil, nil
}

// rankName describes a rank in powers.
func rankName(r int, powers []string) string {
	if r >= len(powers) {
		return "not in powers"
	}
	return fmt.Sprintf("index %d", r)
}
