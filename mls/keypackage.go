package mls

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Signature labels of key packages and leaf nodes (RFC 9420 §10, §7.2).
const (
	labelKeyPackage = "KeyPackageTBS"
	labelLeafNode   = "LeafNodeTBS"
	labelKPRef      = "MLS 1.0 KeyPackage Reference"
)

// ErrInvalidKeyPackage is wrapped by every KeyPackage validation failure.
var ErrInvalidKeyPackage = errors.New("mls: invalid key package")

// DefaultKeyPackageLifetime is how long a generated KeyPackage is valid.
const DefaultKeyPackageLifetime = 90 * 24 * time.Hour

// defaultExtensionTypes and defaultProposalTypes are the types every client
// implements; capabilities must not list them (RFC 9420 §7.2).
func isDefaultExtension(t ExtensionType) bool { return t >= 1 && t <= 5 }
func isDefaultProposal(t ProposalType) bool   { return t >= 1 && t <= 7 }

// KeyPackageParams describes a KeyPackage to generate.
type KeyPackageParams struct {
	// Signer signs the KeyPackage and its leaf node; its suite is the
	// KeyPackage's.
	Signer *Signer
	// Credential is the client's credential.
	Credential Credential
	// Capabilities defaults to: version mls10, the signer's suite, the
	// credential's type, and no non-default extensions or proposals. When
	// given, the KeyPackage's version, suite and credential type are added
	// to it if missing, as are the types of LeafExtensions.
	Capabilities *Capabilities
	// NotBefore and NotAfter bound the lifetime. Zero values mean one hour
	// before Now (for clock skew) and DefaultKeyPackageLifetime after it.
	NotBefore, NotAfter time.Time
	// Extensions go into the KeyPackage (for example last_resort), and
	// LeafExtensions into its leaf node.
	Extensions     Extensions
	LeafExtensions Extensions
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// KeyPackageSecrets are the private keys behind a KeyPackage: the HPKE init
// key (used once, to decrypt the Welcome) and the leaf's HPKE encryption key.
// The signature key is the Signer's.
type KeyPackageSecrets struct {
	InitKey       []byte
	EncryptionKey []byte
}

// NewKeyPackage generates a KeyPackage with fresh init and encryption keys,
// signed by p.Signer.
func NewKeyPackage(p KeyPackageParams) (*KeyPackage, *KeyPackageSecrets, error) {
	if p.Signer == nil {
		return nil, nil, errNilSigner
	}
	cs := p.Signer.CipherSuite()
	s, err := cs.impl()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	t := now()
	notBefore, notAfter := p.NotBefore, p.NotAfter
	if notBefore.IsZero() {
		notBefore = t.Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = t.Add(DefaultKeyPackageLifetime)
	}
	if notBefore.Before(time.Unix(0, 0)) || notAfter.Before(notBefore) {
		return nil, nil, errorf("key package lifetime %v to %v is not a forward range after 1970", notBefore, notAfter)
	}

	var caps Capabilities
	if p.Capabilities != nil {
		caps = cloneCapabilities(p.Capabilities)
	}
	addIfMissing(&caps.Versions, MLS10)
	addIfMissing(&caps.CipherSuites, cs)
	addIfMissing(&caps.Credentials, p.Credential.CredentialType)
	for _, e := range p.LeafExtensions {
		if !isDefaultExtension(e.Type) {
			addIfMissing(&caps.Extensions, e.Type)
		}
	}

	initPriv, initPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	encPriv, encPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	kp := &KeyPackage{
		Version:     MLS10,
		CipherSuite: cs,
		InitKey:     initPub,
		LeafNode: LeafNode{
			EncryptionKey:  encPub,
			SignatureKey:   p.Signer.PublicKey(),
			Credential:     p.Credential,
			Capabilities:   caps,
			LeafNodeSource: LeafNodeSourceKeyPackage,
			Lifetime:       &Lifetime{NotBefore: uint64(notBefore.Unix()), NotAfter: uint64(notAfter.Unix())},
			Extensions:     p.LeafExtensions,
		},
		Extensions: p.Extensions,
	}
	if err := kp.LeafNode.sign(p.Signer, nil, 0); err != nil {
		return nil, nil, err
	}
	tbs, err := kp.TBS()
	if err != nil {
		return nil, nil, err
	}
	if kp.Signature, err = p.Signer.SignWithLabel(labelKeyPackage, tbs); err != nil {
		return nil, nil, errorf("signing key package: %w", err)
	}
	return kp, &KeyPackageSecrets{InitKey: initPriv, EncryptionKey: encPriv}, nil
}

// sign sets ln.Signature. groupID and leafIndex are used for the update and
// commit sources only.
func (ln *LeafNode) sign(signer *Signer, groupID []byte, leafIndex uint32) error {
	tbs, err := ln.TBS(groupID, leafIndex)
	if err != nil {
		return err
	}
	if ln.Signature, err = signer.SignWithLabel(labelLeafNode, tbs); err != nil {
		return errorf("signing leaf node: %w", err)
	}
	return nil
}

func cloneCapabilities(c *Capabilities) Capabilities {
	return Capabilities{
		Versions:     slices.Clone(c.Versions),
		CipherSuites: slices.Clone(c.CipherSuites),
		Extensions:   slices.Clone(c.Extensions),
		Proposals:    slices.Clone(c.Proposals),
		Credentials:  slices.Clone(c.Credentials),
	}
}

func addIfMissing[T comparable](list *[]T, v T) {
	if !slices.Contains(*list, v) {
		*list = append(*list, v)
	}
}

// Ref returns the KeyPackageRef (RFC 9420 §5.2): RefHash("MLS 1.0 KeyPackage
// Reference", the encoded KeyPackage).
func (kp *KeyPackage) Ref() ([]byte, error) {
	b, err := kp.MarshalMLS()
	if err != nil {
		return nil, err
	}
	return RefHash(kp.CipherSuite, labelKPRef, b)
}

// KeyPackageCheck says what a KeyPackage must satisfy beyond RFC 9420 §10.1.
type KeyPackageCheck struct {
	// CipherSuite, when non-zero, is the suite the KeyPackage must use (the
	// group's). Zero accepts any suite this package implements.
	CipherSuite CipherSuite
	// Now is the time the lifetime must cover; the zero value means
	// time.Now().
	Now time.Time
	// RequiredExtensions are extension types the leaf's capabilities must
	// list (a group's required_capabilities, or an application's own).
	RequiredExtensions []ExtensionType
	// RequiredProposals are proposal types the capabilities must list.
	RequiredProposals []ProposalType
	// RequiredCredentials are credential types the capabilities must list.
	RequiredCredentials []CredentialType
}

func invalidKP(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidKeyPackage}, args...)...)
}

