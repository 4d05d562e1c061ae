package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The key IDs of the one-time key packages claims handed out, per device
// (written in the claim's statement), so that a package handed out is
// never stored, and so handed out, again. Kept when the device is deleted.
const claimedKeyIDsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_claimed_key_ids (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_id TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, key_id)
);`

const (
	// The first of the key IDs ($3) claimed before.
	selectClaimedKeyIDSQL = `SELECT key_id FROM mlsmode_claimed_key_ids
		WHERE user_id = $1 AND device_id = $2 AND key_id = ANY($3) ORDER BY key_id COLLATE "C" LIMIT 1`
)

type claimedKeyIDsTable struct {
	selectStmt *sql.Stmt
}

func prepareClaimedKeyIDsTable(ctx context.Context, db *sql.DB) (*claimedKeyIDsTable, error) {
	t := &claimedKeyIDsTable{}
	return t, prepareAll(ctx, db, "mlsmode_claimed_key_ids", map[**sql.Stmt]string{
		&t.selectStmt: selectClaimedKeyIDSQL,
	})
}

// firstClaimed returns the first (in key ID order) of keyIDs that a claim
// of the device handed out, "" if none.
func (t *claimedKeyIDsTable) firstClaimed(ctx context.Context, tx *sql.Tx, userID, deviceID string, keyIDs []string) (string, error) {
	var id string
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID, deviceID, pq.Array(keyIDs)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("selecting claimed key IDs of %s/%s: %w", userID, deviceID, err)
	}
	return id, nil
}

// claimedError is the refusal of a claimed key ID.
func claimedError(keyID string) error {
	return &types.KeyConflictError{KeyID: keyID, Claimed: true}
}
