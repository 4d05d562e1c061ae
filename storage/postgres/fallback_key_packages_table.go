package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// One fallback key package per device and algorithm; a claim marks it used
// and keeps it.
const fallbackKeysSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_fallback_key_packages (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_id TEXT NOT NULL,
	key_package TEXT NOT NULL,
	used BOOLEAN NOT NULL DEFAULT FALSE,
	PRIMARY KEY (user_id, device_id, algorithm)
);`

const (
	upsertFallbackKeySQL = `INSERT INTO mlsmode_fallback_key_packages (user_id, device_id, algorithm, key_id, key_package, used)
		VALUES ($1, $2, $3, $4, $5, FALSE)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
		SET key_id = excluded.key_id, key_package = excluded.key_package, used = FALSE`
	claimFallbackKeySQL = `UPDATE mlsmode_fallback_key_packages SET used = TRUE
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_package`
	selectUnusedFallbackSQL = `SELECT algorithm FROM mlsmode_fallback_key_packages
		WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm`
	selectFallbackKeyIDsSQL     = `SELECT key_id FROM mlsmode_fallback_key_packages WHERE user_id = $1 AND device_id = $2`
	deleteDeviceFallbackKeysSQL = `DELETE FROM mlsmode_fallback_key_packages WHERE user_id = $1 AND device_id = $2`
)

type fallbackKeysTable struct {
	upsertStmt, claimStmt, selectUnusedStmt, selectIDsStmt, deleteDeviceStmt *sql.Stmt
}

func prepareFallbackKeysTable(ctx context.Context, db *sql.DB) (*fallbackKeysTable, error) {
	t := &fallbackKeysTable{}
	return t, prepareAll(ctx, db, "mlsmode_fallback_key_packages", map[**sql.Stmt]string{
		&t.deleteDeviceStmt: deleteDeviceFallbackKeysSQL,
		&t.upsertStmt:       upsertFallbackKeySQL, &t.claimStmt: claimFallbackKeySQL,
		&t.selectUnusedStmt: selectUnusedFallbackSQL, &t.selectIDsStmt: selectFallbackKeyIDsSQL,
	})
}

func (t *fallbackKeysTable) upsertKey(ctx context.Context, tx *sql.Tx, userID, deviceID string, kp types.KeyPackage) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, userID, deviceID, kp.Algorithm, kp.KeyID, kp.Value); err != nil {
		return fmt.Errorf("storing fallback key package %s: %w", kp.KeyID, err)
	}
	return nil
}

// claimKey marks the fallback package used and returns it, ok false if
// the device has none for the algorithm.
func (t *fallbackKeysTable) claimKey(ctx context.Context, tx *sql.Tx, userID, deviceID, algorithm string) (types.KeyPackage, bool, error) {
	kp := types.KeyPackage{Algorithm: algorithm}
	err := stmt(ctx, tx, t.claimStmt).QueryRowContext(ctx, userID, deviceID, algorithm).Scan(&kp.KeyID, &kp.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return kp, false, nil
	}
	if err != nil {
		return kp, false, fmt.Errorf("claiming fallback key package of %s/%s: %w", userID, deviceID, err)
	}
	return kp, true, nil
}

func (t *fallbackKeysTable) selectUnused(ctx context.Context, tx *sql.Tx, userID, deviceID string) ([]string, error) {
	rows, err := stmt(ctx, tx, t.selectUnusedStmt).QueryContext(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("selecting unused fallback key packages of %s/%s: %w", userID, deviceID, err)
	}
	return scanStrings(rows, "unused fallback algorithms")
}

func (t *fallbackKeysTable) selectKeyIDs(ctx context.Context, tx *sql.Tx, userID, deviceID string) ([]string, error) {
	rows, err := stmt(ctx, tx, t.selectIDsStmt).QueryContext(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("selecting fallback key package IDs of %s/%s: %w", userID, deviceID, err)
	}
	return scanStrings(rows, "fallback key package IDs")
}

// deleteDevice deletes everything of a device.
func (t *fallbackKeysTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting fallback key packages of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
