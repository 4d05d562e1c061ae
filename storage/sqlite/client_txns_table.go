package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The client transaction (user, device, transaction ID) that sent each
// event through the client API here.
const clientTxnsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_client_txns (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX IF NOT EXISTS mlsmode_client_txns_event_idx ON mlsmode_client_txns (event_id);`

const (
	insertClientTxnSQL = `INSERT INTO mlsmode_client_txns (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`
	selectClientTxnEventSQL = `SELECT event_id FROM mlsmode_client_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`
	selectEventClientTxnSQL = `SELECT user_id, device_id, txn_id FROM mlsmode_client_txns WHERE event_id = $1
		ORDER BY user_id, device_id, txn_id LIMIT 1`
	deleteDeviceClientTxnsSQL = `DELETE FROM mlsmode_client_txns WHERE user_id = $1 AND device_id = $2`
)

type clientTxnsTable struct {
	insertStmt, selectEventStmt, selectTxnStmt, deleteDeviceStmt *sql.Stmt
}

func prepareClientTxnsTable(ctx context.Context, db *sql.DB) (*clientTxnsTable, error) {
	t := &clientTxnsTable{}
	return t, prepareAll(ctx, db, "mlsmode_client_txns", map[**sql.Stmt]string{
		&t.insertStmt: insertClientTxnSQL, &t.selectEventStmt: selectClientTxnEventSQL, &t.selectTxnStmt: selectEventClientTxnSQL,
		&t.deleteDeviceStmt: deleteDeviceClientTxnsSQL,
	})
}

// deleteDevice forgets the transactions a device sent.
func (t *clientTxnsTable) deleteDevice(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteDeviceStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting client transactions of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}

// insertTxn records the transaction that sent eventID; it fails with
// ErrDuplicateTxn if the transaction was recorded before.
func (t *clientTxnsTable) insertTxn(ctx context.Context, tx *sql.Tx, txn types.ClientTxn, eventID string) error {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, txn.UserID, txn.DeviceID, txn.TxnID, eventID)
	if err != nil {
		return fmt.Errorf("recording client transaction %s of %s/%s: %w", txn.TxnID, txn.UserID, txn.DeviceID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("client transaction %s of %s/%s: %w", txn.TxnID, txn.UserID, txn.DeviceID, types.ErrDuplicateTxn)
	}
	return nil
}

func (t *clientTxnsTable) selectEvent(ctx context.Context, tx *sql.Tx, userID, deviceID, txnID string) (string, error) {
	var id string
	err := stmt(ctx, tx, t.selectEventStmt).QueryRowContext(ctx, userID, deviceID, txnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("client transaction %s of %s/%s: %w", txnID, userID, deviceID, types.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("selecting client transaction %s of %s/%s: %w", txnID, userID, deviceID, err)
	}
	return id, nil
}

func (t *clientTxnsTable) selectTxn(ctx context.Context, tx *sql.Tx, eventID string) (types.ClientTxn, error) {
	var c types.ClientTxn
	err := stmt(ctx, tx, t.selectTxnStmt).QueryRowContext(ctx, eventID).Scan(&c.UserID, &c.DeviceID, &c.TxnID)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("client transaction of %s: %w", eventID, types.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("selecting client transaction of %s: %w", eventID, err)
	}
	return c, nil
}
