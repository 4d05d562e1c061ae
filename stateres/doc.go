// Package stateres implements state resolution for MLS mode Matrix rooms
// (MSC4256 "State resolution", SPEC-NOTES §5): Matrix state resolution v2
// with the proposal's substitutions, which turns the state sets at a room's
// forward extremities into one state (the create event and one commit) and
// so one linear commit chain out of any fork.
//
// The package owns:
//
//   - Resolve: the resolved state of several state sets.
//   - Mainline: a commit's chain of auth commits, indexed by epoch.
//   - Order: the order of non-state events (mainline position of their
//     auth commit, then origin_server_ts, then event ID), which also says
//     which epoch, and whether the resolved chain, each event belongs to.
//   - Losers: for a resolved state, which commits, pending commits and
//     messages lost, and why.
//   - Replay: one server's view of a room taking events in one at a time
//     (auth rules, soft-fail, the current state at the forward
//     extremities), shared by mlsroom resolve and the demo, the
//     conformance suite's expected outcomes and the simulator.
//   - Helpers: Store (and MapStore), StateSet, Power, Equivalent,
//     AuthCommitID.
//
// Package stateresttest makes rooms for its tests (scenarios with real MLS
// commits, random DAGs); testdata/stateres holds language-neutral vectors
// made from them, and mlsroom resolve applies the package to a room's
// events.
//
// It reads events through the Store interface (never a database); an
// event's auth chain is the chain of commits its auth events lead to, read
// through the Store one event at a time. The auth rules are package
// authrules'.
//
// # Algorithm
//
// The only state is the create event and the commit, and every commit is a
// power event, so the v2 algorithm reduces to:
//
//  1. The create event must be the same in every state set. If the commits
//     (absent counts as a value) are all the same event, that is the result.
//  2. The full conflicted set is the conflicted commits plus the auth
//     difference: the commits on the auth chains of some but not all of
//     them. Commit auth chains form a tree, so this is every commit from
//     the conflicted commits down to (excluding) their last common ancestor
//     (down to epoch 0 when a state set has no commit). The last common
//     ancestor is added too (a reading: see below).
//  3. Reverse topological power ordering (Kahn's algorithm on the auth
//     edges inside the set): among the commits whose auth commit is already
//     ordered, the most powerful first. A commit's power is the index of its
//     origin in powers of the commit in its auth events (0 for the epoch-0
//     commit; a server absent from powers ranks below everyone); ties by
//     origin_server_ts, then event ID. Equivalent commits (byte-identical
//     ciphertext) are one node: its key is its members' least, and its
//     children are all its members' children.
//  4. Iterative auth checks in that order (authrules.Check, chain rule
//     included) against the partially resolved state, which starts with no
//     commit (room version 12's v2.1 starts from an empty state; the create
//     event is the same everywhere). While it has no commit, the event's own
//     auth commit stands in for it. For a node of equivalent commits the
//     members are tried in key order and the first that passes becomes the
//     partially resolved commit. A commit whose auth commit is not
//     (equivalent to) the partially resolved commit fails the chain rule
//     without further checks.
//  5. The resolved state is the create event and the last commit that
//     passed.
//
// Step 2 is v2's; v2.1's conflicted state subgraph adds nothing, since the
// auth DAG of commits is a tree whose paths between conflicted commits the
// auth difference already holds. There is no second (mainline) phase: the
// only non-power state is the create event, which is never conflicted.
//
// The result does not depend on the order of the state sets or of anything
// else in the input: every choice is by (power, origin_server_ts, event ID).
//
// # Readings
//
//   - Resolve uses authrules.Check, not CheckAuthEvents: it trusts that the
//     Store holds events that passed the checks on receipt (rule 4).
//   - SPEC-NOTES §4 soft-fail case (c) also soft-fails a fork whose commit's
//     origin has itself built on the winning branch (a demoted server's
//     backdated fork). State resolution does not: §5 names only the power
//     ordering. Such a fork never reaches state resolution on a server that
//     soft-fails it, since soft-failed events are never forward extremities
//     (mlsroom resolve applies soft-fail for that reason).
//   - The full conflicted set also holds the conflicted commits' last
//     common ancestor (the fork point). It is ordered first and passes, so
//     a fork whose commits all fail the auth rules resolves to its fork
//     point; without it the result would have no commit, which v2 allows for
//     power levels but an MLS room cannot have.
//   - The auth chain is read through Store.Event: a missing event, or a
//     chain whose epochs do not step down by one, is an error.
package stateres
