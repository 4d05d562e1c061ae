package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The to-device transactions (PUT /sendToDevice/{eventType}/{txnId}) each
// sending device has run, so that a replay delivers nothing.
const toDeviceTxnsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_to_device_txns (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, txn_id)
);`

const (
	insertToDeviceTxnSQL = `INSERT INTO mlsmode_to_device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`
	deleteDeviceToDeviceTxnsSQL = `DELETE FROM mlsmode_to_device_txns WHERE user_id = $1 AND device_id = $2`
)

type toDeviceTxnsTable struct {
	insertStmt, deleteDeviceStmt *sql.Stmt
}

func prepareToDeviceTxnsTable(ctx context.Context, db *sql.DB) (*toDeviceTxnsTable, error) {
	t := &toDeviceTxnsTable{}
	return t, prepareAll(ctx, db, "mlsmode_to_device_txns", map[**sql.Stmt]string{
		&t.insertStmt: insertToDeviceTxnSQL, &t.deleteDeviceStmt: deleteDeviceToDeviceTxnsSQL,
	})
}

// insertTxn records a transaction; false if it was recorded before (a
// concurrent insert of the same one waits for the other transaction to end).
func (t *toDeviceTxnsTable) insertTxn(ctx context.Context, tx *sql.Tx, txn types.ClientTxn) (bool, error) {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, txn.UserID, txn.DeviceID, txn.TxnID)
	if err != nil {
		return false, fmt.Errorf("recording to-device transaction %s of %s/%s: %w", txn.TxnID, txn.UserID, txn.DeviceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("recording to-device transaction %s of %s/%s: %w", txn.TxnID, txn.UserID, txn.DeviceID, err)
	}
	return n == 1, nil
}

// deleteDevice forgets a sending device's transactions.
func (t *toDeviceTxnsTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting to-device transactions of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
