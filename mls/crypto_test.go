package mls

import (
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/suite"
)

func TestCipherSuiteNames(t *testing.T) {
	for _, cs := range SupportedCipherSuites() {
		s, err := suite.Lookup(suite.ID(cs))
		if err != nil {
			t.Fatal(err)
		}
		if cs.String() != s.Name() {
			t.Errorf("suite %d: String() %q, implementation %q", uint16(cs), cs.String(), s.Name())
		}
	}
	if CipherSuite(4).Supported() || !XWingAES256GCMSHA512Ed25519.Supported() {
		t.Error("Supported disagrees with the implemented suites")
	}
}

func TestSignerRoundTrip(t *testing.T) {
	for _, cs := range SupportedCipherSuites() {
		s, err := GenerateSigner(cs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := NewSigner(cs, s.PrivateKey())
		if err != nil || string(again.PublicKey()) != string(s.PublicKey()) {
			t.Fatalf("%v: reloaded signer: %v", cs, err)
		}
		sig, err := again.SignWithLabel("L", []byte("c"))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyWithLabel(cs, s.PublicKey(), "L", []byte("c"), sig); err != nil {
			t.Fatalf("%v: %v", cs, err)
		}
	}
	if _, err := GenerateSigner(4); err == nil {
		t.Fatal("signer for an unsupported suite")
	}
}
