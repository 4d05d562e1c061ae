package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The current state of each room: the create event and the current commit.
const currentStateSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_current_state (
	room_id TEXT PRIMARY KEY,
	create_id TEXT NOT NULL,
	commit_id TEXT NOT NULL
);`

const (
	upsertCurrentStateSQL = `INSERT INTO mlsmode_current_state (room_id, create_id, commit_id) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO UPDATE SET create_id = excluded.create_id, commit_id = excluded.commit_id`
	selectCurrentStateSQL = `SELECT create_id, commit_id FROM mlsmode_current_state WHERE room_id = $1`
)

type currentStateTable struct {
	upsertStmt, selectStateStmt *sql.Stmt
}

func prepareCurrentStateTable(ctx context.Context, db *sql.DB) (*currentStateTable, error) {
	t := &currentStateTable{}
	return t, prepareAll(ctx, db, "mlsmode_current_state", map[**sql.Stmt]string{
		&t.upsertStmt: upsertCurrentStateSQL, &t.selectStateStmt: selectCurrentStateSQL,
	})
}

func (t *currentStateTable) upsertState(ctx context.Context, tx *sql.Tx, roomID string, s types.RoomState) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, roomID, s.CreateID, s.CommitID); err != nil {
		return fmt.Errorf("setting current state of %s: %w", roomID, err)
	}
	return nil
}

func (t *currentStateTable) selectState(ctx context.Context, tx *sql.Tx, roomID string) (types.RoomState, error) {
	var s types.RoomState
	err := stmt(ctx, tx, t.selectStateStmt).QueryRowContext(ctx, roomID).Scan(&s.CreateID, &s.CommitID)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("current state of %s: %w", roomID, types.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("selecting current state of %s: %w", roomID, err)
	}
	return s, nil
}
