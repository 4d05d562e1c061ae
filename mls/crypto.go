package mls

import (
	"fmt"

	"github.com/mlsmode/mlsmode/mls/internal/suite"
)

// The cipher suites this package implements (RFC 9420 §17.1, and the X-Wing
// suite 83 as ts-mls numbers it). Suites 4 and 6 (X448, Ed448) are not
// implemented: the standard library has neither curve.
const (
	X25519AES128GCMSHA256Ed25519        CipherSuite = 0x0001
	P256AES128GCMSHA256P256             CipherSuite = 0x0002
	X25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 0x0003
	P521AES256GCMSHA512P521             CipherSuite = 0x0005
	P384AES256GCMSHA384P384             CipherSuite = 0x0007
	XWingAES256GCMSHA512Ed25519         CipherSuite = 0x0053
)

// ErrUnsupportedCipherSuite is wrapped by errors about a cipher suite this
// package does not implement.
var ErrUnsupportedCipherSuite = suite.ErrUnsupported

// SupportedCipherSuites lists the suites this package implements.
func SupportedCipherSuites() []CipherSuite {
	ids := suite.Supported()
	out := make([]CipherSuite, len(ids))
	for i, id := range ids {
		out[i] = CipherSuite(id)
	}
	return out
}

// Supported reports whether this package implements cs.
func (cs CipherSuite) Supported() bool {
	_, err := suite.Lookup(suite.ID(cs))
	return err == nil
}

func (cs CipherSuite) impl() (*suite.Suite, error) {
	return suite.Lookup(suite.ID(cs))
}

// Signer holds a signature private key of one cipher suite. It is safe for
// concurrent use.
type Signer struct {
	cs   CipherSuite
	priv []byte
	key  *suite.SigningKey
}

// GenerateSigner returns a Signer with a fresh key pair.
func GenerateSigner(cs CipherSuite) (*Signer, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	priv, _, err := s.GenerateSignatureKey()
	if err != nil {
		return nil, fmt.Errorf("mls: generating signature key: %w", err)
	}
	return NewSigner(cs, priv)
}

// NewSigner parses a serialized signature private key (an Ed25519 seed or a
// big-endian ECDSA scalar).
func NewSigner(cs CipherSuite, priv []byte) (*Signer, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	k, err := s.NewSigningKey(priv)
	if err != nil {
		return nil, err
	}
	return &Signer{cs: cs, priv: append([]byte(nil), priv...), key: k}, nil
}

// CipherSuite returns the suite the key belongs to.
func (s *Signer) CipherSuite() CipherSuite { return s.cs }

// PublicKey returns the serialized signature public key.
func (s *Signer) PublicKey() []byte { return s.key.PublicKey() }

// PrivateKey returns the serialized private key, for storage.
func (s *Signer) PrivateKey() []byte { return append([]byte(nil), s.priv...) }

// SignWithLabel is RFC 9420 §5.1.2's SignWithLabel.
func (s *Signer) SignWithLabel(label string, content []byte) ([]byte, error) {
	return s.key.SignWithLabel(label, content)
}

// ErrInvalidSignature is returned (wrapped) for a signature that does not
// verify.
var ErrInvalidSignature = suite.ErrSignature

// VerifyWithLabel is RFC 9420 §5.1.2's VerifyWithLabel with the serialized
// public key pub. A bad signature gives an error wrapping
// ErrInvalidSignature.
func VerifyWithLabel(cs CipherSuite, pub []byte, label string, content, sig []byte) error {
	s, err := cs.impl()
	if err != nil {
		return err
	}
	return s.VerifyWithLabel(pub, label, content, sig)
}

// RefHash is RFC 9420 §5.2's RefHash.
func RefHash(cs CipherSuite, label string, value []byte) ([]byte, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	return s.RefHash(label, value)
}
