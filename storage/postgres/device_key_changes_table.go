package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// The device key changes stream: one row per StoreDeviceKeys,
// DeleteDevice or RecordDeviceKeyChange, stream_pos its position.
const keyChangesSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_device_key_changes (
	stream_pos BIGSERIAL PRIMARY KEY,
	user_id TEXT NOT NULL
);`

const (
	insertKeyChangeSQL = `INSERT INTO mlsmode_device_key_changes (user_id) VALUES ($1)`
	// Per user, the highest change after $1.
	selectKeyChangesSQL = `SELECT user_id, MAX(stream_pos) FROM mlsmode_device_key_changes WHERE stream_pos > $1
		GROUP BY user_id ORDER BY user_id`
)

type keyChangesTable struct {
	insertStmt, selectStmt *sql.Stmt
}

func prepareKeyChangesTable(ctx context.Context, db *sql.DB) (*keyChangesTable, error) {
	t := &keyChangesTable{}
	return t, prepareAll(ctx, db, "mlsmode_device_key_changes", map[**sql.Stmt]string{
		&t.insertStmt: insertKeyChangeSQL, &t.selectStmt: selectKeyChangesSQL,
	})
}

// insertChange records a change of userID's device keys; the caller holds
// the stream's lock.
func (t *keyChangesTable) insertChange(ctx context.Context, tx *sql.Tx, userID string) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, userID); err != nil {
		return fmt.Errorf("recording device key change of %s: %w", userID, err)
	}
	return nil
}

// selectChanges returns the users with changes after after, sorted, and
// the highest position among them (after when none).
func (t *keyChangesTable) selectChanges(ctx context.Context, tx *sql.Tx, after int64) ([]string, int64, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, after)
	if err != nil {
		return nil, 0, fmt.Errorf("selecting device key changes: %w", err)
	}
	defer rows.Close()
	users, high := []string{}, after
	for rows.Next() {
		var u string
		var pos int64
		if err := rows.Scan(&u, &pos); err != nil {
			return nil, 0, fmt.Errorf("scanning device key changes: %w", err)
		}
		users = append(users, u)
		high = max(high, pos)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("selecting device key changes: %w", err)
	}
	return users, high, nil
}
