package main

import (
	"context"
	"crypto/ed25519"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// newServer starts one homeserver (SQLite) named name on a loopback
// listener in the test process and returns its client-server URL; the
// mlschat processes talk to it over HTTP.
func newServer(t *testing.T, name string) string {
	t.Helper()
	roomversion.Register()
	ctx := context.Background()
	db, err := storage.Open(ctx, testdb.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	rs, err := roomserver.New(roomserver.Config{ServerName: name, KeyID: "ed25519:t", PrivateKey: priv,
		Store: db, Clock: commitqueue.RealClock(), QueuePollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	us, err := userapi.New(userapi.Config{ServerName: name, Store: db, Clock: time.Now, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	api, err := clientapi.New(clientapi.Config{ServerName: name, Rooms: rs, Users: us, Clock: time.Now,
		RateLimit: clientapi.RateLimit{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	if err := rs.Start(sctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		rs.Stop()
		_ = db.Close()
	})
	return srv.URL
}
