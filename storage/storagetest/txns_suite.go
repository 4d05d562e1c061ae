package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

// delivery is a to-device message of sender for u/d with content n.
func delivery(u, d, sender string, n int) storage.ToDeviceDelivery {
	return storage.ToDeviceDelivery{UserID: u, DeviceID: d, Message: storage.ToDeviceMessage{
		Sender: sender, Type: "m.mls.welcome", Content: fmt.Appendf(nil, `{"n":%d}`, n)}}
}

// inbox returns the contents of a device's inbox, in order, failing the
// test unless positions increase.
func inbox(t *testing.T, db storage.Database, u, d string) []string {
	t.Helper()
	msgs, err := db.ToDeviceMessages(context.Background(), u, d, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(msgs))
	for i, m := range msgs {
		if i > 0 && m.Pos <= msgs[i-1].Pos {
			t.Fatalf("inbox of %s/%s: position %d after %d", u, d, m.Pos, msgs[i-1].Pos)
		}
		out = append(out, string(m.Content))
	}
	return out
}

// testToDeviceTxns: a to-device transaction appends all its messages in
// order and records the sending device's transaction; a replay stores
// nothing; a failing message stores nothing and records nothing.
func testToDeviceTxns(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const sender, u = "@s:a.example", "@r:a.example"
	txn := storage.ClientTxn{UserID: sender, DeviceID: "SDEV", TxnID: "t1"}
	ok, err := db.SendToDeviceTxn(ctx, txn, []storage.ToDeviceDelivery{
		delivery(u, "A", sender, 1), delivery(u, "B", sender, 2), delivery(u, "A", sender, 3),
	})
	if err != nil || !ok {
		t.Fatalf("first run: %v, %v", ok, err)
	}
	if got := inbox(t, db, u, "A"); !slices.Equal(got, []string{`{"n":1}`, `{"n":3}`}) {
		t.Fatalf("inbox A %v", got)
	}
	if got := inbox(t, db, u, "B"); !slices.Equal(got, []string{`{"n":2}`}) {
		t.Fatalf("inbox B %v", got)
	}
	a, _ := db.ToDeviceMessages(ctx, u, "A", 0, 10)
	bm, _ := db.ToDeviceMessages(ctx, u, "B", 0, 10)
	if !(a[0].Pos < bm[0].Pos && bm[0].Pos < a[1].Pos) || a[0].Sender != sender || a[0].Type != "m.mls.welcome" {
		t.Fatalf("positions not in the order of the messages, or fields lost: A %+v, B %+v", a, bm)
	}
	if p, err := db.MaxStreamPositions(ctx); err != nil || p.ToDevice < a[1].Pos {
		t.Fatalf("to-device stream position %d (%v) below the last message %d", p.ToDevice, err, a[1].Pos)
	}
	// A replay, with other messages even, stores nothing.
	ok, err = db.SendToDeviceTxn(ctx, txn, []storage.ToDeviceDelivery{delivery(u, "A", sender, 4), delivery(u, "C", sender, 5)})
	if err != nil || ok {
		t.Fatalf("replay: %v, %v; want false, nil", ok, err)
	}
	if got := inbox(t, db, u, "A"); len(got) != 2 {
		t.Fatalf("replay delivered to A: %v", got)
	}
	if got := inbox(t, db, u, "C"); len(got) != 0 {
		t.Fatalf("replay delivered to C: %v", got)
	}
	// The same transaction ID of another device, or another user, is
	// another transaction; one without messages is recorded too.
	for _, other := range []storage.ClientTxn{
		{UserID: sender, DeviceID: "OTHER", TxnID: "t1"},
		{UserID: "@s2:a.example", DeviceID: "SDEV", TxnID: "t1"},
	} {
		if ok, err := db.SendToDeviceTxn(ctx, other, []storage.ToDeviceDelivery{delivery(u, "C", sender, 6)}); err != nil || !ok {
			t.Fatalf("%+v: %v, %v", other, ok, err)
		}
	}
	empty := storage.ClientTxn{UserID: sender, DeviceID: "SDEV", TxnID: "empty"}
	for i, want := range []bool{true, false} {
		if ok, err := db.SendToDeviceTxn(ctx, empty, nil); err != nil || ok != want {
			t.Fatalf("empty transaction, run %d: %v, %v; want %v", i, ok, err, want)
		}
	}
	// A message that cannot be stored (NULL content) fails the whole
	// transaction: the messages before it are not delivered and the
	// transaction is not recorded, so a retry delivers.
	t2 := storage.ClientTxn{UserID: sender, DeviceID: "SDEV", TxnID: "t2"}
	bad := delivery(u, "D", sender, 8)
	bad.Message.Content = nil
	if ok, err := db.SendToDeviceTxn(ctx, t2, []storage.ToDeviceDelivery{delivery(u, "D", sender, 7), bad}); err == nil || ok {
		t.Fatalf("transaction with a NULL content: %v, %v; want an error", ok, err)
	}
	if got := inbox(t, db, u, "D"); len(got) != 0 {
		t.Fatalf("failed transaction delivered %v", got)
	}
	if ok, err := db.SendToDeviceTxn(ctx, t2, []storage.ToDeviceDelivery{delivery(u, "D", sender, 7)}); err != nil || !ok {
		t.Fatalf("retry of the failed transaction: %v, %v", ok, err)
	}
	if got := inbox(t, db, u, "D"); !slices.Equal(got, []string{`{"n":7}`}) {
		t.Fatalf("inbox D after the retry: %v", got)
	}
}

