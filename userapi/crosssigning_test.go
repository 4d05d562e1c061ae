package userapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

// crossKeys are a user's three test cross-signing keys.
type crossKeys struct{ master, self, user *userapitest.SigningKey }

func newCrossKeys(t *testing.T, userID string) crossKeys {
	return crossKeys{
		master: userapitest.NewSigningKey(t, userID, "master"),
		self:   userapitest.NewSigningKey(t, userID, "self_signing"),
		user:   userapitest.NewSigningKey(t, userID, "user_signing"),
	}
}

// body is a /keys/device_signing/upload body with the three keys, the
// self- and user-signing keys signed by the master key.
func (k crossKeys) body(t *testing.T) []byte {
	return mustJSON(t, map[string]any{
		"master_key":       k.master.Object(t),
		"self_signing_key": k.self.Object(t, k.master),
		"user_signing_key": k.user.Object(t, k.master),
	})
}

// storedCrossKeys returns the stored cross-signing key JSON by usage.
func storedCrossKeys(t *testing.T, db storage.Database, userID string) map[string]string {
	t.Helper()
	m, err := db.CrossSigningKeys(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for u, js := range m {
		out[u] = string(js)
	}
	return out
}

func TestUploadSigningKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		setupAlice(t, s)
		bob := register(t, s, "bob").UserID
		ak := newCrossKeys(t, alice)

		// Bad input: 400 naming the field, nothing stored.
		other := userapitest.NewSigningKey(t, bob, "master")
		twoKeys := map[string]any{"user_id": alice, "usage": []string{"master"}, "keys": map[string]string{ak.master.KeyID: ak.master.Public, ak.self.KeyID: ak.self.Public}}
		mismatch := map[string]any{"user_id": alice, "usage": []string{"master"}, "keys": map[string]string{ak.master.KeyID: ak.self.Public}}
		notKey := map[string]any{"user_id": alice, "usage": []string{"master"}, "keys": map[string]string{"ed25519:abc": "abc"}}
		cases := []struct {
			name, body string
			status     int
			code, want string
		}{
			{"not JSON", "{", 400, "M_NOT_JSON", ""},
			{"not an object", `[]`, 400, "M_BAD_JSON", ""},
			{"master not an object", `{"master_key": 1}`, 400, "M_BAD_JSON", "master_key"},
			{"master without keys", string(mustJSON(t, map[string]any{"master_key": map[string]any{"user_id": alice, "usage": []string{"master"}}})), 400, "M_BAD_JSON", "master_key.keys"},
			{"auth not an object", `{"auth": 1}`, 400, "M_BAD_JSON", "auth"},
			{"master of another user", string(mustJSON(t, map[string]any{"master_key": other.Object(t)})), 400, "M_INVALID_PARAM", "master_key.user_id"},
			{"wrong usage", string(mustJSON(t, map[string]any{"master_key": ak.self.Object(t)})), 400, "M_INVALID_PARAM", "master_key.usage"},
			{"two keys", string(mustJSON(t, map[string]any{"master_key": twoKeys})), 400, "M_INVALID_PARAM", "master_key.keys"},
			{"key ID not the key", string(mustJSON(t, map[string]any{"master_key": mismatch})), 400, "M_INVALID_PARAM", "master_key.keys"},
			{"not an ed25519 key", string(mustJSON(t, map[string]any{"master_key": notKey})), 400, "M_INVALID_PARAM", "master_key.keys"},
			{"self-signing not signed by master", string(mustJSON(t, map[string]any{"master_key": ak.master.Object(t), "self_signing_key": ak.self.Object(t)})), 400, "M_INVALID_PARAM", "self_signing_key"},
			{"self-signing signed by another key", string(mustJSON(t, map[string]any{"master_key": ak.master.Object(t), "self_signing_key": ak.self.Object(t, ak.user)})), 400, "M_INVALID_PARAM", "self_signing_key"},
			{"user-signing not signed by master", string(mustJSON(t, map[string]any{"master_key": ak.master.Object(t), "self_signing_key": ak.self.Object(t, ak.master), "user_signing_key": ak.user.Object(t)})), 400, "M_INVALID_PARAM", "user_signing_key"},
			{"self-signing without any master", string(mustJSON(t, map[string]any{"self_signing_key": ak.self.Object(t, ak.master)})), 400, "M_INVALID_PARAM", "self_signing_key"},
		}
		for _, c := range cases {
			err := s.UploadSigningKeys(ctx, alice, []byte(c.body))
			wantErr(t, err, c.status, c.code)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: error %q does not name %q", c.name, err, c.want)
			}
			if got := storedCrossKeys(t, db, alice); len(got) != 0 {
				t.Fatalf("%s: stored %v", c.name, got)
			}
		}

		// The first upload needs no auth.
		if err := s.UploadSigningKeys(ctx, alice, ak.body(t)); err != nil {
			t.Fatal(err)
		}
		got := storedCrossKeys(t, db, alice)
		if len(got) != 3 || !jsonEqual(got["master"], string(ak.master.Object(t))) || !jsonEqual(got["self_signing"], string(ak.self.Object(t, ak.master))) {
			t.Fatalf("stored %v", got)
		}
		// The same keys again need none either.
		if err := s.UploadSigningKeys(ctx, alice, ak.body(t)); err != nil {
			t.Fatalf("same keys again: %v", err)
		}
		// A self-signing key signed by the stored master, alone, still
		// needs auth once a master key exists (it changes a key).
		self2 := userapitest.NewSigningKey(t, alice, "self_signing")
		err := s.UploadSigningKeys(ctx, alice, mustJSON(t, map[string]any{"self_signing_key": self2.Object(t, ak.master)}))
		var ar *userapi.AuthRequired
		if !errors.As(err, &ar) || ar.Flows[0].Stages[0] != userapi.LoginPassword {
			t.Fatalf("new self-signing key without auth: %v", err)
		}

		// Replacing the master key: 401 without auth or with a wrong
		// password, stored keys unchanged.
		ak2 := newCrossKeys(t, alice)
		err = s.UploadSigningKeys(ctx, alice, ak2.body(t))
		if !errors.As(err, &ar) || ar.ErrCode != "" || ar.Flows[0].Stages[0] != userapi.LoginPassword {
			t.Fatalf("replacing master without auth: %v", err)
		}
		wrong := mustJSON(t, map[string]any{"master_key": ak2.master.Object(t), "auth": map[string]any{"type": "m.login.password", "password": "wrong"}})
		if err := s.UploadSigningKeys(ctx, alice, wrong); !errors.As(err, &ar) || ar.ErrCode != "M_FORBIDDEN" {
			t.Fatalf("replacing master with a wrong password: %v", err)
		}
		if now := storedCrossKeys(t, db, alice); !jsonEqual(now["master"], got["master"]) || !jsonEqual(now["self_signing"], got["self_signing"]) {
			t.Fatalf("keys changed without auth: %v", now)
		}
		withAuth := mustJSON(t, map[string]any{
			"master_key":       ak2.master.Object(t),
			"self_signing_key": ak2.self.Object(t, ak2.master),
			"auth":             map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw"},
		})
		if err := s.UploadSigningKeys(ctx, alice, withAuth); err != nil {
			t.Fatalf("replacing master with auth: %v", err)
		}
		if now := storedCrossKeys(t, db, alice); !jsonEqual(now["master"], string(ak2.master.Object(t))) || !jsonEqual(now["user_signing"], got["user_signing"]) {
			t.Fatalf("after replacing: %v", now)
		}

		// /keys/query: master and self-signing keys for everyone,
		// user-signing only for the caller.
		resp, err := s.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{alice: nil}, Caller: alice})
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(string(resp.MasterKeys[alice]), string(ak2.master.Object(t))) || resp.SelfSigningKeys[alice] == nil || resp.UserSigningKeys[alice] == nil {
			t.Fatalf("query as alice: %+v", resp)
		}
		resp, err = s.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{alice: nil}, Caller: bob})
		if err != nil {
			t.Fatal(err)
		}
		if resp.MasterKeys[alice] == nil || resp.SelfSigningKeys[alice] == nil || resp.UserSigningKeys != nil {
			t.Fatalf("query as bob: %+v", resp)
		}
	})
}

