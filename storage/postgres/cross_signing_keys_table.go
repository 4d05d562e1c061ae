package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// Each user's cross-signing keys, one per usage (master, self_signing,
// user_signing): the uploaded CrossSigningKey object as given.
const crossSigningKeysSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_cross_signing_keys (
	user_id TEXT NOT NULL,
	usage TEXT NOT NULL,
	key_json BYTEA NOT NULL,
	PRIMARY KEY (user_id, usage)
);`

const (
	upsertCrossSigningKeySQL = `INSERT INTO mlsmode_cross_signing_keys (user_id, usage, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, usage) DO UPDATE SET key_json = excluded.key_json`
	selectCrossSigningKeysSQL = `SELECT usage, key_json FROM mlsmode_cross_signing_keys WHERE user_id = $1`
)

type crossSigningKeysTable struct {
	upsertStmt, selectStmt *sql.Stmt
}

func prepareCrossSigningKeysTable(ctx context.Context, db *sql.DB) (*crossSigningKeysTable, error) {
	t := &crossSigningKeysTable{}
	return t, prepareAll(ctx, db, "mlsmode_cross_signing_keys", map[**sql.Stmt]string{
		&t.upsertStmt: upsertCrossSigningKeySQL, &t.selectStmt: selectCrossSigningKeysSQL,
	})
}

func (t *crossSigningKeysTable) upsertKey(ctx context.Context, tx *sql.Tx, userID, usage string, js []byte) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, userID, usage, js); err != nil {
		return fmt.Errorf("storing the %s cross-signing key of %s: %w", usage, userID, err)
	}
	return nil
}

// selectKeys returns a user's keys, usage -> JSON.
func (t *crossSigningKeysTable) selectKeys(ctx context.Context, tx *sql.Tx, userID string) (map[string][]byte, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("selecting cross-signing keys of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var usage string
		var js []byte
		if err := rows.Scan(&usage, &js); err != nil {
			return nil, fmt.Errorf("scanning cross-signing keys: %w", err)
		}
		out[usage] = js
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting cross-signing keys of %s: %w", userID, err)
	}
	return out, nil
}
