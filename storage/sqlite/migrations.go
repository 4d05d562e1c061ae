package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

const migrationsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_schema_migrations (
	version INTEGER PRIMARY KEY,
	description TEXT NOT NULL,
	applied_ts BIGINT NOT NULL
);`

const (
	selectSchemaVersionSQL = `SELECT COALESCE(MAX(version), 0) FROM mlsmode_schema_migrations`
	insertMigrationSQL     = `INSERT INTO mlsmode_schema_migrations (version, description, applied_ts) VALUES ($1, $2, $3)`
)

// migration is one numbered schema change.
type migration struct {
	version     int
	description string
	statements  []string
}

// migrations are applied in order; never change an applied one, add the
// next.
func migrations() []migration {
	return []migration{
		{1, "rooms, events, edges, state, forward extremities, current state", []string{
			roomsSchema, eventsSchema, edgesSchema, eventStateSchema, extremitiesSchema, currentStateSchema,
		}},
		{2, "soft-fail reason, key packages, pending-commit queue", []string{
			eventsSoftFailReasonDelta, oneTimeKeysSchema, fallbackKeysSchema, pendingCommitsSchema, windowsSchema,
		}},
		{3, "federation transactions, outbound queue, server keys, to-device inboxes, network membership", []string{
			federationTxnsSchema, outboundQueueSchema, serverKeysSchema, toDeviceSchema, membershipSchema,
		}},
		{4, "users, devices, access tokens, device keys, credentials, sync positions", []string{
			usersSchema, devicesSchema, accessTokensSchema, deviceKeysSchema, credentialsSchema, syncPositionsSchema,
		}},
		{5, "client transactions, membership and device key change streams, filters, profiles", []string{
			clientTxnsSchema, membershipStreamDelta, keyChangesSchema, filtersSchema, profilesSchema,
		}},
		{6, "claimed one-time key IDs, to-device transactions", []string{
			claimedKeyIDsSchema, toDeviceTxnsSchema,
		}},
		{7, "answers of federation transactions", []string{federationTxnResultDelta}},
		{8, "cross-signing keys and signatures", []string{crossSigningKeysSchema, crossSigningSigsSchema}},
	}
}

// LatestSchemaVersion is the schema version Open migrates to.
func LatestSchemaVersion() int { ms := migrations(); return ms[len(ms)-1].version }

// Migrate applies the migrations above the database's version, up to
// upTo (0: all), each in its own transaction with its version recorded.
// Open calls it; tests call it to make a database at an older version.
func Migrate(ctx context.Context, db *sql.DB, upTo int) error {
	if _, err := db.ExecContext(ctx, migrationsSchema); err != nil {
		return fmt.Errorf("creating migrations table: %w", err)
	}
	for _, m := range migrations() {
		if upTo > 0 && m.version > upTo {
			break
		}
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	// Transactions begin IMMEDIATE: this serialises migrations between
	// processes opening the same file.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("applying migration %d: beginning transaction: %w", m.version, err)
	}
	defer func() { _ = tx.Rollback() }()
	var current int
	if err := tx.QueryRowContext(ctx, selectSchemaVersionSQL).Scan(&current); err != nil {
		return fmt.Errorf("applying migration %d: reading schema version: %w", m.version, err)
	}
	if current >= m.version {
		return nil
	}
	for _, s := range m.statements {
		if strings.TrimSpace(s) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("applying migration %d (%s): %w", m.version, m.description, err)
		}
	}
	if _, err := tx.ExecContext(ctx, insertMigrationSQL, m.version, m.description, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("applying migration %d: recording version: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("applying migration %d: committing: %w", m.version, err)
	}
	return nil
}

// SchemaVersion returns the highest migration applied.
func (d *Database) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := d.db.QueryRowContext(ctx, selectSchemaVersionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}
