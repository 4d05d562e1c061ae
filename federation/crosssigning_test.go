package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

// TestCrossSigningOverFederation: a remote /keys/query answers bob's
// master and self-signing keys (never his user-signing key) and the
// signature of his self-signing key on his device.
func TestCrossSigningOverFederation(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 0)
	ctx := context.Background()
	master := userapitest.NewSigningKey(t, bob.userID, "master")
	self := userapitest.NewSigningKey(t, bob.userID, "self_signing")
	user := userapitest.NewSigningKey(t, bob.userID, "user_signing")
	body, _ := json.Marshal(map[string]any{"master_key": master.Object(t), "self_signing_key": self.Object(t, master), "user_signing_key": user.Object(t, master)})
	if err := b.users.UploadSigningKeys(ctx, bob.userID, body); err != nil {
		t.Fatal(err)
	}
	stored, err := b.db.DeviceKeys(ctx, bob.userID, []string{"BOBDEV"})
	if err != nil || len(stored) != 1 {
		t.Fatalf("bob's device keys: %v, %v", stored, err)
	}
	sigs, _ := json.Marshal(map[string]any{bob.userID: map[string]any{"BOBDEV": self.Sign(t, stored[0].KeysJSON)}})
	if resp, err := b.users.UploadSignatures(ctx, bob.userID, sigs); err != nil || len(resp.Failures) != 0 {
		t.Fatalf("signing bob's device: %+v, %v", resp, err)
	}

	resp, err := a.remote.QueryKeys(ctx, "b.test", map[string][]string{bob.userID: nil})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := userapi.ParseCrossSigningKey("master", resp.MasterKeys[bob.userID], bob.userID, "master")
	if err != nil || mk.KeyID != master.KeyID {
		t.Fatalf("bob's master key %s: %v", resp.MasterKeys[bob.userID], err)
	}
	sk, err := userapi.ParseCrossSigningKey("self", resp.SelfSigningKeys[bob.userID], bob.userID, "self_signing")
	if err != nil || sk.KeyID != self.KeyID {
		t.Fatalf("bob's self-signing key %s: %v", resp.SelfSigningKeys[bob.userID], err)
	}
	if resp.UserSigningKeys != nil {
		t.Errorf("user-signing keys over federation: %v", resp.UserSigningKeys)
	}
	dev := resp.DeviceKeys[bob.userID]["BOBDEV"]
	if err := gomatrixserverlib.VerifyJSON(bob.userID, gomatrixserverlib.KeyID(self.KeyID), ed25519.PublicKey(sk.PublicKey), dev); err != nil {
		t.Errorf("bob's device keys %s: the self-signing signature: %v", dev, err)
	}

	// The raw answer has no user_signing_keys.
	var raw map[string]json.RawMessage
	status, got := a.do(t, "b.test", http.MethodPost, "/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": map[string][]string{bob.userID: {}}}, &raw)
	if status != http.StatusOK || raw["master_keys"] == nil || raw["self_signing_keys"] == nil || raw["user_signing_keys"] != nil {
		t.Errorf("answer %d %s", status, got)
	}

	// /user/devices carries the master and self-signing keys too, and
	// never the user-signing key.
	var devs map[string]json.RawMessage
	status, got = a.do(t, "b.test", http.MethodGet, "/_matrix/federation/v1/user/devices/"+url.PathEscape(bob.userID), nil, &devs)
	if status != http.StatusOK || devs["master_key"] == nil || devs["self_signing_key"] == nil || devs["user_signing_key"] != nil {
		t.Errorf("user/devices answer %d %s", status, got)
	}
	if dm, err := userapi.ParseCrossSigningKey("master", devs["master_key"], bob.userID, "master"); err != nil || dm.KeyID != master.KeyID {
		t.Errorf("user/devices master key %s: %v", devs["master_key"], err)
	}

	// The client API path of a's users hands them on.
	q, err := a.users.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{bob.userID: nil}, Caller: "@alice:a.test"})
	if err != nil {
		t.Fatal(err)
	}
	if q.MasterKeys[bob.userID] == nil || q.SelfSigningKeys[bob.userID] == nil || q.UserSigningKeys != nil {
		t.Errorf("client query: %+v", q)
	}
}

