package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// Advisory lock keys, one per stream. Every transaction that hands out a
// position in a stream takes the stream's lock (pg_advisory_xact_lock)
// before its insert and keeps it until it ends, so positions are handed
// out and committed one transaction at a time: a reader that has seen
// position p can never later see a row at or below p appear. (Without it
// two transactions could take positions 5 and 6 from the sequence and
// commit 6 first.)
const (
	streamEvents      int64 = 425601
	streamToDevice    int64 = 425602
	streamMemberships int64 = 425603
	streamDeviceKeys  int64 = 425604
)

const (
	lockStreamSQL       = `SELECT pg_advisory_xact_lock($1)`
	lockStreamSharedSQL = `SELECT pg_advisory_xact_lock_shared($1)`
)

// lockStream takes a stream's lock for the rest of tx.
func lockStream(ctx context.Context, tx *sql.Tx, key int64) error {
	if _, err := tx.ExecContext(ctx, lockStreamSQL, key); err != nil {
		return fmt.Errorf("locking stream %d: %w", key, err)
	}
	return nil
}

// MaxStreamPositions returns the highest position of every stream. The
// to-device position is the sequence's (delivered messages are deleted),
// read under the stream's shared lock so that no transaction still writing
// has handed out a higher one.
//
// It is one statement (one round trip: /sync runs it on every wake). The
// scalar subqueries run when the row of the lock's FROM item is projected,
// so after the shared lock is granted.
func (d *Database) MaxStreamPositions(ctx context.Context) (types.StreamPositions, error) {
	var p types.StreamPositions
	if err := d.db.QueryRowContext(ctx, selectStreamPositionsSQL, streamToDevice).Scan(
		&p.Events, &p.Memberships, &p.DeviceKeys, &p.ToDevice); err != nil {
		return p, fmt.Errorf("reading stream positions: %w", err)
	}
	return p, nil
}

// selectStreamPositionsSQL reads every stream's highest position, the
// to-device sequence under that stream's shared lock ($1).
const selectStreamPositionsSQL = `SELECT
	(SELECT COALESCE(MAX(event_nid), 0) FROM mlsmode_events),
	(SELECT COALESCE(MAX(stream_pos), 0) FROM mlsmode_network_membership),
	(SELECT COALESCE(MAX(stream_pos), 0) FROM mlsmode_device_key_changes),
	(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mlsmode_to_device_stream_pos_seq)
	FROM (SELECT pg_advisory_xact_lock_shared($1)) AS stream_lock`

// MembershipsSince lists a user's memberships changed after position
// after, by position.
func (d *Database) MembershipsSince(ctx context.Context, userID string, after int64) ([]types.Membership, error) {
	return d.membership.selectSince(ctx, nil, userID, after)
}

// DeviceKeyChangesSince lists the users whose device keys changed after
// position after, sorted, and the highest position among the changes
// (after when none).
func (d *Database) DeviceKeyChangesSince(ctx context.Context, after int64) ([]string, int64, error) {
	return d.keyChanges.selectChanges(ctx, nil, after)
}

// StoreFilter stores a user's filter and returns its ID.
func (d *Database) StoreFilter(ctx context.Context, userID string, filterJSON []byte) (string, error) {
	return d.filters.insertFilter(ctx, nil, userID, filterJSON)
}

// Filter returns a user's filter.
func (d *Database) Filter(ctx context.Context, userID, filterID string) ([]byte, error) {
	return d.filters.selectFilter(ctx, nil, userID, filterID)
}

// SetDisplayName sets a local user's display name.
func (d *Database) SetDisplayName(ctx context.Context, userID, name string) error {
	return d.profiles.setField(ctx, nil, false, userID, name)
}

// SetAvatarURL sets a local user's avatar URL.
func (d *Database) SetAvatarURL(ctx context.Context, userID, url string) error {
	return d.profiles.setField(ctx, nil, true, userID, url)
}

// Profile returns a local user's profile.
func (d *Database) Profile(ctx context.Context, userID string) (types.Profile, error) {
	return d.profiles.selectProfile(ctx, nil, userID)
}
