package clientapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

// keysIDs returns a device's stored key package IDs.
func keysIDs(t *testing.T, e *roomEnv, userID, deviceID string) []string {
	t.Helper()
	ids, err := e.db.KeyPackageIDs(context.Background(), userID, deviceID)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestKeysUploadQueryList(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		ctx := context.Background()
		aliceID, aliceDev, tok := e.register("alice")
		_, _, bobTok := e.register("bob")
		dev := userapitest.NewDevice(t, aliceID, aliceDev, userapitest.Suite)
		alg := userapitest.Algorithm(t, userapitest.Suite)
		kps := dev.KeyPackages(t, 3)
		fb := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})

		r := e.do("POST", acctV3+"/keys/upload", tok, map[string]any{
			"device_keys":   dev.DeviceKeys(t),
			"one_time_keys": userapitest.KeyMap(kps...),
			"fallback_keys": userapitest.KeyMap(fb),
		}).must(t, 200, "upload")
		if counts, _ := r.body["one_time_key_counts"].(map[string]any); counts[alg] != float64(3) {
			t.Fatalf("counts %s", r.raw)
		}
		before := keysIDs(t, e, aliceID, aliceDev)
		if len(before) != 4 {
			t.Fatalf("stored %v", before)
		}

		// A bad package among good ones: 400 M_BAD_JSON naming it; nothing stored.
		more := dev.KeyPackages(t, 3)
		wrongUser := userapitest.NewDevice(t, "@bob:a.test", aliceDev, userapitest.Suite).NewKeyPackage(t, userapitest.KeyPackageOptions{})
		r = e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"one_time_keys": userapitest.KeyMap(append(more, wrongUser)...)})
		r.refused(t, 400, "M_BAD_JSON", "upload with a bad package")
		if msg := r.str("error"); !strings.Contains(msg, wrongUser.KeyID) || !strings.Contains(msg, "not the uploading device") {
			t.Fatalf("error does not name the key and the check: %s", msg)
		}
		if after := keysIDs(t, e, aliceID, aliceDev); !slices.Equal(after, before) {
			t.Fatalf("refused upload stored packages: %v, was %v", after, before)
		}
		expired := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-48 * time.Hour)})
		r = e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"one_time_keys": userapitest.KeyMap(more...), "fallback_keys": userapitest.KeyMap(expired)})
		r.refused(t, 400, "M_BAD_JSON", "upload with an expired fallback")
		r = e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"device_keys": map[string]any{"user_id": "@bob:a.test", "device_id": aliceDev, "keys": map[string]string{}},
			"one_time_keys": userapitest.KeyMap(more...)})
		r.refused(t, 400, "M_BAD_JSON", "device keys of another user")
		e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"one_time_keys": map[string]string{"signed_curve25519:AAAAAQ": "x"}}).refused(t, 400, "M_BAD_JSON", "olm key")
		e.do("POST", acctV3+"/keys/upload", tok, "{").refused(t, 400, "M_NOT_JSON", "not JSON")
		e.do("POST", acctV3+"/keys/upload", "", map[string]any{}).refused(t, 401, "M_MISSING_TOKEN", "no token")
		if after := keysIDs(t, e, aliceID, aliceDev); !slices.Equal(after, before) {
			t.Fatalf("refused uploads stored packages: %v, was %v", after, before)
		}
		if keys, err := e.db.DeviceKeys(ctx, aliceID, nil); err != nil || len(keys) != 1 || keys[0].Credentials[alg] != dev.CredentialValue(t) {
			t.Fatalf("device keys %+v %v", keys, err)
		}

		// /keys/list: the calling device's key IDs.
		r = e.do("GET", acctV3+"/keys/list", tok, nil).must(t, 200, "list")
		var listed struct {
			OneTime  []string `json:"one_time_keys"`
			Fallback []string `json:"fallback_keys"`
		}
		if err := json.Unmarshal(r.raw, &listed); err != nil {
			t.Fatal(err)
		}
		wantOT := slices.DeleteFunc(slices.Clone(before), func(id string) bool { return id == fb.KeyID })
		if !slices.Equal(listed.OneTime, wantOT) || !slices.Equal(listed.Fallback, []string{fb.KeyID}) {
			t.Fatalf("list %s, stored %v with fallback %s", r.raw, before, fb.KeyID)
		}
		r = e.do("GET", acctV3+"/keys/list", bobTok, nil).must(t, 200, "bob's list")
		if l, _ := r.body["one_time_keys"].([]any); len(l) != 0 {
			t.Fatalf("bob lists alice's keys: %s", r.raw)
		}
		e.do("GET", acctV3+"/keys/list", "", nil).refused(t, 401, "M_MISSING_TOKEN", "list without token")

		// /keys/query.
		r = e.do("POST", acctV3+"/keys/query", bobTok, map[string]any{"device_keys": map[string]any{aliceID: []string{}, "@dave:b.test": []string{}}}).must(t, 200, "query")
		dk := r.body["device_keys"].(map[string]any)[aliceID].(map[string]any)[aliceDev].(map[string]any)
		if dk["keys"].(map[string]any)[alg+":"+aliceDev] != dev.CredentialValue(t) {
			t.Fatalf("queried keys %s", r.raw)
		}
		if r.body["failures"].(map[string]any)["b.test"] == nil {
			t.Fatalf("no failure for b.test: %s", r.raw)
		}
		e.do("POST", acctV3+"/keys/query", bobTok, map[string]any{"device_keys": []string{"x"}}).refused(t, 400, "M_BAD_JSON", "query wrong shape")
		e.do("POST", acctV3+"/keys/query", bobTok, map[string]any{"device_keys": map[string]any{"alice": []string{}}}).refused(t, 400, "M_INVALID_PARAM", "query bad user ID")
	})
}

