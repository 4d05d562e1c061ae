package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/storage/postgres"
	"github.com/mlsmode/mlsmode/storage/storagetest"
)

// baseDSN is the test server: MLSMODE_TEST_POSTGRES or the local default.
func baseDSN() string {
	if s := os.Getenv("MLSMODE_TEST_POSTGRES"); s != "" {
		return s
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// newDSN creates a fresh schema, dropped with CASCADE when the test ends,
// and returns the base DSN with search_path set to it. A server that
// cannot be reached fails the test.
func newDSN(tb testing.TB) string {
	tb.Helper()
	base := baseDSN()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		tb.Fatalf("opening %s: %v", base, err)
	}
	tb.Cleanup(func() { admin.Close() })
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "mlsmode_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("PostgreSQL test database at %s (set MLSMODE_TEST_POSTGRES): creating schema: %v", base, err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parsing %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
