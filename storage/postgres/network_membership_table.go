package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Out-of-band network membership (SPEC-NOTES §7): invite, join or leave.
const membershipSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_network_membership (
	room_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	membership TEXT NOT NULL,
	inviter TEXT NOT NULL,
	updated_ts BIGINT NOT NULL,
	PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS mlsmode_network_membership_user_idx ON mlsmode_network_membership (user_id, membership);`

// Migration 5 gives each membership its position in the memberships
// stream: every write takes the next value of the sequence.
const membershipStreamDelta = `
CREATE SEQUENCE IF NOT EXISTS mlsmode_network_membership_pos_seq;
ALTER TABLE mlsmode_network_membership ADD COLUMN IF NOT EXISTS stream_pos BIGINT NOT NULL
	DEFAULT nextval('mlsmode_network_membership_pos_seq');
CREATE INDEX IF NOT EXISTS mlsmode_network_membership_stream_idx ON mlsmode_network_membership (user_id, stream_pos);
ALTER TABLE mlsmode_network_membership ADD COLUMN IF NOT EXISTS events_pos BIGINT NOT NULL DEFAULT 0;`

const (
	upsertMembershipSQL = `INSERT INTO mlsmode_network_membership (room_id, user_id, membership, inviter, updated_ts, events_pos, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, nextval('mlsmode_network_membership_pos_seq')) ON CONFLICT (room_id, user_id) DO UPDATE
		SET membership = excluded.membership, inviter = excluded.inviter, updated_ts = excluded.updated_ts,
			events_pos = excluded.events_pos, stream_pos = excluded.stream_pos`
	selectMembershipSQL  = `SELECT membership, inviter, updated_ts, events_pos, stream_pos FROM mlsmode_network_membership WHERE room_id = $1 AND user_id = $2`
	selectRoomMembersSQL = `SELECT room_id, user_id, membership, inviter, updated_ts, events_pos, stream_pos FROM mlsmode_network_membership
		WHERE room_id = $1 AND membership = $2 ORDER BY user_id`
	selectUserRoomsSQL = `SELECT room_id, user_id, membership, inviter, updated_ts, events_pos, stream_pos FROM mlsmode_network_membership
		WHERE user_id = $1 AND membership = $2 ORDER BY room_id`
	selectMembershipsSinceSQL = `SELECT room_id, user_id, membership, inviter, updated_ts, events_pos, stream_pos FROM mlsmode_network_membership
		WHERE user_id = $1 AND stream_pos > $2 ORDER BY stream_pos`
)

type membershipTable struct {
	upsertStmt, selectStmt, roomStmt, userStmt, sinceStmt *sql.Stmt
}

func prepareMembershipTable(ctx context.Context, db *sql.DB) (*membershipTable, error) {
	t := &membershipTable{}
	return t, prepareAll(ctx, db, "mlsmode_network_membership", map[**sql.Stmt]string{
		&t.upsertStmt: upsertMembershipSQL, &t.selectStmt: selectMembershipSQL,
		&t.roomStmt: selectRoomMembersSQL, &t.userStmt: selectUserRoomsSQL,
		&t.sinceStmt: selectMembershipsSinceSQL,
	})
}

func (t *membershipTable) upsertMembership(ctx context.Context, tx *sql.Tx, m types.Membership) error {
	if _, err := stmt(ctx, tx, t.upsertStmt).ExecContext(ctx, m.RoomID, m.UserID, m.State, m.Inviter, m.UpdatedTS, m.EventsPos); err != nil {
		return fmt.Errorf("setting membership of %s in %s: %w", m.UserID, m.RoomID, err)
	}
	return nil
}

func (t *membershipTable) selectMembership(ctx context.Context, tx *sql.Tx, roomID, userID string) (types.Membership, error) {
	m := types.Membership{RoomID: roomID, UserID: userID}
	err := stmt(ctx, tx, t.selectStmt).QueryRowContext(ctx, roomID, userID).Scan(&m.State, &m.Inviter, &m.UpdatedTS, &m.EventsPos, &m.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("membership of %s in %s: %w", userID, roomID, types.ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("selecting membership of %s in %s: %w", userID, roomID, err)
	}
	return m, nil
}

// selectMemberships lists a room's (roomID set) or a user's memberships
// in a state.
func (t *membershipTable) selectMemberships(ctx context.Context, tx *sql.Tx, roomID, userID, state string) ([]types.Membership, error) {
	s, key := t.roomStmt, roomID
	if roomID == "" {
		s, key = t.userStmt, userID
	}
	rows, err := stmt(ctx, tx, s).QueryContext(ctx, key, state)
	if err != nil {
		return nil, fmt.Errorf("selecting memberships of %s: %w", key, err)
	}
	return scanMemberships(rows, key)
}

// selectSince lists a user's memberships with a position after after, by
// position.
func (t *membershipTable) selectSince(ctx context.Context, tx *sql.Tx, userID string, after int64) ([]types.Membership, error) {
	rows, err := stmt(ctx, tx, t.sinceStmt).QueryContext(ctx, userID, after)
	if err != nil {
		return nil, fmt.Errorf("selecting memberships of %s: %w", userID, err)
	}
	return scanMemberships(rows, userID)
}

func scanMemberships(rows *sql.Rows, key string) ([]types.Membership, error) {
	defer rows.Close()
	out := []types.Membership{}
	for rows.Next() {
		var m types.Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.State, &m.Inviter, &m.UpdatedTS, &m.EventsPos, &m.Pos); err != nil {
			return nil, fmt.Errorf("scanning memberships: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting memberships of %s: %w", key, err)
	}
	return out, nil
}
