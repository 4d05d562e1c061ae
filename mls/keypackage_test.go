package mls

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newTestKeyPackage(t testing.TB, cs CipherSuite, mutate func(*KeyPackageParams)) (*KeyPackage, *KeyPackageSecrets, *Signer) {
	t.Helper()
	signer, err := GenerateSigner(cs)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := NewMatrixCredential(&MatrixIdentity{UserID: "@alice:a.example", DeviceID: "DEV1", SignatureKey: signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	p := KeyPackageParams{
		Signer:       signer,
		Credential:   cred,
		Capabilities: &Capabilities{Extensions: []ExtensionType{0xF6D0}},
		Now:          func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&p)
	}
	kp, secrets, err := NewKeyPackage(p)
	if err != nil {
		t.Fatal(err)
	}
	return kp, secrets, signer
}

// resign signs kp's leaf node and kp again, so that a test's change breaks
// only the rule under test, not the signatures.
func resign(t *testing.T, kp *KeyPackage, s *Signer) {
	t.Helper()
	if err := kp.LeafNode.sign(s, nil, 0); err != nil {
		t.Fatal(err)
	}
	tbs, err := kp.TBS()
	if err != nil {
		t.Fatal(err)
	}
	if kp.Signature, err = s.SignWithLabel(labelKeyPackage, tbs); err != nil {
		t.Fatal(err)
	}
}

func TestKeyPackageGenerateAndValidate(t *testing.T) {
	for _, cs := range SupportedCipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			kp, secrets, _ := newTestKeyPackage(t, cs, nil)
			check := KeyPackageCheck{CipherSuite: cs, Now: testNow, RequiredExtensions: []ExtensionType{0xF6D0}}
			if err := kp.Validate(check); err != nil {
				t.Fatal(err)
			}
			// Through the wire and back.
			b, err := (&MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp}).MarshalMLS()
			if err != nil {
				t.Fatal(err)
			}
			var m MLSMessage
			if err := m.UnmarshalMLS(b); err != nil {
				t.Fatal(err)
			}
			if err := m.KeyPackage.Validate(check); err != nil {
				t.Fatalf("decoded key package: %v", err)
			}
			ref, err := kp.Ref()
			if err != nil {
				t.Fatal(err)
			}
			s, _ := cs.impl()
			if len(ref) != s.HashSize() {
				t.Fatalf("KeyPackageRef is %d bytes", len(ref))
			}
			ref2, _ := m.KeyPackage.Ref()
			if !bytes.Equal(ref, ref2) {
				t.Fatal("KeyPackageRef changed through encoding")
			}
			// The secrets match the public keys.
			if pub, err := s.HPKEPublicKey(secrets.InitKey); err != nil || !bytes.Equal(pub, kp.InitKey) {
				t.Fatalf("init key: %v", err)
			}
			if pub, err := s.HPKEPublicKey(secrets.EncryptionKey); err != nil || !bytes.Equal(pub, kp.LeafNode.EncryptionKey) {
				t.Fatalf("encryption key: %v", err)
			}
			id, err := kp.LeafNode.MatrixIdentity()
			if err != nil || id.UserID != "@alice:a.example" || id.DeviceID != "DEV1" {
				t.Fatalf("matrix identity: %+v, %v", id, err)
			}
		})
	}
}

func TestKeyPackageValidationRules(t *testing.T) {
	base := KeyPackageCheck{Now: testNow}
	for _, tc := range []struct {
		name   string
		change func(kp *KeyPackage, s *Signer)
		check  func(*KeyPackageCheck)
		want   string
	}{
		{"version", func(kp *KeyPackage, _ *Signer) { kp.Version = 2 }, nil, "version"},
		{"unsupported suite", func(kp *KeyPackage, _ *Signer) { kp.CipherSuite = 4 }, nil, "cipher_suite"},
		{"other suite than the group's", nil, func(c *KeyPackageCheck) { c.CipherSuite = P256AES128GCMSHA256P256 }, "cipher_suite"},
		{"leaf source", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.LeafNodeSource, kp.LeafNode.Lifetime = LeafNodeSourceUpdate, nil
		}, nil, "leaf_node_source"},
		{"expired", nil, func(c *KeyPackageCheck) { c.Now = testNow.Add(DefaultKeyPackageLifetime + time.Second) }, "lifetime"},
		{"not yet valid", nil, func(c *KeyPackageCheck) { c.Now = testNow.Add(-2 * time.Hour) }, "lifetime"},
		{"inverted lifetime", func(kp *KeyPackage, _ *Signer) {
			lt := kp.LeafNode.Lifetime
			lt.NotBefore, lt.NotAfter = lt.NotAfter, lt.NotBefore
		}, nil, "lifetime"},
		{"init key equals encryption key", func(kp *KeyPackage, _ *Signer) { kp.InitKey = kp.LeafNode.EncryptionKey }, nil, "init_key"},
		{"malformed init key", func(kp *KeyPackage, _ *Signer) { kp.InitKey = kp.InitKey[1:] }, nil, "init_key"},
		{"malformed encryption key", func(kp *KeyPackage, _ *Signer) { kp.LeafNode.EncryptionKey = []byte{1, 2, 3} }, nil, "encryption_key"},
		{"capabilities without the version", func(kp *KeyPackage, _ *Signer) { kp.LeafNode.Capabilities.Versions = []ProtocolVersion{7} }, nil, "versions"},
		{"capabilities without the suite", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Capabilities.CipherSuites = []CipherSuite{P256AES128GCMSHA256P256}
		}, nil, "cipher_suites"},
		{"capabilities without the credential type", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Capabilities.Credentials = []CredentialType{CredentialTypeX509}
		}, nil, "credentials"},
		{"capabilities listing a default extension", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Capabilities.Extensions = append(kp.LeafNode.Capabilities.Extensions, ExtensionTypeRatchetTree)
		}, nil, "default"},
		{"capabilities listing a default proposal", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Capabilities.Proposals = []ProposalType{ProposalTypeAdd}
		}, nil, "default"},
		{"leaf extension not in capabilities", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Extensions = Extensions{{Type: 0xFF00, Data: []byte{1}}}
		}, nil, "not listed"},
		{"required extension missing", func(kp *KeyPackage, _ *Signer) {
			kp.LeafNode.Capabilities.Extensions = nil
		}, func(c *KeyPackageCheck) { c.RequiredExtensions = []ExtensionType{0xF6D0} }, "required"},
		{"required proposal missing", nil, func(c *KeyPackageCheck) { c.RequiredProposals = []ProposalType{0xF000} }, "required"},
		{"required credential missing", nil, func(c *KeyPackageCheck) { c.RequiredCredentials = []CredentialType{CredentialTypeX509} }, "required"},
		{"malformed signature key", func(kp *KeyPackage, s *Signer) { kp.LeafNode.SignatureKey = []byte{1} }, nil, "signature_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, _, s := newTestKeyPackage(t, X25519AES128GCMSHA256Ed25519, nil)
			if tc.change != nil {
				tc.change(kp, s)
				// A version 2 cannot be encoded, so not signed, and a
				// malformed signature key cannot sign.
				if tc.name != "version" && tc.name != "malformed signature key" {
					resign(t, kp, s)
				}
			}
			check := base
			if tc.check != nil {
				tc.check(&check)
			}
			err := kp.Validate(check)
			if !errors.Is(err, ErrInvalidKeyPackage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalidKeyPackage naming %q", err, tc.want)
			}
		})
	}
}

