// Package suite implements the cryptographic operations of the MLS cipher
// suites (RFC 9420 §5.1 and §17.1) with the Go standard library: hashing,
// HKDF and the labelled derivations, HMAC, AEAD, HPKE (RFC 9180) with the
// labelled EncryptWithLabel/DecryptWithLabel, and signatures with
// SignWithLabel/VerifyWithLabel.
//
// Supported suites: 1, 2, 3, 5 and 7 of RFC 9420, and 83 (0x0053),
// MLS_256_XWING_AES256GCM_SHA512_Ed25519, with the X-Wing hybrid KEM
// (ML-KEM-768 + X25519). Suites 4 and 6 need X448 and Ed448, which the
// standard library does not have.
//
// Keys cross this package as the byte strings MLS puts on the wire: HPKE keys
// in RFC 9180 SerializePublicKey/SerializePrivateKey form, Ed25519 keys as
// RFC 8032 bytes (private keys as the 32-byte seed), ECDSA public keys as
// uncompressed points and private keys as big-endian scalars.
package suite

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"golang.org/x/crypto/chacha20poly1305"
)

// ID is a cipher suite number from the IANA "MLS Cipher Suites" registry.
type ID uint16

// The cipher suites this package implements.
const (
	X25519AES128GCMSHA256Ed25519        ID = 0x0001
	P256AES128GCMSHA256P256             ID = 0x0002
	X25519ChaCha20Poly1305SHA256Ed25519 ID = 0x0003
	P521AES256GCMSHA512P521             ID = 0x0005
	P384AES256GCMSHA384P384             ID = 0x0007
	XWingAES256GCMSHA512Ed25519         ID = 0x0053
)

type sigScheme uint8

const (
	sigEd25519 sigScheme = iota + 1
	sigECDSA
)

type aeadKind uint8

const (
	aeadAESGCM aeadKind = iota + 1
	aeadChaCha20Poly1305
)

// Suite is one cipher suite. Values are immutable and safe for concurrent use.
type Suite struct {
	id      ID
	name    string
	newHash func() hash.Hash
	hashID  crypto.Hash
	kem     hpke.KEM
	kdf     hpke.KDF
	aeadID  hpke.AEAD
	aead    aeadKind
	keySize int
	sig     sigScheme
	curve   elliptic.Curve // ECDSA curve
	// nistPriv is the HPKE private key length of a NIST-curve KEM, whose
	// big-endian scalars some encoders shorten by their leading zeros.
	nistPriv int
}

var suites = map[ID]*Suite{
	X25519AES128GCMSHA256Ed25519: {
		id: X25519AES128GCMSHA256Ed25519, name: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		newHash: sha256.New, hashID: crypto.SHA256, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(),
		aeadID: hpke.AES128GCM(), aead: aeadAESGCM, keySize: 16, sig: sigEd25519,
	},
	P256AES128GCMSHA256P256: {
		id: P256AES128GCMSHA256P256, name: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
		newHash: sha256.New, hashID: crypto.SHA256, kem: hpke.DHKEM(ecdh.P256()), kdf: hpke.HKDFSHA256(),
		aeadID: hpke.AES128GCM(), aead: aeadAESGCM, keySize: 16, sig: sigECDSA, curve: elliptic.P256(), nistPriv: 32,
	},
	X25519ChaCha20Poly1305SHA256Ed25519: {
		id: X25519ChaCha20Poly1305SHA256Ed25519, name: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
		newHash: sha256.New, hashID: crypto.SHA256, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(),
		aeadID: hpke.ChaCha20Poly1305(), aead: aeadChaCha20Poly1305, keySize: 32, sig: sigEd25519,
	},
	P521AES256GCMSHA512P521: {
		id: P521AES256GCMSHA512P521, name: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
		newHash: sha512.New, hashID: crypto.SHA512, kem: hpke.DHKEM(ecdh.P521()), kdf: hpke.HKDFSHA512(),
		aeadID: hpke.AES256GCM(), aead: aeadAESGCM, keySize: 32, sig: sigECDSA, curve: elliptic.P521(), nistPriv: 66,
	},
	P384AES256GCMSHA384P384: {
		id: P384AES256GCMSHA384P384, name: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
		newHash: sha512.New384, hashID: crypto.SHA384, kem: hpke.DHKEM(ecdh.P384()), kdf: hpke.HKDFSHA384(),
		aeadID: hpke.AES256GCM(), aead: aeadAESGCM, keySize: 32, sig: sigECDSA, curve: elliptic.P384(), nistPriv: 48,
	},
	XWingAES256GCMSHA512Ed25519: {
		id: XWingAES256GCMSHA512Ed25519, name: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
		newHash: sha512.New, hashID: crypto.SHA512, kem: hpke.MLKEM768X25519(), kdf: hpke.HKDFSHA512(),
		aeadID: hpke.AES256GCM(), aead: aeadAESGCM, keySize: 32, sig: sigEd25519,
	},
}

