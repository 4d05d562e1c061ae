package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The key IDs of the one-time key packages claims handed out, per device
// (written in the claim's transaction), so that a package handed out is
// never stored, and so handed out, again. Kept when the device is deleted.
const claimedKeyIDsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_claimed_key_ids (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_id TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, key_id)
);`

const (
	insertClaimedKeyIDSQL = `INSERT INTO mlsmode_claimed_key_ids (user_id, device_id, key_id) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id, key_id) DO NOTHING`
	selectClaimedKeyIDSQL = `SELECT 1 FROM mlsmode_claimed_key_ids WHERE user_id = $1 AND device_id = $2 AND key_id = $3`
)

type claimedKeyIDsTable struct {
	insertStmt, selectStmt *sql.Stmt
}

func prepareClaimedKeyIDsTable(ctx context.Context, db *sql.DB) (*claimedKeyIDsTable, error) {
	t := &claimedKeyIDsTable{}
	return t, prepareAll(ctx, db, "mlsmode_claimed_key_ids", map[**sql.Stmt]string{
		&t.insertStmt: insertClaimedKeyIDSQL, &t.selectStmt: selectClaimedKeyIDSQL,
	})
}

// insertClaimed records a key ID handed out by a claim.
func (t *claimedKeyIDsTable) insertClaimed(ctx context.Context, tx *sql.Tx, userID, deviceID, keyID string) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, userID, deviceID, keyID); err != nil {
		return fmt.Errorf("recording claimed key ID %s of %s/%s: %w", keyID, userID, deviceID, err)
	}
	return nil
}

// isClaimed reports whether a claim of the device handed out keyID.
func (t *claimedKeyIDsTable) isClaimed(ctx context.Context, tx *sql.Tx, userID, deviceID, keyID string) (bool, error) {
	var one int
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID, deviceID, keyID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("selecting claimed key ID %s of %s/%s: %w", keyID, userID, deviceID, err)
	}
	return true, nil
}
