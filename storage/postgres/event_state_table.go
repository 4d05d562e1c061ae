package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The state at (before) each event: the create event and the commit.
const eventStateSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_event_state (
	event_id TEXT PRIMARY KEY,
	create_id TEXT NOT NULL,
	commit_id TEXT NOT NULL
);`

const (
	insertEventStateSQL = `INSERT INTO mlsmode_event_state (event_id, create_id, commit_id) VALUES ($1, $2, $3)`
	selectEventStateSQL = `SELECT create_id, commit_id FROM mlsmode_event_state WHERE event_id = $1`
)

type eventStateTable struct {
	insertStmt, selectStateStmt *sql.Stmt
}

func prepareEventStateTable(ctx context.Context, db *sql.DB) (*eventStateTable, error) {
	t := &eventStateTable{}
	return t, prepareAll(ctx, db, "mlsmode_event_state", map[**sql.Stmt]string{
		&t.insertStmt: insertEventStateSQL, &t.selectStateStmt: selectEventStateSQL,
	})
}

func (t *eventStateTable) insertState(ctx context.Context, tx *sql.Tx, id string, s types.RoomState) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, id, s.CreateID, s.CommitID); err != nil {
		return fmt.Errorf("inserting state at %s: %w", id, err)
	}
	return nil
}

func (t *eventStateTable) selectState(ctx context.Context, tx *sql.Tx, id string) (types.RoomState, error) {
	var s types.RoomState
	err := stmt(ctx, tx, t.selectStateStmt).QueryRowContext(ctx, id).Scan(&s.CreateID, &s.CommitID)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("state at %s: %w", id, types.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("selecting state at %s: %w", id, err)
	}
	return s, nil
}
