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
// Each pending commit is applied at most once across processes, and one
// commit gets at most one pending commit applied on it: the queue has the
// Applier build the commit, then claims the pending commit and stores the
// commit as the room's current commit in one storage transaction under the
// room's lock (storage.ApplyPendingCommit), and only then has the Applier
// send it. A crash leaves the pending commit waiting, or applied with its
// commit stored.
// Several pending commits on one current commit: the first in (local
// receipt time, event ID) order whose window is open wins.
//
// Status reports a pending commit's outcome for the client API, including
// which commit won when several servers applied it and state resolution
// picked one. The package owns neither authorising events nor state
// resolution: the caller stores every other event (the pending commit before
// Receive) and keeps the room's current state.
package commitqueue
