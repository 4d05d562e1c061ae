package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage/types"
)

// Events keep their canonical JSON and the columns extracted from it;
// event_nid orders them by write.
const eventsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_events (
	event_nid BIGSERIAL PRIMARY KEY,
	event_id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL REFERENCES mlsmode_rooms (room_id),
	event_type TEXT NOT NULL,
	state_key TEXT,
	origin TEXT NOT NULL,
	origin_server_ts BIGINT NOT NULL,
	epoch BIGINT NOT NULL,
	event_json BYTEA NOT NULL,
	rejected BOOLEAN NOT NULL DEFAULT FALSE,
	soft_failed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS mlsmode_events_room_idx ON mlsmode_events (room_id, event_nid);`

// Migration 2 adds why an event was soft-failed.
const eventsSoftFailReasonDelta = `
ALTER TABLE mlsmode_events ADD COLUMN IF NOT EXISTS soft_fail_reason TEXT NOT NULL DEFAULT '';`

const (
	insertEventSQL = `INSERT INTO mlsmode_events (event_id, room_id, event_type, state_key, origin,
		origin_server_ts, epoch, event_json, rejected, soft_failed, soft_fail_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid`
	// storeEventSQL writes an event with its edges and its state and, for
	// an accepted event, updates the forward extremities (its prev events
	// leave, it joins unless a stored event names it as a prev event): one
	// round trip. Nothing but the event row is written if the event was
	// stored already. $12 and $13 are the auth and prev event IDs, $14
	// whether to store the state ($15, $16), $17 whether the event is
	// accepted.
	storeEventSQL = `WITH ev AS (
		INSERT INTO mlsmode_events (event_id, room_id, event_type, state_key, origin,
			origin_server_ts, epoch, event_json, rejected, soft_failed, soft_fail_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid
	), edges AS (
		INSERT INTO mlsmode_event_edges (event_id, edge_kind, position, target_id)
		SELECT $1, 1, a.ord - 1, a.id FROM unnest($12::TEXT[]) WITH ORDINALITY AS a(id, ord) WHERE EXISTS (SELECT 1 FROM ev)
		UNION ALL
		SELECT $1, 2, p.ord - 1, p.id FROM unnest($13::TEXT[]) WITH ORDINALITY AS p(id, ord) WHERE EXISTS (SELECT 1 FROM ev)
	), state AS (
		INSERT INTO mlsmode_event_state (event_id, create_id, commit_id)
		SELECT $1, $15, $16 WHERE $14::BOOLEAN AND EXISTS (SELECT 1 FROM ev)
	), old_fx AS (
		DELETE FROM mlsmode_forward_extremities
		WHERE $17::BOOLEAN AND room_id = $2 AND event_id = ANY($13::TEXT[]) AND EXISTS (SELECT 1 FROM ev)
	), new_fx AS (
		INSERT INTO mlsmode_forward_extremities (room_id, event_id)
		SELECT $2, $1 WHERE $17::BOOLEAN AND EXISTS (SELECT 1 FROM ev)
			AND NOT EXISTS (SELECT 1 FROM mlsmode_event_edges WHERE target_id = $1 AND edge_kind = 2)
	)
	SELECT event_nid FROM ev`
	// storeEventsSQL writes a batch of events with their edges and state
	// in one statement and returns the IDs of the new ones. Arrays: $1-$11
	// the event columns, $12-$15 the edges (event ID, kind, position,
	// target), $16-$18 the states (event ID, create, commit).
	storeEventsSQL = `WITH ev AS (
		INSERT INTO mlsmode_events (event_id, room_id, event_type, state_key, origin,
			origin_server_ts, epoch, event_json, rejected, soft_failed, soft_fail_reason)
		SELECT u.id, u.room, u.typ, u.sk, u.origin, u.ts, u.epoch, u.js, u.rej, u.soft, u.reason
		FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[],
			$8::BYTEA[], $9::BOOLEAN[], $10::BOOLEAN[], $11::TEXT[])
			WITH ORDINALITY AS u(id, room, typ, sk, origin, ts, epoch, js, rej, soft, reason, ord)
		ORDER BY u.ord
		ON CONFLICT (event_id) DO NOTHING RETURNING event_id
	), edges AS (
		INSERT INTO mlsmode_event_edges (event_id, edge_kind, position, target_id)
		SELECT e.id, e.kind, e.pos, e.target
		FROM unnest($12::TEXT[], $13::SMALLINT[], $14::INTEGER[], $15::TEXT[]) AS e(id, kind, pos, target)
		WHERE e.id IN (SELECT event_id FROM ev)
	), state AS (
		INSERT INTO mlsmode_event_state (event_id, create_id, commit_id)
		SELECT s.id, s.c, s.m FROM unnest($16::TEXT[], $17::TEXT[], $18::TEXT[]) AS s(id, c, m)
		WHERE s.id IN (SELECT event_id FROM ev)
	)
	SELECT event_id FROM ev`
	selectEventSQL = `SELECT e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id WHERE e.event_id = $1`
	selectEventsSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id WHERE e.event_id = ANY($1)`
	selectEventExistsSQL = `SELECT EXISTS (SELECT 1 FROM mlsmode_events WHERE event_id = $1)`
	// A room's events not rejected, $2 < NID <= $3 ascending (a bound of
	// 0: none), at most $4 (NULL: all).
	selectRoomEventsForwardSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason,
			t.user_id, t.device_id, t.txn_id
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id
		LEFT JOIN mlsmode_client_txns t ON t.event_id = e.event_id
		WHERE e.room_id = $1 AND NOT e.rejected AND ($2::BIGINT = 0 OR e.event_nid > $2) AND ($3::BIGINT = 0 OR e.event_nid <= $3)
		ORDER BY e.event_nid ASC LIMIT $4`
	// Backward: $3 < NID < $2 descending.
	selectRoomEventsBackwardSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason,
			t.user_id, t.device_id, t.txn_id
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id
		LEFT JOIN mlsmode_client_txns t ON t.event_id = e.event_id
		WHERE e.room_id = $1 AND NOT e.rejected AND ($2::BIGINT = 0 OR e.event_nid < $2) AND ($3::BIGINT = 0 OR e.event_nid > $3)
		ORDER BY e.event_nid DESC LIMIT $4`
)

type eventsTable struct {
	insertStmt, storeStmt, storeBatchStmt, selectEventStmt, selectEventsStmt *sql.Stmt
	existsStmt, forwardStmt, backwardStmt                                    *sql.Stmt
}

func prepareEventsTable(ctx context.Context, db *sql.DB) (*eventsTable, error) {
	t := &eventsTable{}
	return t, prepareAll(ctx, db, "mlsmode_events", map[**sql.Stmt]string{
		&t.insertStmt: insertEventSQL, &t.storeStmt: storeEventSQL, &t.storeBatchStmt: storeEventsSQL, &t.selectEventStmt: selectEventSQL, &t.selectEventsStmt: selectEventsSQL,
		&t.existsStmt:  selectEventExistsSQL,
		&t.forwardStmt: selectRoomEventsForwardSQL, &t.backwardStmt: selectRoomEventsBackwardSQL,
	})
}

// insertEvent stores an event; it reports false if it was stored already.
func (t *eventsTable) insertEvent(ctx context.Context, tx *sql.Tx, ev *roomversion.Event, o types.StoreEventOptions) (int64, bool, error) {
	var nid int64
	err := stmt(ctx, tx, t.insertStmt).QueryRowContext(ctx, ev.EventID(), ev.RoomID().String(), ev.Type(), ev.StateKey(),
		ev.Origin(), int64(ev.OriginServerTS()), int64(ev.Epoch()), ev.JSON(), o.Rejected, o.SoftFailed, o.SoftFailReason).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("inserting event %s: %w", ev.EventID(), err)
	}
	return nid, true, nil
}

