package clientapi_test

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

// crossState is what the cross-signing endpoints store of users.
func crossState(t *testing.T, db storage.Database, users ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, u := range users {
		keys, err := db.CrossSigningKeys(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for usage, js := range keys {
			out[u+" "+usage] = string(js)
		}
		sigs, err := db.CrossSigningSignatures(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sigs {
			out[u+" sig "+s.TargetKeyID+" "+s.SignerUserID+" "+s.SignerKeyID] = s.Signature
		}
	}
	return out
}

func TestCrossSigningEndpoints(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		aliceID, aliceDev, tok := e.register("alice")
		bobID, _, bobTok := e.register("bob")
		dev := userapitest.NewDevice(t, aliceID, aliceDev, userapitest.Suite)
		e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"device_keys": dev.DeviceKeys(t)}).must(t, 200, "device keys")
		master := userapitest.NewSigningKey(t, aliceID, "master")
		self := userapitest.NewSigningKey(t, aliceID, "self_signing")
		user := userapitest.NewSigningKey(t, aliceID, "user_signing")
		bobMaster := userapitest.NewSigningKey(t, bobID, "master")
		const signingPath = acctV3 + "/keys/device_signing/upload"
		const sigsPath = acctV3 + "/keys/signatures/upload"

		// Bad input: 400 naming the field, nothing stored.
		bad := []struct {
			what, code, field string
			body              any
		}{
			{"not JSON", "M_NOT_JSON", "", "{"},
			{"master not an object", "M_BAD_JSON", "master_key", map[string]any{"master_key": "x"}},
			{"another user's master", "M_INVALID_PARAM", "master_key.user_id", map[string]any{"master_key": bobMaster.Object(t)}},
			{"usage mismatch", "M_INVALID_PARAM", "self_signing_key.usage", map[string]any{"master_key": master.Object(t), "self_signing_key": user.Object(t, master)}},
			{"self-signing unsigned", "M_INVALID_PARAM", "self_signing_key", map[string]any{"master_key": master.Object(t), "self_signing_key": self.Object(t)}},
		}
		for _, c := range bad {
			r := e.do("POST", signingPath, tok, c.body).refused(t, 400, c.code, c.what)
			if !strings.Contains(r.str("error"), c.field) {
				t.Fatalf("%s: error does not name %s: %s", c.what, c.field, r.raw)
			}
			if st := crossState(t, e.db, aliceID); len(st) != 0 {
				t.Fatalf("%s stored %v", c.what, st)
			}
		}
		e.do("POST", signingPath, "", map[string]any{}).refused(t, 401, "M_MISSING_TOKEN", "no token")

		// Happy path: the first upload needs no auth.
		e.do("POST", signingPath, tok, map[string]any{
			"master_key": master.Object(t), "self_signing_key": self.Object(t, master), "user_signing_key": user.Object(t, master),
		}).must(t, 200, "upload cross-signing keys")
		e.do("POST", signingPath, bobTok, map[string]any{"master_key": bobMaster.Object(t)}).must(t, 200, "bob's master")
		before := crossState(t, e.db, aliceID, bobID)
		if len(before) != 4 {
			t.Fatalf("stored %v", before)
		}
		// Replacing the master key without auth: 401 with the password flow.
		master2 := userapitest.NewSigningKey(t, aliceID, "master")
		r := e.do("POST", signingPath, tok, map[string]any{"master_key": master2.Object(t)}).must(t, 401, "replace without auth")
		if !strings.Contains(string(r.raw), "m.login.password") || r.str("session") == "" {
			t.Fatalf("401 without flows: %s", r.raw)
		}
		e.do("POST", signingPath, tok, map[string]any{"master_key": master2.Object(t), "auth": map[string]any{"type": "m.login.password", "user": "alice", "password": "no"}}).
			refused(t, 401, "M_FORBIDDEN", "replace with a wrong password")
		if now := crossState(t, e.db, aliceID, bobID); !maps.Equal(now, before) {
			t.Fatalf("refused uploads changed storage: %v", now)
		}

		// Signatures: alice's device by her self-signing key, bob's master
		// by her user-signing key; a forged one fails.
		devKeys, _ := json.Marshal(dev.DeviceKeys(t))
		forged := userapitest.NewSigningKey(t, aliceID, "self_signing")
		forged.KeyID = self.KeyID
		e.do("POST", sigsPath, tok, "[]").refused(t, 400, "M_BAD_JSON", "signatures not an object")
		e.do("POST", sigsPath, tok, map[string]any{aliceID: map[string]any{aliceDev: "x"}}).refused(t, 400, "M_BAD_JSON", "signed object not an object")
		r = e.do("POST", sigsPath, tok, map[string]any{aliceID: map[string]any{aliceDev: forged.Sign(t, devKeys)}}).must(t, 200, "forged signature")
		if fail, _ := r.body["failures"].(map[string]any)[aliceID].(map[string]any)[aliceDev].(map[string]any); fail["errcode"] != "M_INVALID_SIGNATURE" || fail["error"] == "" {
			t.Fatalf("forged signature: %s", r.raw)
		}
		if now := crossState(t, e.db, aliceID, bobID); !maps.Equal(now, before) {
			t.Fatalf("refused signatures changed storage: %v", now)
		}
		r = e.do("POST", sigsPath, tok, map[string]any{
			aliceID: map[string]any{aliceDev: self.Sign(t, devKeys)},
			bobID:   map[string]any{bobMaster.Public: user.Sign(t, bobMaster.Object(t))},
		}).must(t, 200, "signatures")
		if f := r.body["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("failures %s", r.raw)
		}
		if now := crossState(t, e.db, aliceID, bobID); len(now) != 6 {
			t.Fatalf("stored %v", now)
		}

		// /keys/query: bob sees alice's master and self-signing keys and
		// the device signature, not her user-signing key; alice sees hers.
		r = e.do("POST", acctV3+"/keys/query", bobTok, map[string]any{"device_keys": map[string]any{aliceID: []string{}, bobID: []string{}}}).must(t, 200, "query as bob")
		if r.body["master_keys"].(map[string]any)[aliceID] == nil || r.body["self_signing_keys"].(map[string]any)[aliceID] == nil || r.body["user_signing_keys"] != nil {
			t.Fatalf("query as bob: %s", r.raw)
		}
		sigs := r.body["device_keys"].(map[string]any)[aliceID].(map[string]any)[aliceDev].(map[string]any)["signatures"].(map[string]any)[aliceID].(map[string]any)
		if sigs[self.KeyID] == nil {
			t.Fatalf("device signature missing: %s", r.raw)
		}
		bm := r.body["master_keys"].(map[string]any)[bobID].(map[string]any)["signatures"].(map[string]any)
		if bm[aliceID].(map[string]any)[user.KeyID] == nil {
			t.Fatalf("signature on bob's master missing: %s", r.raw)
		}
		r = e.do("POST", acctV3+"/keys/query", tok, map[string]any{"device_keys": map[string]any{aliceID: []string{}}}).must(t, 200, "query as alice")
		if r.body["user_signing_keys"].(map[string]any)[aliceID] == nil {
			t.Fatalf("alice's own user-signing key missing: %s", r.raw)
		}

		// Replacing with the password works.
		e.do("POST", signingPath, tok, map[string]any{"master_key": master2.Object(t), "auth": map[string]any{"type": "m.login.password", "user": "alice", "password": "pw-alice"}}).
			must(t, 200, "replace with auth")
		if now := crossState(t, e.db, aliceID); !strings.Contains(now[aliceID+" master"], master2.Public) {
			t.Fatalf("master not replaced: %v", now)
		}
	})
}