// ErrUnsupported is wrapped by Lookup's error for a suite this package does
// not implement.
var ErrUnsupported = errors.New("unsupported cipher suite")

// Lookup returns the suite with the given number.
func Lookup(id ID) (*Suite, error) {
	s, ok := suites[id]
	if !ok {
		return nil, fmt.Errorf("mls: cipher suite 0x%04x: %w", uint16(id), ErrUnsupported)
	}
	return s, nil
}

// Supported lists the suites this package implements, in ascending order.
func Supported() []ID {
	return []ID{X25519AES128GCMSHA256Ed25519, P256AES128GCMSHA256P256, X25519ChaCha20Poly1305SHA256Ed25519,
		P521AES256GCMSHA512P521, P384AES256GCMSHA384P384, XWingAES256GCMSHA512Ed25519}
}

// ID returns the suite's number.
func (s *Suite) ID() ID { return s.id }

// Name returns the suite's IANA name.
func (s *Suite) Name() string { return s.name }

// HashSize is Nh, the output size of the suite's hash and KDF.
func (s *Suite) HashSize() int { return s.hashID.Size() }

// AEADKeySize is Nk.
func (s *Suite) AEADKeySize() int { return s.keySize }

// AEADNonceSize is Nn (12 for every supported AEAD).
func (s *Suite) AEADNonceSize() int { return 12 }

// Hash returns the suite's hash of data.
func (s *Suite) Hash(data []byte) []byte {
	h := s.newHash()
	h.Write(data)
	return h.Sum(nil)
}

// NewHash returns a new hash.Hash of the suite's hash function.
func (s *Suite) NewHash() hash.Hash { return s.newHash() }

// Extract is KDF.Extract (HKDF-Extract with the suite's hash).
func (s *Suite) Extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(s.newHash, ikm, salt)
	if err != nil {
		panic("mls: HKDF-Extract: " + err.Error()) // cannot fail for HMAC-based hashes
	}
	return prk
}

// Expand is KDF.Expand (HKDF-Expand with the suite's hash).
func (s *Suite) Expand(prk, info []byte, length int) ([]byte, error) {
	out, err := hkdf.Expand(s.newHash, prk, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("mls: HKDF-Expand to %d bytes: %w", length, err)
	}
	return out, nil
}

const labelPrefix = "MLS 1.0 "

// ExpandWithLabel is RFC 9420 §8's ExpandWithLabel: KDF.Expand of secret
// with the KDFLabel {length, "MLS 1.0 " + label, context}.
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length uint16) ([]byte, error) {
	w := codec.NewWriter(make([]byte, 0, 2+1+len(labelPrefix)+len(label)+4+len(context)))
	w.Uint16(length)
	w.Varint(uint64(len(labelPrefix) + len(label)))
	w.Fixed([]byte(labelPrefix))
	w.Fixed([]byte(label))
	w.Opaque(context)
	info, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	return s.Expand(secret, info, int(length))
}

