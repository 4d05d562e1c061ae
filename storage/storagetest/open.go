package storagetest

import (
	"context"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

// TestOpen checks that storage.Open picks a working backend for dsn.
func TestOpen(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("storage.Open(%q): %v", dsn, err)
	}
	defer db.Close()
	r := NewRoom(t, "!open:a.example")
	if _, err := db.StoreEvent(ctx, r.Create, storage.StoreEventOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Event(ctx, r.Create.EventID()); err != nil {
		t.Fatal(err)
	}
}