func TestKeysClaimConcurrent(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		aliceID, aliceDev, tok := e.register("alice")
		_, _, bobTok := e.register("bob")
		dev := userapitest.NewDevice(t, aliceID, aliceDev, userapitest.Suite)
		alg := userapitest.Algorithm(t, userapitest.Suite)
		const n, claims = 20, 50
		kps := dev.KeyPackages(t, n)
		fb := dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})
		e.do("POST", acctV3+"/keys/upload", tok, map[string]any{"one_time_keys": userapitest.KeyMap(kps...), "fallback_keys": userapitest.KeyMap(fb)}).must(t, 200, "upload")

		req := map[string]any{"one_time_keys": map[string]any{aliceID: map[string]string{aliceDev: alg}}}
		got := make([]map[string]string, claims)
		var wg sync.WaitGroup
		for i := range claims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", acctV3+"/keys/claim", bobTok, req)
				if r.status != 200 {
					t.Errorf("claim %d: %d %s", i, r.status, r.raw)
					return
				}
				var body struct {
					OneTimeKeys map[string]map[string]map[string]string `json:"one_time_keys"`
				}
				if err := json.Unmarshal(r.raw, &body); err != nil {
					t.Errorf("claim %d: %v", i, err)
					return
				}
				got[i] = body.OneTimeKeys[aliceID][aliceDev]
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		values := map[string]string{}
		for _, kp := range append(kps, fb) {
			values[kp.KeyID] = kp.Value
		}
		seen := map[string]int{}
		for i, m := range got {
			if len(m) != 1 {
				t.Fatalf("claim %d answered %v", i, m)
			}
			for id, v := range m {
				if values[id] != v {
					t.Fatalf("claim %d: %s is not an uploaded package", i, id)
				}
				seen[id]++
			}
		}
		for _, kp := range kps {
			if seen[kp.KeyID] != 1 {
				t.Fatalf("one-time package %s handed out %d times", kp.KeyID, seen[kp.KeyID])
			}
		}
		if seen[fb.KeyID] != claims-n {
			t.Fatalf("fallback handed out %d times, want %d", seen[fb.KeyID], claims-n)
		}
		if ids := keysIDs(t, e, aliceID, aliceDev); !slices.Equal(ids, []string{fb.KeyID}) {
			t.Fatalf("left after claims: %v", ids)
		}
		e.do("POST", acctV3+"/keys/claim", bobTok, map[string]any{"one_time_keys": map[string]any{aliceID: map[string]string{aliceDev: "signed_curve25519"}}}).
			refused(t, 400, "M_INVALID_PARAM", "claim of an olm algorithm")
		e.do("POST", acctV3+"/keys/claim", bobTok, map[string]any{"one_time_keys": "x"}).refused(t, 400, "M_BAD_JSON", "claim wrong shape")
		if ids := keysIDs(t, e, aliceID, aliceDev); !slices.Equal(ids, []string{fb.KeyID}) {
			t.Fatalf("refused claims changed packages: %v", ids)
		}
	})
}

func TestKeysSendToDevice(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		ctx := context.Background()
		_, _, tok := e.register("alice")
		bobID, bobDev, _ := e.register("bob")
		inbox := func() int {
			msgs, err := e.db.ToDeviceMessages(ctx, bobID, bobDev, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(msgs)
		}
		body := map[string]any{"messages": map[string]any{bobID: map[string]any{bobDev: map[string]string{
			"algorithm": "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", "room_id": "!r:a.test", "welcome": "AAAA"}}}}
		for range 3 {
			e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t1", tok, body).must(t, 200, "sendToDevice")
		}
		if n := inbox(); n != 1 {
			t.Fatalf("inbox has %d messages after a replayed transaction, want 1", n)
		}
		e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t2", tok, body).must(t, 200, "second transaction")
		if n := inbox(); n != 2 {
			t.Fatalf("inbox has %d messages, want 2", n)
		}
		e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t3", tok, map[string]any{"messages": map[string]any{bobID: map[string]any{bobDev: "x"}}}).
			refused(t, 400, "M_BAD_JSON", "content not an object")
		e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t4", tok, map[string]any{"messages": map[string]any{bobID: map[string]any{bobDev: map[string]any{}}, "@carol:b.test": map[string]any{"C": map[string]any{}}}}).
			refused(t, 403, "M_FORBIDDEN", "remote recipient without federation")
		e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t5", tok, "{").refused(t, 400, "M_NOT_JSON", "not JSON")
		e.do("PUT", acctV3+"/sendToDevice/m.mls.welcome/t6", "", body).refused(t, 401, "M_MISSING_TOKEN", "no token")
		if n := inbox(); n != 2 {
			t.Fatalf("refused requests delivered: inbox has %d", n)
		}
	})
}
