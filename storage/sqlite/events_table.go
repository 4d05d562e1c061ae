package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage/types"
)

// Events keep their canonical JSON and the columns extracted from it;
// event_nid orders them by write.
const eventsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_events (
	event_nid INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL REFERENCES mlsmode_rooms (room_id),
	event_type TEXT NOT NULL,
	state_key TEXT,
	origin TEXT NOT NULL,
	origin_server_ts BIGINT NOT NULL,
	epoch BIGINT NOT NULL,
	event_json BLOB NOT NULL,
	rejected BOOLEAN NOT NULL DEFAULT FALSE,
	soft_failed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS mlsmode_events_room_idx ON mlsmode_events (room_id, event_nid);`

// Migration 2 adds why an event was soft-failed.
const eventsSoftFailReasonDelta = `
ALTER TABLE mlsmode_events ADD COLUMN soft_fail_reason TEXT NOT NULL DEFAULT '';`

const (
	insertEventSQL = `INSERT INTO mlsmode_events (event_id, room_id, event_type, state_key, origin,
		origin_server_ts, epoch, event_json, rejected, soft_failed, soft_fail_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid`
	selectEventSQL = `SELECT e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id WHERE e.event_id = $1`
	selectEventsSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id WHERE e.event_id IN (SELECT value FROM json_each($1))`
	selectEventExistsSQL = `SELECT EXISTS (SELECT 1 FROM mlsmode_events WHERE event_id = $1)`
	// A room's events not rejected, $2 < NID <= $3 ascending (a bound of
	// 0: none), at most $4 (-1: all).
	selectRoomEventsForwardSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason,
			t.user_id, t.device_id, t.txn_id
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id
		LEFT JOIN mlsmode_client_txns t ON t.event_id = e.event_id
		WHERE e.room_id = $1 AND NOT e.rejected AND ($2 = 0 OR e.event_nid > $2) AND ($3 = 0 OR e.event_nid <= $3)
		ORDER BY e.event_nid ASC LIMIT $4`
	// Backward: $3 < NID < $2 descending.
	selectRoomEventsBackwardSQL = `SELECT e.event_id, e.event_nid, r.room_version, e.event_json, e.rejected, e.soft_failed, e.soft_fail_reason,
			t.user_id, t.device_id, t.txn_id
		FROM mlsmode_events e JOIN mlsmode_rooms r ON r.room_id = e.room_id
		LEFT JOIN mlsmode_client_txns t ON t.event_id = e.event_id
		WHERE e.room_id = $1 AND NOT e.rejected AND ($2 = 0 OR e.event_nid < $2) AND ($3 = 0 OR e.event_nid > $3)
		ORDER BY e.event_nid DESC LIMIT $4`
)

type eventsTable struct {
	insertStmt, selectEventStmt, selectEventsStmt *sql.Stmt
	existsStmt, forwardStmt, backwardStmt         *sql.Stmt
}

func prepareEventsTable(ctx context.Context, db *sql.DB) (*eventsTable, error) {
	t := &eventsTable{}
	return t, prepareAll(ctx, db, "mlsmode_events", map[**sql.Stmt]string{
		&t.insertStmt: insertEventSQL, &t.selectEventStmt: selectEventSQL, &t.selectEventsStmt: selectEventsSQL,
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
	rows, err := stmt(ctx, tx, t.selectEventsStmt).QueryContext(ctx, jsonArray(ids))
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
	lim := int64(-1)
	if limit > 0 {
		lim = int64(limit)
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