// DeriveSecret is ExpandWithLabel(secret, label, "", Nh).
func (s *Suite) DeriveSecret(secret []byte, label string) ([]byte, error) {
	return s.ExpandWithLabel(secret, label, nil, uint16(s.HashSize()))
}

// DeriveTreeSecret is ExpandWithLabel(secret, label, generation, length) as
// the secret tree uses it (RFC 9420 §9.1).
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length uint16) ([]byte, error) {
	ctx := []byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.ExpandWithLabel(secret, label, ctx, length)
}

// RefHash is RFC 9420 §5.2's RefHash: the hash of RefHashInput {label, value}.
// The label is used as given (callers pass "MLS 1.0 KeyPackage Reference").
func (s *Suite) RefHash(label string, value []byte) ([]byte, error) {
	h := s.newHash()
	w := codec.NewWriter(make([]byte, 0, 4))
	w.Varint(uint64(len(label)))
	hdr, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	h.Write(hdr)
	h.Write([]byte(label))
	w = codec.NewWriter(make([]byte, 0, 4))
	w.Varint(uint64(len(value)))
	if hdr, err = w.Bytes(); err != nil {
		return nil, err
	}
	h.Write(hdr)
	h.Write(value)
	return h.Sum(nil), nil
}

// MAC is HMAC with the suite's hash.
func (s *Suite) MAC(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// VerifyMAC reports, in constant time, whether tag is MAC(key, data).
func (s *Suite) VerifyMAC(key, data, tag []byte) bool {
	return hmac.Equal(s.MAC(key, data), tag)
}

// AEAD returns the suite's AEAD keyed with key.
func (s *Suite) AEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != s.keySize {
		return nil, fmt.Errorf("mls: AEAD key is %d bytes, suite needs %d", len(key), s.keySize)
	}
	switch s.aead {
	case aeadChaCha20Poly1305:
		return chacha20poly1305.New(key)
	default:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
}

// encryptContext encodes EncryptContext {"MLS 1.0 " + label, context}.
func encryptContext(label string, context []byte) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) {
		w.Opaque([]byte(labelPrefix + label))
		w.Opaque(context)
	})
}

// EncryptWithLabel is RFC 9420 §5.1.3's EncryptWithLabel: HPKE SealBase to
// pub with info EncryptContext and empty aad.
func (s *Suite) EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	info, err := encryptContext(label, context)
	if err != nil {
		return nil, nil, err
	}
	return s.EncryptWithInfo(pub, info, plaintext)
}

// EncryptContext encodes the HPKE info of EncryptWithLabel, for callers that
// encrypt to many keys under one large context (a Welcome's group info).
func EncryptContext(label string, context []byte) ([]byte, error) {
	return encryptContext(label, context)
}

// EncryptWithInfo is EncryptWithLabel with its EncryptContext already
// encoded.
func (s *Suite) EncryptWithInfo(pub, info, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := s.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE public key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aeadID, info)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE encapsulation: %w", err)
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE seal: %w", err)
	}
	return enc, ct, nil
}

// DecryptWithLabel is RFC 9420 §5.1.3's DecryptWithLabel.
func (s *Suite) DecryptWithLabel(priv []byte, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	sk, err := s.hpkePrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("mls: HPKE private key: %w", err)
	}
	info, err := encryptContext(label, context)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(kemOutput, sk, s.kdf, s.aeadID, info)
	if err != nil {
		return nil, fmt.Errorf("mls: HPKE decapsulation: %w", err)
	}
	pt, err := r.Open(nil, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("mls: HPKE open: %w", err)
	}
	return pt, nil
}

const externalInitLabel = "MLS 1.0 external init secret"

