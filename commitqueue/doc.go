// Package commitqueue owns the pending-commit scheduler of an mlsmode
// homeserver (SPEC-NOTES §6): it receives valid m.mls.pending_commit events
// (local or from federation), computes the window of every server in powers
// from the later of the pending commit's timestamp and this server's first
// receipt of it, keeps them in the storage queue (storage.PendingCommits, so
// the queue survives restarts and is shared by every process using the
// database), and when this server's window is open asks an Applier to turn
// the pending commit into an m.mls.commit, if the room's current commit is
// still the one the pending commit references; otherwise the pending commit
// is marked stale, and after T + len(powers) x 5 min expired.
//
// Each pending commit is applied at most once across processes: the queue
// claims it in storage (ClaimPendingCommit, a row lock) with the ID of the
// commit the Applier built before the Applier stores and sends that commit.
// Several pending commits on one current commit: the first in (local
// receipt time, event ID) order whose window is open wins.
//
// Status reports a pending commit's outcome for the client API, including
// which commit won when several servers applied it and state resolution
// picked one. The package owns neither storing nor authorising events nor
// state resolution: the caller stores every event (the pending commit before
// Receive) and keeps the room's current state.
package commitqueue
