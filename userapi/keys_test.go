package userapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

const (
	alice    = "@alice:" + server
	aliceDev = "ADEV"
)

func TestCheckKeyPackage(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	dev := userapitest.NewDevice(t, alice, aliceDev, userapitest.Suite)
	alg := userapitest.Algorithm(t, userapitest.Suite)
	good := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
	other := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
	if kp, err := userapi.CheckKeyPackage(ctx, alg, good.KeyID, good.Value, alice, aliceDev, now); err != nil || kp == nil {
		t.Fatalf("good key package refused: %v", err)
	}
	// The unstable room version's algorithm names the same suite.
	unstable, _ := roomversion.V1Unstable.Algorithm(userapitest.Suite)
	uid := unstable + strings.TrimPrefix(good.KeyID, alg)
	if _, err := userapi.CheckKeyPackage(ctx, unstable, uid, good.Value, alice, aliceDev, now); err != nil {
		t.Fatalf("unstable algorithm refused: %v", err)
	}
	// A P-256 package under its own algorithm is fine too.
	p256 := userapitest.NewDevice(t, alice, aliceDev, mls.P256AES128GCMSHA256P256)
	pkp := p256.NewKeyPackage(t, userapitest.KeyPackageOptions{})
	palg := userapitest.Algorithm(t, mls.P256AES128GCMSHA256P256)
	if _, err := userapi.CheckKeyPackage(ctx, palg, pkp.KeyID, pkp.Value, alice, aliceDev, now); err != nil {
		t.Fatalf("P-256 key package refused: %v", err)
	}

	bobCred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: "@bob:" + server, DeviceID: aliceDev, SignatureKey: dev.Signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	devCred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: alice, DeviceID: "OTHER", SignatureKey: dev.Signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	x509 := mls.Credential{CredentialType: mls.CredentialTypeX509}
	bad := func(o userapitest.KeyPackageOptions) userapitest.KeyPackage { return dev.NewKeyPackage(t, o) }
	past := now.Add(-48 * time.Hour)
	cases := []struct {
		name, alg, keyID, value, want string
	}{
		{"non-MLS algorithm", "signed_curve25519", "signed_curve25519:" + strings.SplitN(good.KeyID, ":", 2)[1], good.Value, "MLS rooms only"},
		{"key ID of another algorithm", palg, good.KeyID, good.Value, "differs"},
		{"suite differs from algorithm", palg, palg + ":" + strings.SplitN(good.KeyID, ":", 2)[1], good.Value, "cipher suite"},
		{"no colon", alg, "nocolon", good.Value, "not <algorithm>"},
		{"padded base64 value", alg, good.KeyID, good.Value + "=", "base64"},
		{"not an MLSMessage", alg, good.KeyID, "AAAA", "MLSMessage"},
		{"key ID is another package's ref", alg, other.KeyID, good.Value, "KeyPackageRef"},
		{"bad ref base64", alg, alg + ":!!", good.Value, "base64"},
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Mutate: func(kp *mls.KeyPackage) { kp.Signature[0] ^= 1 }})
			return struct{ name, alg, keyID, value, want string }{"bad KeyPackage signature", alg, kp.KeyID, kp.Value, "signature"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Mutate: func(kp *mls.KeyPackage) { kp.LeafNode.Signature[0] ^= 1 }})
			return struct{ name, alg, keyID, value, want string }{"bad LeafNode signature", alg, kp.KeyID, kp.Value, "leaf_node.signature"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Credential: &bobCred})
			return struct{ name, alg, keyID, value, want string }{"identity of another user", alg, kp.KeyID, kp.Value, "not the uploading device"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Credential: &devCred})
			return struct{ name, alg, keyID, value, want string }{"identity of another device", alg, kp.KeyID, kp.Value, "not the uploading device"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Credential: &x509, Capabilities: &mls.Capabilities{Extensions: []mls.ExtensionType{0xF6D0}, Credentials: []mls.CredentialType{mls.CredentialTypeBasic}}})
			return struct{ name, alg, keyID, value, want string }{"x509 credential", alg, kp.KeyID, kp.Value, "credential"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{NotBefore: past.Add(-time.Hour), NotAfter: past})
			return struct{ name, alg, keyID, value, want string }{"expired", alg, kp.KeyID, kp.Value, "lifetime"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
			return struct{ name, alg, keyID, value, want string }{"not yet valid", alg, kp.KeyID, kp.Value, "lifetime"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Resign: true, Mutate: func(kp *mls.KeyPackage) { kp.InitKey = slices.Clone(kp.LeafNode.EncryptionKey) }})
			return struct{ name, alg, keyID, value, want string }{"init_key equals encryption_key", alg, kp.KeyID, kp.Value, "init_key equals"}
		}(),
		func() struct{ name, alg, keyID, value, want string } {
			kp := bad(userapitest.KeyPackageOptions{Capabilities: &mls.Capabilities{}})
			return struct{ name, alg, keyID, value, want string }{"0xF6D0 not in capabilities", alg, kp.KeyID, kp.Value, "does not list required"}
		}(),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := userapi.CheckKeyPackage(ctx, c.alg, c.keyID, c.value, alice, aliceDev, now)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
		})
	}
}

