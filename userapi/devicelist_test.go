package userapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

// listRemote is a Remote recording device list updates, failing them
// while fail is set.
type listRemote struct {
	fakeRemote
	mu      sync.Mutex
	fail    bool
	updates []string // "user/device/deleted/keys user_id"
}

func (r *listRemote) DeviceListUpdate(_ context.Context, userID, deviceID string, deleted bool, keys json.RawMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("queue down")
	}
	var k struct {
		UserID string `json:"user_id"`
	}
	_ = json.Unmarshal(keys, &k)
	r.updates = append(r.updates, fmt.Sprintf("%s/%s/%t/%s", userID, deviceID, deleted, k.UserID))
	return nil
}

func (r *listRemote) set(fail bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fail
	return slices.Clone(r.updates)
}

// TestDeviceListUpdate: new or changed device keys and deleted devices are
// announced through Remote.DeviceListUpdate before they are stored; when
// that fails, the call fails and nothing changes, and the retry announces
// them; keys uploaded again unchanged are not announced again.
func TestDeviceListUpdate(t *testing.T) {
	for _, b := range userapitest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := b.Open(t)
			remote := &listRemote{}
			s := newService(t, db, remote)
			dev := setupAlice(t, s)
			body := mustJSON(t, map[string]any{"device_keys": dev.DeviceKeys(t)})

			remote.set(true)
			if _, err := s.UploadKeys(ctx, alice, aliceDev, body); err == nil {
				t.Fatal("upload succeeded though the device list update failed")
			}
			if keys, err := db.DeviceKeys(ctx, alice, nil); err != nil || len(keys) != 0 {
				t.Fatalf("keys stored by the failed upload: %+v, %v", keys, err)
			}
			if got := remote.set(false); len(got) != 0 {
				t.Fatalf("updates %v", got)
			}
			if _, err := s.UploadKeys(ctx, alice, aliceDev, body); err != nil {
				t.Fatal(err)
			}
			want := []string{alice + "/" + aliceDev + "/false/" + alice}
			if got := remote.set(false); !slices.Equal(got, want) {
				t.Fatalf("updates %v, want %v", got, want)
			}
			// The same keys again: nothing to announce.
			if _, err := s.UploadKeys(ctx, alice, aliceDev, body); err != nil {
				t.Fatal(err)
			}
			if got := remote.set(true); !slices.Equal(got, want) {
				t.Fatalf("updates after an unchanged upload %v, want %v", got, want)
			}

			// Logout and device deletion fail while updates fail, and the
			// device stays.
			reg := register(t, s, "bob")
			other, err := s.Login(ctx, userapi.LoginRequest{Type: userapi.LoginPassword, User: "bob", Password: "pw-bob"})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Logout(ctx, reg.UserID, reg.DeviceID); err == nil {
				t.Fatal("logout succeeded though the device list update failed")
			}
			if err := s.DeleteDevice(ctx, reg.UserID, other.DeviceID, userapi.DeleteDeviceRequest{}); err == nil {
				t.Fatal("device deletion succeeded though the device list update failed")
			}
			if err := s.LogoutAll(ctx, reg.UserID); err == nil {
				t.Fatal("logout/all succeeded though the device list update failed")
			}
			if devs, err := db.Devices(ctx, reg.UserID); err != nil || len(devs) != 2 {
				t.Fatalf("devices of bob after failed deletions: %+v, %v", devs, err)
			}
			remote.set(false)
			if err := s.Logout(ctx, reg.UserID, reg.DeviceID); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteDevice(ctx, reg.UserID, other.DeviceID, userapi.DeleteDeviceRequest{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, reg.UserID+"/"+reg.DeviceID+"/true/", reg.UserID+"/"+other.DeviceID+"/true/")
			if got := remote.set(false); !slices.Equal(got, want) {
				t.Fatalf("updates %v, want %v", got, want)
			}
			if devs, err := db.Devices(ctx, reg.UserID); err != nil || len(devs) != 0 {
				t.Fatalf("devices of bob: %+v, %v", devs, err)
			}
		})
	}
}
