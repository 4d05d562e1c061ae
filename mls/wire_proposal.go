package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// Add proposes adding the client of KeyPackage (RFC 9420 §12.1.1).
type Add struct {
	KeyPackage KeyPackage
}

func (p *Add) encode(w *codec.Writer) { p.KeyPackage.encode(w) }
func (p *Add) decode(r *codec.Reader) { p.KeyPackage.decode(r) }

// MarshalMLS encodes the Add body.
func (p *Add) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes an Add body.
func (p *Add) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "add", p) }

// Update proposes replacing the sender's leaf node (RFC 9420 §12.1.2).
type Update struct {
	LeafNode LeafNode
}

func (p *Update) encode(w *codec.Writer) { p.LeafNode.encode(w) }
func (p *Update) decode(r *codec.Reader) { p.LeafNode.decode(r) }

// MarshalMLS encodes the Update body.
func (p *Update) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes an Update body.
func (p *Update) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "update", p) }

// Remove proposes removing the member at leaf index Removed (RFC 9420
// §12.1.3).
type Remove struct {
	Removed uint32
}

func (p *Remove) encode(w *codec.Writer) { w.Uint32(p.Removed) }
func (p *Remove) decode(r *codec.Reader) { r.Uint32("remove.removed", &p.Removed) }

// MarshalMLS encodes the Remove body.
func (p *Remove) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a Remove body.
func (p *Remove) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "remove", p) }

// PreSharedKeyID identifies a pre-shared key (RFC 9420 §8.4).
type PreSharedKeyID struct {
	PSKType PSKType
	// PSKID is set for external PSKs.
	PSKID []byte
	// Usage, PSKGroupID and PSKEpoch are set for resumption PSKs.
	Usage      ResumptionPSKUsage
	PSKGroupID []byte
	PSKEpoch   uint64
	PSKNonce   []byte
}

func (id *PreSharedKeyID) encode(w *codec.Writer) {
	if !encodeEnum8(w, "pre_shared_key_id.psktype", id.PSKType) {
		return
	}
	switch id.PSKType {
	case PSKTypeExternal:
		w.Opaque(id.PSKID)
	case PSKTypeResumption:
		if !encodeEnum8(w, "pre_shared_key_id.usage", id.Usage) {
			return
		}
		w.Opaque(id.PSKGroupID)
		w.Uint64(id.PSKEpoch)
	}
	w.Opaque(id.PSKNonce)
}

func (id *PreSharedKeyID) decode(r *codec.Reader) {
	decodeEnum8(r, "pre_shared_key_id.psktype", &id.PSKType)
	switch id.PSKType {
	case PSKTypeExternal:
		r.Opaque("pre_shared_key_id.psk_id", &id.PSKID)
	case PSKTypeResumption:
		decodeEnum8(r, "pre_shared_key_id.usage", &id.Usage)
		r.Opaque("pre_shared_key_id.psk_group_id", &id.PSKGroupID)
		r.Uint64("pre_shared_key_id.psk_epoch", &id.PSKEpoch)
	}
	r.Opaque("pre_shared_key_id.psk_nonce", &id.PSKNonce)
}

// MarshalMLS encodes the PreSharedKeyID.
func (id *PreSharedKeyID) MarshalMLS() ([]byte, error) { return marshal(id) }

// UnmarshalMLS decodes a PreSharedKeyID.
func (id *PreSharedKeyID) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "pre_shared_key_id", id)
}

// PreSharedKey proposes injecting a PSK into the key schedule (RFC 9420
// §12.1.4).
type PreSharedKey struct {
	PSK PreSharedKeyID
}

func (p *PreSharedKey) encode(w *codec.Writer) { p.PSK.encode(w) }
func (p *PreSharedKey) decode(r *codec.Reader) { p.PSK.decode(r) }

// MarshalMLS encodes the PreSharedKey body.
func (p *PreSharedKey) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a PreSharedKey body.
func (p *PreSharedKey) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "pre_shared_key", p)
}

// ReInit proposes reinitialising the group with new parameters (RFC 9420
// §12.1.5). Version may be any value: a ReInit may move to a newer version.
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

func (p *ReInit) encode(w *codec.Writer) {
	w.Opaque(p.GroupID)
	w.Uint16(uint16(p.Version))
	w.Uint16(uint16(p.CipherSuite))
	encodeExtensions(w, "reinit.extensions", p.Extensions)
}