// setupAlice registers alice with device ADEV on s.
func setupAlice(t *testing.T, s *userapi.Service) *userapitest.Device {
	t.Helper()
	if _, err := s.Register(context.Background(), userapi.RegisterRequest{Username: "alice", Password: "pw", DeviceID: aliceDev, Auth: &userapi.AuthData{Type: userapi.LoginDummy}}); err != nil {
		t.Fatal(err)
	}
	return userapitest.NewDevice(t, alice, aliceDev, userapitest.Suite)
}

func TestUploadKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		dev := setupAlice(t, s)
		alg := userapitest.Algorithm(t, userapitest.Suite)
		kps := dev.KeyPackages(t, 4)
		fb := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
		body := mustJSON(t, map[string]any{
			"device_keys":   dev.DeviceKeys(t),
			"one_time_keys": userapitest.KeyMap(kps...),
			"fallback_keys": userapitest.KeyMap(fb),
		})
		resp, err := s.UploadKeys(ctx, alice, aliceDev, body)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(resp.OneTimeKeyCounts, map[string]int{alg: 4}) {
			t.Fatalf("counts %v", resp.OneTimeKeyCounts)
		}
		ids, err := db.KeyPackageIDs(ctx, alice, aliceDev)
		if err != nil || len(ids) != 5 {
			t.Fatalf("stored IDs %v %v", ids, err)
		}
		keys, err := db.DeviceKeys(ctx, alice, nil)
		if err != nil || len(keys) != 1 || keys[0].Credentials[alg] != dev.CredentialValue(t) {
			t.Fatalf("device keys %+v %v", keys, err)
		}
		list, err := s.ListKeys(ctx, alice, aliceDev)
		if err != nil || len(list.OneTimeKeys) != 4 || !slices.Equal(list.FallbackKeys, []string{fb.KeyID}) || slices.Contains(list.OneTimeKeys, fb.KeyID) {
			t.Fatalf("list %+v %v", list, err)
		}
		// Uploading the same packages again keeps them (same ID, same value).
		if resp, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"one_time_keys": userapitest.KeyMap(kps...)})); err != nil || resp.OneTimeKeyCounts[alg] != 4 {
			t.Fatalf("re-upload %+v %v", resp, err)
		}

		// One bad package among several good ones: nothing stored.
		more := dev.KeyPackages(t, 3)
		expired := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-48 * time.Hour)})
		newDev := userapitest.NewDevice(t, alice, aliceDev, userapitest.Suite)
		for _, c := range []struct {
			name string
			body map[string]any
			code string
		}{
			{"expired one-time key", map[string]any{"one_time_keys": userapitest.KeyMap(append(more, expired)...)}, "M_BAD_JSON"},
			{"bad fallback with good one-time keys", map[string]any{"one_time_keys": userapitest.KeyMap(more...), "fallback_keys": userapitest.KeyMap(expired)}, "M_BAD_JSON"},
			{"two fallbacks of one algorithm", map[string]any{"one_time_keys": userapitest.KeyMap(more...), "fallback_keys": userapitest.KeyMap(more[0], more[1])}, "M_BAD_JSON"},
			{"non-MLS one-time key", map[string]any{"one_time_keys": map[string]string{"signed_curve25519:AAAAAQ": "x"}}, "M_BAD_JSON"},
			{"object value", map[string]any{"one_time_keys": map[string]any{more[0].KeyID: map[string]string{"key": "x"}}}, "M_BAD_JSON"},
			{"device keys of another user", map[string]any{"device_keys": withField(newDev.DeviceKeys(t), "user_id", "@bob:"+server), "one_time_keys": userapitest.KeyMap(more...)}, "M_BAD_JSON"},
			{"device keys of another device", map[string]any{"device_keys": withField(newDev.DeviceKeys(t), "device_id", "OTHER"), "one_time_keys": userapitest.KeyMap(more...)}, "M_BAD_JSON"},
			{"device keys without keys", map[string]any{"device_keys": withField(newDev.DeviceKeys(t), "keys", nil), "one_time_keys": userapitest.KeyMap(more...)}, "M_BAD_JSON"},
			{"signatures not an object", map[string]any{"device_keys": withField(newDev.DeviceKeys(t), "signatures", "x"), "one_time_keys": userapitest.KeyMap(more...)}, "M_BAD_JSON"},
			{"bad credential", map[string]any{"device_keys": withField(newDev.DeviceKeys(t), "keys", map[string]string{alg + ":" + aliceDev: "AAAA"}), "one_time_keys": userapitest.KeyMap(more...)}, "M_BAD_JSON"},
			{"one_time_keys not an object", map[string]any{"one_time_keys": []string{"x"}}, "M_BAD_JSON"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, c.body))
				wantErr(t, err, 400, c.code)
				after, err := db.KeyPackageIDs(ctx, alice, aliceDev)
				if err != nil || !slices.Equal(after, ids) {
					t.Fatalf("key packages changed by a refused upload: %v (was %v) %v", after, ids, err)
				}
				keys, err := db.DeviceKeys(ctx, alice, nil)
				if err != nil || len(keys) != 1 || keys[0].Credentials[alg] != dev.CredentialValue(t) {
					t.Fatalf("device keys changed by a refused upload: %+v %v", keys, err)
				}
			})
		}
		_, err = s.UploadKeys(ctx, alice, aliceDev, []byte(`{"one_time_keys":`))
		wantErr(t, err, 400, "M_NOT_JSON")
	})
}

