package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The federation send queue; queue_nid orders it.
const outboundQueueSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_outbound_queue (
	queue_nid INTEGER PRIMARY KEY AUTOINCREMENT,
	destination TEXT NOT NULL,
	kind TEXT NOT NULL,
	payload BLOB NOT NULL,
	queued_ts BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mlsmode_outbound_queue_destination_idx ON mlsmode_outbound_queue (destination, queue_nid);`

const (
	insertOutboundSQL = `INSERT INTO mlsmode_outbound_queue (destination, kind, payload, queued_ts)
		VALUES ($1, $2, $3, $4) RETURNING queue_nid`
	selectOutboundSQL = `SELECT queue_nid, kind, payload, queued_ts FROM mlsmode_outbound_queue
		WHERE destination = $1 ORDER BY queue_nid LIMIT $2`
	deleteOutboundSQL     = `DELETE FROM mlsmode_outbound_queue WHERE destination = $1 AND queue_nid <= $2`
	selectDestinationsSQL = `SELECT DISTINCT destination FROM mlsmode_outbound_queue ORDER BY destination`
)

type outboundQueueTable struct {
	insertStmt, selectStmt, deleteStmt, destinationsStmt *sql.Stmt
}

func prepareOutboundQueueTable(ctx context.Context, db *sql.DB) (*outboundQueueTable, error) {
	t := &outboundQueueTable{}
	return t, prepareAll(ctx, db, "mlsmode_outbound_queue", map[**sql.Stmt]string{
		&t.insertStmt: insertOutboundSQL, &t.selectStmt: selectOutboundSQL,
		&t.deleteStmt: deleteOutboundSQL, &t.destinationsStmt: selectDestinationsSQL,
	})
}

func (t *outboundQueueTable) insertItem(ctx context.Context, tx *sql.Tx, it types.OutboundItem) (int64, error) {
	var nid int64
	if err := stmt(ctx, tx, t.insertStmt).QueryRowContext(ctx, it.Destination, it.Kind, it.Payload, it.QueuedTS).Scan(&nid); err != nil {
		return 0, fmt.Errorf("queueing %s for %s: %w", it.Kind, it.Destination, err)
	}
	return nid, nil
}

func (t *outboundQueueTable) selectItems(ctx context.Context, tx *sql.Tx, destination string, limit int) ([]types.OutboundItem, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, destination, limit)
	if err != nil {
		return nil, fmt.Errorf("selecting queue of %s: %w", destination, err)
	}
	defer rows.Close()
	out := []types.OutboundItem{}
	for rows.Next() {
		it := types.OutboundItem{Destination: destination}
		if err := rows.Scan(&it.NID, &it.Kind, &it.Payload, &it.QueuedTS); err != nil {
			return nil, fmt.Errorf("scanning queue of %s: %w", destination, err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting queue of %s: %w", destination, err)
	}
	return out, nil
}

func (t *outboundQueueTable) deleteItems(ctx context.Context, tx *sql.Tx, destination string, upTo int64) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, destination, upTo); err != nil {
		return fmt.Errorf("deleting queue of %s: %w", destination, err)
	}
	return nil
}

func (t *outboundQueueTable) selectDestinations(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := stmt(ctx, tx, t.destinationsStmt).QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("selecting queue destinations: %w", err)
	}
	return scanStrings(rows, "queue destinations")
}