func (p *ReInit) decode(r *codec.Reader) {
	r.Opaque("reinit.group_id", &p.GroupID)
	var v, cs uint16
	r.Uint16("reinit.version", &v)
	r.Uint16("reinit.cipher_suite", &cs)
	p.Version, p.CipherSuite = ProtocolVersion(v), CipherSuite(cs)
	decodeExtensions(r, "reinit.extensions", &p.Extensions)
}

// MarshalMLS encodes the ReInit body.
func (p *ReInit) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a ReInit body.
func (p *ReInit) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "reinit", p) }

// ExternalInit carries the KEM output of an external join (RFC 9420
// §12.1.6).
type ExternalInit struct {
	KEMOutput []byte
}

func (p *ExternalInit) encode(w *codec.Writer) { w.Opaque(p.KEMOutput) }
func (p *ExternalInit) decode(r *codec.Reader) { r.Opaque("external_init.kem_output", &p.KEMOutput) }

// MarshalMLS encodes the ExternalInit body.
func (p *ExternalInit) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes an ExternalInit body.
func (p *ExternalInit) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "external_init", p)
}

// GroupContextExtensions proposes replacing the group context extensions
// (RFC 9420 §12.1.7).
type GroupContextExtensions struct {
	Extensions Extensions
}

func (p *GroupContextExtensions) encode(w *codec.Writer) {
	encodeExtensions(w, "group_context_extensions.extensions", p.Extensions)
}

func (p *GroupContextExtensions) decode(r *codec.Reader) {
	decodeExtensions(r, "group_context_extensions.extensions", &p.Extensions)
}

// MarshalMLS encodes the GroupContextExtensions body.
func (p *GroupContextExtensions) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a GroupContextExtensions body.
func (p *GroupContextExtensions) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "group_context_extensions", p)
}

// Proposal is a proposed change to the group (RFC 9420 §12.1). The body
// field selected by ProposalType is set; the others are nil. Proposal types
// other than the seven of RFC 9420 cannot be decoded: their bodies carry no
// length, so they can be neither parsed nor skipped.
type Proposal struct {
	ProposalType           ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
}

// body returns the selected body, or nil if it is unset or the type is
// unknown.
func (p *Proposal) body() interface{ encode(*codec.Writer) } {
	switch p.ProposalType {
	case ProposalTypeAdd:
		if p.Add != nil {
			return p.Add
		}
	case ProposalTypeUpdate:
		if p.Update != nil {
			return p.Update
		}
	case ProposalTypeRemove:
		if p.Remove != nil {
			return p.Remove
		}
	case ProposalTypePSK:
		if p.PreSharedKey != nil {
			return p.PreSharedKey
		}
	case ProposalTypeReInit:
		if p.ReInit != nil {
			return p.ReInit
		}
	case ProposalTypeExternalInit:
		if p.ExternalInit != nil {
			return p.ExternalInit
		}
	case ProposalTypeGroupContextExtensions:
		if p.GroupContextExtensions != nil {
			return p.GroupContextExtensions
		}
	}
	return nil
}

func (p *Proposal) encode(w *codec.Writer) {
	if !p.ProposalType.valid() {
		encodeFail(w, "proposal.proposal_type", "unknown proposal type 0x%04x", uint16(p.ProposalType))
		return
	}
	b := p.body()
	if b == nil {
		encodeFail(w, "proposal", "missing body for proposal type %v", p.ProposalType)
		return
	}
	w.Uint16(uint16(p.ProposalType))
	b.encode(w)
}

func (p *Proposal) decode(r *codec.Reader) {
	var t uint16
	r.Uint16("proposal.proposal_type", &t)
	if r.Failed() {
		return
	}
	p.ProposalType = ProposalType(t)
	switch p.ProposalType {
	case ProposalTypeAdd:
		p.Add = new(Add)
		p.Add.decode(r)
	case ProposalTypeUpdate:
		p.Update = new(Update)
		p.Update.decode(r)
	case ProposalTypeRemove:
		p.Remove = new(Remove)
		p.Remove.decode(r)
	case ProposalTypePSK:
		p.PreSharedKey = new(PreSharedKey)
		p.PreSharedKey.decode(r)
	case ProposalTypeReInit:
		p.ReInit = new(ReInit)
		p.ReInit.decode(r)
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInit)
		p.ExternalInit.decode(r)
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		p.GroupContextExtensions.decode(r)
	default:
		r.Fail("proposal.proposal_type", "unknown proposal type 0x%04x: its body has no length and cannot be parsed", t)
	}
}

