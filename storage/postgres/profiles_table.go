package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Local users' profiles; a user without a row has an empty profile.
const profilesSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_profiles (
	user_id TEXT PRIMARY KEY REFERENCES mlsmode_users (user_id),
	display_name TEXT NOT NULL DEFAULT '',
	avatar_url TEXT NOT NULL DEFAULT ''
);`

const (
	// Both upserts write nothing for an unknown user.
	upsertDisplayNameSQL = `INSERT INTO mlsmode_profiles (user_id, display_name)
		SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM mlsmode_users WHERE user_id = $1)
		ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name`
	upsertAvatarURLSQL = `INSERT INTO mlsmode_profiles (user_id, avatar_url)
		SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM mlsmode_users WHERE user_id = $1)
		ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url`
	selectProfileSQL = `SELECT COALESCE(p.display_name, ''), COALESCE(p.avatar_url, '')
		FROM mlsmode_users u LEFT JOIN mlsmode_profiles p ON p.user_id = u.user_id WHERE u.user_id = $1`
)

type profilesTable struct {
	displayNameStmt, avatarURLStmt, selectStmt *sql.Stmt
}

func prepareProfilesTable(ctx context.Context, db *sql.DB) (*profilesTable, error) {
	t := &profilesTable{}
	return t, prepareAll(ctx, db, "mlsmode_profiles", map[**sql.Stmt]string{
		&t.displayNameStmt: upsertDisplayNameSQL, &t.avatarURLStmt: upsertAvatarURLSQL, &t.selectStmt: selectProfileSQL,
	})
}

// setField sets the display name or avatar URL; ErrNotFound for an
// unknown user.
func (t *profilesTable) setField(ctx context.Context, tx *sql.Tx, avatar bool, userID, value string) error {
	s, what := t.displayNameStmt, "display name"
	if avatar {
		s, what = t.avatarURLStmt, "avatar URL"
	}
	res, err := stmt(ctx, tx, s).ExecContext(ctx, userID, value)
	if err != nil {
		return fmt.Errorf("setting %s of %s: %w", what, userID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("setting %s of %s: user %w", what, userID, types.ErrNotFound)
	}
	return nil
}

func (t *profilesTable) selectProfile(ctx context.Context, tx *sql.Tx, userID string) (types.Profile, error) {
	var p types.Profile
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, userID).Scan(&p.DisplayName, &p.AvatarURL)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("profile of %s: %w", userID, types.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("selecting profile of %s: %w", userID, err)
	}
	return p, nil
}