// testConcurrentToDeviceTxns runs each of several transactions from 8
// goroutines on two handles (where the backend shares its database): for
// each, exactly one caller reports true and the messages are delivered
// once.
func testConcurrentToDeviceTxns(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	const sender, u, rounds, callers = "@s:a.example", "@r:a.example", 10, 8
	for round := range rounds {
		txn := storage.ClientTxn{UserID: sender, DeviceID: "SDEV", TxnID: fmt.Sprintf("t%d", round)}
		msgs := []storage.ToDeviceDelivery{delivery(u, "A", sender, round), delivery(u, "B", sender, round)}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			wins  int
			errs  []error
			start = make(chan struct{})
		)
		for c := range callers {
			wg.Add(1)
			go func(db storage.Database) {
				defer wg.Done()
				<-start
				ok, err := db.SendToDeviceTxn(ctx, txn, msgs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins++
				}
			}(dbs[c%len(dbs)])
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %v", round, errs)
		}
		if wins != 1 {
			t.Fatalf("round %d: %d callers delivered, want 1", round, wins)
		}
	}
	for _, d := range []string{"A", "B"} {
		got := inbox(t, dbs[0], u, d)
		if len(got) != rounds {
			t.Fatalf("inbox %s has %d messages, want %d: %v", d, len(got), rounds, got)
		}
		for i, c := range got {
			if c != fmt.Sprintf(`{"n":%d}`, i) {
				t.Fatalf("inbox %s: message %d is %s", d, i, c)
			}
		}
	}
}

