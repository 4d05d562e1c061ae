package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// Each device's uploaded device keys: the signed JSON object.
const deviceKeysSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_device_keys (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_json BYTEA NOT NULL,
	PRIMARY KEY (user_id, device_id)
);`

const (
	upsertDeviceKeysSQL = `INSERT INTO mlsmode_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`
	selectDeviceKeysSQL = `SELECT device_id, key_json FROM mlsmode_device_keys WHERE user_id = $1 ORDER BY device_id`
	deleteDeviceKeysSQL = `DELETE FROM mlsmode_device_keys WHERE user_id = $1 AND device_id = $2`
)

type deviceKeysTable struct {
	upsertStmt, selectStmt, deleteStmt *sql.Stmt
}

func prepareDeviceKeysTable(ctx context.Context, db *sql.DB) (*deviceKeysTable, error) {
	t := &deviceKeysTable{}
	return t, prepareAll(ctx, db, "mlsmode_device_keys", map[**sql.Stmt]string{
		&t.upsertStmt: upsertDeviceKeysSQL, &t.selectStmt: selectDeviceKeysSQL, &t.deleteStmt: deleteDeviceKeysSQL,
	})
}

func (t *deviceKeysTable) upsertKeys(ctx context.Context, tx *sql.Tx, userID, deviceID string, js []byte) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, userID, deviceID, js); err != nil {
		return fmt.Errorf("storing device keys of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}

// selectKeys returns a user's device keys by device ID, in device order.
func (t *deviceKeysTable) selectKeys(ctx context.Context, tx *sql.Tx, userID string) ([]string, map[string][]byte, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, userID)
	if err != nil {
		return nil, nil, fmt.Errorf("selecting device keys of %s: %w", userID, err)
	}
	defer rows.Close()
	var order []string
	out := map[string][]byte{}
	for rows.Next() {
		var d string
		var js []byte
		if err := rows.Scan(&d, &js); err != nil {
			return nil, nil, fmt.Errorf("scanning device keys: %w", err)
		}
		order = append(order, d)
		out[d] = js
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("selecting device keys of %s: %w", userID, err)
	}
	return order, out, nil
}

func (t *deviceKeysTable) deleteKeys(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting device keys of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
