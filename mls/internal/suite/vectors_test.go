package suite

import (
	"bytes"
	"errors"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

func TestVectors(t *testing.T) {
	t.Run("crypto-basics", testCryptoBasics)
}

type cryptoBasicsCase struct {
	CipherSuite uint16 `json:"cipher_suite"`
	RefHash     struct {
		Label      string
		Value, Out tv.Hex
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  tv.Hex
		Label   string
		Context tv.Hex
		Length  uint16
		Out     tv.Hex
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret tv.Hex
		Label  string
		Out    tv.Hex
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     tv.Hex
		Label      string
		Generation uint32
		Length     uint16
		Out        tv.Hex
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv, Pub tv.Hex
		Content   tv.Hex
		Label     string
		Signature tv.Hex
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv, Pub  tv.Hex
		Label      string
		Context    tv.Hex
		Plaintext  tv.Hex
		KEMOutput  tv.Hex `json:"kem_output"`
		Ciphertext tv.Hex
	} `json:"encrypt_with_label"`
}

func testCryptoBasics(t *testing.T) {
	var cases []cryptoBasicsCase
	tv.Load(t, "crypto-basics", &cases)
	supported := func(s uint16) bool { _, err := Lookup(ID(s)); return err == nil }
	tv.ForEachCase(t, "crypto-basics", len(cases), func(i int) uint16 { return cases[i].CipherSuite }, supported, func(t *testing.T, i int) {
		c := &cases[i]
		s, _ := Lookup(ID(c.CipherSuite))
		checkCryptoBasics(t, s, c)
	})
}

func checkCryptoBasics(t *testing.T, s *Suite, c *cryptoBasicsCase) {
	eq := func(what string, got []byte, err error, want []byte) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s = %x, want %x", what, got, want)
		}
	}
	got, err := s.RefHash(c.RefHash.Label, c.RefHash.Value)
	eq("RefHash", got, err, c.RefHash.Out)
	e := c.ExpandWithLabel
	got, err = s.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length)
	eq("ExpandWithLabel", got, err, e.Out)
	got, err = s.DeriveSecret(c.DeriveSecret.Secret, c.DeriveSecret.Label)
	eq("DeriveSecret", got, err, c.DeriveSecret.Out)
	d := c.DeriveTreeSecret
	got, err = s.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length)
	eq("DeriveTreeSecret", got, err, d.Out)

	sg := c.SignWithLabel
	if err := s.VerifyWithLabel(sg.Pub, sg.Label, sg.Content, sg.Signature); err != nil {
		t.Errorf("VerifyWithLabel(vector signature): %v", err)
	}
	sig, err := s.SignWithLabel(sg.Priv, sg.Label, sg.Content)
	if err != nil {
		t.Fatalf("SignWithLabel: %v", err)
	}
	if err := s.VerifyWithLabel(sg.Pub, sg.Label, sg.Content, sig); err != nil {
		t.Errorf("VerifyWithLabel(own signature): %v", err)
	}
	if err := s.VerifyWithLabel(sg.Pub, sg.Label+"x", sg.Content, sig); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyWithLabel with another label = %v, want ErrSignature", err)
	}
	pub, err := s.SignaturePublicKey(sg.Priv)
	eq("SignaturePublicKey", pub, err, sg.Pub)

	en := c.EncryptWithLabel
	got, err = s.DecryptWithLabel(en.Priv, en.Label, en.Context, en.KEMOutput, en.Ciphertext)
	eq("DecryptWithLabel(vector)", got, err, en.Plaintext)
	kem, ct, err := s.EncryptWithLabel(en.Pub, en.Label, en.Context, en.Plaintext)
	if err != nil {
		t.Fatalf("EncryptWithLabel: %v", err)
	}
	got, err = s.DecryptWithLabel(en.Priv, en.Label, en.Context, kem, ct)
	eq("DecryptWithLabel(own)", got, err, en.Plaintext)
	if _, err := s.DecryptWithLabel(en.Priv, en.Label, append([]byte{1}, en.Context...), kem, ct); err == nil {
		t.Errorf("DecryptWithLabel with another context succeeded")
	}
	hpub, err := s.HPKEPublicKey(en.Priv)
	eq("HPKEPublicKey", hpub, err, en.Pub)
}
