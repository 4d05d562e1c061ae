package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"
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
	// For a batch of new accepted events $1: their prev events stop being
	// extremities; those no stored event names as a prev event become
	// extremities.
	deletePrevsOfSQL = `DELETE FROM mlsmode_forward_extremities fx
		USING mlsmode_event_edges e JOIN mlsmode_events ev ON ev.event_id = e.event_id
		WHERE e.event_id = ANY($1) AND e.edge_kind = 2 AND fx.event_id = e.target_id AND fx.room_id = ev.room_id`
	insertUnreferencedOfSQL = `INSERT INTO mlsmode_forward_extremities (room_id, event_id)
		SELECT ev.room_id, ev.event_id FROM mlsmode_events ev WHERE ev.event_id = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM mlsmode_event_edges e WHERE e.target_id = ev.event_id AND e.edge_kind = 2)
		ON CONFLICT DO NOTHING`
	deleteExtremitiesSQL    = `DELETE FROM mlsmode_forward_extremities WHERE room_id = $1 AND event_id = ANY($2)`
	deleteAllExtremitiesSQL = `DELETE FROM mlsmode_forward_extremities WHERE room_id = $1`
	selectExtremitiesSQL    = `SELECT event_id FROM mlsmode_forward_extremities WHERE room_id = $1 ORDER BY event_id`
)

type extremitiesTable struct {
	insertStmt, insertUnreferencedStmt, deletePrevsOfStmt, insertUnreferencedOfStmt, deleteSomeStmt, deleteAllStmt, selectAllStmt *sql.Stmt
}

func prepareExtremitiesTable(ctx context.Context, db *sql.DB) (*extremitiesTable, error) {
	t := &extremitiesTable{}
	return t, prepareAll(ctx, db, "mlsmode_forward_extremities", map[**sql.Stmt]string{
		&t.insertStmt: insertExtremitySQL, &t.insertUnreferencedStmt: insertUnreferencedSQL,
		&t.deletePrevsOfStmt: deletePrevsOfSQL, &t.insertUnreferencedOfStmt: insertUnreferencedOfSQL, &t.deleteSomeStmt: deleteExtremitiesSQL,
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
	if _, err := stmt(ctx, tx, t.deleteSomeStmt).ExecContext(ctx, roomID, pq.Array(ids)); err != nil {
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

// updateForBatch updates the extremities of the rooms of a batch of new
// accepted events.
func (t *extremitiesTable) updateForBatch(ctx context.Context, tx *sql.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := stmt(ctx, tx, t.deletePrevsOfStmt).ExecContext(ctx, pq.Array(ids)); err != nil {
		return fmt.Errorf("deleting forward extremities of %d events: %w", len(ids), err)
	}
	if _, err := stmt(ctx, tx, t.insertUnreferencedOfStmt).ExecContext(ctx, pq.Array(ids)); err != nil {
		return fmt.Errorf("inserting forward extremities of %d events: %w", len(ids), err)
	}
	return nil
}