// TestKeysClaimedAndFallbacks: /keys/list splits one-time and fallback
// key IDs from the store (no marker rows kept elsewhere) and keeps a used
// fallback listed; a claimed key package uploaded again is 400 M_BAD_JSON
// naming it, and nothing of that upload is stored.
func TestKeysClaimedAndFallbacks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		dev := setupAlice(t, s)
		alg := userapitest.Algorithm(t, userapitest.Suite)
		kps := dev.KeyPackages(t, 2)
		fb := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{
			"one_time_keys": userapitest.KeyMap(kps...), "fallback_keys": userapitest.KeyMap(fb),
		})); err != nil {
			t.Fatal(err)
		}
		// The fallback is known to the store itself, not through sync
		// positions.
		if pos, err := db.SyncPosition(ctx, alice, aliceDev, "userapi.fallback:"+fb.KeyID); err != nil || pos != 0 {
			t.Fatalf("marker row for the fallback: %d, %v", pos, err)
		}
		claimed := map[string]bool{}
		for range 3 { // two one-time packages, then the fallback
			m, err := s.ClaimLocalKeys(ctx, alice, map[string]string{aliceDev: alg})
			if err != nil || len(m[aliceDev]) != 1 {
				t.Fatalf("claim %v %v", m, err)
			}
			for id := range m[aliceDev] {
				claimed[id] = true
			}
		}
		if len(claimed) != 3 || !claimed[fb.KeyID] {
			t.Fatalf("claimed %v", claimed)
		}
		list, err := s.ListKeys(ctx, alice, aliceDev)
		if err != nil || len(list.OneTimeKeys) != 0 || !slices.Equal(list.FallbackKeys, []string{fb.KeyID}) {
			t.Fatalf("list after claims (used fallback still held): %+v %v", list, err)
		}
		fresh := dev.KeyPackages(t, 2)
		_, err = s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"one_time_keys": userapitest.KeyMap(append(fresh, kps[1])...)}))
		wantErr(t, err, 400, "M_BAD_JSON")
		if msg := matrixerr.As(err).Message; !strings.Contains(msg, kps[1].KeyID) || !strings.Contains(msg, "claimed") {
			t.Fatalf("error does not name the claimed key: %s", msg)
		}
		if ids, err := db.KeyPackageIDs(ctx, alice, aliceDev); err != nil || !slices.Equal(ids, []string{fb.KeyID}) {
			t.Fatalf("refused upload stored packages: %v %v", ids, err)
		}
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"one_time_keys": userapitest.KeyMap(fresh...)})); err != nil {
			t.Fatalf("fresh packages: %v", err)
		}
		list, err = s.ListKeys(ctx, alice, aliceDev)
		want := []string{fresh[0].KeyID, fresh[1].KeyID}
		slices.Sort(want)
		if err != nil || !slices.Equal(list.OneTimeKeys, want) || !slices.Equal(list.FallbackKeys, []string{fb.KeyID}) {
			t.Fatalf("list %+v %v; want one-time %v", list, err, want)
		}
	})
}

