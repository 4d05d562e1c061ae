// Package testserver starts one homeserver (roomserver, userapi and
// clientapi over SQLite) on a loopback listener inside a test process, for
// the tests of programs that talk to a server only over HTTP (package
// client, cmd/mlschat). Only tests import it.
package testserver

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

// New starts a server named name with a fresh SQLite database, rate
// limits off and the real clock, and returns its client-server URL. It
// stops when the test ends.
func New(tb testing.TB, name string) string {
	tb.Helper()
	roomversion.Register()
	ctx := context.Background()
	db, err := storage.Open(ctx, testdb.SQLiteDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	rs, err := roomserver.New(roomserver.Config{ServerName: name, KeyID: "ed25519:t", PrivateKey: priv,
		Store: db, Clock: commitqueue.RealClock(), QueuePollInterval: 50 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	us, err := userapi.New(userapi.Config{ServerName: name, Store: db, Clock: time.Now, BcryptCost: bcrypt.MinCost})
	if err != nil {
		tb.Fatal(err)
	}
	api, err := clientapi.New(clientapi.Config{ServerName: name, Rooms: rs, Users: us, Clock: time.Now,
		RateLimit: clientapi.RateLimit{Disabled: true}})
	if err != nil {
		tb.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	if err := rs.Start(sctx); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	tb.Cleanup(func() {
		srv.Close()
		cancel()
		rs.Stop()
		_ = db.Close()
	})
	return srv.URL
}