// ExternalInit is the joiner's half of RFC 9420 §8.3: an HPKE base-mode
// context to the group's external public key, returning the KEM output for
// the ExternalInit proposal and the exported init secret.
func (s *Suite) ExternalInit(externalPub []byte) (kemOutput, initSecret []byte, err error) {
	pk, err := s.kem.NewPublicKey(externalPub)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external public key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aeadID, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init encapsulation: %w", err)
	}
	secret, err := sender.Export(externalInitLabel, s.HashSize())
	if err != nil {
		return nil, nil, err
	}
	return enc, secret, nil
}

// ExternalInitSecret is the group's half of RFC 9420 §8.3: the init secret
// from the KEM output of an ExternalInit proposal.
func (s *Suite) ExternalInitSecret(externalPriv, kemOutput []byte) ([]byte, error) {
	sk, err := s.hpkePrivateKey(externalPriv)
	if err != nil {
		return nil, fmt.Errorf("mls: external private key: %w", err)
	}
	r, err := hpke.NewRecipient(kemOutput, sk, s.kdf, s.aeadID, nil)
	if err != nil {
		return nil, fmt.Errorf("mls: external init decapsulation: %w", err)
	}
	return r.Export(externalInitLabel, s.HashSize())
}

// hpkePrivateKey parses a serialized HPKE private key, restoring the leading
// zeros a NIST-curve scalar may have lost.
func (s *Suite) hpkePrivateKey(priv []byte) (hpke.PrivateKey, error) {
	if len(priv) < s.nistPriv {
		priv = append(make([]byte, s.nistPriv-len(priv)), priv...)
	}
	return s.kem.NewPrivateKey(priv)
}

// DeriveKeyPair is the KEM's DeriveKeyPair (RFC 9180 §7.1.3), returning the
// serialized private and public keys.
func (s *Suite) DeriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	sk, err := s.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE DeriveKeyPair: %w", err)
	}
	return hpkePair(sk)
}

// GenerateHPKEKey returns a fresh HPKE key pair.
func (s *Suite) GenerateHPKEKey() (priv, pub []byte, err error) {
	sk, err := s.kem.GenerateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("mls: HPKE key generation: %w", err)
	}
	return hpkePair(sk)
}

func hpkePair(sk hpke.PrivateKey) (priv, pub []byte, err error) {
	priv, err = sk.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("mls: serializing HPKE private key: %w", err)
	}
	return priv, sk.PublicKey().Bytes(), nil
}

// HPKEPublicKey returns the public key of the serialized private key priv.
func (s *Suite) HPKEPublicKey(priv []byte) ([]byte, error) {
	sk, err := s.hpkePrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("mls: HPKE private key: %w", err)
	}
	return sk.PublicKey().Bytes(), nil
}

// CheckHPKEPublicKey reports whether pub is a valid public key of the
// suite's KEM.
func (s *Suite) CheckHPKEPublicKey(pub []byte) error {
	if _, err := s.kem.NewPublicKey(pub); err != nil {
		return fmt.Errorf("mls: HPKE public key: %w", err)
	}
	return nil
}

// signContent encodes SignContent {"MLS 1.0 " + label, content}.
func signContent(label string, content []byte) []byte {
	b, err := codec.Marshal(func(w *codec.Writer) {
		w.Varint(uint64(len(labelPrefix) + len(label)))
		w.Fixed([]byte(labelPrefix))
		w.Fixed([]byte(label))
		w.Opaque(content)
	})
	if err != nil {
		// Only a content over 2^30 bytes fails; such content cannot be on the
		// wire, and the signature over the empty message then never verifies.
		return nil
	}
	return b
}

// GenerateSignatureKey returns a fresh signature key pair.
func (s *Suite) GenerateSignatureKey() (priv, pub []byte, err error) {
	switch s.sig {
	case sigEd25519:
		pk, sk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		return sk.Seed(), pk, nil
	default:
		k, err := ecdsa.GenerateKey(s.curve, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		priv, err := k.Bytes()
		if err != nil {
			return nil, nil, err
		}
		pub, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, nil, err
		}
		return priv, pub, nil
	}
}