// testDeviceReuse: deleting a device forgets its client transactions and
// to-device transactions, so a device re-created with the same ID can use
// the same transaction IDs; other devices' are kept.
func testDeviceReuse(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u = "@a:a.example"
	r := roomWithState(t, db, "!reuse:a.example")
	st := r.State()
	if err := db.StoreDevice(ctx, storage.Device{UserID: u, DeviceID: "B"}); err != nil {
		t.Fatal(err)
	}
	txn := storage.ClientTxn{UserID: u, DeviceID: "B", TxnID: "t1"}
	kept := storage.ClientTxn{UserID: u, DeviceID: "KEEP", TxnID: "t1"}
	m1, mk := r.NewMessage(r.Commit.EventID()), r.NewMessage(r.Commit.EventID())
	if _, err := db.StoreEvent(ctx, m1, storage.StoreEventOptions{StateBefore: st, Txn: &txn}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StoreEvent(ctx, mk, storage.StoreEventOptions{StateBefore: st, Txn: &kept}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []storage.ClientTxn{txn, kept} {
		if ok, err := db.SendToDeviceTxn(ctx, x, []storage.ToDeviceDelivery{delivery("@r:a.example", "R", u, 1)}); err != nil || !ok {
			t.Fatalf("to-device transaction %+v: %v, %v", x, ok, err)
		}
	}
	if err := db.DeleteDevice(ctx, u, "B"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClientTxnEvent(ctx, u, "B", "t1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("client transaction of the deleted device: %v", err)
	}
	if _, err := db.EventClientTxn(ctx, m1.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("event of the deleted device still names its transaction: %v", err)
	}
	if _, err := db.Event(ctx, m1.EventID()); err != nil {
		t.Fatalf("the event itself went with the device: %v", err)
	}
	// The re-created device's transactions are new.
	if err := db.StoreDevice(ctx, storage.Device{UserID: u, DeviceID: "B"}); err != nil {
		t.Fatal(err)
	}
	m2 := r.NewMessage(m1.EventID())
	if ok, err := db.StoreEvent(ctx, m2, storage.StoreEventOptions{StateBefore: st, Txn: &txn}); err != nil || !ok {
		t.Fatalf("re-created device's transaction t1: %v, %v (refused as a replay?)", ok, err)
	}
	if ok, err := db.SendToDeviceTxn(ctx, txn, []storage.ToDeviceDelivery{delivery("@r:a.example", "R", u, 2)}); err != nil || !ok {
		t.Fatalf("re-created device's to-device transaction t1: %v, %v (refused as a replay?)", ok, err)
	}
	// Another device's transactions are kept.
	if id, err := db.ClientTxnEvent(ctx, u, "KEEP", "t1"); err != nil || id != mk.EventID() {
		t.Fatalf("other device's transaction: %q, %v", id, err)
	}
	if ok, err := db.SendToDeviceTxn(ctx, kept, nil); err != nil || ok {
		t.Fatalf("other device's to-device transaction: %v, %v; want false (recorded)", ok, err)
	}
}

// testDeviceAccessTokens: DeleteAccessTokens deletes every token of one
// device and keeps the device and other devices' tokens.
func testDeviceAccessTokens(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u = "@a:a.example"
	for _, d := range []string{"A", "B"} {
		if err := db.StoreDevice(ctx, storage.Device{UserID: u, DeviceID: d}); err != nil {
			t.Fatal(err)
		}
	}
	for tok, d := range map[string]string{"a1": "A", "a2": "A", "b1": "B", "other": "A"} {
		user := u
		if tok == "other" {
			user = "@b:a.example" // same device ID, another user
		}
		if err := db.StoreAccessToken(ctx, tok, user, d, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteAccessTokens(ctx, u, "A"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"a1", "a2"} {
		if _, _, err := db.AccessTokenOwner(ctx, tok); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token %s of the device: %v", tok, err)
		}
	}
	for _, tok := range []string{"b1", "other"} {
		if _, _, err := db.AccessTokenOwner(ctx, tok); err != nil {
			t.Fatalf("token %s of another device: %v", tok, err)
		}
	}
	if devs, err := db.Devices(ctx, u); err != nil || len(devs) != 2 {
		t.Fatalf("devices after deleting tokens: %+v, %v", devs, err)
	}
	if err := db.StoreAccessToken(ctx, "a3", u, "A", 2); err != nil {
		t.Fatal(err)
	}
	if _, d, err := db.AccessTokenOwner(ctx, "a3"); err != nil || d != "A" {
		t.Fatalf("new token of the device: %s, %v", d, err)
	}
	if err := db.DeleteAccessTokens(ctx, u, "NONE"); err != nil {
		t.Fatalf("device without tokens: %v", err)
	}
}

// testClaimedKeyIDs: a one-time key ID handed out by a claim is refused
// when stored again (with nothing of the call stored), also after the
// device was deleted; fallback claims record nothing.
func testClaimedKeyIDs(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u, d = "@a:a.example", "DEV"
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 1), kp(algA, 2)}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ClaimKeyPackage(ctx, u, d, algA); err != nil || got.KeyPackage != kp(algA, 1) {
		t.Fatalf("claim %+v, %v", got, err)
	}
	wantClaimed := func(what string, err error, keyID string) {
		t.Helper()
		var kc *storage.KeyConflictError
		if !errors.As(err, &kc) || !errors.Is(err, storage.ErrConflict) || kc.KeyID != keyID || !kc.Claimed {
			t.Fatalf("%s: %v; want a claimed KeyConflictError of %s", what, err, keyID)
		}
	}
	err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 3), kp(algA, 1), kp(algA, 0)})
	wantClaimed("storing a claimed key ID again", err, kp(algA, 1).KeyID)
	ids, err := db.KeyPackageIDs(ctx, u, d)
	if err != nil || !slices.Equal(ids, []string{kp(algA, 2).KeyID}) {
		t.Fatalf("refused call stored packages: %v, %v", ids, err)
	}
	// An unclaimed one stored again is still fine; a value conflict names
	// its key ID and is not a claim.
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 2)}); err != nil {
		t.Fatalf("unclaimed package again: %v", err)
	}
	other := kp(algA, 2)
	other.Value = "other"
	var kc *storage.KeyConflictError
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{other}); !errors.As(err, &kc) || kc.KeyID != other.KeyID || kc.Claimed || !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("value conflict: %v", err)
	}
	// The claim is per device.
	if err := db.StoreOneTimeKeyPackages(ctx, u, "OTHER", []storage.KeyPackage{kp(algA, 1)}); err != nil {
		t.Fatalf("same key ID on another device: %v", err)
	}
	// A claimed package is never handed out twice: not after the device is
	// deleted and re-created either.
	if err := db.DeleteDevice(ctx, u, d); err != nil {
		t.Fatal(err)
	}
	wantClaimed("storing a claimed key ID after deleting the device", db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 1)}), kp(algA, 1).KeyID)
	if ids, err := db.KeyPackageIDs(ctx, u, d); err != nil || len(ids) != 0 {
		t.Fatalf("packages after the refused store: %v, %v", ids, err)
	}
	// Fallback claims record no key ID.
	if err := db.StoreFallbackKeyPackage(ctx, u, d, kp(algB, 50)); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ClaimKeyPackage(ctx, u, d, algB); err != nil || !got.Fallback {
		t.Fatalf("fallback claim %+v, %v", got, err)
	}
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algB, 50)}); err != nil {
		t.Fatalf("fallback key ID as a one-time package: %v", err)
	}
}

