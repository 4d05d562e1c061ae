// Package storagetest owns the test suite every storage backend passes:
// round trips of everything stored, the one-transaction property of event
// writes, concurrent key package and pending-commit claims, migrations from
// an older schema and crash safety, plus the shared benchmarks. A backend's
// tests call Run (and its benchmarks the Benchmark functions) with a
// Backend describing how to make fresh databases.
package storagetest

import (
	"context"
	"database/sql"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

// Backend describes a storage backend to the suite.
type Backend struct {
	// Name names the backend in messages.
	Name string
	// NewDSN returns the connection string of a fresh, empty database for
	// one test and arranges (with tb.Cleanup) for it to be dropped. Every
	// Open of the same string reaches the same database, unless Shared
	// is false.
	NewDSN func(tb testing.TB) string
	// Shared is true when two Opens of one DSN share the data (false for
	// SQLite ":memory:"); tests needing two handles, migrations or a
	// child process are skipped otherwise.
	Shared bool
	// Open opens and migrates the database.
	Open func(ctx context.Context, dsn string) (storage.Database, error)
	// OpenRaw opens a database/sql handle on the database without
	// migrating it, and Migrate applies the migrations up to a version.
	OpenRaw func(ctx context.Context, dsn string) (*sql.DB, error)
	Migrate func(ctx context.Context, db *sql.DB, upTo int) error
	// LatestVersion is the schema version Open migrates to.
	LatestVersion int
}

// open opens a database for a test, closing it at the end.
func (b Backend) open(tb testing.TB, dsn string) storage.Database {
	tb.Helper()
	db, err := b.Open(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("%s: opening %s: %v", b.Name, dsn, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("closing: %v", err)
		}
	})
	return db
}

// fresh opens a fresh database.
func (b Backend) fresh(tb testing.TB) storage.Database {
	tb.Helper()
	return b.open(tb, b.NewDSN(tb))
}

// Run runs every test of the suite as subtests of t.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"SchemaVersion", testSchemaVersion},
		{"Rooms", testRooms},
		{"EventRoundTrip", testEventRoundTrip},
		{"ForwardExtremities", testForwardExtremities},
		{"StoreEventAtomic", testStoreEventAtomic},
		{"StoreEventsAtomic", testStoreEventsAtomic},
		{"StoreEventsCancelled", testStoreEventsCancelled},
		{"ConcurrentEventWrites", testConcurrentEventWrites},
		{"KeyPackages", testKeyPackages},
		{"ConcurrentKeyPackageClaims", testConcurrentClaims},
		{"ClaimedKeyIDs", testClaimedKeyIDs},
		{"ConcurrentClaimsAndUploads", testConcurrentClaimsAndUploads},
		{"PendingCommits", testPendingCommits},
		{"ConcurrentPendingCommitClaims", testConcurrentPendingClaims},
		{"ConcurrentApplyPendingCommits", testConcurrentApplyPendingCommits},
		{"PendingCommitRooms", testPendingCommitRooms},
		{"Migration", testMigration},
		{"FederationTransactions", testFederationTransactions},
		{"OutboundQueue", testOutboundQueue},
		{"ServerKeys", testServerKeys},
		{"ToDevice", testToDevice},
		{"ToDeviceTxns", testToDeviceTxns},
		{"ConcurrentToDeviceTxns", testConcurrentToDeviceTxns},
		{"NetworkMembership", testNetworkMembership},
		{"Accounts", testAccounts},
		{"DeviceReuse", testDeviceReuse},
		{"DeviceAccessTokens", testDeviceAccessTokens},
		{"DeviceKeys", testDeviceKeys},
		{"CrossSigning", testCrossSigning},
		{"SyncPositions", testSyncPositions},
		{"ConditionalStore", testConditionalStore},
		{"ClientTxns", testClientTxns},
		{"ConcurrentConditionalWrites", testConcurrentConditionalWrites},
		{"RoomEvents", testRoomEvents},
		{"StreamPositions", testStreamPositions},
		{"StreamOrdering", testStreamOrdering},
		{"MembershipPositions", testMembershipPositions},
		{"MembershipStreamMigration", testMembershipStreamMigration},
		{"DeviceKeyChanges", testDeviceKeyChanges},
		{"Filters", testFilters},
		{"Profiles", testProfiles},
		{"Changes", testChanges},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}