// withField returns m with field set (nil deletes it).
func withField(m map[string]any, field string, v any) map[string]any {
	if v == nil {
		delete(m, field)
	} else {
		m[field] = v
	}
	return m
}

func TestClaimKeysConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		dev := setupAlice(t, s)
		alg := userapitest.Algorithm(t, userapitest.Suite)
		const n = 20
		kps := dev.KeyPackages(t, n)
		fb := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"one_time_keys": userapitest.KeyMap(kps...), "fallback_keys": userapitest.KeyMap(fb)})); err != nil {
			t.Fatal(err)
		}
		const claims = 50
		got := make([]string, claims)
		var wg sync.WaitGroup
		errs := make(chan error, claims)
		for i := range claims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := s.ClaimKeys(ctx, userapi.ClaimKeysRequest{OneTimeKeys: map[string]map[string]string{alice: {aliceDev: alg}}})
				if err != nil {
					errs <- err
					return
				}
				for id := range resp.OneTimeKeys[alice][aliceDev] {
					got[i] = id
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for _, kp := range kps {
			if seen[kp.KeyID] != 1 {
				t.Fatalf("one-time key %s handed out %d times", kp.KeyID, seen[kp.KeyID])
			}
		}
		if seen[fb.KeyID] != claims-n {
			t.Fatalf("fallback handed out %d times, want %d (claims %v)", seen[fb.KeyID], claims-n, seen)
		}
		if counts, _ := db.CountOneTimeKeyPackages(ctx, alice, aliceDev); counts[alg] != 0 {
			t.Fatalf("counts after claims %v", counts)
		}
		// The claimed value is the uploaded string.
		resp, err := s.ClaimKeys(ctx, userapi.ClaimKeysRequest{OneTimeKeys: map[string]map[string]string{alice: {aliceDev: alg}}})
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := json.Unmarshal(resp.OneTimeKeys[alice][aliceDev][fb.KeyID], &v); err != nil || v != fb.Value {
			t.Fatalf("claimed fallback value %q %v", v, err)
		}
		// Non-MLS algorithm: refused.
		_, err = s.ClaimKeys(ctx, userapi.ClaimKeysRequest{OneTimeKeys: map[string]map[string]string{alice: {aliceDev: "signed_curve25519"}}})
		wantErr(t, err, 400, "M_INVALID_PARAM")
		// Unknown device: left out; remote user without federation: failures.
		resp, err = s.ClaimKeys(ctx, userapi.ClaimKeysRequest{OneTimeKeys: map[string]map[string]string{alice: {"NOPE": alg}, "@bob:b.example": {"B": alg}}})
		if err != nil || len(resp.OneTimeKeys) != 0 || resp.Failures["b.example"] == nil {
			t.Fatalf("claim %+v %v", resp, err)
		}
	})
}

// fakeRemote records federation calls.
type fakeRemote struct {
	mu   sync.Mutex
	sent []string
}

func (f *fakeRemote) QueryKeys(_ context.Context, server string, req map[string][]string) (userapi.QueryKeysResponse, error) {
	if server != "b.example" {
		return userapi.QueryKeysResponse{}, errors.New("unreachable")
	}
	out := userapi.QueryKeysResponse{DeviceKeys: map[string]map[string]json.RawMessage{}}
	for u := range req {
		out.DeviceKeys[u] = map[string]json.RawMessage{"B": json.RawMessage(`{"device_id":"B"}`)}
	}
	out.DeviceKeys["@sneaky:c.example"] = map[string]json.RawMessage{"X": json.RawMessage(`{}`)}
	return out, nil
}

func (f *fakeRemote) ClaimKeys(context.Context, string, map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	return nil, errors.New("unreachable")
}

func (f *fakeRemote) SendToDevice(_ context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, server+"|"+sender+"|"+eventType+"|"+messageID)
	return nil
}

