package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// To-device inboxes; stream_pos is the position of each message.
const toDeviceSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_to_device (
	stream_pos BIGSERIAL PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	sender TEXT NOT NULL,
	event_type TEXT NOT NULL,
	content BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS mlsmode_to_device_inbox_idx ON mlsmode_to_device (user_id, device_id, stream_pos);`

const (
	insertToDeviceSQL = `INSERT INTO mlsmode_to_device (user_id, device_id, sender, event_type, content)
		VALUES ($1, $2, $3, $4, $5) RETURNING stream_pos`
	selectToDeviceSQL = `SELECT stream_pos, sender, event_type, content FROM mlsmode_to_device
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 ORDER BY stream_pos LIMIT $4`
	deleteToDeviceSQL       = `DELETE FROM mlsmode_to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3`
	deleteDeviceToDeviceSQL = `DELETE FROM mlsmode_to_device WHERE user_id = $1 AND device_id = $2`
)

type toDeviceTable struct {
	insertStmt, selectStmt, deleteStmt, deleteDeviceStmt *sql.Stmt
}

func prepareToDeviceTable(ctx context.Context, db *sql.DB) (*toDeviceTable, error) {
	t := &toDeviceTable{}
	return t, prepareAll(ctx, db, "mlsmode_to_device", map[**sql.Stmt]string{
		&t.deleteDeviceStmt: deleteDeviceToDeviceSQL,
		&t.insertStmt:       insertToDeviceSQL, &t.selectStmt: selectToDeviceSQL, &t.deleteStmt: deleteToDeviceSQL,
	})
}

func (t *toDeviceTable) insertMessage(ctx context.Context, tx *sql.Tx, userID, deviceID string, m types.ToDeviceMessage) (int64, error) {
	var pos int64
	if err := stmt(ctx, tx, t.insertStmt).QueryRowContext(ctx, userID, deviceID, m.Sender, m.Type, m.Content).Scan(&pos); err != nil {
		return 0, fmt.Errorf("sending to-device message to %s/%s: %w", userID, deviceID, err)
	}
	return pos, nil
}

func (t *toDeviceTable) selectMessages(ctx context.Context, tx *sql.Tx, userID, deviceID string, after int64, limit int) ([]types.ToDeviceMessage, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, userID, deviceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("selecting to-device messages of %s/%s: %w", userID, deviceID, err)
	}
	defer rows.Close()
	out := []types.ToDeviceMessage{}
	for rows.Next() {
		var m types.ToDeviceMessage
		if err := rows.Scan(&m.Pos, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, fmt.Errorf("scanning to-device messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting to-device messages of %s/%s: %w", userID, deviceID, err)
	}
	return out, nil
}

func (t *toDeviceTable) deleteMessages(ctx context.Context, tx *sql.Tx, userID, deviceID string, upTo int64) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, userID, deviceID, upTo); err != nil {
		return fmt.Errorf("deleting to-device messages of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}

// deleteDevice deletes everything of a device.
func (t *toDeviceTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting to-device messages of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
