package sqlite

import (
	"context"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// selectStreamPositionsSQL reads every stream's highest position in one
// statement, so in one snapshot (/sync runs it on every wake).
const selectStreamPositionsSQL = `SELECT
	(SELECT COALESCE(MAX(event_nid), 0) FROM mlsmode_events),
	(SELECT COALESCE(MAX(stream_pos), 0) FROM mlsmode_network_membership),
	(SELECT COALESCE(MAX(stream_pos), 0) FROM mlsmode_device_key_changes),
	COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'mlsmode_to_device'), 0)`

// MaxStreamPositions returns the highest position of every stream, read in
// one statement. SQLite has one writer and every write transaction begins
// IMMEDIATE, so positions become visible in order.
func (d *Database) MaxStreamPositions(ctx context.Context) (types.StreamPositions, error) {
	var p types.StreamPositions
	if err := d.db.QueryRowContext(ctx, selectStreamPositionsSQL).Scan(&p.Events, &p.Memberships, &p.DeviceKeys, &p.ToDevice); err != nil {
		return p, fmt.Errorf("reading stream positions: %w", err)
	}
	return p, nil
}

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

// NotifyChange tells this Database's subscribers that something keyed by
// key changed. Notifications stay in this process: other processes (or
// handles) on the same database file do not receive them.
func (d *Database) NotifyChange(_ context.Context, key string) error {
	d.changes.Publish(key)
	return nil
}

// SubscribeChanges returns a channel receiving every notified key until
// ctx ends; a subscriber falling behind receives "*" instead.
func (d *Database) SubscribeChanges(ctx context.Context) (<-chan string, error) {
	return d.changes.Subscribe(ctx), nil
}
