package mlsserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
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

// fedCert writes a self-signed certificate for the given server names and
// 127.0.0.1 (servers reached through federation.resolve are dialled at
// 127.0.0.1, which the certificate must name), and its key. The
// certificate is its own CA: federation.trust_ca is the certificate file.
func fedCert(t *testing.T, dir string, names ...string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := loopback.WriteCert(dir, time.Hour, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// freePort returns a 127.0.0.1 port that was free a moment ago (the
// servers' resolve settings need each other's ports before they start).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// federatingPair starts a.test and b.test in this process, each with its
// own SQLite data dir and its federation listener on 127.0.0.1, reaching
// each other through federation.resolve and trusting the test certificate
// through federation.trust_ca. It returns the servers and a client trusting
// the certificate.
func federatingPair(t *testing.T) (a, b *testServer, hc *http.Client) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := fedCert(t, dir, "a.test", "b.test")
	fa, fb := freePort(t), freePort(t)
	common := []string{"--federation", "--federation-tls-cert", certFile, "--federation-tls-key", keyFile,
		"--federation-trust-ca", certFile, "--federation-resolve", "a.test=" + fa, "--federation-resolve", "b.test=" + fb}
	a = startServer(t, filepath.Join(dir, "a"), append([]string{"--server-name", "a.test", "--federation-listen", fa}, common...)...)
	b = startServer(t, filepath.Join(dir, "b"), append([]string{"--server-name", "b.test", "--federation-listen", fb}, common...)...)
	if a.fedAddr != fa || b.fedAddr != fb {
		t.Fatalf("federation listeners on %s and %s, want %s and %s", a.fedAddr, b.fedAddr, fa, fb)
	}
	hc = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	checkSignedRequests(t, a, b, hc)
	return a, b, hc
}

// get fetches url and decodes its JSON body.
func get(t *testing.T, hc *http.Client, url string) (int, map[string]any) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %q", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, body
}

// Each server publishes its signing key on its federation listener (HTTPS
// only), the client listener serves no federation, and each server checks
// the other's X-Matrix signature with the key it fetched from the other's
// federation listener through resolve and trust_ca.
func TestFederationListener(t *testing.T) {
	a, b, hc := federatingPair(t)
	for _, s := range []struct {
		srv  *testServer
		name string
	}{{a, "a.test"}, {b, "b.test"}} {
		key, err := readSigningKey(filepath.Join(s.srv.dir, "signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		st, body := get(t, hc, "https://"+s.srv.fedAddr+"/_matrix/key/v2/server")
		if st != http.StatusOK || body["server_name"] != s.name {
			t.Fatalf("%s key: %d %v", s.name, st, body)
		}
		vk, _ := body["verify_keys"].(map[string]any)
		k, _ := vk[key.ID].(map[string]any)
		if k["key"] != base64.RawStdEncoding.EncodeToString(key.Public()) {
			t.Errorf("%s publishes %v, want %s with its signing key", s.name, vk, key.ID)
		}
		// The client listener does not serve federation.
		for _, p := range []string{"/_matrix/key/v2/server", "/_matrix/federation/v1/event/$x"} {
			resp, err := s.srv.client.Get(s.srv.url + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s client listener GET %s: %d, want 404", s.name, p, resp.StatusCode)
			}
		}
		// Plain HTTP on the federation listener does not reach the API.
		if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.srv.fedAddr + "/_matrix/key/v2/server"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("%s: plain HTTP on the federation listener answered 200", s.name)
			}
		}
	}

	// federatingPair checked the signed requests both ways.
}

