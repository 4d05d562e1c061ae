package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// Credential is a member's credential (RFC 9420 §5.3). Only the basic and
// x509 types, the ones whose bodies the RFC defines, can be decoded.
type Credential struct {
	CredentialType CredentialType
	// Identity is set for basic credentials.
	Identity []byte
	// Certificates is set for x509 credentials: the DER certificates, the
	// end-entity certificate first.
	Certificates [][]byte
}

func (c *Credential) encode(w *codec.Writer) {
	if !encodeEnum16(w, "credential.credential_type", c.CredentialType) {
		return
	}
	switch c.CredentialType {
	case CredentialTypeBasic:
		w.Opaque(c.Identity)
	case CredentialTypeX509:
		encodeOpaqueList(w, c.Certificates)
	}
}

func (c *Credential) decode(r *codec.Reader) {
	var t uint16
	r.Uint16("credential.credential_type", &t)
	if r.Failed() {
		return
	}
	c.CredentialType = CredentialType(t)
	if !c.CredentialType.valid() {
		// The grammar gives bodies only to basic and x509; any other type
		// has no defined body and cannot be parsed (RFC 9420 §5.3).
		r.Fail("credential.credential_type", "unsupported credential type 0x%04x", t)
		return
	}
	switch c.CredentialType {
	case CredentialTypeBasic:
		r.Opaque("credential.identity", &c.Identity)
	case CredentialTypeX509:
		decodeOpaqueList(r, "credential.certificates", "cert_data", &c.Certificates)
	}
}

// MarshalMLS encodes the Credential.
func (c *Credential) MarshalMLS() ([]byte, error) { return marshal(c) }

// UnmarshalMLS decodes a Credential.
func (c *Credential) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "credential", c) }

// Capabilities lists what a client supports (RFC 9420 §7.2). The lists may
// hold values unknown to this package (GREASE or private values); they are
// kept, as the RFC requires unknown values to be ignored, not rejected.
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func (c *Capabilities) encode(w *codec.Writer) {
	encodeUint16List(w, c.Versions)
	encodeUint16List(w, c.CipherSuites)
	encodeUint16List(w, c.Extensions)
	encodeUint16List(w, c.Proposals)
	encodeUint16List(w, c.Credentials)
}

func (c *Capabilities) decode(r *codec.Reader) {
	decodeUint16List(r, "capabilities.versions", &c.Versions)
	decodeUint16List(r, "capabilities.cipher_suites", &c.CipherSuites)
	decodeUint16List(r, "capabilities.extensions", &c.Extensions)
	decodeUint16List(r, "capabilities.proposals", &c.Proposals)
	decodeUint16List(r, "capabilities.credentials", &c.Credentials)
}

// Lifetime bounds the validity of a KeyPackage's leaf node, in seconds since
// the Unix epoch (RFC 9420 §7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

func (l *Lifetime) encode(w *codec.Writer) {
	w.Uint64(l.NotBefore)
	w.Uint64(l.NotAfter)
}

func (l *Lifetime) decode(r *codec.Reader) {
	r.Uint64("lifetime.not_before", &l.NotBefore)
	r.Uint64("lifetime.not_after", &l.NotAfter)
}

// LeafNode describes a member at a leaf of the ratchet tree (RFC 9420 §7.2).
type LeafNode struct {
	EncryptionKey  []byte
	SignatureKey   []byte
	Credential     Credential
	Capabilities   Capabilities
	LeafNodeSource LeafNodeSource
	// Lifetime is set iff LeafNodeSource is key_package.
	Lifetime *Lifetime
	// ParentHash is used iff LeafNodeSource is commit.
	ParentHash []byte
	Extensions Extensions
	Signature  []byte
}

