package conformance

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/fclient"
)

// TestCheckXMatrix: a transaction signed by the server's published key
// passes; one whose body changed after signing, or signed by another key,
// fails the check.
func TestCheckXMatrix(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	txn := func(key ed25519.PrivateKey) ReceivedTxn {
		fr := fclient.NewFederationRequest("PUT", "hs.example", SuiteNameA, "/_matrix/federation/v1/send/t1")
		if err := fr.SetContent(map[string]any{"origin": "hs.example", "pdus": []any{}}); err != nil {
			t.Fatal(err)
		}
		if err := fr.Sign("hs.example", "ed25519:k", key); err != nil {
			t.Fatal(err)
		}
		req, err := fr.HTTPRequest()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		return ReceivedTxn{Method: "PUT", RequestURI: req.URL.RequestURI(), Host: SuiteNameA, Authorization: req.Header.Values("Authorization"), Body: body}
	}
	env := &Env{ServerName: "hs.example"}
	keys := map[string]ed25519.PublicKey{"ed25519:k": pub}
	good := txn(priv)
	edited := txn(priv)
	edited.Body = []byte(`{"origin":"hs.example","pdus":[{}]}`)
	forged := txn(other)
	for _, c := range []struct {
		name string
		txn  ReceivedTxn
		pass bool
	}{{"signed", good, true}, {"body edited", edited, false}, {"another key", forged, false}} {
		res := RunCheck(t, env, Check{Section: "t", Name: c.name, Run: func(cc *C) { checkXMatrix(cc, c.txn, keys) }})
		if res.Passed != c.pass {
			t.Errorf("%s: passed %v, want %v (%v)", c.name, res.Passed, c.pass, res.Failures)
		}
	}
}
