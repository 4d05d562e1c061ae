package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

const extremitiesSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_forward_extremities (
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	PRIMARY KEY (room_id, event_id)
);`

const (
	insertExtremitySQL = `INSERT INTO mlsmode_forward_extremities (room_id, event_id) VALUES ($1, $2)`
	// Inserts $2 unless a stored event names it as a prev event.
	insertUnreferencedSQL = `INSERT INTO mlsmode_forward_extremities (room_id, event_id)
		SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM mlsmode_event_edges WHERE target_id = $2 AND edge_kind = 2)`
	deleteExtremitiesSQL    = `DELETE FROM mlsmode_forward_extremities WHERE room_id = $1 AND event_id IN (SELECT value FROM json_each($2))`
	deleteAllExtremitiesSQL = `DELETE FROM mlsmode_forward_extremities WHERE room_id = $1`
	selectExtremitiesSQL    = `SELECT event_id FROM mlsmode_forward_extremities WHERE room_id = $1 ORDER BY event_id`
)

type extremitiesTable struct {
	insertStmt, insertUnreferencedStmt, deleteSomeStmt, deleteAllStmt, selectAllStmt *sql.Stmt
}

func prepareExtremitiesTable(ctx context.Context, db *sql.DB) (*extremitiesTable, error) {
	t := &extremitiesTable{}
	return t, prepareAll(ctx, db, "mlsmode_forward_extremities", map[**sql.Stmt]string{
		&t.insertStmt: insertExtremitySQL, &t.insertUnreferencedStmt: insertUnreferencedSQL, &t.deleteSomeStmt: deleteExtremitiesSQL,
		&t.deleteAllStmt: deleteAllExtremitiesSQL, &t.selectAllStmt: selectExtremitiesSQL,
	})
}

func (t *extremitiesTable) insertExtremity(ctx context.Context, tx *sql.Tx, roomID, id string) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, roomID, id); err != nil {
		return fmt.Errorf("inserting forward extremity %s of %s: %w", id, roomID, err)
	}
	return nil
}

func (t *extremitiesTable) deleteExtremities(ctx context.Context, tx *sql.Tx, roomID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := stmt(ctx, tx, t.deleteSomeStmt).ExecContext(ctx, roomID, jsonArray(ids)); err != nil {
		return fmt.Errorf("deleting forward extremities of %s: %w", roomID, err)
	}
	return nil
}

func (t *extremitiesTable) deleteAllExtremities(ctx context.Context, tx *sql.Tx, roomID string) error {
	if _, err := stmt(ctx, tx, t.deleteAllStmt).ExecContext(ctx, roomID); err != nil {
		return fmt.Errorf("deleting forward extremities of %s: %w", roomID, err)
	}
	return nil
}

func (t *extremitiesTable) selectExtremities(ctx context.Context, tx *sql.Tx, roomID string) ([]string, error) {
	rows, err := stmt(ctx, tx, t.selectAllStmt).QueryContext(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("selecting forward extremities of %s: %w", roomID, err)
	}
	return scanStrings(rows, "forward extremities of "+roomID)
}

// insertUnreferenced makes id an extremity unless a stored event names it
// as a prev event.
func (t *extremitiesTable) insertUnreferenced(ctx context.Context, tx *sql.Tx, roomID, id string) error {
	if _, err := stmt(ctx, tx, t.insertUnreferencedStmt).ExecContext(ctx, roomID, id); err != nil {
		return fmt.Errorf("inserting forward extremity %s of %s: %w", id, roomID, err)
	}
	return nil
}
