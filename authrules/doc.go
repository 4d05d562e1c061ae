// Package authrules implements the authorization rules of MLS mode Matrix
// rooms (MSC4256 "Authorization Rules", rules 1-12) with the readings of
// SPEC-NOTES §4, the chain rule SPEC-NOTES adds, and soft-fail.
//
// # API
//
//   - CheckAuthEvents(ev, authEvents, rejected): the check on receipt of a
//     PDU: rule 4 on the event's auth events, then Check against the state
//     they make.
//   - Check(ev, authCommit, state): rules 1-3 and 5-12 and the chain rule
//     against a State (its auth events, the state before it, or the
//     partially resolved state during state resolution). It does not
//     allocate when it allows an event.
//   - CheckSoftFail(ev, room): soft-fail cases (a), (b) and (c) against a
//     Room, the room's current state and the events it holds.
//   - ParseEvent(ctx, version, json): roomversion.Parse, naming the auth
//     rule when Parse refuses an event for what is also an auth rule (2,
//     3.1, 3.3, 3.5, 7, 8, 9.1, 9.4, 10.2).
//   - State, Room: the minimal views of a room the checks need; Snapshot
//     and MemRoom implement them in memory.
//   - *Error{Rule, Reason} for rejections (errors.As), *SoftFail{Case,
//     Reason} for soft-fail.
//
// Package authrulestest holds the case table (at least one allowed and one
// rejected case per rule) from which testdata/authrules is generated.
//
// # Readings
//
// SPEC-NOTES §4 fixes most readings; this package adds those it leaves
// open. All of them:
//
//   - "The previous m.mls.commit" (rules 6, 9) and "the current
//     m.mls.commit" (rules 10, 11) are the commit in the event's own auth
//     events. The state the event is checked against matters only to the
//     chain rule (and its create event to rules 5, 7 and 8).
//   - Auth events are exactly [create] for the epoch-0 commit and
//     [create, commit], in any order, for every other event but the create
//     event. A commit of epoch > 0 without a commit fails 4.2; the epoch-0
//     commit with a commit, two commits, or any other event fails 4.3; an
//     auth event the server never received fails 4.4 like a rejected one,
//     and is reported before 4.1-4.3 since nothing can be judged without it.
//     An auth commit of another room fails rule 7.
//   - The epoch-0 commit is checked against a virtual genesis commit of
//     epoch -1 whose powers and servers are [the room ID's domain] (rules
//     9.3, 9.7, 9.9); rule 6 is skipped for it. The room ID's domain is the
//     part after the first ':'.
//   - Equivalent commits (byte-identical ciphertext) count as the same
//     commit wherever the chain rule or soft-fail asks whether a commit is
//     the current one or on the mainline.
//   - Rule 3.3 also rejects a create algorithm that is not one of the room
//     version's; 3.5 an algorithm absent, not a string or empty, and an
//     encryption_algorithm that differs from it.
//   - Rule 8 compares the event's algorithm with the create event's.
//   - A federation map that does not decode fails the first sub-rule that
//     reads the map: 9.5 for commits, 10.3 for pending commits. 9.5, 9.6
//     and 10.3 reject an empty list and an entry that is not a valid server
//     name (fedmap.ValidServerName). A previous commit whose map does not
//     decode (impossible for one that passed) fails rule 6.
//   - 9.9: the servers above the origin in the previous powers must start
//     the new powers, in order. 10.4 compares powers as ordered lists; 10.5
//     reads the current commit's can_propose. 3.6, 9.11, 10.8 and 12 reject
//     nothing.
//   - Rules are tried in their numeric order and the chain rule last; the
//     first failure is reported.
//   - Chain rule: a commit or pending commit is allowed only if its auth
//     commit is (equivalent to) the state's current commit (both absent for
//     the epoch-0 commit against a state without one); a message only if
//     its auth commit is on the state's mainline, any epoch. Where the
//     partially resolved state has no commit yet, the caller passes a state
//     whose commit is the event's auth commit.
//   - Soft-fail: see CheckSoftFail. Beyond SPEC-NOTES: a commit equivalent
//     to a commit already on the current mainline (a pending commit applied
//     by two servers) extends the room rather than forking it; an event
//     whose fork point is the current commit itself (its branch's commit was
//     soft-failed) is soft-failed under (c); two servers absent from P's
//     powers tie, so F loses; "F's origin has sent an event" counts every
//     event the room holds, soft-failed ones included; the cases are tried
//     in the order a, b, c.
package authrules
