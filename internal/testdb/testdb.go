// Package testdb owns the databases of the module's tests above storage:
// a fresh PostgreSQL schema per test on MLSMODE_TEST_POSTGRES (default the
// local server; dropped when the test ends, an unreachable server fails the
// test) and a fresh SQLite file per test. Only tests import it.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/lib/pq" // PostgreSQL driver for the admin connection
)

// DefaultPostgres is the test server when MLSMODE_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Backend names a storage backend and makes fresh databases for it.
type Backend struct {
	Name string
	// NewDSN returns the DSN of a fresh empty database, dropped or removed
	// when the test ends.
	NewDSN func(tb testing.TB) string
}

// Backends are both storage backends.
func Backends() []Backend {
	return []Backend{{Name: "sqlite", NewDSN: SQLiteDSN}, {Name: "postgres", NewDSN: PostgresDSN}}
}

// SQLiteDSN returns a fresh SQLite database file in the test's temporary
// directory.
func SQLiteDSN(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "mlsmode.db")
}

// PostgresDSN creates a fresh schema, dropped with CASCADE when the test
// ends, and returns the base DSN with search_path set to it.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("MLSMODE_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		tb.Fatalf("opening %s: %v", base, err)
	}
	tb.Cleanup(func() { admin.Close() })
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "mlsmode_t_" + hex.EncodeToString(b)
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