// checkSignedRequests sends a request signed as each server with its key
// to the other: the other fetches the signer's key from the signer's
// federation listener (through resolve and trust_ca) to check it, so the
// answer is the handler's 404 (no such event), not 401. Unsigned, the same
// request is refused with 401.
func checkSignedRequests(t *testing.T, a, b *testServer, hc *http.Client) {
	t.Helper()
	for _, c := range []struct {
		from, to *testServer
		origin   string
		dest     string
	}{{a, b, "a.test", "b.test"}, {b, a, "b.test", "a.test"}} {
		key, err := readSigningKey(filepath.Join(c.from.dir, "signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		fc, err := federation.NewClient(federation.Config{ServerName: c.origin, KeyID: key.ID, PrivateKey: key.Priv,
			Transport: hc.Transport, Resolve: map[string]string{c.dest: c.to.fedAddr}})
		if err != nil {
			t.Fatal(err)
		}
		st, body, err := fc.Do(context.Background(), c.dest, http.MethodGet, "/_matrix/federation/v1/event/$nonexistent", nil)
		if err != nil {
			t.Fatal(err)
		}
		if st != http.StatusNotFound {
			t.Fatalf("%s -> %s signed request: %d %s, want 404 (the signature checked)", c.origin, c.dest, st, body)
		}
		// The same path unsigned is refused.
		st2, body2 := get(t, hc, "https://"+c.to.fedAddr+"/_matrix/federation/v1/event/$nonexistent")
		if st2 != http.StatusUnauthorized {
			t.Errorf("unsigned request to %s: %d %v, want 401", c.dest, st2, body2)
		}
	}
}

// The whole flow through two Run()s: alice on a.test claims bob's key
// package on b.test, adds him, sends the Welcome and the invite; bob joins
// on b.test and decrypts alice's message in his /sync there.
func TestFederationRoomAcrossServers(t *testing.T) {
	a, b, _ := federatingPair(t)
	hc := &http.Client{Timeout: 60 * time.Second}
	alice := testclient.New(t, a.url, hc, "alice")
	bob := testclient.New(t, b.url, hc, "bob")
	bob.UploadKeys(2, true)
	bob.Sync(0)
	alice.Sync(0)

	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil)
	roomID := alice.CreateRoom(fm)
	welcome := alice.Add(roomID, fm, alice.ClaimKeyPackage(bob.UserID, bob.DeviceID))
	addID := alice.CommitID
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, addID)

	sent := alice.SendMessage(roomID, "hello from a.test").Must(t, 200, "alice's message").Str("event_id")
	got := ""
	for deadline := time.Now().Add(15 * time.Second); got == "" && time.Now().Before(deadline); {
		for _, ev := range testclient.Timeline(bob.Sync(2000), roomID) {
			if ev["event_id"] == sent {
				got = bob.MessageText(ev)
			}
		}
	}
	if got != "hello from a.test" {
		t.Fatalf("bob on b.test read %q", got)
	}
}

// Federation settings whose files are wrong stop the server at start,
// naming the setting.
func TestServeFederationStartupErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := fedCert(t, dir, "a.test")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--federation",
		"--federation-listen", "127.0.0.1:0"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing certificate", []string{"--federation-tls-cert", filepath.Join(dir, "none.pem"), "--federation-tls-key", keyFile}, "federation.tls_cert"},
		{"missing trust_ca", []string{"--federation-tls-cert", certFile, "--federation-tls-key", keyFile,
			"--federation-trust-ca", filepath.Join(dir, "none-ca.pem")}, "federation.trust_ca"},
		{"trust_ca without a certificate", []string{"--federation-tls-cert", certFile, "--federation-tls-key", keyFile,
			"--federation-trust-ca", notPEM}, "federation.trust_ca"},
	} {
		ready := make(chan Addresses, 1)
		err := Run(context.Background(), append(append([]string{}, base...), c.args...), io.Discard, io.Discard, ready)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
		if len(ready) != 0 {
			t.Errorf("%s: the server started", c.name)
		}
	}
	// The federation port in use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), append(append([]string{}, base...), "--federation-tls-cert", certFile,
		"--federation-tls-key", keyFile, "--federation-listen", ln.Addr().String()), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "federation.listen") {
		t.Errorf("federation port in use: %v", err)
	}
}
