package suite

import (
	"bytes"
	"errors"
	"testing"
)

// TestRoundTrips exercises every supported suite, including 83 (X-Wing),
// which the official vectors do not cover.
func TestRoundTrips(t *testing.T) {
	for _, id := range Supported() {
		s, err := Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.Name(), func(t *testing.T) {
			priv, pub, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CheckSignaturePublicKey(pub); err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignWithLabel(priv, "Test", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(pub, "Test", []byte("content"), sig); err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(pub, "Test", []byte("contenT"), sig); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered content: %v, want ErrSignature", err)
			}
			if err := s.VerifyWithLabel(pub[:len(pub)-1], "Test", []byte("content"), sig); err == nil || errors.Is(err, ErrSignature) {
				t.Fatalf("short public key: %v, want a key error", err)
			}

			hpriv, hpub, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CheckHPKEPublicKey(hpub); err != nil {
				t.Fatal(err)
			}
			if err := s.CheckHPKEPublicKey(hpub[1:]); err == nil {
				t.Fatal("truncated HPKE public key accepted")
			}
			kem, ct, err := s.EncryptWithLabel(hpub, "Test", []byte("ctx"), []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := s.DecryptWithLabel(hpriv, "Test", []byte("ctx"), kem, ct)
			if err != nil || string(pt) != "secret" {
				t.Fatalf("DecryptWithLabel = %q, %v", pt, err)
			}
			if _, err := s.DecryptWithLabel(hpriv, "Other", []byte("ctx"), kem, ct); err == nil {
				t.Fatal("decryption under another label succeeded")
			}

			ikm := bytes.Repeat([]byte{7}, s.HashSize())
			p1, q1, err := s.DeriveKeyPair(ikm)
			if err != nil {
				t.Fatal(err)
			}
			p2, q2, _ := s.DeriveKeyPair(ikm)
			if !bytes.Equal(p1, p2) || !bytes.Equal(q1, q2) {
				t.Fatal("DeriveKeyPair is not deterministic")
			}
			if q, err := s.HPKEPublicKey(p1); err != nil || !bytes.Equal(q, q1) {
				t.Fatalf("HPKEPublicKey(derived) = %x, %v; want %x", q, err, q1)
			}

			if _, err := s.AEAD(make([]byte, s.AEADKeySize()+1)); err == nil {
				t.Fatal("AEAD accepted a key of the wrong size")
			}
			a, err := s.AEAD(make([]byte, s.AEADKeySize()))
			if err != nil || a.NonceSize() != s.AEADNonceSize() {
				t.Fatalf("AEAD: %v, nonce size %d", err, a.NonceSize())
			}
		})
	}
}

func TestLookupUnsupported(t *testing.T) {
	for _, id := range []ID{0, 4, 6, 8, 0x0054, 0xffff} {
		if _, err := Lookup(id); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Lookup(%d) = %v, want ErrUnsupported", id, err)
		}
	}
}

// TestXWingSizes pins the sizes of suite 83's keys and KEM output, which the
// wire format and the spec's size estimates depend on.
func TestXWingSizes(t *testing.T) {
	s, _ := Lookup(XWingAES256GCMSHA512Ed25519)
	priv, pub, err := s.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	kem, _, err := s.EncryptWithLabel(pub, "L", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(priv) != 32 || len(pub) != 1216 || len(kem) != 1120 || s.HashSize() != 64 {
		t.Fatalf("X-Wing sizes: priv %d pub %d kem %d Nh %d", len(priv), len(pub), len(kem), s.HashSize())
	}
}

func TestExternalInit(t *testing.T) {
	for _, id := range Supported() {
		s, _ := Lookup(id)
		priv, pub, err := s.DeriveKeyPair(bytes.Repeat([]byte{3}, s.HashSize()))
		if err != nil {
			t.Fatal(err)
		}
		kem, secret, err := s.ExternalInit(pub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ExternalInitSecret(priv, kem)
		if err != nil || !bytes.Equal(got, secret) || len(secret) != s.HashSize() {
			t.Fatalf("%s: external init secret %x, %v; want %x", s.Name(), got, err, secret)
		}
		other, _, _ := s.GenerateHPKEKey()
		if got, err := s.ExternalInitSecret(other, kem); err == nil && bytes.Equal(got, secret) {
			t.Fatalf("%s: another key exported the same secret", s.Name())
		}
	}
}
