package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Users' /sync filters; filter_nid is the filter ID.
const filtersSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_filters (
	filter_nid INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id TEXT NOT NULL,
	filter_json BLOB NOT NULL
);`

const (
	insertFilterSQL = `INSERT INTO mlsmode_filters (user_id, filter_json) VALUES ($1, $2) RETURNING filter_nid`
	selectFilterSQL = `SELECT filter_json FROM mlsmode_filters WHERE user_id = $1 AND filter_nid = $2`
)

type filtersTable struct {
	insertStmt, selectStmt *sql.Stmt
}

func prepareFiltersTable(ctx context.Context, db *sql.DB) (*filtersTable, error) {
	t := &filtersTable{}
	return t, prepareAll(ctx, db, "mlsmode_filters", map[**sql.Stmt]string{
		&t.insertStmt: insertFilterSQL, &t.selectStmt: selectFilterSQL,
	})
}

func (t *filtersTable) insertFilter(ctx context.Context, tx *sql.Tx, userID string, js []byte) (string, error) {
	var nid int64
	if err := stmt(ctx, tx, t.insertStmt).QueryRowContext(ctx, userID, js).Scan(&nid); err != nil {
		return "", fmt.Errorf("storing filter of %s: %w", userID, err)
	}
	return strconv.FormatInt(nid, 10), nil
}

func (t *filtersTable) selectFilter(ctx context.Context, tx *sql.Tx, userID, filterID string) ([]byte, error) {
	nid, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || strconv.FormatInt(nid, 10) != filterID {
		return nil, fmt.Errorf("filter %q of %s: %w", filterID, userID, types.ErrNotFound)
	}
	var js []byte
	err = stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID, nid).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("filter %q of %s: %w", filterID, userID, types.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("selecting filter %q of %s: %w", filterID, userID, err)
	}
	if js == nil {
		js = []byte{}
	}
	return js, nil
}
