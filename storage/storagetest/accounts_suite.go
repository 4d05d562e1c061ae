package storagetest

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

func testAccounts(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	u := storage.User{UserID: "@a:a.example", PasswordHash: "$argon2id$x", CreatedTS: 7}
	if _, err := db.User(ctx, u.UserID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(ctx, u); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("taken user ID: %v", err)
	}
	if got, err := db.User(ctx, u.UserID); err != nil || got != u {
		t.Fatalf("user %+v, %v", got, err)
	}
	for _, d := range []storage.Device{
		{UserID: u.UserID, DeviceID: "B", DisplayName: "phone", CreatedTS: 1},
		{UserID: u.UserID, DeviceID: "A", DisplayName: "laptop", CreatedTS: 2},
		{UserID: u.UserID, DeviceID: "B", DisplayName: "new phone", CreatedTS: 3},
	} {
		if err := db.StoreDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := db.Devices(ctx, u.UserID)
	if err != nil || len(devs) != 2 || devs[0].DeviceID != "A" || devs[1].DisplayName != "new phone" || devs[1].CreatedTS != 1 {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	if err := db.StoreAccessToken(ctx, "tokA", u.UserID, "A", 5); err != nil {
		t.Fatal(err)
	}
	if err := db.StoreAccessToken(ctx, "tokB", u.UserID, "B", 5); err != nil {
		t.Fatal(err)
	}
	if uid, did, err := db.AccessTokenOwner(ctx, "tokA"); err != nil || uid != u.UserID || did != "A" {
		t.Fatalf("token owner %s %s %v", uid, did, err)
	}
	if err := db.DeleteAccessToken(ctx, "tokA"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.AccessTokenOwner(ctx, "tokA"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted token: %v", err)
	}
	// Deleting a device deletes what is kept for it.
	if err := db.StoreOneTimeKeyPackages(ctx, u.UserID, "B", []storage.KeyPackage{kp(algA, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := db.StoreFallbackKeyPackage(ctx, u.UserID, "B", kp(algA, 2)); err != nil {
		t.Fatal(err)
	}
	if err := db.StoreDeviceKeys(ctx, storage.DeviceKeys{UserID: u.UserID, DeviceID: "B", KeysJSON: []byte(`{}`), Credentials: map[string]string{algA: "cred"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SendToDevice(ctx, u.UserID, "B", storage.ToDeviceMessage{Sender: "@x:a.example", Type: "t", Content: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetSyncPosition(ctx, u.UserID, "B", "to_device", 3); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDevice(ctx, u.UserID, "B"); err != nil {
		t.Fatal(err)
	}
	if devs, err := db.Devices(ctx, u.UserID); err != nil || len(devs) != 1 || devs[0].DeviceID != "A" {
		t.Fatalf("devices after delete %+v, %v", devs, err)
	}
	if _, _, err := db.AccessTokenOwner(ctx, "tokB"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("token of deleted device: %v", err)
	}
	if ids, err := db.KeyPackageIDs(ctx, u.UserID, "B"); err != nil || len(ids) != 0 {
		t.Fatalf("key packages of deleted device: %v, %v", ids, err)
	}
	if ks, err := db.DeviceKeys(ctx, u.UserID, nil); err != nil || len(ks) != 0 {
		t.Fatalf("device keys of deleted device: %+v, %v", ks, err)
	}
	if msgs, err := db.ToDeviceMessages(ctx, u.UserID, "B", 0, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("inbox of deleted device: %+v, %v", msgs, err)
	}
	if pos, err := db.SyncPosition(ctx, u.UserID, "B", "to_device"); err != nil || pos != 0 {
		t.Fatalf("position of deleted device: %d, %v", pos, err)
	}
}

func testDeviceKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u = "@a:a.example"
	ks := []storage.DeviceKeys{
		{UserID: u, DeviceID: "B", KeysJSON: []byte(`{"device_id":"B"}`), Credentials: map[string]string{algA: "credA", algB: "credB"}},
		{UserID: u, DeviceID: "A", KeysJSON: []byte(`{"device_id":"A"}`), Credentials: map[string]string{}},
	}
	for _, k := range ks {
		if err := db.StoreDeviceKeys(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Replacing drops credentials no longer given.
	ks[0].Credentials = map[string]string{algA: "credA2"}
	ks[0].KeysJSON = []byte(`{"device_id":"B","v":2}`)
	if err := db.StoreDeviceKeys(ctx, ks[0]); err != nil {
		t.Fatal(err)
	}
	got, err := db.DeviceKeys(ctx, u, nil)
	if err != nil || len(got) != 2 || got[0].DeviceID != "A" || string(got[1].KeysJSON) != string(ks[0].KeysJSON) ||
		!maps.Equal(got[1].Credentials, ks[0].Credentials) || len(got[0].Credentials) != 0 {
		t.Fatalf("device keys %+v, %v", got, err)
	}
	if got, err := db.DeviceKeys(ctx, u, []string{"B", "C"}); err != nil || len(got) != 1 || got[0].DeviceID != "B" {
		t.Fatalf("device keys of B: %+v, %v", got, err)
	}
}

func testSyncPositions(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	if pos, err := db.SyncPosition(ctx, "@a:a.example", "A", "rooms"); err != nil || pos != 0 {
		t.Fatalf("no position: %d, %v", pos, err)
	}
	for _, p := range []int64{5, 9} {
		if err := db.SetSyncPosition(ctx, "@a:a.example", "A", "rooms", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetSyncPosition(ctx, "@a:a.example", "A", "to_device", 2); err != nil {
		t.Fatal(err)
	}
	if pos, err := db.SyncPosition(ctx, "@a:a.example", "A", "rooms"); err != nil || pos != 9 {
		t.Fatalf("rooms position: %d, %v", pos, err)
	}
	if pos, err := db.SyncPosition(ctx, "@a:a.example", "A", "to_device"); err != nil || pos != 2 {
		t.Fatalf("to_device position: %d, %v", pos, err)
	}
}
