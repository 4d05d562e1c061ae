package storagetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

func testFederationTransactions(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	for _, c := range []struct {
		origin, txn string
		want        bool
	}{{"b.example", "t1", true}, {"b.example", "t1", false}, {"c.example", "t1", true}, {"b.example", "t2", true}} {
		if got, err := db.MarkTransactionSeen(ctx, c.origin, c.txn, 1000); err != nil || got != c.want {
			t.Fatalf("%s %s: %v, %v; want %v", c.origin, c.txn, got, err, c.want)
		}
	}
	// Answers: none until stored (also for a transaction only marked seen),
	// then per origin and transaction ID; storing again replaces it.
	if _, err := db.TransactionResult(ctx, "b.example", "t1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("answer of a transaction only marked seen: %v", err)
	}
	answer := []byte(`{"pdus":{"$a":{}}}`)
	for _, c := range []struct{ origin, txn string }{{"b.example", "t1"}, {"d.example", "t9"}} {
		if err := db.StoreTransactionResult(ctx, c.origin, c.txn, answer, 2000); err != nil {
			t.Fatal(err)
		}
		if got, err := db.TransactionResult(ctx, c.origin, c.txn); err != nil || !bytes.Equal(got, answer) {
			t.Fatalf("answer of %s %s: %s, %v", c.origin, c.txn, got, err)
		}
	}
	if _, err := db.TransactionResult(ctx, "c.example", "t9"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("answer of another origin's transaction: %v", err)
	}
	if seen, err := db.MarkTransactionSeen(ctx, "d.example", "t9", 3000); err != nil || seen {
		t.Fatalf("a transaction with an answer marked seen again: %v, %v", seen, err)
	}
	other := []byte(`{"pdus":{}}`)
	if err := db.StoreTransactionResult(ctx, "b.example", "t1", other, 2000); err != nil {
		t.Fatal(err)
	}
	if got, err := db.TransactionResult(ctx, "b.example", "t1"); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("replaced answer: %s, %v", got, err)
	}
}