// MarshalMLS encodes the Proposal.
func (p *Proposal) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a Proposal.
func (p *Proposal) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "proposal", p) }

// ProposalOrRef is a proposal in a Commit, by value or by reference (RFC
// 9420 §12.4).
type ProposalOrRef struct {
	Type ProposalOrRefType
	// Proposal is set when Type is proposal.
	Proposal *Proposal
	// Reference is the ProposalRef when Type is reference.
	Reference []byte
}

func (p *ProposalOrRef) encode(w *codec.Writer) {
	if !encodeEnum8(w, "proposal_or_ref.type", p.Type) {
		return
	}
	switch p.Type {
	case ProposalOrRefTypeProposal:
		if p.Proposal == nil {
			encodeFail(w, "proposal_or_ref.proposal", "missing for type proposal")
			return
		}
		p.Proposal.encode(w)
	case ProposalOrRefTypeReference:
		w.Opaque(p.Reference)
	}
}

func (p *ProposalOrRef) decode(r *codec.Reader) {
	decodeEnum8(r, "proposal_or_ref.type", &p.Type)
	switch p.Type {
	case ProposalOrRefTypeProposal:
		p.Proposal = new(Proposal)
		p.Proposal.decode(r)
	case ProposalOrRefTypeReference:
		r.Opaque("proposal_or_ref.reference", &p.Reference)
	}
}

// HPKECiphertext is an HPKE encryption (RFC 9420 §7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) encode(w *codec.Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

func (c *HPKECiphertext) decode(r *codec.Reader) {
	r.Opaque("hpke_ciphertext.kem_output", &c.KEMOutput)
	r.Opaque("hpke_ciphertext.ciphertext", &c.Ciphertext)
}

// MarshalMLS encodes the HPKECiphertext.
func (c *HPKECiphertext) MarshalMLS() ([]byte, error) { return marshal(c) }

// UnmarshalMLS decodes an HPKECiphertext.
func (c *HPKECiphertext) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "hpke_ciphertext", c)
}

// UpdatePathNode is a new parent node public key and its path secret,
// encrypted to each node of the copath node's resolution (RFC 9420 §7.6).
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

func (n *UpdatePathNode) encode(w *codec.Writer) {
	w.Opaque(n.EncryptionKey)
	encodeList(w, n.EncryptedPathSecret)
}

func (n *UpdatePathNode) decode(r *codec.Reader) {
	r.Opaque("update_path_node.encryption_key", &n.EncryptionKey)
	decodeList(r, "update_path_node.encrypted_path_secret", &n.EncryptedPathSecret)
}

// UpdatePath is the committer's new leaf node and direct path (RFC 9420
// §7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (p *UpdatePath) encode(w *codec.Writer) {
	p.LeafNode.encode(w)
	encodeList(w, p.Nodes)
}

func (p *UpdatePath) decode(r *codec.Reader) {
	p.LeafNode.decode(r)
	decodeList(r, "update_path.nodes", &p.Nodes)
}

// MarshalMLS encodes the UpdatePath.
func (p *UpdatePath) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes an UpdatePath.
func (p *UpdatePath) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "update_path", p) }

// Commit commits a list of proposals, optionally with an UpdatePath (RFC
// 9420 §12.4).
type Commit struct {
	Proposals []ProposalOrRef
	// Path is nil when the optional<UpdatePath> is absent.
	Path *UpdatePath
}

func (c *Commit) encode(w *codec.Writer) {
	encodeList(w, c.Proposals)
	w.Optional(c.Path != nil, func(w *codec.Writer) { c.Path.encode(w) })
}

func (c *Commit) decode(r *codec.Reader) {
	decodeList(r, "commit.proposals", &c.Proposals)
	var path UpdatePath
	if r.Optional("commit.path", path.decode) {
		c.Path = &path
	}
}

// MarshalMLS encodes the Commit.
func (c *Commit) MarshalMLS() ([]byte, error) { return marshal(c) }

// UnmarshalMLS decodes a Commit.
func (c *Commit) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "commit", c) }
