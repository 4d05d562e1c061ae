package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Access tokens, by SHA-256 hash (hex).
const accessTokensSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_access_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mlsmode_access_tokens_device_idx ON mlsmode_access_tokens (user_id, device_id);`

const (
	insertAccessTokenSQL  = `INSERT INTO mlsmode_access_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)`
	selectAccessTokenSQL  = `SELECT user_id, device_id FROM mlsmode_access_tokens WHERE token_hash = $1`
	deleteAccessTokenSQL  = `DELETE FROM mlsmode_access_tokens WHERE token_hash = $1`
	deleteDeviceTokensSQL = `DELETE FROM mlsmode_access_tokens WHERE user_id = $1 AND device_id = $2`
)

type accessTokensTable struct {
	insertStmt, selectStmt, deleteStmt, deleteDeviceStmt *sql.Stmt
}

func prepareAccessTokensTable(ctx context.Context, db *sql.DB) (*accessTokensTable, error) {
	t := &accessTokensTable{}
	return t, prepareAll(ctx, db, "mlsmode_access_tokens", map[**sql.Stmt]string{
		&t.insertStmt: insertAccessTokenSQL, &t.selectStmt: selectAccessTokenSQL,
		&t.deleteStmt: deleteAccessTokenSQL, &t.deleteDeviceStmt: deleteDeviceTokensSQL,
	})
}

func (t *accessTokensTable) insertToken(ctx context.Context, tx *sql.Tx, hash, userID, deviceID string, ts int64) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, hash, userID, deviceID, ts); err != nil {
		return fmt.Errorf("storing access token of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}

func (t *accessTokensTable) selectToken(ctx context.Context, tx *sql.Tx, hash string) (string, string, error) {
	var u, d string
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, hash).Scan(&u, &d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("access token: %w", types.ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("selecting access token: %w", err)
	}
	return u, d, nil
}

func (t *accessTokensTable) deleteToken(ctx context.Context, tx *sql.Tx, hash string) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, hash); err != nil {
		return fmt.Errorf("deleting access token: %w", err)
	}
	return nil
}

func (t *accessTokensTable) deleteDeviceTokens(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting access tokens of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