func testOutboundQueue(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	var nids []int64
	for i, dest := range []string{"b.example", "c.example", "b.example", "b.example"} {
		nid, err := db.QueueOutbound(ctx, dest, "pdu", []byte{byte(i), 0, 0xff}, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		nids = append(nids, nid)
	}
	if dests, err := db.OutboundDestinations(ctx); err != nil || !slices.Equal(dests, []string{"b.example", "c.example"}) {
		t.Fatalf("destinations %v, %v", dests, err)
	}
	items, err := db.OutboundItems(ctx, "b.example", 2)
	if err != nil || len(items) != 2 || items[0].NID != nids[0] || items[1].NID != nids[2] ||
		!bytes.Equal(items[1].Payload, []byte{2, 0, 0xff}) || items[1].Kind != "pdu" || items[1].QueuedTS != 2 {
		t.Fatalf("items %+v, %v", items, err)
	}
	if err := db.DeleteOutbound(ctx, "b.example", nids[2]); err != nil {
		t.Fatal(err)
	}
	items, err = db.OutboundItems(ctx, "b.example", 10)
	if err != nil || len(items) != 1 || items[0].NID != nids[3] {
		t.Fatalf("after delete %+v, %v", items, err)
	}
	if items, err := db.OutboundItems(ctx, "c.example", 10); err != nil || len(items) != 1 {
		t.Fatalf("other destination %+v, %v", items, err)
	}
}

func testServerKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	k := storage.ServerKey{ServerName: "b.example", KeyID: "ed25519:1", PublicKey: bytes.Repeat([]byte{1}, 32), ValidUntilTS: 5000}
	if _, err := db.ServerKey(ctx, k.ServerName, k.KeyID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := db.StoreServerKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	k.ExpiredTS = 6000
	if err := db.StoreServerKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	got, err := db.ServerKey(ctx, k.ServerName, k.KeyID)
	if err != nil || !bytes.Equal(got.PublicKey, k.PublicKey) || got.ValidUntilTS != 5000 || got.ExpiredTS != 6000 {
		t.Fatalf("key %+v, %v", got, err)
	}
}

func testToDevice(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u, d = "@a:a.example", "DEV"
	var pos []int64
	for i, dev := range []string{d, "OTHER", d, d} {
		p, err := db.SendToDevice(ctx, u, dev, storage.ToDeviceMessage{Sender: "@b:b.example", Type: "m.mls.welcome", Content: []byte(`{"n":` + string(rune('0'+i)) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		if len(pos) > 0 && p <= pos[len(pos)-1] {
			t.Fatalf("position %d after %d", p, pos[len(pos)-1])
		}
		pos = append(pos, p)
	}
	msgs, err := db.ToDeviceMessages(ctx, u, d, 0, 10)
	if err != nil || len(msgs) != 3 || msgs[0].Pos != pos[0] || msgs[2].Pos != pos[3] || string(msgs[1].Content) != `{"n":2}` || msgs[1].Type != "m.mls.welcome" || msgs[1].Sender != "@b:b.example" {
		t.Fatalf("messages %+v, %v", msgs, err)
	}
	if msgs, err := db.ToDeviceMessages(ctx, u, d, pos[0], 1); err != nil || len(msgs) != 1 || msgs[0].Pos != pos[2] {
		t.Fatalf("after %d: %+v, %v", pos[0], msgs, err)
	}
	if err := db.DeleteToDevice(ctx, u, d, pos[2]); err != nil {
		t.Fatal(err)
	}
	if msgs, err := db.ToDeviceMessages(ctx, u, d, 0, 10); err != nil || len(msgs) != 1 || msgs[0].Pos != pos[3] {
		t.Fatalf("after delete: %+v, %v", msgs, err)
	}
	if msgs, err := db.ToDeviceMessages(ctx, u, "OTHER", 0, 10); err != nil || len(msgs) != 1 {
		t.Fatalf("other device: %+v, %v", msgs, err)
	}
}

func testNetworkMembership(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	inv := storage.Membership{RoomID: "!r:a.example", UserID: "@b:b.example", State: "invite", Inviter: "@a:a.example", UpdatedTS: 10}
	if _, err := db.Membership(ctx, inv.RoomID, inv.UserID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no membership: %v", err)
	}
	for _, m := range []storage.Membership{
		inv,
		{RoomID: "!r:a.example", UserID: "@a:a.example", State: "join", UpdatedTS: 5},
		{RoomID: "!s:a.example", UserID: "@b:b.example", State: "invite", Inviter: "@c:a.example", UpdatedTS: 11},
	} {
		if err := db.SetMembership(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := db.Membership(ctx, inv.RoomID, inv.UserID); err != nil || got.Pos == 0 || withoutPos(got) != inv {
		t.Fatalf("invite %+v, %v", got, err)
	}
	if ms, err := db.Memberships(ctx, "", "@b:b.example", "invite"); err != nil || len(ms) != 2 || ms[0].RoomID != "!r:a.example" {
		t.Fatalf("invites of user %+v, %v", ms, err)
	}
	join := inv
	join.State, join.Inviter, join.UpdatedTS, join.EventsPos = "join", "", 20, 42
	if err := db.SetMembership(ctx, join); err != nil {
		t.Fatal(err)
	}
	if ms, err := db.Memberships(ctx, "!r:a.example", "", "join"); err != nil || len(ms) != 2 || ms[0].UserID != "@a:a.example" || withoutPos(ms[1]) != join {
		t.Fatalf("joined %+v, %v", ms, err)
	}
	if err := db.SetMembership(ctx, storage.Membership{RoomID: "!r:a.example", UserID: "@x:a.example", State: "ban"}); err == nil {
		t.Fatal("ban accepted")
	}
	if _, err := db.Memberships(ctx, "", "", "join"); err == nil {
		t.Fatal("listing with neither room nor user succeeded")
	}
}

// withoutPos is m with its stream position cleared, to compare with what
// was set.
func withoutPos(m storage.Membership) storage.Membership {
	m.Pos = 0
	return m
}