// TestCrossSigningFromEvilServer: master keys of other users or servers
// and self-signing keys without the master key's signature are dropped.
func TestCrossSigningFromEvilServer(t *testing.T) {
	const eve = "@eve:evil.test"
	master := userapitest.NewSigningKey(t, eve, "master")
	self := userapitest.NewSigningKey(t, eve, "self_signing")
	bobMaster := userapitest.NewSigningKey(t, "@bob:b.test", "master")
	answer, _ := json.Marshal(map[string]any{
		"device_keys":       map[string]any{eve: map[string]any{}},
		"master_keys":       map[string]any{eve: master.Object(t), "@bob:b.test": bobMaster.Object(t)},
		"self_signing_keys": map[string]any{eve: self.Object(t)},
	})
	un := newUserNetwork(t, []string{"a.test"}, map[string]http.Handler{
		"evil.test": evilServer(map[string]string{"/_matrix/federation/v1/user/keys/query": string(answer)}),
	})
	q, err := un.hs["a.test"].remote.QueryKeys(context.Background(), "evil.test", map[string][]string{eve: nil, "@bob:b.test": nil})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.MasterKeys) != 1 || q.MasterKeys[eve] == nil || len(q.SelfSigningKeys) != 0 {
		t.Errorf("kept master %v, self-signing %v; want eve's master only", q.MasterKeys, q.SelfSigningKeys)
	}
}

// TestSigningARemoteMasterKey: alice (a.test) verifies bob (b.test) by
// signing his master key, fetched from b.test, with her user-signing key;
// a.test keeps the signature and shows it on bob's master key to alice's
// devices only. A signature on a key bob's server does not have is refused.
func TestSigningARemoteMasterKey(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	ctx := context.Background()
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 0)
	alice := registerWithKeys(t, a, "alice", "ALICEDEV", 0)
	carol := registerWithKeys(t, a, "carol", "CAROLDEV", 0)
	bobMaster := userapitest.NewSigningKey(t, bob.userID, "master")
	bobSelf := userapitest.NewSigningKey(t, bob.userID, "self_signing")
	body, _ := json.Marshal(map[string]any{"master_key": bobMaster.Object(t), "self_signing_key": bobSelf.Object(t, bobMaster)})
	if err := b.users.UploadSigningKeys(ctx, bob.userID, body); err != nil {
		t.Fatal(err)
	}
	aliceMaster := userapitest.NewSigningKey(t, alice.userID, "master")
	aliceUser := userapitest.NewSigningKey(t, alice.userID, "user_signing")
	body, _ = json.Marshal(map[string]any{"master_key": aliceMaster.Object(t), "user_signing_key": aliceUser.Object(t, aliceMaster)})
	if err := a.users.UploadSigningKeys(ctx, alice.userID, body); err != nil {
		t.Fatal(err)
	}
	mk, err := userapi.ParseCrossSigningKey("master", bobMaster.Object(t), bob.userID, "master")
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := json.Marshal(map[string]any{bob.userID: map[string]any{mk.PublicKeyB64: aliceUser.Sign(t, bobMaster.Object(t))}})
	if resp, err := a.users.UploadSignatures(ctx, alice.userID, sigs); err != nil || len(resp.Failures) != 0 {
		t.Fatalf("alice signing bob's master key: %+v, %v", resp, err)
	}
	query := func(caller string) json.RawMessage {
		q, err := a.users.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{bob.userID: nil}, Caller: caller})
		if err != nil {
			t.Fatal(err)
		}
		return q.MasterKeys[bob.userID]
	}
	usk, err := userapi.ParseCrossSigningKey("user", aliceUser.Object(t, aliceMaster), alice.userID, "user_signing")
	if err != nil {
		t.Fatal(err)
	}
	if err := gomatrixserverlib.VerifyJSON(alice.userID, gomatrixserverlib.KeyID(aliceUser.KeyID), ed25519.PublicKey(usk.PublicKey), query(alice.userID)); err != nil {
		t.Fatalf("bob's master key as alice queries it has no valid signature of hers: %v", err)
	}
	var m struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(query(carol.userID), &m); err != nil || m.Signatures[alice.userID] != nil {
		t.Fatalf("carol sees alice's signature on bob's master key: %+v %v", m, err)
	}
	// A key b.test does not hold for bob: refused, nothing stored.
	other := userapitest.NewSigningKey(t, bob.userID, "master")
	ok, err := userapi.ParseCrossSigningKey("master", other.Object(t), bob.userID, "master")
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ = json.Marshal(map[string]any{bob.userID: map[string]any{ok.PublicKeyB64: aliceUser.Sign(t, other.Object(t))}})
	resp, err := a.users.UploadSignatures(ctx, alice.userID, sigs)
	if err != nil || resp.Failures[bob.userID][ok.PublicKeyB64].ErrCode != "M_NOT_FOUND" {
		t.Fatalf("signing a master key bob does not have: %+v, %v", resp, err)
	}
}
