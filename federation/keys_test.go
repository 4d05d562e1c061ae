package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/storage"
)

// TestServerKeys: gomatrixserverlib's own key fetching accepts the key
// response (name, validity, self-signature), and the signature covers the
// content.
func TestServerKeys(t *testing.T) {
	n := newNetwork(t, []string{"hs1.test"}, nil, 0)
	hs1 := n.servers["hs1.test"]
	ctx := context.Background()

	gc := fclient.NewClient(fclient.WithTransport(testTransport{n}))
	df := &gomatrixserverlib.DirectKeyFetcher{Client: gc, IsLocalServerName: func(spec.ServerName) bool { return false }}
	req := gomatrixserverlib.PublicKeyLookupRequest{ServerName: "hs1.test", KeyID: testKeyID}
	res, err := df.FetchKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{req: spec.AsTimestamp(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := res[req]
	if !ok {
		t.Fatalf("gomatrixserverlib's DirectKeyFetcher did not accept the key response: %v", res)
	}
	if !bytes.Equal(got.Key, hs1.key.Public().(ed25519.PublicKey)) {
		t.Fatal("fetched key is not hs1's")
	}
	if want := spec.AsTimestamp(n.clock.Now().Add(7 * 24 * time.Hour)); got.ValidUntilTS != want {
		t.Fatalf("valid_until_ts %d, want now + 7 days = %d", got.ValidUntilTS, want)
	}

	// The raw response, checked by CheckKeys, and with one byte of content
	// changed.
	status, body := n.send(mustRequest(t, http.MethodGet, "matrix://hs1.test/_matrix/key/v2/server", nil))
	if status != http.StatusOK {
		t.Fatalf("key response: %d %s", status, body)
	}
	var keys gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatal(err)
	}
	if checks, _ := gomatrixserverlib.CheckKeys("hs1.test", time.Now(), keys); !checks.AllChecksOK {
		t.Fatalf("CheckKeys: %+v", checks)
	}
	tampered := bytes.Replace(body, []byte(`"server_name":"hs1.test"`), []byte(`"server_name":"hs9.test"`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatalf("server_name not found in %s", body)
	}
	var bad gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(tampered, &bad); err != nil {
		t.Fatal(err)
	}
	if checks, _ := gomatrixserverlib.CheckKeys("hs9.test", time.Now(), bad); checks.AllChecksOK {
		t.Fatal("a response with a changed server_name passed CheckKeys")
	}
}

func mustRequest(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// TestKeyFetcher: remote keys come from storage when valid, are fetched
// from two key servers and stored otherwise, refetched when expired, and
// not refetched more than once per MinRefetchInterval.
func TestKeyFetcher(t *testing.T) {
	const validity = time.Hour
	n := newNetwork(t, []string{"hs1.test", "hs2.test", "hs3.test"}, nil, validity)
	hs1, hs2, hs3 := n.servers["hs1.test"], n.servers["hs2.test"], n.servers["hs3.test"]
	kf := hs3.api.KeyFetcher()
	ctx := context.Background()
	t0 := n.clock.Now()

	for _, s := range []*server{hs1, hs2} {
		pub, err := kf.PublicKey(ctx, s.name, testKeyID, t0.Add(-time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !bytes.Equal(pub, s.key.Public().(ed25519.PublicKey)) {
			t.Fatalf("%s: wrong key", s.name)
		}
		stored, err := hs3.db.ServerKey(ctx, s.name, testKeyID)
		if err != nil || !bytes.Equal(stored.PublicKey, pub) || stored.ValidUntilTS != t0.Add(validity).UnixMilli() || stored.ExpiredTS != 0 {
			t.Fatalf("%s: stored %+v, %v; want valid until %d", s.name, stored, err, t0.Add(validity).UnixMilli())
		}
		if s.keyHits.Load() != 1 {
			t.Fatalf("%s: %d key requests, want 1", s.name, s.keyHits.Load())
		}
	}
	// Stored and valid: no request.
	if _, err := kf.PublicKey(ctx, "hs1.test", testKeyID, t0); err != nil {
		t.Fatal(err)
	}
	if hs1.keyHits.Load() != 1 {
		t.Fatalf("stored key fetched again: %d requests", hs1.keyHits.Load())
	}
	// Our own key needs no request.
	if pub, err := kf.PublicKey(ctx, "hs3.test", testKeyID, t0); err != nil || !bytes.Equal(pub, hs3.key.Public().(ed25519.PublicKey)) {
		t.Fatalf("own key: %v", err)
	}
	// An unknown key ID right after a fetch: no request; after
	// MinRefetchInterval one, then none again within the interval.
	if _, err := kf.PublicKey(ctx, "hs1.test", "ed25519:nope", t0); err == nil || !strings.Contains(err.Error(), "less than") {
		t.Fatalf("unknown key ID: %v, want the refetch interval", err)
	}
	if hs1.keyHits.Load() != 1 {
		t.Fatalf("refetched within MinRefetchInterval: %d requests", hs1.keyHits.Load())
	}
	n.clock.Advance(federation.MinRefetchInterval + time.Second)
	if _, err := kf.PublicKey(ctx, "hs1.test", "ed25519:nope", t0); err == nil {
		t.Fatal("unknown key ID accepted")
	}
	if hs1.keyHits.Load() != 2 {
		t.Fatalf("%d requests, want 2", hs1.keyHits.Load())
	}
	if _, err := kf.PublicKey(ctx, "hs1.test", "ed25519:nope", t0); err == nil || !strings.Contains(err.Error(), "less than") {
		t.Fatalf("second unknown key ID: %v, want the refetch interval", err)
	}
	if hs1.keyHits.Load() != 2 {
		t.Fatalf("refetched within MinRefetchInterval: %d requests", hs1.keyHits.Load())
	}
	// Past valid_until_ts: fetched again and stored with the new validity.
	n.clock.Advance(2 * validity)
	t1 := n.clock.Now()
	if _, err := kf.PublicKey(ctx, "hs1.test", testKeyID, t1); err != nil {
		t.Fatal(err)
	}
	if hs1.keyHits.Load() != 3 {
		t.Fatalf("expired key not refetched: %d requests", hs1.keyHits.Load())
	}
	if stored, err := hs3.db.ServerKey(ctx, "hs1.test", testKeyID); err != nil || stored.ValidUntilTS != t1.Add(validity).UnixMilli() {
		t.Fatalf("refreshed key: %+v, %v", stored, err)
	}
	// A time the stored key covers still needs no request.
	if _, err := kf.PublicKey(ctx, "hs2.test", testKeyID, t0); err != nil {
		t.Fatal(err)
	}
	if hs2.keyHits.Load() != 1 {
		t.Fatalf("hs2 key fetched again for a covered time: %d requests", hs2.keyHits.Load())
	}
}

// keyServer answers key requests with a body made by f.
func keyServer(f func() []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f())
	})
}

// signedKeys is a key response for name listing pub, signed by signer.
func signedKeys(t *testing.T, name string, pub ed25519.PublicKey, signer ed25519.PrivateKey, validUntil time.Time) []byte {
	fields := gomatrixserverlib.ServerKeyFields{ServerName: spec.ServerName(name),
		VerifyKeys:   map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{testKeyID: {Key: spec.Base64Bytes(pub)}},
		ValidUntilTS: spec.AsTimestamp(validUntil)}
	b, err := json.Marshal(fields)
	if err != nil {
		t.Error(err)
		return nil
	}
	out, err := gomatrixserverlib.SignJSON(name, testKeyID, signer, b)
	if err != nil {
		t.Error(err)
	}
	return out
}

// TestKeyFetcherRejectsBadResponses: key responses for another name, signed
// by another key or already expired are refused and nothing is stored.
func TestKeyFetcherRejectsBadResponses(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	raw := map[string]http.Handler{
		"good.test":      keyServer(func() []byte { return signedKeys(t, "good.test", pub, key, now.Add(time.Hour)) }),
		"wrongname.test": keyServer(func() []byte { return signedKeys(t, "good.test", pub, key, now.Add(time.Hour)) }),
		"forged.test":    keyServer(func() []byte { return signedKeys(t, "forged.test", pub, other, now.Add(time.Hour)) }),
		"expired.test":   keyServer(func() []byte { return signedKeys(t, "expired.test", pub, key, now.Add(-time.Minute)) }),
		"notjson.test":   keyServer(func() []byte { return []byte("<html>") }),
	}
	n := newNetwork(t, []string{"hs1.test"}, raw, 0)
	hs1 := n.servers["hs1.test"]
	ctx := context.Background()
	// The fake key server itself is accepted (the test can fail).
	if got, err := hs1.api.KeyFetcher().PublicKey(ctx, "good.test", testKeyID, now); err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("good key server: %v", err)
	}
	for _, name := range []string{"wrongname.test", "forged.test", "expired.test", "notjson.test"} {
		if _, err := hs1.api.KeyFetcher().PublicKey(ctx, name, testKeyID, now); err == nil {
			t.Errorf("%s: key accepted", name)
		}
		if _, err := hs1.db.ServerKey(ctx, name, testKeyID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: key stored (%v)", name, err)
		}
	}
}
