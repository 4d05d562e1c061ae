//go:build interop

package interop

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
)

// TestTSMLSFederated: the pending commit of the ts-mls member from a
// server that is not powers[0], across federation. a.test and b.test
// federate (real clock); the room's powers are [a.test, b.test]. alice
// (ours, a.test) adds tara (ts-mls, b.test); they exchange messages across
// the servers; tara's direct commit is refused on b.test, and her pending
// commit adding carol (ours, a.test, key package claimed over federation)
// goes to a.test, which as powers[0] applies it at once; alice merges it,
// carol joins from ts-mls's Welcome, and all three read each other.
func TestTSMLSFederated(t *testing.T) {
	for _, s := range sharedSuites {
		t.Run(fmt.Sprintf("suite%d", s.number), func(t *testing.T) {
			begin := time.Now()
			federatedStory(t, s.number, s.suite)
			t.Logf("suite %d: federated story %v", s.number, time.Since(begin).Round(time.Millisecond))
		})
	}
}

func federatedStory(t *testing.T, number int, cs mls.CipherSuite) {
	urlA, urlB := startFederatingPair(t)
	step := func(format string, args ...any) { t.Logf("suite %d: "+format, append([]any{number}, args...)...) }

	tara := startTSPeer(t)
	r := tara.call("init", map[string]any{"base_url": urlB, "suite": number, "name": "tara",
		"uncompressed_p256": number == 2, "hpke_pq_derive": number == 83})
	taraID, taraDevice := r["user_id"].(string), r["device_id"].(string)
	if taraID != "@tara:"+elsewhere {
		t.Fatalf("tara registered on b.test as %s", taraID)
	}
	tara.call("upload_keys", map[string]any{"count": 2})
	tara.call("initial_sync", nil)
	newOurs := func(url, name string) ourMember { return newLibMember(t, url, name, cs, 2) }
	alice, carol := newOurs(urlA, "alice"), newOurs(urlA, "carol")
	for _, m := range []ourMember{alice, carol} {
		m.UploadKeys(2)
		m.InitialSync()
	}
	if id := alice.Credential(taraID, taraDevice); id.UserID != taraID {
		t.Fatalf("tara's credential over federation names %s", id.UserID)
	}

	fm := testclient.FedMap([]string{serverName, elsewhere}, []string{serverName, elsewhere}, []string{serverName, elsewhere})
	roomID := alice.CreateRoom(fm)
	addTara, added := alice.Add(roomID, fm, taraID, taraDevice)
	if added.UserID != taraID || added.DeviceID != taraDevice {
		t.Fatalf("the key package claimed over federation names %s %s", added.UserID, added.DeviceID)
	}
	r = tara.call("join_from_welcome", map[string]any{"room_id": roomID, "commit_id": addTara})
	want := []string{alice.UserID(), taraID}
	checkPeerState(t, "tara after joining on b.test", r, alice.Epoch(), want)
	step("tara joined on b.test from alice's Welcome (a.test)")

	text := fmt.Sprintf("from a.test (suite %d)", number)
	msg := alice.Send(roomID, text)
	if r := tara.call("await_event", map[string]any{"room_id": roomID, "event_id": msg}); r["body"] != text {
		t.Fatalf("tara made %v of alice's message", r)
	}
	text = fmt.Sprintf("from b.test, ts-mls (suite %d)", number)
	msg = tara.call("send_message", map[string]any{"room_id": roomID, "text": text})["event_id"].(string)
	if got := alice.Await(roomID, msg); got.Text != text {
		t.Fatalf("alice made %+v of tara's message", got)
	}
	step("messages crossed both ways")

	r = tara.call("try_commit", map[string]any{"room_id": roomID, "federation": fedJSON(fm)})
	if r["status"] != float64(403) || r["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("tara's direct commit on b.test: %v, want 403 M_FORBIDDEN", r)
	}
	r = tara.call("commit_add_pending", map[string]any{"room_id": roomID, "user_id": carol.UserID(), "device_id": carol.DeviceID(),
		"federation": fedJSON(fm), "within_ms": 20000})
	addCarol := r["commit_event_id"].(string)
	// b.test's own window opens 5 real minutes after receipt: applied
	// within 20 s means a.test applied it.
	if r["commit_origin"] != serverName {
		t.Fatalf("tara's pending commit applied by %v, want a.test (powers[0])", r["commit_origin"])
	}
	want = []string{alice.UserID(), taraID, carol.UserID()}
	checkPeerState(t, "tara after her pending add", r, alice.Epoch()+1, want)
	got := alice.Await(roomID, addCarol)
	if got.Kind != "commit" {
		t.Fatalf("alice made a %q of the applied pending commit", got.Kind)
	}
	if err := checkFedMap(got.AuthenticatedData, fm); err != nil {
		t.Fatalf("tara's pending commit as alice read it: %v", err)
	}
	carol.JoinInvited(roomID, addCarol)
	if !slices.Equal(alice.Members(), want) || !slices.Equal(carol.Members(), want) || carol.Epoch() != alice.Epoch() {
		t.Fatalf("alice %v, carol %v (epochs %d, %d), want %v", alice.Members(), carol.Members(), alice.Epoch(), carol.Epoch(), want)
	}
	step("tara's pending commit from b.test applied by a.test after %v (statuses %v); carol joined from ts-mls's Welcome",
		time.Duration(r["applied_after_ms"].(float64))*time.Millisecond, r["statuses"])

	text = fmt.Sprintf("carol on a.test (suite %d)", number)
	msg = carol.Send(roomID, text)
	if r := tara.call("await_event", map[string]any{"room_id": roomID, "event_id": msg}); r["body"] != text {
		t.Fatalf("tara made %v of carol's message", r)
	}
	if got := alice.Await(roomID, msg); got.Text != text {
		t.Fatalf("alice made %+v of carol's message", got)
	}
	tara.call("quit", nil)
}

// startFederatingPair starts a.test and b.test federating with each other
// on 127.0.0.1 (a self-signed certificate both trust, each resolving the
// other's name to its federation listener) and waits until each serves
// its key; it returns their client API URLs.
func startFederatingPair(t *testing.T) (urlA, urlB string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := writeFederationCert(t, dir, serverName, elsewhere)
	fa, fb := freeAddr(t), freeAddr(t)
	common := []string{"--federation", "--federation-tls-cert", cert, "--federation-tls-key", key, "--federation-trust-ca", cert,
		"--federation-resolve", serverName + "=" + fa, "--federation-resolve", elsewhere + "=" + fb}
	urlA = startServerArgs(t, serverName, append([]string{"--federation-listen", fa}, common...)...)
	urlB = startServerArgs(t, elsewhere, append([]string{"--federation-listen", fb}, common...)...)
	pemBytes, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for _, addr := range []string{fa, fb} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := hc.Get("https://" + addr + "/_matrix/key/v2/server")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if time.Now().After(deadline) {
				t.Fatalf("federation listener %s does not serve its key: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return urlA, urlB
}

// writeFederationCert writes a self-signed certificate for 127.0.0.1 and
// the names, which each server serves and trusts as its CA.
func writeFederationCert(t *testing.T, dir string, names ...string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, _, err := loopback.WriteCert(dir, time.Hour, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