func (f *fakeRemote) DeviceListUpdate(context.Context, string, string, bool, json.RawMessage) error {
	return nil
}

func (f *fakeRemote) Profile(context.Context, string, string) (storage.Profile, error) {
	return storage.Profile{DisplayName: "Remote"}, nil
}

func TestQueryKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		dev := setupAlice(t, s)
		name := "phone"
		if err := s.UpdateDevice(ctx, alice, aliceDev, userapi.UpdateDeviceRequest{DisplayName: &name}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"device_keys": dev.DeviceKeys(t)})); err != nil {
			t.Fatal(err)
		}
		resp, err := s.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{alice: nil, "@nobody:" + server: nil, "@bob:b.example": nil}})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			UserID   string            `json:"user_id"`
			Keys     map[string]string `json:"keys"`
			Unsigned map[string]string `json:"unsigned"`
		}
		if err := json.Unmarshal(resp.DeviceKeys[alice][aliceDev], &got); err != nil {
			t.Fatal(err)
		}
		alg := userapitest.Algorithm(t, userapitest.Suite)
		if got.UserID != alice || got.Keys[alg+":"+aliceDev] != dev.CredentialValue(t) || got.Unsigned["device_display_name"] != "phone" {
			t.Fatalf("queried keys %+v", got)
		}
		if m, ok := resp.DeviceKeys["@nobody:"+server]; !ok || len(m) != 0 {
			t.Fatalf("unknown local user: %v", resp.DeviceKeys)
		}
		if resp.Failures["b.example"] == nil {
			t.Fatalf("no failure for b.example without federation: %+v", resp)
		}
		_, err = s.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{"bob": nil}})
		wantErr(t, err, 400, "M_INVALID_PARAM")

		// Through a Remote: answers only for users asked of that server.
		rs := newService(t, db, &fakeRemote{})
		resp, err = rs.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{"@bob:b.example": nil, "@carol:c.example": nil}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.DeviceKeys["@bob:b.example"]["B"] == nil || resp.DeviceKeys["@sneaky:c.example"] != nil || resp.Failures["c.example"] == nil {
			t.Fatalf("remote query %+v", resp)
		}
		p, err := rs.Profile(ctx, "@bob:b.example", "")
		if err != nil || p.DisplayName != "Remote" {
			t.Fatalf("remote profile %+v %v", p, err)
		}
	})
}

func TestSendToDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		setupAlice(t, s)
		bob := register(t, s, "bob")
		bob2, err := s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", User: "bob", Password: "pw-bob"})
		if err != nil {
			t.Fatal(err)
		}
		welcome := json.RawMessage(`{"algorithm":"m.mls.v1.X","room_id":"!r:a.example","welcome":"AAAA"}`)
		req := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{
			bob.UserID:          {"*": welcome},
			"@nobody:" + server: {"X": welcome},
			alice:               {"NOPE": welcome},
		}}
		for range 3 { // replays deliver nothing
			if err := s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txn1", req); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{bob.DeviceID, bob2.DeviceID} {
			msgs, err := db.ToDeviceMessages(ctx, bob.UserID, d, 0, 100)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("inbox of %s: %+v %v", d, msgs, err)
			}
			if msgs[0].Sender != alice || msgs[0].Type != "m.mls.welcome" || string(msgs[0].Content) != string(welcome) {
				t.Fatalf("message %+v", msgs[0])
			}
		}
		// Another transaction ID delivers again; the same ID from another
		// device of the sender is another transaction.
		if err := s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txn2", userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.UserID: {bob.DeviceID: welcome}}}); err != nil {
			t.Fatal(err)
		}
		if msgs, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(msgs) != 2 {
			t.Fatalf("after txn2: %d messages", len(msgs))
		}
		// Refusals deliver nothing.
		for _, c := range []struct {
			name string
			req  userapi.SendToDeviceRequest
			code string
		}{
			{"remote without federation", userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.UserID: {"*": welcome}, "@carol:b.example": {"C": welcome}}}, "M_FORBIDDEN"},
			{"content not an object", userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.UserID: {"*": json.RawMessage(`"x"`)}}}, "M_BAD_JSON"},
			{"bad user ID", userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{"bob": {"*": welcome}}}, "M_INVALID_PARAM"},
		} {
			err := s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txn-"+c.name, c.req)
			if c.code == "M_FORBIDDEN" {
				wantErr(t, err, 403, c.code)
			} else {
				wantErr(t, err, 400, c.code)
			}
		}
		if msgs, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(msgs) != 2 {
			t.Fatalf("refused requests delivered: %d messages", len(msgs))
		}
		err = s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "", req)
		wantErr(t, err, 400, "M_INVALID_PARAM")

		// Remote recipients go through Remote with a deterministic message_id.
		fr := &fakeRemote{}
		rs := newService(t, db, fr)
		rreq := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{"@carol:b.example": {"C": welcome}}}
		for range 2 {
			if err := rs.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txn3", rreq); err != nil {
				t.Fatal(err)
			}
		}
		want := "b.example|" + alice + "|m.mls.welcome|" + userapi.MessageID(alice, aliceDev, "txn3")
		if len(fr.sent) != 1 || fr.sent[0] != want {
			t.Fatalf("remote sends %v, want [%s]", fr.sent, want)
		}
		if userapi.MessageID(alice, aliceDev, "txn3") == userapi.MessageID(alice, aliceDev+"x", "txn3") {
			t.Fatal("message IDs of two devices collide")
		}
		// A replay of a transaction with local and remote recipients
		// delivers neither.
		mixed := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{
			bob.UserID: {bob.DeviceID: welcome}, "@carol:b.example": {"C": welcome}}}
		for range 2 {
			if err := rs.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txn4", mixed); err != nil {
				t.Fatal(err)
			}
		}
		if msgs, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(msgs) != 3 || len(fr.sent) != 2 {
			t.Fatalf("mixed transaction sent twice: %d local messages, remote sends %v", len(msgs), fr.sent)
		}
	})
}

