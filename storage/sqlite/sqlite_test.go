package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/storage/sqlite"
	"github.com/mlsmode/mlsmode/storage/storagetest"
)

// fileDSN is a fresh database file in the test's temporary directory.
func fileDSN(tb testing.TB) string {
	return "file:" + filepath.Join(tb.TempDir(), "mlsmode.db")
}

// Backend is the SQLite backend for the shared suite: database files, or
// ":memory:" databases when memory is true.
func Backend(memory bool) storagetest.Backend {
	b := storagetest.Backend{
		Name:   "sqlite",
		NewDSN: fileDSN,
		Shared: true,
		Open: func(ctx context.Context, dsn string) (storage.Database, error) {
			return sqlite.Open(ctx, dsn)
		},
		OpenRaw: func(_ context.Context, dsn string) (*sql.DB, error) {
			return sqlite.OpenDB(dsn)
		},
		Migrate:       sqlite.Migrate,
		LatestVersion: sqlite.LatestSchemaVersion(),
	}
	if memory {
		b.Name, b.Shared = "sqlite :memory:", false
		b.NewDSN = func(testing.TB) string { return ":memory:" }
	}
	return b
}

func TestSQLite(t *testing.T) { storagetest.Run(t, Backend(false)) }

func TestSQLiteMemory(t *testing.T) { storagetest.Run(t, Backend(true)) }

func TestSQLiteStorageOpen(t *testing.T) {
	storagetest.TestOpen(t, filepath.Join(t.TempDir(), "plain.db"))
	storagetest.TestOpen(t, ":memory:")
}

func BenchmarkSQLiteStoreEvent(b *testing.B)  { storagetest.BenchmarkStoreEvent(b, Backend(false)) }
func BenchmarkSQLiteStoreEvents(b *testing.B) { storagetest.BenchmarkStoreEvents(b, Backend(false)) }
func BenchmarkSQLiteClaimKeyPackages(b *testing.B) {
	storagetest.BenchmarkClaimKeyPackages(b, Backend(false))
}
func BenchmarkSQLiteStateAtEvent(b *testing.B) { storagetest.BenchmarkStateAtEvent(b, Backend(false)) }

func TestSQLiteCrashSafety(t *testing.T) {
	storagetest.TestCrashSafety(t, Backend(false), "TestSQLiteCrashSafety")
}
