// Package postgres owns the PostgreSQL backend of package storage (lib/pq):
// one file per table with its SQL in constants, numbered migrations applied
// at Open with the schema version recorded in mlsmode_schema_migrations, and
// Database, which implements storage.Database. Key package claims use
// SELECT ... FOR UPDATE SKIP LOCKED with DELETE ... RETURNING, and pending
// commit claims lock the queue row, so several processes may share one
// database. Every transaction that hands out a stream position (events,
// to-device messages, memberships, device key changes) holds that stream's
// advisory lock (streams.go), so positions become visible in order; change
// notifications use LISTEN/NOTIFY on a channel per schema (changes.go).
package postgres

import (
	"context"
	"database/sql"
	"fmt"

	// The PostgreSQL driver.
	_ "github.com/lib/pq"
)

// Database is a PostgreSQL storage.Database. It is safe for concurrent use.
type Database struct {
	db *sql.DB

	rooms            *roomsTable
	events           *eventsTable
	edges            *edgesTable
	eventState       *eventStateTable
	extremities      *extremitiesTable
	currentState     *currentStateTable
	oneTimeKeys      *oneTimeKeysTable
	fallbackKeys     *fallbackKeysTable
	pendingCommits   *pendingCommitsTable
	windows          *windowsTable
	federationTxns   *federationTxnsTable
	outbound         *outboundQueueTable
	serverKeys       *serverKeysTable
	toDevice         *toDeviceTable
	membership       *membershipTable
	users            *usersTable
	devices          *devicesTable
	accessTokens     *accessTokensTable
	deviceKeys       *deviceKeysTable
	credentials      *credentialsTable
	syncPositions    *syncPositionsTable
	clientTxns       *clientTxnsTable
	keyChanges       *keyChangesTable
	filters          *filtersTable
	profiles         *profilesTable
	claimedKeyIDs    *claimedKeyIDsTable
	toDeviceTxns     *toDeviceTxnsTable
	crossSigningKeys *crossSigningKeysTable
	crossSigningSigs *crossSigningSigsTable

	// changes fans notifications out to this process's subscribers, fed by
	// a LISTEN on channel started at the first subscription.
	changes *changesListener
}

// Open connects to the PostgreSQL database at dsn (a "postgres://" URL or
// key=value string as lib/pq reads it; set search_path with the options
// parameter to use a schema other than public), applies every pending
// migration and prepares the statements.
func Open(ctx context.Context, dsn string) (*Database, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening postgres database: %w", err)
	}
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to postgres database: %w", err)
	}
	if err := Migrate(ctx, db, 0); err != nil {
		db.Close()
		return nil, err
	}
	d := &Database{db: db}
	if err := d.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if d.changes, err = newChangesListener(ctx, db, dsn); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

func (d *Database) prepare(ctx context.Context) error {
	var err error
	if d.rooms, err = prepareRoomsTable(ctx, d.db); err != nil {
		return err
	}
	if d.events, err = prepareEventsTable(ctx, d.db); err != nil {
		return err
	}
	if d.edges, err = prepareEdgesTable(ctx, d.db); err != nil {
		return err
	}
	if d.eventState, err = prepareEventStateTable(ctx, d.db); err != nil {
		return err
	}
	if d.extremities, err = prepareExtremitiesTable(ctx, d.db); err != nil {
		return err
	}
	if d.currentState, err = prepareCurrentStateTable(ctx, d.db); err != nil {
		return err
	}
	if d.oneTimeKeys, err = prepareOneTimeKeysTable(ctx, d.db); err != nil {
		return err
	}
	if d.fallbackKeys, err = prepareFallbackKeysTable(ctx, d.db); err != nil {
		return err
	}
	if d.pendingCommits, err = preparePendingCommitsTable(ctx, d.db); err != nil {
		return err
	}
	if d.windows, err = prepareWindowsTable(ctx, d.db); err != nil {
		return err
	}
	if d.federationTxns, err = prepareFederationTxnsTable(ctx, d.db); err != nil {
		return err
	}
	if d.outbound, err = prepareOutboundQueueTable(ctx, d.db); err != nil {
		return err
	}
	if d.serverKeys, err = prepareServerKeysTable(ctx, d.db); err != nil {
		return err
	}
	if d.toDevice, err = prepareToDeviceTable(ctx, d.db); err != nil {
		return err
	}
	if d.membership, err = prepareMembershipTable(ctx, d.db); err != nil {
		return err
	}
	if d.users, err = prepareUsersTable(ctx, d.db); err != nil {
		return err
	}
	if d.devices, err = prepareDevicesTable(ctx, d.db); err != nil {
		return err
	}
	if d.accessTokens, err = prepareAccessTokensTable(ctx, d.db); err != nil {
		return err
	}
	if d.deviceKeys, err = prepareDeviceKeysTable(ctx, d.db); err != nil {
		return err
	}
	if d.credentials, err = prepareCredentialsTable(ctx, d.db); err != nil {
		return err
	}
	if d.syncPositions, err = prepareSyncPositionsTable(ctx, d.db); err != nil {
		return err
	}
	if d.clientTxns, err = prepareClientTxnsTable(ctx, d.db); err != nil {
		return err
	}
	if d.keyChanges, err = prepareKeyChangesTable(ctx, d.db); err != nil {
		return err
	}
	if d.filters, err = prepareFiltersTable(ctx, d.db); err != nil {
		return err
	}
	if d.profiles, err = prepareProfilesTable(ctx, d.db); err != nil {
		return err
	}
	if d.claimedKeyIDs, err = prepareClaimedKeyIDsTable(ctx, d.db); err != nil {
		return err
	}
	if d.toDeviceTxns, err = prepareToDeviceTxnsTable(ctx, d.db); err != nil {
		return err
	}
	if d.crossSigningKeys, err = prepareCrossSigningKeysTable(ctx, d.db); err != nil {
		return err
	}
	if d.crossSigningSigs, err = prepareCrossSigningSigsTable(ctx, d.db); err != nil {
		return err
	}
	return nil
}

// Close stops the change listener and closes the connection pool.
func (d *Database) Close() error {
	d.changes.close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("closing postgres database: %w", err)
	}
	return nil
}

// withTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise.
func (d *Database) withTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: beginning transaction: %w", what, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: committing: %w", what, err)
	}
	return nil
}

// stmt returns s bound to tx, or s itself when tx is nil.
func stmt(ctx context.Context, tx *sql.Tx, s *sql.Stmt) *sql.Stmt {
	if tx == nil {
		return s
	}
	return tx.StmtContext(ctx, s)
}

// prepareAll prepares the named statements into the pointers.
func prepareAll(ctx context.Context, db *sql.DB, table string, stmts map[**sql.Stmt]string) error {
	for p, q := range stmts {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("preparing statement of %s: %w", table, err)
		}
		*p = s
	}
	return nil
}