// TestSendToDeviceConcurrent sends one transaction from 8 goroutines
// through two Services (two processes) on one database: it is delivered
// once. A device deleted and re-created with its ID starts its
// transactions afresh.
func TestSendToDeviceConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		setupAlice(t, s)
		bob := register(t, s, "bob")
		other := newService(t, db, nil)
		svcs := []*userapi.Service{s, other}
		welcome := json.RawMessage(`{"welcome":"AAAA"}`)
		req := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.UserID: {"*": welcome}}}
		for round := range 5 {
			txn := "txn" + string(rune('a'+round))
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Add(1)
				go func(s *userapi.Service) {
					defer wg.Done()
					errs <- s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", txn, req)
				}(svcs[i%2])
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if msgs, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(msgs) != round+1 {
				t.Fatalf("round %d: %d messages, want %d", round, len(msgs), round+1)
			}
		}
		// No marker rows in the sender's sync positions.
		if pos, err := db.SyncPosition(ctx, alice, aliceDev, "userapi.sendToDevice.txn:txna"); err != nil || pos != 0 {
			t.Fatalf("marker row: %d %v", pos, err)
		}
		// Log out and back in with the same device ID: txna is new.
		if err := s.Logout(ctx, alice, aliceDev); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", User: "alice", Password: "pw", DeviceID: aliceDev}); err != nil {
			t.Fatal(err)
		}
		if err := s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "txna", req); err != nil {
			t.Fatal(err)
		}
		if msgs, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(msgs) != 6 {
			t.Fatalf("re-created device's transaction: %d messages, want 6", len(msgs))
		}
	})
}

func TestParseAlgorithm(t *testing.T) {
	for _, alg := range []string{"m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", "de.bwi.mls.v1.MLS_128_DHKEMP256_AES128GCM_SHA256_P256"} {
		if _, err := userapi.ParseAlgorithm(alg); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
	}
	for _, alg := range []string{"", "signed_curve25519", "m.mls.v1.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", "m.mls.v1.basic"} {
		if _, err := userapi.ParseAlgorithm(alg); err == nil {
			t.Errorf("%s accepted", alg)
		}
	}
}

