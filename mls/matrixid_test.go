package mls

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

func TestMatrixIdentityRoundTrip(t *testing.T) {
	id := &MatrixIdentity{UserID: "@bob:b.example:8448", DeviceID: "ABCDEF", SignatureKey: []byte{1, 2, 3}}
	b, err := id.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The layout is SPEC-NOTES §9's: three opaque<V> fields.
	want := append(append(append([]byte{19}, "@bob:b.example:8448"...), 6), "ABCDEF"...)
	want = append(want, 3, 1, 2, 3)
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding %x, want %x", b, want)
	}
	got, err := ParseMatrixIdentity(b)
	if err != nil || got.UserID != id.UserID || got.DeviceID != id.DeviceID || !bytes.Equal(got.SignatureKey, id.SignatureKey) {
		t.Fatalf("ParseMatrixIdentity = %+v, %v", got, err)
	}
	cred, err := NewMatrixCredential(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cred.MatrixIdentity(); err != nil || got.UserID != id.UserID {
		t.Fatalf("Credential.MatrixIdentity = %+v, %v", got, err)
	}
	x509 := Credential{CredentialType: CredentialTypeX509}
	if _, err := x509.MatrixIdentity(); err == nil {
		t.Fatal("x509 credential gave a Matrix identity")
	}
}

func TestMatrixIdentityRejects(t *testing.T) {
	enc := func(user, device string, key []byte) []byte {
		b, _ := codec.Marshal(func(w *codec.Writer) {
			w.Opaque([]byte(user))
			w.Opaque([]byte(device))
			w.Opaque(key)
		})
		return b
	}
	good := enc("@a:b.c", "D", []byte{1})
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"truncated":       {good[:len(good)-1], "signature_key"},
		"trailing":        {append(good, 0), "trailing"},
		"no @":            {enc("a:b.c", "D", []byte{1}), "user_id"},
		"no server":       {enc("@ab.c", "D", []byte{1}), "user_id"},
		"empty server":    {enc("@abc:", "D", []byte{1}), "user_id"},
		"not UTF-8":       {enc("@a\xff:b.c", "D", []byte{1}), "UTF-8"},
		"long user":       {enc("@"+strings.Repeat("a", 250)+":b.cd", "D", []byte{1}), "user_id"},
		"empty device":    {enc("@a:b.c", "", []byte{1}), "device_id"},
		"device not UTF8": {enc("@a:b.c", "\xc0", []byte{1}), "device_id"},
		"no key":          {enc("@a:b.c", "D", nil), "signature_key"},
	} {
		if _, err := ParseMatrixIdentity(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tc.want)
		}
	}
}

func TestLeafMatrixIdentityKeyMustMatch(t *testing.T) {
	kp, _, _ := newTestKeyPackage(t, X25519AES128GCMSHA256Ed25519, nil)
	kp.LeafNode.SignatureKey = bytes.Repeat([]byte{9}, 32)
	if _, err := kp.LeafNode.MatrixIdentity(); err == nil || !strings.Contains(err.Error(), "signature_key") {
		t.Fatalf("mismatched signature key: %v", err)
	}
}
