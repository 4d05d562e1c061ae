package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// Transaction IDs received per origin server.
const federationTxnsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_federation_transactions (
	origin TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	PRIMARY KEY (origin, txn_id)
);`

const insertFederationTxnSQL = `INSERT INTO mlsmode_federation_transactions (origin, txn_id, received_ts)
	VALUES ($1, $2, $3) ON CONFLICT (origin, txn_id) DO NOTHING`

type federationTxnsTable struct {
	insertStmt *sql.Stmt
}

func prepareFederationTxnsTable(ctx context.Context, db *sql.DB) (*federationTxnsTable, error) {
	t := &federationTxnsTable{}
	return t, prepareAll(ctx, db, "mlsmode_federation_transactions", map[**sql.Stmt]string{
		&t.insertStmt: insertFederationTxnSQL,
	})
}

// insertTxn records a transaction; false if seen before.
func (t *federationTxnsTable) insertTxn(ctx context.Context, tx *sql.Tx, origin, txnID string, ts int64) (bool, error) {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, origin, txnID, ts)
	if err != nil {
		return false, fmt.Errorf("recording transaction %s from %s: %w", txnID, origin, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("recording transaction %s from %s: %w", txnID, origin, err)
	}
	return n == 1, nil
}
