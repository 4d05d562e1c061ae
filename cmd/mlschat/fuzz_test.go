package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// FuzzSignedBy feeds signedBy (and singleKey) cross-signing objects as a
// homeserver's /keys/query could answer them: it must never panic, and
// must accept only a valid signature of the signer's one key.
func FuzzSignedBy(f *testing.F) {
	// A fixed key: every fuzz worker must sign with the same one.
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	keyID := "ed25519:" + base64.RawStdEncoding.EncodeToString(pub)
	signer, _ := json.Marshal(map[string]any{"user_id": "@a:x", "usage": []string{"user_signing"},
		"keys": map[string]string{keyID: base64.RawStdEncoding.EncodeToString(pub)}})
	obj := []byte(`{"user_id":"@b:x","usage":["master"],"keys":{"ed25519:k":"k"}}`)
	signed, err := gomatrixserverlib.SignJSON("@a:x", gomatrixserverlib.KeyID(keyID), priv, obj)
	if err != nil {
		f.Fatal(err)
	}
	if err := signedBy(signed, "@a:x", signer); err != nil {
		f.Fatalf("a valid signature is refused: %v", err)
	}
	f.Add([]byte(signed), []byte(signer))
	f.Add(obj, []byte(signer))
	f.Add([]byte(`{}`), []byte(`{"keys":{}}`))
	f.Add([]byte(`null`), []byte(`{"keys":{"ed25519:a":"!!"}}`))
	f.Fuzz(func(t *testing.T, obj, signerRaw []byte) {
		err := signedBy(obj, "@a:x", signerRaw)
		if err == nil && string(signerRaw) != string(signer) {
			// Another signer object can only verify if it holds the
			// same single key.
			p, _, kerr := singleKey(signerRaw)
			if kerr != nil || p != base64.RawStdEncoding.EncodeToString(pub) {
				t.Fatalf("signedBy accepted a signer %q that is not the key that signed", signerRaw)
			}
		}
	})
}
