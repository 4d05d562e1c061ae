package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // the embedded SQLite driver of OpenSQLiteStore
)

// ErrNotFound is returned by Store.Get for a key that holds nothing.
var ErrNotFound = errors.New("client: not found")

// Store keeps a client's state: its account, private keys, key packages,
// the serialised MLS state of its rooms and the trust it has pinned. Every
// write is atomic: a crash leaves either all of a Put or none of it, which
// is what keeps a client from reusing a key across a restart (a message's
// ratchet step is stored before the message is sent).
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put writes all entries at once; a nil value deletes its key.
	Put(ctx context.Context, entries map[string][]byte) error
	// List returns every entry whose key starts with prefix.
	List(ctx context.Context, prefix string) (map[string][]byte, error)
	// Close releases the store.
	Close() error
}

// NewMemoryStore returns a Store held in memory, for tests and clients
// that need not survive a restart.
func NewMemoryStore() Store { return &memStore{m: map[string][]byte{}} }

type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (s *memStore) Put(_ context.Context, entries map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range entries {
		if v == nil {
			delete(s.m, k)
		} else {
			s.m[k] = append([]byte(nil), v...)
		}
	}
	return nil
}

func (s *memStore) List(_ context.Context, prefix string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			out[k] = append([]byte(nil), v...)
		}
	}
	return out, nil
}

func (s *memStore) Close() error { return nil }

// SQL of the SQLite store: one table of keys and values.
const (
	sqliteSchema = `CREATE TABLE IF NOT EXISTS client_state (
		key TEXT PRIMARY KEY,
		value BLOB NOT NULL
	)`
	sqliteGet    = `SELECT value FROM client_state WHERE key = $1`
	sqlitePut    = `INSERT INTO client_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	sqliteDelete = `DELETE FROM client_state WHERE key = $1`
	sqliteList   = `SELECT key, value FROM client_state WHERE substr(key, 1, length($1)) = $1`
)

// OpenSQLiteStore opens (creating it if needed) a Store in the SQLite file
// at path, written with full synchronisation so that a write that
// returned survives a crash.
func OpenSQLiteStore(ctx context.Context, path string) (Store, error) {
	dsn := "file:" + path + "?_txlock=immediate&_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening client store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating client store %s: %w", path, err)
	}
	return &sqliteStore{db: db}, nil
}

type sqliteStore struct{ db *sql.DB }

func (s *sqliteStore) Get(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, sqliteGet, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %q from the client store: %w", key, err)
	}
	return v, nil
}

func (s *sqliteStore) Put(ctx context.Context, entries map[string][]byte) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing the client store: %w", err)
	}
	defer tx.Rollback()
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := entries[k]; v == nil {
			_, err = tx.ExecContext(ctx, sqliteDelete, k)
		} else {
			_, err = tx.ExecContext(ctx, sqlitePut, k, v)
		}
		if err != nil {
			return fmt.Errorf("writing %q to the client store: %w", k, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing the client store: %w", err)
	}
	return nil
}

func (s *sqliteStore) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	rows, err := s.db.QueryContext(ctx, sqliteList, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing %q in the client store: %w", prefix, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("listing %q in the client store: %w", prefix, err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

func (s *sqliteStore) Close() error { return s.db.Close() }
