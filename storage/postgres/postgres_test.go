package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/storage/postgres"
	"github.com/mlsmode/mlsmode/storage/storagetest"
)

// newDSN is a fresh schema on the test server (internal/testdb).
func newDSN(tb testing.TB) string { return testdb.PostgresDSN(tb) }

// Backend is the PostgreSQL backend for the shared suite.
func Backend() storagetest.Backend {
	return storagetest.Backend{
		Name:   "postgres",
		NewDSN: newDSN,
		Shared: true,
		Open: func(ctx context.Context, dsn string) (storage.Database, error) {
			return postgres.Open(ctx, dsn)
		},
		OpenRaw: func(_ context.Context, dsn string) (*sql.DB, error) {
			return sql.Open("postgres", dsn)
		},
		Migrate:       postgres.Migrate,
		LatestVersion: postgres.LatestSchemaVersion(),
	}
}

func TestPostgres(t *testing.T) { storagetest.Run(t, Backend()) }

func TestPostgresStorageOpen(t *testing.T) { storagetest.TestOpen(t, newDSN(t)) }

func BenchmarkPostgresStoreEvent(b *testing.B)  { storagetest.BenchmarkStoreEvent(b, Backend()) }
func BenchmarkPostgresStoreEvents(b *testing.B) { storagetest.BenchmarkStoreEvents(b, Backend()) }
func BenchmarkPostgresClaimKeyPackages(b *testing.B) {
	storagetest.BenchmarkClaimKeyPackages(b, Backend())
}
func BenchmarkPostgresStateAtEvent(b *testing.B) { storagetest.BenchmarkStateAtEvent(b, Backend()) }

func TestPostgresCrashSafety(t *testing.T) {
	storagetest.TestCrashSafety(t, Backend(), "TestPostgresCrashSafety")
}

// TestPostgresChangesAcrossHandles checks that a change notified through
// one Database reaches the subscriber of another on the same schema within
// a second, and not one on another schema.
func TestPostgresChangesAcrossHandles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(dsn string) *postgres.Database {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dsn := newDSN(t)
	a, b, other := open(dsn), open(dsn), open(newDSN(t))
	ch, err := b.SubscribeChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chOther, err := other.SubscribeChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.NotifyChange(ctx, "!r:a.example"); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-ch:
		if k != "!r:a.example" {
			t.Fatalf("received %q", k)
		}
	case <-time.After(time.Second):
		t.Fatal("no notification within 1s")
	}
	t.Logf("delivered in %v", time.Since(start))
	select {
	case k := <-chOther:
		t.Fatalf("a database on another schema received %q", k)
	case <-time.After(200 * time.Millisecond):
	}
}
