//go:build e2e

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/internal/loopback"
	"github.com/mlsmode/mlsmode/internal/testclient"
)

// writeFederationCert writes a self-signed certificate for names and
// 127.0.0.1, and its key: each server serves it on its federation listener
// and trusts it through --federation-trust-ca.
func writeFederationCert(t testing.TB, dir string, names ...string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, _, err := loopback.WriteCert(dir, time.Hour, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago: each
// server's --federation-resolve needs the other's port before it starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startFederatingPair starts a.test and b.test as two processes, each with
// its own SQLite data dir and its federation listener on 127.0.0.1,
// resolving each other's name to the other's listener. It waits until
// each has fetched the other's signing key.
func startFederatingPair(t *testing.T) (a, b *process) {
	t.Helper()
	bin := buildServer(t)
	dir := t.TempDir()
	certFile, keyFile := writeFederationCert(t, dir, "a.test", "b.test")
	fa, fb := freeAddr(t), freeAddr(t)
	common := []string{"--federation", "--federation-tls-cert", certFile, "--federation-tls-key", keyFile,
		"--federation-trust-ca", certFile, "--federation-resolve", "a.test=" + fa, "--federation-resolve", "b.test=" + fb}
	a = startProcess(t, bin, "a.test", append([]string{"--server-name", "a.test", "--data-dir", filepath.Join(dir, "a"),
		"--federation-listen", fa}, common...)...)
	b = startProcess(t, bin, "b.test", append([]string{"--server-name", "b.test", "--data-dir", filepath.Join(dir, "b"),
		"--federation-listen", fb}, common...)...)
	// Both federation listeners answer with their key over HTTPS.
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for name, addr := range map[string]string{"a.test": fa, "b.test": fb} {
		resp, err := hc.Get("https://" + addr + "/_matrix/key/v2/server")
		if err != nil {
			t.Fatalf("%s federation listener: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s GET /_matrix/key/v2/server: %d", name, resp.StatusCode)
		}
	}
	// A request signed with each server's key reaches the other's handler
	// (404: no such event), not 401: the other fetched the signer's key
	// from the signer's listener.
	for _, c := range []struct{ origin, dir, dest, destAddr string }{
		{"a.test", filepath.Join(dir, "a"), "b.test", fb}, {"b.test", filepath.Join(dir, "b"), "a.test", fa},
	} {
		keyID, priv := readKeyFile(t, filepath.Join(c.dir, "signing.key"))
		fc, err := federation.NewClient(federation.Config{ServerName: c.origin, KeyID: keyID, PrivateKey: priv,
			Transport: hc.Transport, Resolve: map[string]string{c.dest: c.destAddr}})
		if err != nil {
			t.Fatal(err)
		}
		st, body, err := fc.Do(context.Background(), c.dest, http.MethodGet, "/_matrix/federation/v1/event/$nonexistent", nil)
		if err != nil || st != http.StatusNotFound {
			t.Fatalf("%s -> %s signed request: %d %s %v, want 404", c.origin, c.dest, st, body, err)
		}
	}
	return a, b
}

// readKeyFile reads an mlsserver signing key file ("ed25519 <version>
// <unpadded base64 seed>").
func readKeyFile(t *testing.T, path string) (string, ed25519.PrivateKey) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "ed25519" {
		t.Fatalf("%s: not an ed25519 key file", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(f[2])
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("%s: bad seed: %v", path, err)
	}
	return "ed25519:" + f[1], ed25519.NewKeyFromSeed(seed)
}

// Two mlsserver processes federate: alice on a.test claims bob's key
// package on b.test through her server, adds him, sends the Welcome by
// to-device and the invite; bob joins on b.test, and alice's message
// reaches his /sync on b.test, where he decrypts it. All, from the
// processes' start, within 15 s.
func TestFederationTwoProcesses(t *testing.T) {
	begin := time.Now()
	a, b := startFederatingPair(t)
	start := time.Now()
	alice := testclient.New(t, a.url, httpClient, "alice")
	bob := testclient.New(t, b.url, httpClient, "bob")
	bob.UploadKeys(2, true)
	bob.Sync(0)
	alice.Sync(0)

	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil)
	roomID := alice.CreateRoom(fm)
	welcome := alice.Add(roomID, fm, alice.ClaimKeyPackage(bob.UserID, bob.DeviceID))
	addID := alice.CommitID
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, addID)

	deadline := begin.Add(15 * time.Second)
	sent := alice.SendMessage(roomID, "hello across processes").Must(t, 200, "alice's message").Str("event_id")
	got := ""
	for got == "" && time.Now().Before(deadline) {
		for _, ev := range testclient.Timeline(bob.Sync(1000), roomID) {
			if ev["event_id"] == sent {
				got = bob.MessageText(ev)
			}
		}
	}
	if got != "hello across processes" {
		t.Fatalf("bob on b.test read %q within 15 s", got)
	}
	t.Logf("from registration to bob reading alice's message: %v (%v with the processes' start)", time.Since(start), time.Since(begin))
	if el := time.Since(begin); el > 15*time.Second {
		t.Fatalf("took %v, want at most 15 s", el)
	}
	a.stop()
	b.stop()
}
