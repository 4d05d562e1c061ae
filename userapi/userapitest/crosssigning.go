package userapitest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// SigningKey is a test cross-signing key (master, self_signing or
// user_signing) of a user.
type SigningKey struct {
	UserID  string
	Usage   string
	Public  string // unpadded base64
	KeyID   string // "ed25519:" + Public
	Private ed25519.PrivateKey
}

// NewSigningKey makes a random ed25519 cross-signing key.
func NewSigningKey(tb testing.TB, userID, usage string) *SigningKey {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p := base64.RawStdEncoding.EncodeToString(pub)
	return &SigningKey{UserID: userID, Usage: usage, Public: p, KeyID: "ed25519:" + p, Private: priv}
}

// Object returns the CrossSigningKey object, signed by each of signers.
func (k *SigningKey) Object(tb testing.TB, signers ...*SigningKey) json.RawMessage {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"user_id": k.UserID, "usage": []string{k.Usage}, "keys": map[string]string{k.KeyID: k.Public}})
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range signers {
		b = s.Sign(tb, b)
	}
	return b
}

// Sign adds k's signature to the JSON object obj.
func (k *SigningKey) Sign(tb testing.TB, obj []byte) json.RawMessage {
	tb.Helper()
	out, err := gomatrixserverlib.SignJSON(k.UserID, gomatrixserverlib.KeyID(k.KeyID), k.Private, obj)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