// storeEvent writes an event with its edges, its state and the forward
// extremities (see storeEventSQL) in one statement; it reports false if the
// event was stored already.
func (t *eventsTable) storeEvent(ctx context.Context, tx *sql.Tx, ev *roomversion.Event, o types.StoreEventOptions) (bool, error) {
	var nid int64
	hasState := o.StateBefore != (types.RoomState{})
	accepted := !o.Rejected && !o.SoftFailed
	err := stmt(ctx, tx, t.storeStmt).QueryRowContext(ctx, ev.EventID(), ev.RoomID().String(), ev.Type(), ev.StateKey(),
		ev.Origin(), int64(ev.OriginServerTS()), int64(ev.Epoch()), ev.JSON(), o.Rejected, o.SoftFailed, o.SoftFailReason,
		pq.Array(ev.AuthEventIDs()), pq.Array(ev.PrevEventIDs()), hasState, o.StateBefore.CreateID, o.StateBefore.CommitID,
		accepted).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storing event %s: %w", ev.EventID(), err)
	}
	return true, nil
}

// storeEvents writes distinct events with their edges and state (see
// storeEventsSQL) and returns the IDs of those not stored before.
func (t *eventsTable) storeEvents(ctx context.Context, tx *sql.Tx, evs []types.EventToStore) (map[string]bool, error) {
	n := len(evs)
	var (
		ids, rooms, typs, origins, reasons       = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		sks                                      = make([]sql.NullString, n)
		tss, epochs                              = make([]int64, n), make([]int64, n)
		jss                                      = make([][]byte, n)
		rejs, softs                              = make([]bool, n), make([]bool, n)
		eIDs, eTargets, sIDs, sCreates, sCommits []string
		eKinds, ePos                             []int64
	)
	for i, e := range evs {
		ev, o := e.Event, e.Options
		ids[i], rooms[i], typs[i], origins[i], reasons[i] = ev.EventID(), ev.RoomID().String(), ev.Type(), ev.Origin(), o.SoftFailReason
		if sk := ev.StateKey(); sk != nil {
			sks[i] = sql.NullString{String: *sk, Valid: true}
		}
		tss[i], epochs[i], jss[i], rejs[i], softs[i] = int64(ev.OriginServerTS()), int64(ev.Epoch()), ev.JSON(), o.Rejected, o.SoftFailed
		for kind, targets := range [][]string{edgeAuth: ev.AuthEventIDs(), edgePrev: ev.PrevEventIDs()} {
			for pos, target := range targets {
				eIDs, eKinds, ePos, eTargets = append(eIDs, ev.EventID()), append(eKinds, int64(kind)), append(ePos, int64(pos)), append(eTargets, target)
			}
		}
		if o.StateBefore != (types.RoomState{}) {
			sIDs, sCreates, sCommits = append(sIDs, ev.EventID()), append(sCreates, o.StateBefore.CreateID), append(sCommits, o.StateBefore.CommitID)
		}
	}
	rows, err := stmt(ctx, tx, t.storeBatchStmt).QueryContext(ctx, pq.Array(ids), pq.Array(rooms), pq.Array(typs), pq.Array(sks),
		pq.Array(origins), pq.Array(tss), pq.Array(epochs), pq.Array(jss), pq.Array(rejs), pq.Array(softs), pq.Array(reasons),
		pq.Array(eIDs), pq.Array(eKinds), pq.Array(ePos), pq.Array(eTargets), pq.Array(sIDs), pq.Array(sCreates), pq.Array(sCommits))
	if err != nil {
		return nil, fmt.Errorf("storing %d events: %w", n, err)
	}
	stored, err := scanStrings(rows, "stored events")
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(stored))
	for _, id := range stored {
		out[id] = true
	}
	return out, nil
}