// Validate checks kp as RFC 9420 §10.1 and §7.3 require of a KeyPackage
// before use, as far as that can be done without a group: version mls10; a
// suite this package implements (and check.CipherSuite if set); a leaf node
// with source key_package, a lifetime covering check.Now, the version, suite
// and credential type in its capabilities, no default types listed there,
// every non-default leaf extension listed, and the required types listed;
// well-formed signature and HPKE keys; init_key different from the
// encryption key; and valid signatures on the leaf node and the KeyPackage.
// Every failure wraps ErrInvalidKeyPackage and names the field.
func (kp *KeyPackage) Validate(check KeyPackageCheck) error {
	if kp.Version != MLS10 {
		return invalidKP("version %v, want mls10", kp.Version)
	}
	s, err := kp.CipherSuite.impl()
	if err != nil {
		return invalidKP("cipher_suite: %v", err)
	}
	if check.CipherSuite != 0 && kp.CipherSuite != check.CipherSuite {
		return invalidKP("cipher_suite %v, want %v", kp.CipherSuite, check.CipherSuite)
	}
	ln := &kp.LeafNode
	if ln.LeafNodeSource != LeafNodeSourceKeyPackage || ln.Lifetime == nil {
		return invalidKP("leaf_node.leaf_node_source %v, want key_package", ln.LeafNodeSource)
	}
	now := check.Now
	if now.IsZero() {
		now = time.Now()
	}
	if lt := ln.Lifetime; lt.NotBefore > lt.NotAfter {
		return invalidKP("leaf_node.lifetime: not_before %d after not_after %d", lt.NotBefore, lt.NotAfter)
	} else if secs := now.Unix(); secs < 0 || uint64(secs) < lt.NotBefore || uint64(secs) > lt.NotAfter {
		return invalidKP("leaf_node.lifetime %d to %d does not cover %d", lt.NotBefore, lt.NotAfter, secs)
	}
	if err := ln.checkCapabilities(kp.Version, kp.CipherSuite, check); err != nil {
		return err
	}
	if bytes.Equal(kp.InitKey, ln.EncryptionKey) {
		return invalidKP("init_key equals leaf_node.encryption_key")
	}
	if err := s.CheckHPKEPublicKey(kp.InitKey); err != nil {
		return invalidKP("init_key: %v", err)
	}
	if err := s.CheckHPKEPublicKey(ln.EncryptionKey); err != nil {
		return invalidKP("leaf_node.encryption_key: %v", err)
	}
	if err := s.CheckSignaturePublicKey(ln.SignatureKey); err != nil {
		return invalidKP("leaf_node.signature_key: %v", err)
	}
	tbs, err := ln.TBS(nil, 0)
	if err != nil {
		return invalidKP("leaf_node: %v", err)
	}
	if err := s.VerifyWithLabel(ln.SignatureKey, labelLeafNode, tbs, ln.Signature); err != nil {
		return invalidKP("leaf_node.signature: %w", err)
	}
	if tbs, err = kp.TBS(); err != nil {
		return invalidKP("%v", err)
	}
	if err := s.VerifyWithLabel(ln.SignatureKey, labelKeyPackage, tbs, kp.Signature); err != nil {
		return invalidKP("signature: %w", err)
	}
	return nil
}

