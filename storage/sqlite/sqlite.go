// Package sqlite owns the embedded SQLite backend of package storage
// (modernc.org/sqlite, pure Go), the default: one file per table with its
// SQL in constants, numbered migrations applied at Open with the schema
// version recorded in mlsmode_schema_migrations, and Database, which
// implements storage.Database. Each Database has a single connection (one
// writer), and every transaction begins IMMEDIATE with a busy timeout, so
// several processes may share one database file: key package claims and
// pending commit claims are serialised by SQLite's write lock. Change
// notifications (SubscribeChanges) reach the subscribers of the notifying
// Database only: two processes (or two handles) on one database file do
// not hear each other's notifications.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mlsmode/mlsmode/storage/internal/changes"

	// The pure-Go SQLite driver.
	_ "modernc.org/sqlite"
)

// Database is an SQLite storage.Database. It is safe for concurrent use.
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

	// changes fans notifications out to this Database's subscribers only.
	changes *changes.Hub
}

// connParams make every connection wait for the write lock instead of
// failing, begin transactions IMMEDIATE (taking the write lock at BEGIN,
// so that read-then-write transactions cannot deadlock), use WAL and
// enforce foreign keys.
const connParams = "_txlock=immediate&_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"

// DSN returns the driver connection string for dsn (":memory:", a path or a
// "file:" URI) with the parameters this package needs.
func DSN(dsn string) string {
	if dsn == "" {
		dsn = ":memory:"
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&" + connParams
	}
	return dsn + "?" + connParams
}

// OpenDB opens the database/sql handle for dsn with one connection, which
// ":memory:" needs (each connection would see its own database) and which
// makes this process a single writer.
func OpenDB(dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", DSN(dsn))
	if err != nil {
		return nil, fmt.Errorf("opening sqlite database: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// Open opens the SQLite database at dsn (":memory:", a path or a "file:"
// URI), creating it if needed, applies every pending migration and
// prepares the statements.
func Open(ctx context.Context, dsn string) (*Database, error) {
	db, err := OpenDB(dsn)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to sqlite database: %w", err)
	}
	if err := Migrate(ctx, db, 0); err != nil {
		db.Close()
		return nil, err
	}
	d := &Database{db: db, changes: changes.NewHub()}
	if err := d.prepare(ctx); err != nil {
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

// Close ends every change subscription and closes the connection pool.
func (d *Database) Close() error {
	d.changes.Close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("closing sqlite database: %w", err)
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