// testConcurrentClaimsAndUploads claims a device's packages from several
// goroutines while others keep storing the same packages again (the
// client retrying an upload), on two handles where the backend shares its
// database: every package is handed out exactly once, and none is stored
// again once claimed.
func testConcurrentClaimsAndUploads(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn))
	}
	const u, d, n, claimers, uploaders = "@c:a.example", "DEV", 200, 6, 4
	kps := make([]storage.KeyPackage, n)
	for i := range kps {
		kps[i] = kp(algA, i)
	}
	if err := dbs[0].StoreOneTimeKeyPackages(ctx, u, d, kps); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		got      = map[string]int{}
		wg, uwg  sync.WaitGroup
		errs     = make(chan error, claimers+uploaders)
		done     = make(chan struct{})
		refusals int
	)
	for c := range uploaders {
		uwg.Add(1)
		go func(db storage.Database, c int) {
			defer uwg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				// Small batches, each one package, so that refusals of
				// others do not hide the race.
				k := kps[(i*uploaders+c)%n]
				err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{k})
				var kc *storage.KeyConflictError
				switch {
				case err == nil:
				case errors.As(err, &kc) && kc.Claimed && kc.KeyID == k.KeyID:
					mu.Lock()
					refusals++
					mu.Unlock()
				default:
					errs <- err
					return
				}
			}
		}(dbs[c%len(dbs)], c)
	}
	for c := range claimers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			for {
				ck, err := db.ClaimKeyPackage(ctx, u, d, algA)
				if errors.Is(err, storage.ErrNotFound) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got[ck.KeyID]++
				twice := got[ck.KeyID] > 1
				mu.Unlock()
				if twice {
					return // the check below fails; stop rather than claim forever
				}
			}
		}(dbs[c%len(dbs)])
	}
	wg.Wait()
	close(done)
	uwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, k := range kps {
		if got[k.KeyID] != 1 {
			t.Fatalf("%s handed out %d times", k.KeyID, got[k.KeyID])
		}
	}
	if counts, err := dbs[0].CountOneTimeKeyPackages(ctx, u, d); err != nil || counts[algA] != 0 {
		t.Fatalf("claimed packages stored again: %v, %v", counts, err)
	}
	if refusals == 0 {
		t.Log("no upload was refused (the claims finished first)")
	}
}
