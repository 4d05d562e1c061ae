package roomserver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// flakyRemote fails its first SendEvent calls and records the rest.
type flakyRemote struct {
	mu     sync.Mutex
	fail   int
	queued map[string][]string // event ID -> destinations
}

func (f *flakyRemote) SendEvent(_ context.Context, ev *roomversion.Event, dests []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("queue unavailable")
	}
	f.queued[ev.EventID()] = dests
	return nil
}

func (f *flakyRemote) Invite(context.Context, roomserver.RemoteInvite) error { return nil }

// TestSendNotQueuedIsRetried: an event stored but not queued for the other
// servers is not answered as accepted; the client's retry with the same
// transaction ID gets the same event, now queued. Nothing accepted stays
// local.
func TestSendNotQueuedIsRetried(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		ctx := context.Background()
		db, err := storage.Open(ctx, b.NewDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		remote := &flakyRemote{queued: map[string][]string{}}
		rs, err := roomserver.New(roomserver.Config{ServerName: "a.test", KeyID: testKeyID, PrivateKey: serverKey("a.test"),
			Store: db, Clock: commitqueue.NewFakeClock(time.Now()), Remote: remote})
		if err != nil {
			t.Fatal(err)
		}
		roomID, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{UserID: alice, Version: roomversion.V1,
			Algorithm: "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", Federate: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.SendEvent(ctx, roomserver.SendRequest{UserID: alice, DeviceID: "DEV", RoomID: roomID,
			Type: roomversion.V1.CommitType(), StateKey: new(string), Content: mlsContentFed(t, roomversion.V1.CommitType(), roomID, 0, testFed)}); err != nil {
			t.Fatal(err)
		}
		msg := roomserver.SendRequest{UserID: alice, DeviceID: "DEV", TxnID: "t1", RoomID: roomID,
			Type: roomversion.EventTypeEncrypted, Content: mlsContent(t, roomversion.EventTypeEncrypted, roomID, 1)}
		remote.fail = 1
		if _, err := rs.SendEvent(ctx, msg); err == nil {
			t.Fatal("an event that could not be queued was answered as accepted")
		}
		id, err := db.ClientTxnEvent(ctx, alice, "DEV", "t1")
		if err != nil {
			t.Fatalf("the event was not stored: %v", err)
		}
		if _, ok := remote.queued[id]; ok {
			t.Fatal("queued although the queue failed")
		}
		again, err := rs.SendEvent(ctx, msg)
		if err != nil || again != id {
			t.Fatalf("retry: %s, %v; want %s", again, err, id)
		}
		if dests := remote.queued[id]; len(dests) == 0 {
			t.Fatalf("the retry did not queue %s for the other servers: %v", id, remote.queued)
		}
	})
}
