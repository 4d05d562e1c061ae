package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Local accounts.
const usersSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_users (
	user_id TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	created_ts BIGINT NOT NULL
);`

const (
	insertUserSQL = `INSERT INTO mlsmode_users (user_id, password_hash, created_ts) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO NOTHING`
	selectUserSQL = `SELECT password_hash, created_ts FROM mlsmode_users WHERE user_id = $1`
)

type usersTable struct {
	insertStmt, selectStmt *sql.Stmt
}

func prepareUsersTable(ctx context.Context, db *sql.DB) (*usersTable, error) {
	t := &usersTable{}
	return t, prepareAll(ctx, db, "mlsmode_users", map[**sql.Stmt]string{
		&t.insertStmt: insertUserSQL, &t.selectStmt: selectUserSQL,
	})
}

func (t *usersTable) insertUser(ctx context.Context, tx *sql.Tx, u types.User) error {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, u.UserID, u.PasswordHash, u.CreatedTS)
	if err != nil {
		return fmt.Errorf("inserting user %s: %w", u.UserID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("inserting user %s: %w", u.UserID, types.ErrConflict)
	}
	return nil
}

func (t *usersTable) selectUser(ctx context.Context, tx *sql.Tx, userID string) (types.User, error) {
	u := types.User{UserID: userID}
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID).Scan(&u.PasswordHash, &u.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", userID, types.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("selecting user %s: %w", userID, err)
	}
	return u, nil
}
