package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Signatures uploaded through /keys/signatures/upload: signer_key_id of
// signer_user_id signed target_key_id (a device ID or a master key's
// public key) of target_user_id.
const crossSigningSigsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_cross_signing_sigs (
	target_user_id TEXT NOT NULL,
	target_key_id TEXT NOT NULL,
	signer_user_id TEXT NOT NULL,
	signer_key_id TEXT NOT NULL,
	signature TEXT NOT NULL,
	PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);`

const (
	upsertCrossSigningSigSQL = `INSERT INTO mlsmode_cross_signing_sigs (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`
	selectCrossSigningSigsSQL = `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM mlsmode_cross_signing_sigs
		WHERE target_user_id = $1 ORDER BY target_key_id, signer_user_id, signer_key_id`
	deleteCrossSigningSigsOnSQL = `DELETE FROM mlsmode_cross_signing_sigs WHERE target_user_id = $1 AND target_key_id = $2`
)

type crossSigningSigsTable struct {
	upsertStmt, selectStmt, deleteOnStmt *sql.Stmt
}

func prepareCrossSigningSigsTable(ctx context.Context, db *sql.DB) (*crossSigningSigsTable, error) {
	t := &crossSigningSigsTable{}
	return t, prepareAll(ctx, db, "mlsmode_cross_signing_sigs", map[**sql.Stmt]string{
		&t.upsertStmt: upsertCrossSigningSigSQL, &t.selectStmt: selectCrossSigningSigsSQL, &t.deleteOnStmt: deleteCrossSigningSigsOnSQL,
	})
}

func (t *crossSigningSigsTable) upsertSig(ctx context.Context, tx *sql.Tx, s types.CrossSigningSignature) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
		return fmt.Errorf("storing a signature of %s/%s on %s/%s: %w", s.SignerUserID, s.SignerKeyID, s.TargetUserID, s.TargetKeyID, err)
	}
	return nil
}

func (t *crossSigningSigsTable) selectSigs(ctx context.Context, tx *sql.Tx, targetUserID string) ([]types.CrossSigningSignature, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, targetUserID)
	if err != nil {
		return nil, fmt.Errorf("selecting signatures on keys of %s: %w", targetUserID, err)
	}
	defer rows.Close()
	var out []types.CrossSigningSignature
	for rows.Next() {
		s := types.CrossSigningSignature{TargetUserID: targetUserID}
		if err := rows.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, fmt.Errorf("scanning signatures: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting signatures on keys of %s: %w", targetUserID, err)
	}
	return out, nil
}

// deleteSigsOn deletes the signatures on one key or device of a user (a
// deleted device's).
func (t *crossSigningSigsTable) deleteSigsOn(ctx context.Context, tx *sql.Tx, targetUserID, targetKeyID string) error {
	if _, err := stmt(ctx, tx, t.deleteOnStmt).ExecContext(ctx, targetUserID, targetKeyID); err != nil {
		return fmt.Errorf("deleting signatures on %s/%s: %w", targetUserID, targetKeyID, err)
	}
	return nil
}
