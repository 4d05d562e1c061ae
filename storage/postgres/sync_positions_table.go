package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The position each device has synced to, per stream.
const syncPositionsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_sync_positions (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	stream TEXT NOT NULL,
	position BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, stream)
);`

const (
	upsertSyncPositionSQL = `INSERT INTO mlsmode_sync_positions (user_id, device_id, stream, position) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, stream) DO UPDATE SET position = excluded.position`
	selectSyncPositionSQL  = `SELECT position FROM mlsmode_sync_positions WHERE user_id = $1 AND device_id = $2 AND stream = $3`
	deleteSyncPositionsSQL = `DELETE FROM mlsmode_sync_positions WHERE user_id = $1 AND device_id = $2`
)

type syncPositionsTable struct {
	upsertStmt, selectStmt, deleteStmt *sql.Stmt
}

func prepareSyncPositionsTable(ctx context.Context, db *sql.DB) (*syncPositionsTable, error) {
	t := &syncPositionsTable{}
	return t, prepareAll(ctx, db, "mlsmode_sync_positions", map[**sql.Stmt]string{
		&t.upsertStmt: upsertSyncPositionSQL, &t.selectStmt: selectSyncPositionSQL, &t.deleteStmt: deleteSyncPositionsSQL,
	})
}

func (t *syncPositionsTable) upsertPosition(ctx context.Context, tx *sql.Tx, userID, deviceID, stream string, pos int64) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, userID, deviceID, stream, pos); err != nil {
		return fmt.Errorf("setting %s position of %s/%s: %w", stream, userID, deviceID, err)
	}
	return nil
}

func (t *syncPositionsTable) selectPosition(ctx context.Context, tx *sql.Tx, userID, deviceID, stream string) (int64, error) {
	var pos int64
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID, deviceID, stream).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("selecting %s position of %s/%s: %w", stream, userID, deviceID, err)
	}
	return pos, nil
}

func (t *syncPositionsTable) deletePositions(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting sync positions of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