// encodeTBSFields writes the fields LeafNode and LeafNodeTBS share.
func (ln *LeafNode) encodeTBSFields(w *codec.Writer) {
	w.Opaque(ln.EncryptionKey)
	w.Opaque(ln.SignatureKey)
	ln.Credential.encode(w)
	ln.Capabilities.encode(w)
	if !encodeEnum8(w, "leaf_node.leaf_node_source", ln.LeafNodeSource) {
		return
	}
	switch ln.LeafNodeSource {
	case LeafNodeSourceKeyPackage:
		if ln.Lifetime == nil {
			encodeFail(w, "leaf_node.lifetime", "missing for leaf_node_source key_package")
			return
		}
		ln.Lifetime.encode(w)
	case LeafNodeSourceCommit:
		w.Opaque(ln.ParentHash)
	}
	encodeExtensions(w, "leaf_node.extensions", ln.Extensions)
}

func (ln *LeafNode) encode(w *codec.Writer) {
	ln.encodeTBSFields(w)
	w.Opaque(ln.Signature)
}

func (ln *LeafNode) decode(r *codec.Reader) {
	r.Opaque("leaf_node.encryption_key", &ln.EncryptionKey)
	r.Opaque("leaf_node.signature_key", &ln.SignatureKey)
	ln.Credential.decode(r)
	ln.Capabilities.decode(r)
	decodeEnum8(r, "leaf_node.leaf_node_source", &ln.LeafNodeSource)
	if r.Failed() {
		return
	}
	switch ln.LeafNodeSource {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime = new(Lifetime)
		ln.Lifetime.decode(r)
	case LeafNodeSourceCommit:
		r.Opaque("leaf_node.parent_hash", &ln.ParentHash)
	}
	decodeExtensions(r, "leaf_node.extensions", &ln.Extensions)
	r.Opaque("leaf_node.signature", &ln.Signature)
}

// MarshalMLS encodes the LeafNode.
func (ln *LeafNode) MarshalMLS() ([]byte, error) { return marshal(ln) }

// UnmarshalMLS decodes a LeafNode.
func (ln *LeafNode) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "leaf_node", ln) }

// TBS returns the encoded LeafNodeTBS, the content of the leaf node's
// signature (RFC 9420 §7.2). groupID and leafIndex are appended only for the
// update and commit sources; they are ignored for key_package.
func (ln *LeafNode) TBS(groupID []byte, leafIndex uint32) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) {
		ln.encodeTBSFields(w)
		switch ln.LeafNodeSource {
		case LeafNodeSourceUpdate, LeafNodeSourceCommit:
			w.Opaque(groupID)
			w.Uint32(leafIndex)
		}
	})
}

// KeyPackage is a client's published key package (RFC 9420 §10). Decoding
// requires version mls10: the rest of the structure is defined only for it.
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  Extensions
	Signature   []byte
}

func (kp *KeyPackage) encodeTBS(w *codec.Writer) {
	encodeVersion(w, "key_package.version", kp.Version)
	w.Uint16(uint16(kp.CipherSuite))
	w.Opaque(kp.InitKey)
	kp.LeafNode.encode(w)
	encodeExtensions(w, "key_package.extensions", kp.Extensions)
}

func (kp *KeyPackage) encode(w *codec.Writer) {
	kp.encodeTBS(w)
	w.Opaque(kp.Signature)
}

func (kp *KeyPackage) decode(r *codec.Reader) {
	decodeVersion(r, "key_package.version", &kp.Version)
	var cs uint16
	r.Uint16("key_package.cipher_suite", &cs)
	kp.CipherSuite = CipherSuite(cs)
	r.Opaque("key_package.init_key", &kp.InitKey)
	kp.LeafNode.decode(r)
	decodeExtensions(r, "key_package.extensions", &kp.Extensions)
	r.Opaque("key_package.signature", &kp.Signature)
}

// MarshalMLS encodes the KeyPackage (without an MLSMessage wrapper).
func (kp *KeyPackage) MarshalMLS() ([]byte, error) { return marshal(kp) }

// UnmarshalMLS decodes a KeyPackage (without an MLSMessage wrapper).
func (kp *KeyPackage) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "key_package", kp) }

// TBS returns the encoded KeyPackageTBS: every field but the signature.
func (kp *KeyPackage) TBS() ([]byte, error) { return codec.Marshal(kp.encodeTBS) }