// scanEvent parses a stored event's JSON: it was checked when stored, so
// parsing cannot fail unless the row was altered.
func scanEvent(ctx context.Context, id string, nid int64, version string, js []byte, rej, soft bool, reason string) (*types.StoredEvent, error) {
	ev, err := roomversion.Parse(ctx, roomversion.Version(version), js)
	if err != nil {
		return nil, fmt.Errorf("parsing stored event %s: %w", id, err)
	}
	return &types.StoredEvent{Event: ev, NID: nid, Rejected: rej, SoftFailed: soft, SoftFailReason: reason}, nil
}

func (t *eventsTable) selectEvent(ctx context.Context, tx *sql.Tx, id string) (*types.StoredEvent, error) {
	var (
		nid       int64
		version   string
		js        []byte
		rej, soft bool
		reason    string
	)
	err := stmt(ctx, tx, t.selectEventStmt).QueryRowContext(ctx, id).Scan(&nid, &version, &js, &rej, &soft, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("event %s: %w", id, types.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("selecting event %s: %w", id, err)
	}
	return scanEvent(ctx, id, nid, version, js, rej, soft, reason)
}

// selectEvents returns the known events among ids, keyed by event ID.
func (t *eventsTable) selectEvents(ctx context.Context, tx *sql.Tx, ids []string) (map[string]*types.StoredEvent, error) {
	rows, err := stmt(ctx, tx, t.selectEventsStmt).QueryContext(ctx, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("selecting %d events: %w", len(ids), err)
	}
	defer rows.Close()
	out := make(map[string]*types.StoredEvent, len(ids))
	for rows.Next() {
		var (
			id, version, reason string
			nid                 int64
			js                  []byte
			rej, soft           bool
		)
		if err := rows.Scan(&id, &nid, &version, &js, &rej, &soft, &reason); err != nil {
			return nil, fmt.Errorf("scanning events: %w", err)
		}
		se, err := scanEvent(ctx, id, nid, version, js, rej, soft, reason)
		if err != nil {
			return nil, err
		}
		out[id] = se
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting %d events: %w", len(ids), err)
	}
	return out, nil
}

// eventExists reports whether an event is stored.
func (t *eventsTable) eventExists(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var ok bool
	if err := stmt(ctx, tx, t.existsStmt).QueryRowContext(ctx, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("looking up event %s: %w", id, err)
	}
	return ok, nil
}

// selectRoomEvents returns a room's events not rejected between the
// bounds (see selectRoomEventsForwardSQL and selectRoomEventsBackwardSQL).
func (t *eventsTable) selectRoomEvents(ctx context.Context, tx *sql.Tx, roomID string, from, to int64, limit int, backward bool) ([]*types.StoredEvent, error) {
	s := t.forwardStmt
	if backward {
		s = t.backwardStmt
	}
	var lim sql.NullInt64
	if limit > 0 {
		lim = sql.NullInt64{Int64: int64(limit), Valid: true}
	}
	rows, err := stmt(ctx, tx, s).QueryContext(ctx, roomID, from, to, lim)
	if err != nil {
		return nil, fmt.Errorf("selecting events of %s: %w", roomID, err)
	}
	defer rows.Close()
	out := []*types.StoredEvent{}
	for rows.Next() {
		var (
			id, version, reason string
			nid                 int64
			js                  []byte
			rej, soft           bool
			user, dev, txn      sql.NullString
		)
		if err := rows.Scan(&id, &nid, &version, &js, &rej, &soft, &reason, &user, &dev, &txn); err != nil {
			return nil, fmt.Errorf("scanning events: %w", err)
		}
		se, err := scanEvent(ctx, id, nid, version, js, rej, soft, reason)
		if err != nil {
			return nil, err
		}
		if txn.Valid {
			se.Txn = &types.ClientTxn{UserID: user.String, DeviceID: dev.String, TxnID: txn.String}
		}
		out = append(out, se)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting events of %s: %w", roomID, err)
	}
	return out, nil
}
