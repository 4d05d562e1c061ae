package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage/types"
)

// CreateRoom stores a room; the same room again does nothing, another
// version or algorithm is ErrConflict.
func (d *Database) CreateRoom(ctx context.Context, room types.Room) error {
	return d.withTx(ctx, "creating room "+room.RoomID, func(tx *sql.Tx) error {
		return d.rooms.insertRoom(ctx, tx, room)
	})
}

// Room returns a room, ErrNotFound if unknown.
func (d *Database) Room(ctx context.Context, roomID string) (types.Room, error) {
	return d.rooms.selectRoom(ctx, nil, roomID)
}

// roomOf is the room an event belongs to, as its create event (or, for
// another event, the event itself) describes it.
func roomOf(ev *roomversion.Event) types.Room {
	r := types.Room{RoomID: ev.RoomID().String(), Version: ev.RoomVersion(), Algorithm: ev.Algorithm()}
	if c, err := ev.Create(); err == nil {
		r.Algorithm = c.Algorithm
	}
	return r
}

// storeOne writes one event and everything that goes with it in tx.
func (d *Database) storeOne(ctx context.Context, tx *sql.Tx, ev *roomversion.Event, o types.StoreEventOptions, rooms map[string]bool) (bool, error) {
	if ev == nil {
		return false, errors.New("storing a nil event")
	}
	r := roomOf(ev)
	if !rooms[r.RoomID] {
		if err := d.rooms.ensureRoom(ctx, tx, r); err != nil {
			return false, err
		}
		rooms[r.RoomID] = true
	}
	if o.ExpectCurrent != nil || o.Txn != nil {
		// Under the room's lock: an event stored already is not new
		// whatever the conditions; otherwise check them before writing.
		exists, err := d.events.eventExists(ctx, tx, ev.EventID())
		if err != nil || exists {
			return false, err
		}
		if o.ExpectCurrent != nil {
			cur, err := d.currentState.selectState(ctx, tx, r.RoomID)
			if err != nil && !errors.Is(err, types.ErrNotFound) {
				return false, err
			}
			if cur != *o.ExpectCurrent {
				return false, fmt.Errorf("storing event %s: current state of %s is %+v, expected %+v: %w",
					ev.EventID(), r.RoomID, cur, *o.ExpectCurrent, types.ErrStateChanged)
			}
		}
		if o.Txn != nil {
			if err := d.clientTxns.insertTxn(ctx, tx, *o.Txn, ev.EventID()); err != nil {
				return false, err
			}
		}
	}
	if o.ForwardExtremities == nil {
		// The common case in one round trip.
		isNew, err := d.events.storeEvent(ctx, tx, ev, o)
		if err != nil || !isNew {
			return false, err
		}
		if o.CurrentState != nil {
			if err := d.currentState.upsertState(ctx, tx, r.RoomID, *o.CurrentState); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	_, isNew, err := d.events.insertEvent(ctx, tx, ev, o)
	if err != nil || !isNew {
		return false, err
	}
	id := ev.EventID()
	if err := d.edges.insertEdges(ctx, tx, id, ev.AuthEventIDs(), ev.PrevEventIDs()); err != nil {
		return false, err
	}
	if o.StateBefore != (types.RoomState{}) {
		if err := d.eventState.insertState(ctx, tx, id, o.StateBefore); err != nil {
			return false, err
		}
	}
	switch {
	case o.ForwardExtremities != nil:
		if err := d.extremities.deleteAllExtremities(ctx, tx, r.RoomID); err != nil {
			return false, err
		}
		for _, x := range o.ForwardExtremities {
			if err := d.extremities.insertExtremity(ctx, tx, r.RoomID, x); err != nil {
				return false, err
			}
		}
	case !o.Rejected && !o.SoftFailed:
		if err := d.extremities.deleteExtremities(ctx, tx, r.RoomID, ev.PrevEventIDs()); err != nil {
			return false, err
		}
		if err := d.extremities.insertUnreferenced(ctx, tx, r.RoomID, id); err != nil {
			return false, err
		}
	}
	if o.CurrentState != nil {
		if err := d.currentState.upsertState(ctx, tx, r.RoomID, *o.CurrentState); err != nil {
			return false, err
		}
	}
	return true, nil
}

// StoreEvent stores an event, its edges and state, and updates the forward
// extremities and the room's current state in one transaction. It reports
// false, changing nothing, if the event was stored already.
func (d *Database) StoreEvent(ctx context.Context, ev *roomversion.Event, opts types.StoreEventOptions) (bool, error) {
	var isNew bool
	err := d.withTx(ctx, "storing event", func(tx *sql.Tx) error {
		if err := lockStream(ctx, tx, streamEvents); err != nil {
			return err
		}
		var err error
		isNew, err = d.storeOne(ctx, tx, ev, opts, map[string]bool{})
		return err
	})
	return isNew, err
}

// StoreEvents stores events in order in one transaction, all or none, and
// reports how many were new.
func (d *Database) StoreEvents(ctx context.Context, evs []types.EventToStore) (int, error) {
	n := 0
	err := d.withTx(ctx, fmt.Sprintf("storing %d events", len(evs)), func(tx *sql.Tx) error {
		n = 0
		if err := lockStream(ctx, tx, streamEvents); err != nil {
			return err
		}
		// Lock the rooms in a fixed order, so that concurrent batches
		// cannot deadlock.
		rooms := map[string]bool{}
		byID := map[string]types.Room{}
		for _, e := range evs {
			if e.Event != nil {
				r := roomOf(e.Event)
				if _, ok := byID[r.RoomID]; !ok {
					byID[r.RoomID] = r
				}
			}
		}
		for _, id := range slices.Sorted(maps.Keys(byID)) {
			if err := d.rooms.ensureRoom(ctx, tx, byID[id]); err != nil {
				return err
			}
			rooms[id] = true
		}
		if batchable(evs) {
			var err error
			n, err = d.storeBatch(ctx, tx, evs)
			return err
		}
		for _, e := range evs {
			isNew, err := d.storeOne(ctx, tx, e.Event, e.Options, rooms)
			if err != nil {
				return err
			}
			if isNew {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// batchable reports whether a batch can be written set-wise: no explicit
// extremities, no conditions, no client transactions, no event twice.
func batchable(evs []types.EventToStore) bool {
	seen := make(map[string]bool, len(evs))
	for _, e := range evs {
		if e.Event == nil || e.Options.ForwardExtremities != nil || e.Options.ExpectCurrent != nil || e.Options.Txn != nil ||
			seen[e.Event.EventID()] {
			return false
		}
		seen[e.Event.EventID()] = true
	}
	return len(evs) > 1
}

// storeBatch writes a batchable batch in a few statements: the
// events with edges and state, the extremities, the current states.
// The caller has stored and locked the rooms.
func (d *Database) storeBatch(ctx context.Context, tx *sql.Tx, evs []types.EventToStore) (int, error) {
	stored, err := d.events.storeEvents(ctx, tx, evs)
	if err != nil {
		return 0, err
	}
	var accepted []string
	current := map[string]types.RoomState{}
	var order []string
	for _, e := range evs {
		id := e.Event.EventID()
		if !stored[id] {
			continue
		}
		if !e.Options.Rejected && !e.Options.SoftFailed {
			accepted = append(accepted, id)
		}
		if cs := e.Options.CurrentState; cs != nil {
			room := e.Event.RoomID().String()
			if _, ok := current[room]; !ok {
				order = append(order, room)
			}
			current[room] = *cs
		}
	}
	if err := d.extremities.updateForBatch(ctx, tx, accepted); err != nil {
		return 0, err
	}
	for _, room := range order {
		if err := d.currentState.upsertState(ctx, tx, room, current[room]); err != nil {
			return 0, err
		}
	}
	return len(stored), nil
}

// Event loads an event, ErrNotFound if unknown.
func (d *Database) Event(ctx context.Context, eventID string) (*types.StoredEvent, error) {
	return d.events.selectEvent(ctx, nil, eventID)
}

// Events loads the known events among ids, in the order of ids.
func (d *Database) Events(ctx context.Context, eventIDs []string) ([]*types.StoredEvent, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	m, err := d.events.selectEvents(ctx, nil, eventIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*types.StoredEvent, 0, len(m))
	seen := make(map[string]bool, len(m))
	for _, id := range eventIDs {
		if se, ok := m[id]; ok && !seen[id] {
			seen[id] = true
			out = append(out, se)
		}
	}
	return out, nil
}

// EventReferences returns the stored events naming eventID as a prev event.
func (d *Database) EventReferences(ctx context.Context, eventID string) ([]string, error) {
	return d.edges.selectReferences(ctx, nil, eventID)
}

// StateAtEvent returns the state before an event, ErrNotFound if none.
func (d *Database) StateAtEvent(ctx context.Context, eventID string) (types.RoomState, error) {
	return d.eventState.selectState(ctx, nil, eventID)
}

// CurrentState returns a room's current state, ErrNotFound if none.
func (d *Database) CurrentState(ctx context.Context, roomID string) (types.RoomState, error) {
	return d.currentState.selectState(ctx, nil, roomID)
}

// ForwardExtremities returns a room's forward extremities, sorted.
func (d *Database) ForwardExtremities(ctx context.Context, roomID string) ([]string, error) {
	return d.extremities.selectExtremities(ctx, nil, roomID)
}

// RoomEvents returns a room's events not rejected, by NID: forward from <
// NID <= to ascending, backward to < NID < from descending (0: unbounded),
// at most limit (<= 0: all).
func (d *Database) RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, backward bool) ([]*types.StoredEvent, error) {
	return d.events.selectRoomEvents(ctx, nil, roomID, from, to, limit, backward)
}

// ClientTxnEvent returns the event a client transaction sent.
func (d *Database) ClientTxnEvent(ctx context.Context, userID, deviceID, txnID string) (string, error) {
	return d.clientTxns.selectEvent(ctx, nil, userID, deviceID, txnID)
}

// EventClientTxn returns the client transaction that sent an event.
func (d *Database) EventClientTxn(ctx context.Context, eventID string) (types.ClientTxn, error) {
	return d.clientTxns.selectTxn(ctx, nil, eventID)
}

// StoreOneTimeKeyPackages stores one-time key packages in one transaction;
// a key ID stored with another value, or claimed before, is a
// *types.KeyConflictError (ErrConflict) and stores nothing.
//
// The claimed key IDs are read after the inserts, in a statement of its
// own: an insert racing a claim of the same key ID waits for the claim's
// statement to end (the claim deletes the row the insert conflicts with),
// and the next statement's snapshot then sees the recorded claim.
func (d *Database) StoreOneTimeKeyPackages(ctx context.Context, userID, deviceID string, kps []types.KeyPackage) error {
	if len(kps) == 0 {
		return nil
	}
	return d.withTx(ctx, "storing one-time key packages of "+userID+"/"+deviceID, func(tx *sql.Tx) error {
		ids := make([]string, 0, len(kps))
		for _, kp := range kps {
			if err := d.oneTimeKeys.insertKey(ctx, tx, userID, deviceID, kp); err != nil {
				return err
			}
			ids = append(ids, kp.KeyID)
		}
		claimed, err := d.claimedKeyIDs.firstClaimed(ctx, tx, userID, deviceID, ids)
		if err != nil {
			return err
		}
		if claimed != "" {
			return claimedError(claimed)
		}
		return nil
	})
}

// StoreFallbackKeyPackage sets the device's unused fallback package for
// its algorithm.
func (d *Database) StoreFallbackKeyPackage(ctx context.Context, userID, deviceID string, kp types.KeyPackage) error {
	return d.fallbackKeys.upsertKey(ctx, nil, userID, deviceID, kp)
}

// ClaimKeyPackage hands out and deletes one one-time package, recording
// its key ID as claimed in the same statement, or returns the fallback
// package marked used when none is left.
func (d *Database) ClaimKeyPackage(ctx context.Context, userID, deviceID, algorithm string) (types.ClaimedKeyPackage, error) {
	kp, ok, err := d.oneTimeKeys.claimKey(ctx, nil, userID, deviceID, algorithm)
	if err != nil {
		return types.ClaimedKeyPackage{}, err
	}
	if ok {
		return types.ClaimedKeyPackage{KeyPackage: kp}, nil
	}
	kp, ok, err = d.fallbackKeys.claimKey(ctx, nil, userID, deviceID, algorithm)
	if err != nil {
		return types.ClaimedKeyPackage{}, err
	}
	if !ok {
		return types.ClaimedKeyPackage{}, fmt.Errorf("claiming a %s key package of %s/%s: %w", algorithm, userID, deviceID, types.ErrNotFound)
	}
	return types.ClaimedKeyPackage{KeyPackage: kp, Fallback: true}, nil
}

// CountOneTimeKeyPackages counts the device's one-time packages per
// algorithm.
func (d *Database) CountOneTimeKeyPackages(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return d.oneTimeKeys.countKeys(ctx, nil, userID, deviceID)
}

// UnusedFallbackAlgorithms lists the algorithms of unused fallback
// packages.
func (d *Database) UnusedFallbackAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error) {
	return d.fallbackKeys.selectUnused(ctx, nil, userID, deviceID)
}

// KeyPackageIDs lists the device's one-time and fallback key IDs, sorted.
func (d *Database) KeyPackageIDs(ctx context.Context, userID, deviceID string) ([]string, error) {
	a, err := d.oneTimeKeys.selectKeyIDs(ctx, nil, userID, deviceID)
	if err != nil {
		return nil, err
	}
	b, err := d.fallbackKeys.selectKeyIDs(ctx, nil, userID, deviceID)
	if err != nil {
		return nil, err
	}
	out := append(a, b...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FallbackKeyPackageIDs lists the device's fallback key IDs (used ones
// included), sorted.
func (d *Database) FallbackKeyPackageIDs(ctx context.Context, userID, deviceID string) ([]string, error) {
	ids, err := d.fallbackKeys.selectKeyIDs(ctx, nil, userID, deviceID)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// AddPendingCommit queues a waiting pending commit with its windows; false
// if queued already.
func (d *Database) AddPendingCommit(ctx context.Context, pc types.PendingCommit) (bool, error) {
	var added bool
	err := d.withTx(ctx, "queueing pending commit "+pc.EventID, func(tx *sql.Tx) error {
		var err error
		if added, err = d.pendingCommits.insertPending(ctx, tx, pc); err != nil || !added {
			return err
		}
		for _, w := range pc.Windows {
			if err := d.windows.insertWindow(ctx, tx, pc.EventID, w); err != nil {
				return err
			}
		}
		return nil
	})
	return added, err
}

// PendingCommit returns one queued pending commit.
func (d *Database) PendingCommit(ctx context.Context, eventID string) (types.PendingCommit, error) {
	pc, err := d.pendingCommits.selectPending(ctx, nil, eventID)
	if err != nil {
		return pc, err
	}
	pc.Windows, err = d.windows.selectWindows(ctx, nil, eventID)
	return pc, err
}

// PendingCommitRooms lists, in room ID order, the rooms with a pending
// commit in status.
func (d *Database) PendingCommitRooms(ctx context.Context, status types.PendingStatus) ([]string, error) {
	return d.pendingCommits.selectRooms(ctx, status)
}

// PendingCommits lists a room's pending commits in a status, in (receipt
// time, event ID) order.
func (d *Database) PendingCommits(ctx context.Context, roomID string, status types.PendingStatus) ([]types.PendingCommit, error) {
	pcs, err := d.pendingCommits.selectRoomPending(ctx, nil, roomID, status)
	if err != nil {
		return nil, err
	}
	for i := range pcs {
		if pcs[i].Windows, err = d.windows.selectWindows(ctx, nil, pcs[i].EventID); err != nil {
			return nil, err
		}
	}
	return pcs, nil
}

// ClaimPendingCommit claims a waiting pending commit for applying as
// appliedCommitID, at most once across processes.
func (d *Database) ClaimPendingCommit(ctx context.Context, eventID, appliedCommitID string) (types.ClaimResult, error) {
	var res types.ClaimResult
	err := d.withTx(ctx, "claiming pending commit "+eventID, func(tx *sql.Tx) error {
		roomID, commitID, status, err := d.pendingCommits.lockPending(ctx, tx, eventID)
		if err != nil {
			return err
		}
		if status != types.PendingWaiting {
			res = types.ClaimTaken
			return nil
		}
		cur, err := d.currentState.selectState(ctx, tx, roomID)
		if err != nil && !errors.Is(err, types.ErrNotFound) {
			return err
		}
		next, applied := types.PendingApplied, appliedCommitID
		res = types.ClaimWon
		if err != nil || cur.CommitID != commitID {
			next, applied, res = types.PendingStale, "", types.ClaimStale
		}
		ok, err := d.pendingCommits.updateStatus(ctx, tx, eventID, next, applied)
		if err != nil {
			return err
		}
		if !ok {
			res = types.ClaimTaken
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return res, nil
}

// ApplyPendingCommit applies a waiting pending commit as commit in one
// transaction: under the room's row lock it checks that the room's current
// commit is still the one the pending commit references (else marks it
// stale), stores commit with opts (its state and the room's new current
// state) and marks the pending commit applied. Two processes can therefore
// neither apply one pending commit twice nor apply two pending commits on
// the same commit, and a crash leaves either nothing or all of it.
func (d *Database) ApplyPendingCommit(ctx context.Context, eventID string, commit *roomversion.Event, opts types.StoreEventOptions) (types.ClaimResult, error) {
	if commit == nil {
		return 0, fmt.Errorf("applying pending commit %s: no commit", eventID)
	}
	var res types.ClaimResult
	err := d.withTx(ctx, "applying pending commit "+eventID, func(tx *sql.Tx) error {
		if err := lockStream(ctx, tx, streamEvents); err != nil {
			return err
		}
		r := roomOf(commit)
		if err := d.rooms.ensureRoom(ctx, tx, r); err != nil {
			return err
		}
		roomID, commitID, status, err := d.pendingCommits.lockPending(ctx, tx, eventID)
		if err != nil {
			return err
		}
		if roomID != r.RoomID {
			return fmt.Errorf("pending commit %s is for room %s, the commit for %s", eventID, roomID, r.RoomID)
		}
		if status != types.PendingWaiting {
			res = types.ClaimTaken
			return nil
		}
		cur, err := d.currentState.selectState(ctx, tx, roomID)
		if err != nil && !errors.Is(err, types.ErrNotFound) {
			return err
		}
		if err != nil || cur.CommitID != commitID {
			res = types.ClaimStale
			_, err := d.pendingCommits.updateStatus(ctx, tx, eventID, types.PendingStale, "")
			return err
		}
		if _, err := d.storeOne(ctx, tx, commit, opts, map[string]bool{r.RoomID: true}); err != nil {
			return err
		}
		if _, err := d.pendingCommits.updateStatus(ctx, tx, eventID, types.PendingApplied, commit.EventID()); err != nil {
			return err
		}
		res = types.ClaimWon
		return nil
	})
	if err != nil {
		return 0, err
	}
	return res, nil
}

// SetPendingCommitStatus moves a waiting pending commit to stale or
// expired; false if it was not waiting.
func (d *Database) SetPendingCommitStatus(ctx context.Context, eventID string, status types.PendingStatus) (bool, error) {
	if status != types.PendingStale && status != types.PendingExpired {
		return false, fmt.Errorf("setting pending commit %s to %q: only stale or expired", eventID, status)
	}
	return d.pendingCommits.updateStatus(ctx, nil, eventID, status, "")
}
