package federation_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
)

// changedUsers is device_lists.changed of a /sync body.
func changedUsers(body map[string]any) []string {
	dl, _ := body["device_lists"].(map[string]any)
	list, _ := dl["changed"].([]any)
	var out []string
	for _, u := range list {
		if s, ok := u.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// awaitChanged syncs c until device_lists.changed names user, failing
// after 10 s; it returns every user listed meanwhile.
func awaitChanged(t *testing.T, c *testclient.Client, user string) []string {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		got := changedUsers(c.Sync(1000))
		seen = append(seen, got...)
		if slices.Contains(got, user) {
			return seen
		}
	}
	t.Fatalf("%s's /sync never listed %s in device_lists.changed (listed: %v)", c.UserID, user, seen)
	return nil
}

// TestDeviceListUpdateOverFederation: alice on a.test and bob on b.test
// share a room; bob's new device keys and bob's logged-out device reach
// alice's /sync on a.test as device_lists.changed through
// m.device_list_update EDUs. An EDU that names a user of another server
// than its origin is dropped, while one of the origin's own user in the
// same transaction is listed.
func TestDeviceListUpdateOverFederation(t *testing.T) {
	hs := newStack(t, "a.test", "b.test", "c.test")
	a, b := hs["a.test"], hs["b.test"]
	ctx := context.Background()
	alice := testclient.New(t, a.url, a.client, "alice")
	bob := testclient.New(t, b.url, b.client, "bob")
	bob.UploadKeys(2, true)
	bob.Sync(0)
	alice.Sync(0)

	// c.test is in servers (no user of it joins): a user of c.test would
	// be listed to alice, had its change been recorded.
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test", "c.test"}, nil)
	roomID := alice.CreateRoom(fm)
	kp := alice.ClaimKeyPackage(bob.UserID, bob.DeviceID)
	welcome := alice.Add(roomID, fm, kp)
	addID := alice.CommitID
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, addID)
	if servers, err := b.rooms.ServersSharedWith(ctx, bob.UserID); err != nil || !slices.Equal(servers, []string{"a.test", "c.test"}) {
		t.Fatalf("servers sharing a room with bob on b.test: %v, %v", servers, err)
	}
	if got := changedUsers(alice.Sync(0)); slices.Contains(got, bob.UserID) {
		t.Fatalf("bob listed before any change: %v", got)
	}

	// bob's device keys change (a key of another algorithm is added).
	cred, err := bob.Credential.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	bob.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": map[string]any{
		"user_id": bob.UserID, "device_id": bob.DeviceID, "algorithms": []string{bob.Alg},
		"keys": map[string]string{
			bob.Alg + ":" + bob.DeviceID: base64.RawStdEncoding.EncodeToString(cred),
			"ed25519:" + bob.DeviceID:    "bm90IGEgcmVhbCBrZXk",
		},
	}}).Must(t, 200, "bob's new device keys")
	awaitChanged(t, alice, bob.UserID)
	if got := changedUsers(alice.Sync(0)); slices.Contains(got, bob.UserID) {
		t.Fatalf("bob listed again without a change: %v", got)
	}

	// bob logs a second device in and out: the deletion is announced.
	login := bob.Request("POST", "/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "bob"}, "password": "pw-bob"}).Must(t, 200, "bob's second login")
	bob.Request("POST", "/_matrix/client/v3/logout", login.Str("access_token"), map[string]any{}).Must(t, 200, "bob's second device logs out")
	awaitChanged(t, alice, bob.UserID)

	// b.test sends an update for a user of c.test (dropped) and one for
	// its own dave (listed).
	carol, dave := "@carol:c.test", "@dave:b.test"
	edu := func(user string) map[string]any {
		return map[string]any{"edu_type": "m.device_list_update", "content": map[string]any{
			"user_id": user, "device_id": "DEV", "stream_id": 1, "prev_id": []int{}, "deleted": true}}
	}
	status, resp, err := b.fed.Client().Do(ctx, "a.test", http.MethodPut, "/_matrix/federation/v1/send/dl-forged", map[string]any{
		"origin": "b.test", "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": []any{edu(carol), edu(dave)}})
	if err != nil || status != http.StatusOK {
		t.Fatalf("transaction: %d %s %v", status, resp, err)
	}
	seen := awaitChanged(t, alice, dave)
	if got := changedUsers(alice.Sync(0)); slices.Contains(seen, carol) || slices.Contains(got, carol) {
		t.Fatalf("a user of c.test listed from b.test's EDU: %v, %v", seen, got)
	}
	if users, _, err := a.db.DeviceKeyChangesSince(ctx, 0); err != nil || slices.Contains(users, carol) {
		t.Fatalf("device key changes on a.test: %v, %v", users, err)
	}
}
