package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/mlsmode/mlsmode/storage/internal/changes"
)

const (
	notifyChangeSQL  = `SELECT pg_notify($1, $2)`
	currentSchemaSQL = `SELECT COALESCE(current_schema(), '')`
)

// changesListener delivers change notifications through LISTEN/NOTIFY on
// a channel named after the schema, so that databases in different schemas
// of one server do not hear each other. One pq.Listener per Database,
// started at the first subscription, feeds a hub that fans the keys out.
type changesListener struct {
	db      *sql.DB
	dsn     string
	channel string
	hub     *changes.Hub

	mu       sync.Mutex
	listener *pq.Listener
	done     chan struct{}
	closed   bool
}

// changesChannel is the NOTIFY channel of a schema: a PostgreSQL
// identifier, at most 63 bytes.
func changesChannel(schema string) string {
	ch := "mlsmode_changes_" + schema
	if len(ch) > 63 {
		sum := sha256.Sum256([]byte(schema))
		ch = "mlsmode_changes_" + hex.EncodeToString(sum[:16])
	}
	return ch
}

func newChangesListener(ctx context.Context, db *sql.DB, dsn string) (*changesListener, error) {
	var schema string
	if err := db.QueryRowContext(ctx, currentSchemaSQL).Scan(&schema); err != nil {
		return nil, fmt.Errorf("reading current schema: %w", err)
	}
	return &changesListener{db: db, dsn: dsn, channel: changesChannel(schema), hub: changes.NewHub()}, nil
}

// start starts the listener unless started, and returns once it listens.
func (c *changesListener) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("subscribing to changes: database closed")
	}
	if c.listener != nil {
		return nil
	}
	l := pq.NewListener(c.dsn, 100*time.Millisecond, 10*time.Second, nil)
	listened := make(chan error, 1)
	go func() { listened <- l.Listen(c.channel) }()
	select {
	case err := <-listened:
		if err != nil {
			_ = l.Close()
			return fmt.Errorf("listening on %s: %w", c.channel, err)
		}
	case <-ctx.Done():
		_ = l.Close()
		return fmt.Errorf("listening on %s: %w", c.channel, ctx.Err())
	}
	c.listener, c.done = l, make(chan struct{})
	go func() {
		defer close(c.done)
		for n := range l.Notify {
			if n == nil {
				// Reconnected: notifications may have been missed.
				c.hub.Publish(changes.All)
				continue
			}
			c.hub.Publish(n.Extra)
		}
	}()
	return nil
}

func (c *changesListener) notify(ctx context.Context, key string) error {
	if _, err := c.db.ExecContext(ctx, notifyChangeSQL, c.channel, key); err != nil {
		return fmt.Errorf("notifying change of %s: %w", key, err)
	}
	return nil
}

func (c *changesListener) subscribe(ctx context.Context) (<-chan string, error) {
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c.hub.Subscribe(ctx), nil
}

// close stops the listener and ends every subscription.
func (c *changesListener) close() {
	c.mu.Lock()
	c.closed = true
	l, done := c.listener, c.done
	c.mu.Unlock()
	if l != nil {
		_ = l.Close()
		<-done
	}
	c.hub.Close()
}

// NotifyChange tells every subscriber of every process sharing the
// database (schema) that something keyed by key changed.
func (d *Database) NotifyChange(ctx context.Context, key string) error {
	return d.changes.notify(ctx, key)
}

// SubscribeChanges returns a channel receiving every notified key until
// ctx ends; a subscriber falling behind receives "*" instead.
func (d *Database) SubscribeChanges(ctx context.Context) (<-chan string, error) {
	return d.changes.subscribe(ctx)
}