// checkCapabilities applies RFC 9420 §7.2's rules on a leaf's capabilities.
func (ln *LeafNode) checkCapabilities(v ProtocolVersion, cs CipherSuite, check KeyPackageCheck) error {
	c := &ln.Capabilities
	if !slices.Contains(c.Versions, v) {
		return invalidKP("leaf_node.capabilities.versions does not list %v", v)
	}
	if !slices.Contains(c.CipherSuites, cs) {
		return invalidKP("leaf_node.capabilities.cipher_suites does not list %v", cs)
	}
	if !slices.Contains(c.Credentials, ln.Credential.CredentialType) {
		return invalidKP("leaf_node.capabilities.credentials does not list the credential's type %v", ln.Credential.CredentialType)
	}
	for _, t := range c.Extensions {
		if isDefaultExtension(t) {
			return invalidKP("leaf_node.capabilities.extensions lists default type %v", t)
		}
	}
	for _, t := range c.Proposals {
		if isDefaultProposal(t) {
			return invalidKP("leaf_node.capabilities.proposals lists default type %v", t)
		}
	}
	for _, e := range ln.Extensions {
		if !isDefaultExtension(e.Type) && !slices.Contains(c.Extensions, e.Type) {
			return invalidKP("leaf_node.extensions has %v, not listed in capabilities", e.Type)
		}
	}
	for _, t := range check.RequiredExtensions {
		if !isDefaultExtension(t) && !slices.Contains(c.Extensions, t) {
			return invalidKP("leaf_node.capabilities.extensions does not list required %v", t)
		}
	}
	for _, t := range check.RequiredProposals {
		if !isDefaultProposal(t) && !slices.Contains(c.Proposals, t) {
			return invalidKP("leaf_node.capabilities.proposals does not list required %v", t)
		}
	}
	for _, t := range check.RequiredCredentials {
		if !slices.Contains(c.Credentials, t) {
			return invalidKP("leaf_node.capabilities.credentials does not list required %v", t)
		}
	}
	return nil
}