// SignaturePublicKey returns the public key of the private key priv.
func (s *Suite) SignaturePublicKey(priv []byte) ([]byte, error) {
	k, err := s.NewSigningKey(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey(), nil
}

// SignWithLabel is RFC 9420 §5.1.2's SignWithLabel with the serialized
// private key priv. Callers that sign repeatedly should keep a SigningKey.
func (s *Suite) SignWithLabel(priv []byte, label string, content []byte) ([]byte, error) {
	k, err := s.NewSigningKey(priv)
	if err != nil {
		return nil, err
	}
	return k.SignWithLabel(label, content)
}

// SigningKey is a parsed signature private key of one suite.
type SigningKey struct {
	s     *Suite
	ed    ed25519.PrivateKey
	ecdsa *ecdsa.PrivateKey
	pub   []byte
}

// NewSigningKey parses a serialized signature private key.
func (s *Suite) NewSigningKey(priv []byte) (*SigningKey, error) {
	switch s.sig {
	case sigEd25519:
		if len(priv) != ed25519.SeedSize {
			return nil, fmt.Errorf("mls: Ed25519 private key is %d bytes, want %d", len(priv), ed25519.SeedSize)
		}
		k := ed25519.NewKeyFromSeed(priv)
		return &SigningKey{s: s, ed: k, pub: k.Public().(ed25519.PublicKey)}, nil
	default:
		// Some encoders drop leading zero bytes of the big-endian scalar
		// (a P-521 scalar is 66 bytes, and one in 128 starts with a zero).
		if size := (s.curve.Params().BitSize + 7) / 8; len(priv) < size {
			priv = append(make([]byte, size-len(priv)), priv...)
		}
		k, err := ecdsa.ParseRawPrivateKey(s.curve, priv)
		if err != nil {
			return nil, fmt.Errorf("mls: ECDSA private key: %w", err)
		}
		pub, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, err
		}
		return &SigningKey{s: s, ecdsa: k, pub: pub}, nil
	}
}

// PublicKey returns the serialized public key.
func (k *SigningKey) PublicKey() []byte { return k.pub }

// SignWithLabel is RFC 9420 §5.1.2's SignWithLabel.
func (k *SigningKey) SignWithLabel(label string, content []byte) ([]byte, error) {
	msg := signContent(label, content)
	if k.ed != nil {
		return ed25519.Sign(k.ed, msg), nil
	}
	return ecdsa.SignASN1(rand.Reader, k.ecdsa, k.s.digest(msg))
}

func (s *Suite) digest(msg []byte) []byte {
	h := s.hashID.New()
	h.Write(msg)
	return h.Sum(nil)
}

// ErrSignature is returned by VerifyWithLabel for a signature that does not
// verify.
var ErrSignature = errors.New("mls: invalid signature")

// VerifyWithLabel is RFC 9420 §5.1.2's VerifyWithLabel. It returns nil for a
// valid signature, ErrSignature for an invalid one, and another error for a
// malformed public key.
func (s *Suite) VerifyWithLabel(pub []byte, label string, content, sig []byte) error {
	msg := signContent(label, content)
	switch s.sig {
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("mls: Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		if !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
			return ErrSignature
		}
		return nil
	default:
		k, err := ecdsa.ParseUncompressedPublicKey(s.curve, pub)
		if err != nil {
			return fmt.Errorf("mls: ECDSA public key: %w", err)
		}
		if !ecdsa.VerifyASN1(k, s.digest(msg), sig) {
			return ErrSignature
		}
		return nil
	}
}

// CheckSignaturePublicKey reports whether pub is a well-formed signature
// public key of the suite's scheme.
func (s *Suite) CheckSignaturePublicKey(pub []byte) error {
	switch s.sig {
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("mls: Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		return nil
	default:
		if _, err := ecdsa.ParseUncompressedPublicKey(s.curve, pub); err != nil {
			return fmt.Errorf("mls: ECDSA public key: %w", err)
		}
		return nil
	}
}

// Equal reports in constant time whether a and b are equal.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
