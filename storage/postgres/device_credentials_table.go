package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// Each device's MLS credential per algorithm (SPEC-NOTES §9).
const credentialsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_device_credentials (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	credential TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id, algorithm)
);`

const (
	insertCredentialSQL  = `INSERT INTO mlsmode_device_credentials (user_id, device_id, algorithm, credential) VALUES ($1, $2, $3, $4)`
	selectCredentialsSQL = `SELECT device_id, algorithm, credential FROM mlsmode_device_credentials WHERE user_id = $1`
	deleteCredentialsSQL = `DELETE FROM mlsmode_device_credentials WHERE user_id = $1 AND device_id = $2`
)

type credentialsTable struct {
	insertStmt, selectStmt, deleteStmt *sql.Stmt
}

func prepareCredentialsTable(ctx context.Context, db *sql.DB) (*credentialsTable, error) {
	t := &credentialsTable{}
	return t, prepareAll(ctx, db, "mlsmode_device_credentials", map[**sql.Stmt]string{
		&t.insertStmt: insertCredentialSQL, &t.selectStmt: selectCredentialsSQL, &t.deleteStmt: deleteCredentialsSQL,
	})
}

func (t *credentialsTable) insertCredential(ctx context.Context, tx *sql.Tx, userID, deviceID, alg, cred string) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, userID, deviceID, alg, cred); err != nil {
		return fmt.Errorf("storing %s credential of %s/%s: %w", alg, userID, deviceID, err)
	}
	return nil
}

// selectCredentials returns a user's credentials, device → algorithm →
// credential.
func (t *credentialsTable) selectCredentials(ctx context.Context, tx *sql.Tx, userID string) (map[string]map[string]string, error) {
	rows, err := stmt(ctx, tx, t.selectStmt).QueryContext(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("selecting credentials of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var d, alg, cred string
		if err := rows.Scan(&d, &alg, &cred); err != nil {
			return nil, fmt.Errorf("scanning credentials: %w", err)
		}
		if out[d] == nil {
			out[d] = map[string]string{}
		}
		out[d][alg] = cred
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting credentials of %s: %w", userID, err)
	}
	return out, nil
}

func (t *credentialsTable) deleteCredentials(ctx context.Context, tx *sql.Tx, userID, deviceID string) error {
	if _, err := stmt(ctx, tx, t.deleteStmt).ExecContext(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting credentials of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