// FuzzKeysUpload feeds arbitrary bodies to the /keys/upload parser and, for
// what parses, to the §9 checks: the parser refuses with a Matrix error or
// keeps exactly the one-time keys the body names; nothing panics.
func FuzzKeysUpload(f *testing.F) {
	dev := userapitest.NewDevice(f, alice, aliceDev, userapitest.Suite)
	kp := dev.NewKeyPackage(f, userapitest.KeyPackageOptions{})
	f.Add(mustJSON(f, map[string]any{"one_time_keys": userapitest.KeyMap(kp)}))
	f.Add(mustJSON(f, map[string]any{"device_keys": dev.DeviceKeys(f), "fallback_keys": userapitest.KeyMap(kp)}))
	f.Add([]byte(`{"one_time_keys":{"a:b":1}}`))
	f.Add([]byte(`{"device_keys":{"user_id":null}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	now := time.Now()
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := userapi.ParseKeysUpload(body)
		if err != nil {
			if matrixerr.As(err) == nil {
				t.Fatalf("non-Matrix error %v", err)
			}
			return
		}
		var raw map[string]map[string]any
		if json.Unmarshal(body, &raw) == nil && raw != nil && len(raw["one_time_keys"]) != len(up.OneTimeKeys) {
			t.Fatalf("parsed %d one-time keys of %d", len(up.OneTimeKeys), len(raw["one_time_keys"]))
		}
		for id, v := range up.OneTimeKeys {
			alg, _, _ := strings.Cut(id, ":")
			got, err := userapi.CheckKeyPackage(context.Background(), alg, id, v, alice, aliceDev, now)
			if err == nil && got == nil {
				t.Fatal("accepted without a key package")
			}
		}
	})
}

// awaitChange waits for a notified key (or "*").
func awaitChange(t *testing.T, ch <-chan string, key string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case k, ok := <-ch:
			if !ok {
				t.Fatalf("change channel closed before %s", key)
			}
			if k == key || k == "*" {
				return
			}
		case <-timeout:
			t.Fatalf("no change notified for %s", key)
		}
	}
}

func TestNotifyChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dev := setupAlice(t, s)
		bob := register(t, s, "bob")
		ch, err := db.SubscribeChanges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"one_time_keys": userapitest.KeyMap(dev.KeyPackages(t, 1)...)})); err != nil {
			t.Fatal(err)
		}
		awaitChange(t, ch, alice)
		msg := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.UserID: {"*": json.RawMessage(`{}`)}}}
		if err := s.SendToDevice(ctx, alice, aliceDev, "m.mls.welcome", "n1", msg); err != nil {
			t.Fatal(err)
		}
		awaitChange(t, ch, bob.UserID)
	})
}

// TestReceiveToDevice: an m.direct_to_device EDU from another server is
// delivered to local devices once per (sender, message_id), and refused
// when the sender is not the origin's or a recipient is not local.
func TestReceiveToDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		bob := register(t, s, "bob")
		welcome := json.RawMessage(`{"algorithm":"m.mls.v1.X","room_id":"!r:b.example","welcome":"AAAA"}`)
		msgs := map[string]map[string]json.RawMessage{bob.UserID: {"*": welcome}}
		for i := range 3 { // a retried federation transaction delivers nothing
			isNew, err := s.ReceiveToDevice(ctx, "b.example", "@carol:b.example", "m.mls.welcome", "mid1", msgs)
			if err != nil || isNew != (i == 0) {
				t.Fatalf("receipt %d: new %v, %v", i, isNew, err)
			}
		}
		got, err := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100)
		if err != nil || len(got) != 1 || got[0].Sender != "@carol:b.example" || string(got[0].Content) != string(welcome) {
			t.Fatalf("inbox %+v, %v", got, err)
		}
		// Another message_id is another message.
		if isNew, err := s.ReceiveToDevice(ctx, "b.example", "@carol:b.example", "m.mls.welcome", "mid2", msgs); err != nil || !isNew {
			t.Fatalf("second message: %v, %v", isNew, err)
		}
		before, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100)
		_, err = s.ReceiveToDevice(ctx, "c.example", "@carol:b.example", "m.mls.welcome", "mid3", msgs)
		wantErr(t, err, 403, "M_FORBIDDEN")
		_, err = s.ReceiveToDevice(ctx, "b.example", "@carol:b.example", "m.mls.welcome", "mid4",
			map[string]map[string]json.RawMessage{"@dave:c.example": {"D": welcome}})
		wantErr(t, err, 403, "M_FORBIDDEN")
		_, err = s.ReceiveToDevice(ctx, "b.example", "@carol:b.example", "m.mls.welcome", "mid5",
			map[string]map[string]json.RawMessage{bob.UserID: {"*": json.RawMessage(`"text"`)}})
		wantErr(t, err, 400, "M_BAD_JSON")
		if after, _ := db.ToDeviceMessages(ctx, bob.UserID, bob.DeviceID, 0, 100); len(after) != len(before) {
			t.Fatalf("a refused EDU delivered: %d -> %d", len(before), len(after))
		}
	})
}