func TestUploadSignatures(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		dev := setupAlice(t, s)
		bobReg := register(t, s, "bob")
		bob := bobReg.UserID
		devKeys := mustJSON(t, dev.DeviceKeys(t))
		if _, err := s.UploadKeys(ctx, alice, aliceDev, mustJSON(t, map[string]any{"device_keys": json.RawMessage(devKeys)})); err != nil {
			t.Fatal(err)
		}
		ak, bk := newCrossKeys(t, alice), newCrossKeys(t, bob)
		// Before alice has a self-signing key, signing her device fails.
		resp, err := s.UploadSignatures(ctx, alice, mustJSON(t, map[string]any{alice: map[string]any{aliceDev: ak.self.Sign(t, devKeys)}}))
		if err != nil || resp.Failures[alice][aliceDev].ErrCode != "M_NOT_FOUND" {
			t.Fatalf("without a self-signing key: %+v, %v", resp, err)
		}
		if err := s.UploadSigningKeys(ctx, alice, ak.body(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.UploadSigningKeys(ctx, bob, bk.body(t)); err != nil {
			t.Fatal(err)
		}

		// Bad bodies are 400 and store nothing.
		for _, b := range []string{"{", `[]`, `{"` + alice + `": 1}`, `{"` + alice + `": {"` + aliceDev + `": 1}}`, `{"notauser": {}}`} {
			_, err := s.UploadSignatures(ctx, alice, []byte(b))
			if err == nil {
				t.Fatalf("body %s accepted", b)
			}
		}
		_, err = s.UploadSignatures(ctx, alice, []byte(`{"`+alice+`": {"`+aliceDev+`": 1}}`))
		wantErr(t, err, 400, "M_BAD_JSON")

		forged := userapitest.NewSigningKey(t, alice, "self_signing")
		forged.KeyID = ak.self.KeyID // claims to be alice's self-signing key
		changed := map[string]any{}
		_ = json.Unmarshal(devKeys, &changed)
		changed["algorithms"] = []string{"other"}
		body := mustJSON(t, map[string]any{
			alice: map[string]any{
				aliceDev: ak.self.Sign(t, devKeys),
				"NODEV":  ak.self.Sign(t, mustJSON(t, map[string]any{"user_id": alice, "device_id": "NODEV"})),
			},
			bob: map[string]any{bk.master.Public: ak.user.Sign(t, bk.master.Object(t))},
		})
		resp, err = s.UploadSignatures(ctx, alice, body)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Failures) != 1 || len(resp.Failures[alice]) != 1 || resp.Failures[alice]["NODEV"].ErrCode != "M_NOT_FOUND" {
			t.Fatalf("failures %+v", resp.Failures)
		}
		sigs, err := db.CrossSigningSignatures(ctx, alice)
		if err != nil || len(sigs) != 1 || sigs[0].TargetKeyID != aliceDev || sigs[0].SignerKeyID != ak.self.KeyID {
			t.Fatalf("signatures on alice: %+v, %v", sigs, err)
		}
		sigs, err = db.CrossSigningSignatures(ctx, bob)
		if err != nil || len(sigs) != 1 || sigs[0].TargetKeyID != bk.master.Public || sigs[0].SignerUserID != alice || sigs[0].SignerKeyID != ak.user.KeyID {
			t.Fatalf("signatures on bob: %+v, %v", sigs, err)
		}

		// Invalid ones are listed in failures and not stored; a valid one
		// in the same upload is.
		carol := register(t, s, "carol").UserID
		ck := newCrossKeys(t, carol)
		if err := s.UploadSigningKeys(ctx, carol, ck.body(t)); err != nil {
			t.Fatal(err)
		}
		body = mustJSON(t, map[string]any{
			alice: map[string]any{aliceDev: forged.Sign(t, devKeys)},
			bob:   map[string]any{bk.master.Public: ak.user.Sign(t, mustJSON(t, changed))},
			carol: map[string]any{
				ck.master.Public: ak.user.Sign(t, ck.master.Object(t)),
				ck.self.Public:   ak.user.Sign(t, ck.self.Object(t, ck.master)),
			},
		})
		resp, err = s.UploadSignatures(ctx, alice, body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Failures[alice][aliceDev].ErrCode != "M_INVALID_SIGNATURE" || resp.Failures[bob][bk.master.Public].ErrCode != "M_INVALID_PARAM" ||
			resp.Failures[carol][ck.self.Public].ErrCode != "M_NOT_FOUND" || len(resp.Failures[carol]) != 1 {
			t.Fatalf("failures %+v", resp.Failures)
		}
		if sigs, _ := db.CrossSigningSignatures(ctx, alice); len(sigs) != 1 || sigs[0].Signature == "" {
			t.Fatalf("signatures on alice after a forged one: %+v", sigs)
		}
		if sigs, _ := db.CrossSigningSignatures(ctx, carol); len(sigs) != 1 || sigs[0].TargetKeyID != ck.master.Public {
			t.Fatalf("signatures on carol: %+v", sigs)
		}
		// /keys/query merges the signatures in.
		q, err := s.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{alice: nil, bob: nil}, Caller: bob})
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Signatures map[string]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(q.DeviceKeys[alice][aliceDev], &d); err != nil || d.Signatures[alice][ak.self.KeyID] == "" || d.Signatures[alice]["m.mls.v1.basic:"+aliceDev] == "" {
			t.Fatalf("alice's device keys %s, %v", q.DeviceKeys[alice][aliceDev], err)
		}
		if err := json.Unmarshal(q.MasterKeys[bob], &d); err != nil || d.Signatures[alice][ak.user.KeyID] == "" {
			t.Fatalf("bob's master key %s, %v", q.MasterKeys[bob], err)
		}
		// The merged objects verify with the signing keys.
		if err := gomatrixserverlib.VerifyJSON(alice, gomatrixserverlib.KeyID(ak.self.KeyID), ak.self.Private.Public().(ed25519.PublicKey), q.DeviceKeys[alice][aliceDev]); err != nil {
			t.Fatalf("merged device keys: %v", err)
		}
		if err := gomatrixserverlib.VerifyJSON(alice, gomatrixserverlib.KeyID(ak.user.KeyID), ak.user.Private.Public().(ed25519.PublicKey), q.MasterKeys[bob]); err != nil {
			t.Fatalf("merged master key: %v", err)
		}
	})
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return string(mustJSONAny(x)) == string(mustJSONAny(y))
}

func mustJSONAny(v any) []byte { b, _ := json.Marshal(v); return b }
