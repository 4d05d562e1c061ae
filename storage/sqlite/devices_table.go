package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Users' devices.
const devicesSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_devices (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	display_name TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id)
);`

const (
	upsertDeviceSQL = `INSERT INTO mlsmode_devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name`
	selectDevicesSQL = `SELECT device_id, display_name, created_ts FROM mlsmode_devices WHERE user_id = $1 ORDER BY device_id`
	deleteDeviceSQL  = `DELETE FROM mlsmode_devices WHERE user_id = $1 AND device_id = $2`
)

type devicesTable struct {
	upsertStmt, selectStmt, deleteStmt *sql.Stmt
}

func prepareDevicesTable(ctx context.Context, db *sql.DB) (*devicesTable, error) {
	t := &devicesTable{}
	return t, prepareAll(ctx, db, "mlsmode_devices", map[**sql.Stmt]string{
		&t.upsertStmt: upsertDeviceSQL, &t.selectStmt: selectDevicesSQL, &t.deleteStmt: deleteDeviceSQL,
	})
}

func (t *devicesTable) upsertDevice(ctx context.Context, tx *sql.Tx, d types.Device) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, d.UserID, d.DeviceID, d.DisplayName, d.CreatedTS); err != nil {
		return fmt.Errorf("storing device %s of %s: %w", d.DeviceID, d.UserID, err)
	}
	return nil
}

func (t *devicesTable) selectDevices(ctx context.Context, tx *sql.Tx, userID string) ([]types.Device, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("selecting devices of %s: %w", userID, err)
	}
	defer rows.Close()
	out := []types.Device{}
	for rows.Next() {
		d := types.Device{UserID: userID}
		if err := rows.Scan(&d.DeviceID, &d.DisplayName, &d.CreatedTS); err != nil {
			return nil, fmt.Errorf("scanning devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting devices of %s: %w", userID, err)
	}
	return out, nil
}

func (t *devicesTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting device %s of %s: %w", deviceID, userID, err)
	}
	return nil
}
