package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// One-time key packages; a claim deletes the package it hands out.
const oneTimeKeysSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_one_time_key_packages (
	key_nid INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_id TEXT NOT NULL,
	key_package TEXT NOT NULL,
	UNIQUE (user_id, device_id, key_id)
);
CREATE INDEX IF NOT EXISTS mlsmode_one_time_key_packages_claim_idx
	ON mlsmode_one_time_key_packages (user_id, device_id, algorithm, key_nid);`

const (
	insertOneTimeKeySQL = `INSERT INTO mlsmode_one_time_key_packages (user_id, device_id, algorithm, key_id, key_package)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, key_id) DO NOTHING`
	selectOneTimeKeySQL = `SELECT algorithm, key_package FROM mlsmode_one_time_key_packages
		WHERE user_id = $1 AND device_id = $2 AND key_id = $3`
	// The oldest package not being claimed by another transaction, deleted
	// and returned in one statement: concurrent claims never get the same.
	claimOneTimeKeySQL = `DELETE FROM mlsmode_one_time_key_packages WHERE key_nid = (
		SELECT key_nid FROM mlsmode_one_time_key_packages
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
		ORDER BY key_nid LIMIT 1
	) RETURNING key_id, key_package`
	countOneTimeKeysSQL = `SELECT algorithm, COUNT(*) FROM mlsmode_one_time_key_packages
		WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`
	selectOneTimeKeyIDsSQL     = `SELECT key_id FROM mlsmode_one_time_key_packages WHERE user_id = $1 AND device_id = $2`
	deleteDeviceOneTimeKeysSQL = `DELETE FROM mlsmode_one_time_key_packages WHERE user_id = $1 AND device_id = $2`
)

type oneTimeKeysTable struct {
	insertStmt, selectKeyStmt, claimStmt, countStmt, selectIDsStmt, deleteDeviceStmt *sql.Stmt
}

func prepareOneTimeKeysTable(ctx context.Context, db *sql.DB) (*oneTimeKeysTable, error) {
	t := &oneTimeKeysTable{}
	return t, prepareAll(ctx, db, "mlsmode_one_time_key_packages", map[**sql.Stmt]string{
		&t.deleteDeviceStmt: deleteDeviceOneTimeKeysSQL,
		&t.insertStmt:       insertOneTimeKeySQL, &t.selectKeyStmt: selectOneTimeKeySQL, &t.claimStmt: claimOneTimeKeySQL,
		&t.countStmt: countOneTimeKeysSQL, &t.selectIDsStmt: selectOneTimeKeyIDsSQL,
	})
}

// insertKey stores a package; an existing key ID with another algorithm or
// value is a *types.KeyConflictError (ErrConflict). The caller checks
// claimed key IDs.
func (t *oneTimeKeysTable) insertKey(ctx context.Context, tx *sql.Tx, userID, deviceID string, kp types.KeyPackage) error {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, userID, deviceID, kp.Algorithm, kp.KeyID, kp.Value)
	if err != nil {
		return fmt.Errorf("inserting one-time key package %s: %w", kp.KeyID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	var alg, val string
	err = stmt(ctx, tx, t.selectKeyStmt).QueryRowContext(ctx, userID, deviceID, kp.KeyID).Scan(&alg, &val)
	if errors.Is(err, sql.ErrNoRows) {
		// Claimed between the two statements: store it again.
		return t.insertKey(ctx, tx, userID, deviceID, kp)
	}
	if err != nil {
		return fmt.Errorf("selecting one-time key package %s: %w", kp.KeyID, err)
	}
	if alg != kp.Algorithm || val != kp.Value {
		return &types.KeyConflictError{KeyID: kp.KeyID}
	}
	return nil
}

// claimKey deletes and returns one package, ok false if none is left.
func (t *oneTimeKeysTable) claimKey(ctx context.Context, tx *sql.Tx, userID, deviceID, algorithm string) (types.KeyPackage, bool, error) {
	kp := types.KeyPackage{Algorithm: algorithm}
	err := stmt(ctx, tx, t.claimStmt).QueryRowContext(ctx, userID, deviceID, algorithm).Scan(&kp.KeyID, &kp.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return kp, false, nil
	}
	if err != nil {
		return kp, false, fmt.Errorf("claiming one-time key package of %s/%s: %w", userID, deviceID, err)
	}
	return kp, true, nil
}

func (t *oneTimeKeysTable) countKeys(ctx context.Context, tx *sql.Tx, userID, deviceID string) (map[string]int, error) {
	rows, err := stmt(ctx, tx, t.countStmt).QueryContext(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("counting one-time key packages of %s/%s: %w", userID, deviceID, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("scanning one-time key package counts: %w", err)
		}
		out[alg] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting one-time key packages of %s/%s: %w", userID, deviceID, err)
	}
	return out, nil
}

func (t *oneTimeKeysTable) selectKeyIDs(ctx context.Context, tx *sql.Tx, userID, deviceID string) ([]string, error) {
	rows, err := stmt(ctx, tx, t.selectIDsStmt).QueryContext(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("selecting one-time key package IDs of %s/%s: %w", userID, deviceID, err)
	}
	return scanStrings(rows, "one-time key package IDs")
}

// deleteDevice deletes everything of a device.
func (t *oneTimeKeysTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting one-time key packages of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
