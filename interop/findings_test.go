//go:build interop

package interop

import (
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
)

// TestTSMLSFindings asserts the two places where ts-mls 1.6.4 as it comes
// and our side disagree, which TestTSMLS adapts the ts-mls member for
// (docs/INTEROP.md). Should either side change, this test fails and the
// adaptation can go.
func TestTSMLSFindings(t *testing.T) {
	// Suite 2: ts-mls makes P-256 signature public keys as compressed
	// points (33 bytes); RFC 9420 §5.1.1 wants uncompressed points, and
	// the server refuses the key packages.
	t.Run("suite2-compressed-signature-key", func(t *testing.T) {
		url := startServer(t, serverName)
		tara := startTSPeer(t)
		r := tara.call("init", map[string]any{"base_url": url, "suite": 2, "name": "tara"})
		if r["signature_key_length_made"] != float64(33) || r["signature_key_length"] != float64(33) {
			t.Fatalf("ts-mls P-256 signature key: %v bytes made, %v sent; want 33 (compressed)", r["signature_key_length_made"], r["signature_key_length"])
		}
		r = tara.tryCall("upload_keys", map[string]any{"count": 1})
		if e, _ := r["error"].(string); r["ok"] != false || !strings.Contains(e, "status 400") || !strings.Contains(e, "invalid uncompressed public key") {
			t.Fatalf("uploading a ts-mls key package with a compressed P-256 key: %v, want 400 naming the uncompressed point", r)
		}
		t.Logf("FINDING suite 2: ts-mls 1.6.4's P-256 signature key is 33 bytes (compressed); the server refuses it: %v", r["error"])
	})

	// Suite 83: ts-mls (@hpke/hybridkem-x-wing 0.7.0) and our mls package
	// (Go crypto/hpke) derive different X-Wing key pairs from one secret.
	// Welcomes and messages work; a commit with an UpdatePath does not.
	t.Run("suite83-xwing-derive-key-pair", func(t *testing.T) {
		url := startServer(t, serverName)
		tara := startTSPeer(t)
		r := tara.call("init", map[string]any{"base_url": url, "suite": 83, "name": "tara"})
		taraID, taraDevice := r["user_id"].(string), r["device_id"].(string)
		tara.call("upload_keys", map[string]any{"count": 1})
		tara.call("initial_sync", nil)
		alice := newTCMember(t, url, "alice", mls.XWingAES256GCMSHA512Ed25519)
		alice.UploadKeys(1)
		alice.InitialSync()
		fm := testclient.FedMap([]string{serverName}, []string{serverName}, []string{serverName})
		roomID := alice.CreateRoom(fm)
		addTara, _ := alice.Add(roomID, fm, taraID, taraDevice)
		tara.call("join_from_welcome", map[string]any{"room_id": roomID, "commit_id": addTara})
		msg := alice.Send(roomID, "x-wing message")
		if r := tara.call("await_event", map[string]any{"room_id": roomID, "event_id": msg}); r["body"] != "x-wing message" {
			t.Fatalf("tara made %v of alice's message", r)
		}
		r = tara.call("try_commit", map[string]any{"room_id": roomID, "federation": fedJSON(fm)})
		if r["status"] != float64(200) {
			t.Fatalf("tara's commit: %v", r)
		}
		err := alice.tryAwaitCommit(roomID, r["event_id"].(string))
		if err == nil || !strings.Contains(err.Error(), "derives another public key") {
			t.Fatalf("alice processing ts-mls's commit with an UpdatePath: %v, want the derived public key mismatch", err)
		}
		t.Logf("FINDING suite 83: Welcome and messages interoperate; our client refuses ts-mls's commit with an UpdatePath: %v", err)
	})
}
