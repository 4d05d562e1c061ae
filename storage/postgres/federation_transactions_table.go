package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Transaction IDs received per origin server.
const federationTxnsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_federation_transactions (
	origin TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	PRIMARY KEY (origin, txn_id)
);`

// Migration 7 keeps each transaction's answer, so a retried transaction
// is answered as the first time without being applied again.
const federationTxnResultDelta = `ALTER TABLE mlsmode_federation_transactions ADD COLUMN IF NOT EXISTS result BYTEA;`

const (
	insertFederationTxnSQL = `INSERT INTO mlsmode_federation_transactions (origin, txn_id, received_ts)
	VALUES ($1, $2, $3) ON CONFLICT (origin, txn_id) DO NOTHING`
	upsertFederationTxnResultSQL = `INSERT INTO mlsmode_federation_transactions (origin, txn_id, received_ts, result)
	VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO UPDATE SET result = excluded.result`
	selectFederationTxnResultSQL = `SELECT result FROM mlsmode_federation_transactions
	WHERE origin = $1 AND txn_id = $2 AND result IS NOT NULL`
)

type federationTxnsTable struct {
	insertStmt, upsertResultStmt, selectResultStmt *sql.Stmt
}

func prepareFederationTxnsTable(ctx context.Context, db *sql.DB) (*federationTxnsTable, error) {
	t := &federationTxnsTable{}
	return t, prepareAll(ctx, db, "mlsmode_federation_transactions", map[**sql.Stmt]string{
		&t.insertStmt: insertFederationTxnSQL, &t.upsertResultStmt: upsertFederationTxnResultSQL,
		&t.selectResultStmt: selectFederationTxnResultSQL,
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

// upsertResult records a transaction with its answer.
func (t *federationTxnsTable) upsertResult(ctx context.Context, tx *sql.Tx, origin, txnID string, result []byte, ts int64) error {
	if _, err := stmt(ctx, tx, t.upsertResultStmt).ExecContext(ctx, origin, txnID, ts, result); err != nil {
		return fmt.Errorf("recording the answer to transaction %s from %s: %w", txnID, origin, err)
	}
	return nil
}

// selectResult returns a transaction's recorded answer.
func (t *federationTxnsTable) selectResult(ctx context.Context, tx *sql.Tx, origin, txnID string) ([]byte, error) {
	var result []byte
	err := stmt(ctx, tx, t.selectResultStmt).QueryRowContext(ctx, origin, txnID).Scan(&result)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("answer to transaction %s from %s: %w", txnID, origin, types.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the answer to transaction %s from %s: %w", txnID, origin, err)
	}
	return result, nil
}
