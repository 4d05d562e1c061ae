package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The window of each power index for each pending commit, Unix ms.
const windowsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_pending_commit_windows (
	event_id TEXT NOT NULL,
	power_index INTEGER NOT NULL,
	window_start BIGINT NOT NULL,
	window_end BIGINT NOT NULL,
	PRIMARY KEY (event_id, power_index)
);`

const (
	insertWindowSQL  = `INSERT INTO mlsmode_pending_commit_windows (event_id, power_index, window_start, window_end) VALUES ($1, $2, $3, $4)`
	selectWindowsSQL = `SELECT power_index, window_start, window_end FROM mlsmode_pending_commit_windows
		WHERE event_id = $1 ORDER BY power_index`
)

type windowsTable struct {
	insertStmt, selectAllStmt *sql.Stmt
}

func prepareWindowsTable(ctx context.Context, db *sql.DB) (*windowsTable, error) {
	t := &windowsTable{}
	return t, prepareAll(ctx, db, "mlsmode_pending_commit_windows", map[**sql.Stmt]string{
		&t.insertStmt: insertWindowSQL, &t.selectAllStmt: selectWindowsSQL,
	})
}

func (t *windowsTable) insertWindow(ctx context.Context, tx *sql.Tx, id string, w types.Window) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, id, w.PowerIndex, w.Start, w.End); err != nil {
		return fmt.Errorf("inserting window %d of pending commit %s: %w", w.PowerIndex, id, err)
	}
	return nil
}

func (t *windowsTable) selectWindows(ctx context.Context, tx *sql.Tx, id string) ([]types.Window, error) {
	rows, err := stmt(ctx, tx, t.selectAllStmt).QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("selecting windows of pending commit %s: %w", id, err)
	}
	defer rows.Close()
	var out []types.Window
	for rows.Next() {
		var w types.Window
		if err := rows.Scan(&w.PowerIndex, &w.Start, &w.End); err != nil {
			return nil, fmt.Errorf("scanning windows: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting windows of pending commit %s: %w", id, err)
	}
	return out, nil
}
