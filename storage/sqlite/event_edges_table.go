package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// Edge kinds (edge_kind): 1 an auth event, 2 a prev event, by position.
const edgesSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_event_edges (
	event_id TEXT NOT NULL,
	edge_kind SMALLINT NOT NULL,
	position INTEGER NOT NULL,
	target_id TEXT NOT NULL,
	PRIMARY KEY (event_id, edge_kind, position)
);
CREATE INDEX IF NOT EXISTS mlsmode_event_edges_target_idx ON mlsmode_event_edges (target_id, edge_kind);`

const (
	// $1 event ID, $2 auth event IDs, $3 prev event IDs (JSON arrays).
	insertEdgesSQL = `INSERT INTO mlsmode_event_edges (event_id, edge_kind, position, target_id)
		SELECT $1, 1, a.key, a.value FROM json_each($2) AS a
		UNION ALL
		SELECT $1, 2, p.key, p.value FROM json_each($3) AS p`
	selectReferencesSQL = `SELECT event_id FROM mlsmode_event_edges WHERE target_id = $1 AND edge_kind = 2 ORDER BY event_id`
)

type edgesTable struct {
	insertStmt, selectReferencesStmt *sql.Stmt
}

func prepareEdgesTable(ctx context.Context, db *sql.DB) (*edgesTable, error) {
	t := &edgesTable{}
	return t, prepareAll(ctx, db, "mlsmode_event_edges", map[**sql.Stmt]string{
		&t.insertStmt: insertEdgesSQL, &t.selectReferencesStmt: selectReferencesSQL,
	})
}

func (t *edgesTable) insertEdges(ctx context.Context, tx *sql.Tx, eventID string, auth, prev []string) error {
	if len(auth) == 0 && len(prev) == 0 {
		return nil
	}
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, eventID, jsonArray(auth), jsonArray(prev)); err != nil {
		return fmt.Errorf("inserting edges of %s: %w", eventID, err)
	}
	return nil
}

// selectReferences returns the events naming id as a prev event.
func (t *edgesTable) selectReferences(ctx context.Context, tx *sql.Tx, id string) ([]string, error) {
	rows, err := stmt(ctx, tx, t.selectReferencesStmt).QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("selecting references to %s: %w", id, err)
	}
	return scanStrings(rows, "references to "+id)
}

// jsonArray encodes IDs as a JSON array for json_each.
func jsonArray(ids []string) string {
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		// Marshalling a []string cannot fail.
		panic(err)
	}
	return string(b)
}

// scanStrings reads one string column of every row and closes rows.
func scanStrings(rows *sql.Rows, what string) ([]string, error) {
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("scanning %s: %w", what, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return out, nil
}
