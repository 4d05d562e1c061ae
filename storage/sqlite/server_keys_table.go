package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Servers' ed25519 signing keys.
const serverKeysSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_server_keys (
	server_name TEXT NOT NULL,
	key_id TEXT NOT NULL,
	public_key BLOB NOT NULL,
	valid_until_ts BIGINT NOT NULL,
	expired_ts BIGINT NOT NULL,
	PRIMARY KEY (server_name, key_id)
);`

const (
	upsertServerKeySQL = `INSERT INTO mlsmode_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server_name, key_id) DO UPDATE
		SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts`
	selectServerKeySQL = `SELECT public_key, valid_until_ts, expired_ts FROM mlsmode_server_keys WHERE server_name = $1 AND key_id = $2`
)

type serverKeysTable struct {
	upsertStmt, selectStmt *sql.Stmt
}

func prepareServerKeysTable(ctx context.Context, db *sql.DB) (*serverKeysTable, error) {
	t := &serverKeysTable{}
	return t, prepareAll(ctx, db, "mlsmode_server_keys", map[**sql.Stmt]string{
		&t.upsertStmt: upsertServerKeySQL, &t.selectStmt: selectServerKeySQL,
	})
}

func (t *serverKeysTable) upsertKey(ctx context.Context, tx *sql.Tx, k types.ServerKey) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, k.ServerName, k.KeyID, k.PublicKey, k.ValidUntilTS, k.ExpiredTS); err != nil {
		return fmt.Errorf("storing key %s of %s: %w", k.KeyID, k.ServerName, err)
	}
	return nil
}

func (t *serverKeysTable) selectKey(ctx context.Context, tx *sql.Tx, server, keyID string) (types.ServerKey, error) {
	k := types.ServerKey{ServerName: server, KeyID: keyID}
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, server, keyID).Scan(&k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS)
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("key %s of %s: %w", keyID, server, types.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("selecting key %s of %s: %w", keyID, server, err)
	}
	return k, nil
}