func TestKeyPackageSignatures(t *testing.T) {
	kp, _, s := newTestKeyPackage(t, X25519AES128GCMSHA256Ed25519, nil)
	check := KeyPackageCheck{Now: testNow}

	// A changed KeyPackage field breaks only the KeyPackage signature.
	kp.Extensions = Extensions{{Type: ExtensionTypeLastResort}}
	if err := kp.Validate(check); !errors.Is(err, ErrInvalidSignature) || !strings.Contains(err.Error(), "key package: signature:") {
		t.Fatalf("tampered key package: %v", err)
	}
	// A leaf node field changed and the KeyPackage re-signed: the leaf
	// signature fails.
	kp.LeafNode.Capabilities.Proposals = []ProposalType{0xF001}
	tbs, _ := kp.TBS()
	kp.Signature, _ = s.SignWithLabel(labelKeyPackage, tbs)
	if err := kp.Validate(check); !errors.Is(err, ErrInvalidSignature) || !strings.Contains(err.Error(), "leaf_node.signature") {
		t.Fatalf("tampered leaf node: %v", err)
	}
	// Signed by another key than the leaf's.
	other, _ := GenerateSigner(X25519AES128GCMSHA256Ed25519)
	kp2, _, _ := newTestKeyPackage(t, X25519AES128GCMSHA256Ed25519, nil)
	tbs, _ = kp2.TBS()
	kp2.Signature, _ = other.SignWithLabel(labelKeyPackage, tbs)
	if err := kp2.Validate(check); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("foreign signature: %v", err)
	}
}

func TestKeyPackageParams(t *testing.T) {
	nb, na := testNow.Add(-time.Minute), testNow.Add(time.Hour)
	kp, _, _ := newTestKeyPackage(t, X25519AES128GCMSHA256Ed25519, func(p *KeyPackageParams) {
		p.NotBefore, p.NotAfter = nb, na
		p.Extensions = Extensions{{Type: ExtensionTypeLastResort, Data: []byte{}}}
		p.LeafExtensions = Extensions{{Type: 0xFF01, Data: []byte("x")}}
	})
	if kp.LeafNode.Lifetime.NotBefore != uint64(nb.Unix()) || kp.LeafNode.Lifetime.NotAfter != uint64(na.Unix()) {
		t.Fatalf("lifetime %+v", kp.LeafNode.Lifetime)
	}
	if _, ok := kp.Extensions.Find(ExtensionTypeLastResort); !ok {
		t.Fatal("last_resort extension missing")
	}
	caps := kp.LeafNode.Capabilities
	if len(caps.Extensions) != 2 || caps.Extensions[1] != 0xFF01 {
		t.Fatalf("leaf extension type not added to capabilities: %v", caps.Extensions)
	}
	if err := kp.Validate(KeyPackageCheck{Now: testNow}); err != nil {
		t.Fatal(err)
	}
	signer, _ := GenerateSigner(X25519AES128GCMSHA256Ed25519)
	if _, _, err := NewKeyPackage(KeyPackageParams{Signer: signer, NotBefore: na, NotAfter: nb}); err == nil {
		t.Fatal("inverted lifetime accepted")
	}
	if _, _, err := NewKeyPackage(KeyPackageParams{}); err == nil {
		t.Fatal("key package without a signer")
	}
}
