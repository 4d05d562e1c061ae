package mls

import (
	"fmt"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// ProtocolVersion is an MLS protocol version (RFC 9420 §6).
type ProtocolVersion uint16

// MLS10 is the only protocol version RFC 9420 defines.
const MLS10 ProtocolVersion = 1

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (v ProtocolVersion) String() string {
	if v == MLS10 {
		return "mls10"
	}
	return fmt.Sprintf("ProtocolVersion(0x%04x)", uint16(v))
}

// CipherSuite is an MLS cipher suite identifier (RFC 9420 §5.1, §17.1). It
// is only a number here; package mls does not interpret it.
type CipherSuite uint16

var cipherSuiteNames = [...]string{
	1: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
	2: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
	3: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
	4: "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",
	5: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
	6: "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448",
	7: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
	// X-Wing (ML-KEM-768 + X25519), numbered as ts-mls numbers it.
	0x53: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
}

// String returns the registered name of the RFC 9420 cipher suites and the
// number in hex for any other value.
func (s CipherSuite) String() string {
	if int(s) < len(cipherSuiteNames) && cipherSuiteNames[s] != "" {
		return cipherSuiteNames[s]
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(s))
}

// WireFormat says which message an MLSMessage carries (RFC 9420 §6, §17.2).
type WireFormat uint16

// Wire formats defined by RFC 9420.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

var wireFormatNames = [...]string{
	1: "mls_public_message",
	2: "mls_private_message",
	3: "mls_welcome",
	4: "mls_group_info",
	5: "mls_key_package",
}

func (f WireFormat) valid() bool { return f >= 1 && f <= 5 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (f WireFormat) String() string {
	if f.valid() {
		return wireFormatNames[f]
	}
	return fmt.Sprintf("WireFormat(0x%04x)", uint16(f))
}

// ContentType is the type of a FramedContent body (RFC 9420 §6).
type ContentType uint8

// Content types.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

var contentTypeNames = [...]string{1: "application", 2: "proposal", 3: "commit"}

func (t ContentType) valid() bool { return t >= 1 && t <= 3 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t ContentType) String() string {
	if t.valid() {
		return contentTypeNames[t]
	}
	return fmt.Sprintf("ContentType(%d)", uint8(t))
}

// SenderType says who sent a FramedContent (RFC 9420 §6).
type SenderType uint8

// Sender types.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

var senderTypeNames = [...]string{1: "member", 2: "external", 3: "new_member_proposal", 4: "new_member_commit"}

func (t SenderType) valid() bool { return t >= 1 && t <= 4 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t SenderType) String() string {
	if t.valid() {
		return senderTypeNames[t]
	}
	return fmt.Sprintf("SenderType(%d)", uint8(t))
}

// ExtensionType identifies an extension (RFC 9420 §7.2, §17.3). The space is
// open: unknown values are kept, not rejected.
type ExtensionType uint16

// Extension types defined by RFC 9420, and last_resort (0x000A), registered
// by draft-ietf-mls-extensions.
const (
	ExtensionTypeApplicationID        ExtensionType = 0x0001
	ExtensionTypeRatchetTree          ExtensionType = 0x0002
	ExtensionTypeRequiredCapabilities ExtensionType = 0x0003
	ExtensionTypeExternalPub          ExtensionType = 0x0004
	ExtensionTypeExternalSenders      ExtensionType = 0x0005
	ExtensionTypeLastResort           ExtensionType = 0x000A
)

var extensionTypeNames = [...]string{
	1:  "application_id",
	2:  "ratchet_tree",
	3:  "required_capabilities",
	4:  "external_pub",
	5:  "external_senders",
	10: "last_resort",
}

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t ExtensionType) String() string {
	if int(t) < len(extensionTypeNames) && extensionTypeNames[t] != "" {
		return extensionTypeNames[t]
	}
	return fmt.Sprintf("ExtensionType(0x%04x)", uint16(t))
}

// ProposalType is the type of a Proposal (RFC 9420 §12.1, §17.4).
type ProposalType uint16

// Proposal types defined by RFC 9420.
const (
	ProposalTypeAdd                    ProposalType = 1
	ProposalTypeUpdate                 ProposalType = 2
	ProposalTypeRemove                 ProposalType = 3
	ProposalTypePSK                    ProposalType = 4
	ProposalTypeReInit                 ProposalType = 5
	ProposalTypeExternalInit           ProposalType = 6
	ProposalTypeGroupContextExtensions ProposalType = 7
)

var proposalTypeNames = [...]string{
	1: "add",
	2: "update",
	3: "remove",
	4: "psk",
	5: "reinit",
	6: "external_init",
	7: "group_context_extensions",
}

func (t ProposalType) valid() bool { return t >= 1 && t <= 7 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t ProposalType) String() string {
	if t.valid() {
		return proposalTypeNames[t]
	}
	return fmt.Sprintf("ProposalType(0x%04x)", uint16(t))
}

// CredentialType is the type of a Credential (RFC 9420 §5.3, §17.5).
type CredentialType uint16

// Credential types defined by RFC 9420.
const (
	CredentialTypeBasic CredentialType = 1
	CredentialTypeX509  CredentialType = 2
)

func (t CredentialType) valid() bool { return t == CredentialTypeBasic || t == CredentialTypeX509 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t CredentialType) String() string {
	switch t {
	case CredentialTypeBasic:
		return "basic"
	case CredentialTypeX509:
		return "x509"
	}
	return fmt.Sprintf("CredentialType(0x%04x)", uint16(t))
}

// LeafNodeSource says how a LeafNode came to be in the tree (RFC 9420 §7.2).
type LeafNodeSource uint8

// Leaf node sources.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

var leafNodeSourceNames = [...]string{1: "key_package", 2: "update", 3: "commit"}

func (s LeafNodeSource) valid() bool { return s >= 1 && s <= 3 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (s LeafNodeSource) String() string {
	if s.valid() {
		return leafNodeSourceNames[s]
	}
	return fmt.Sprintf("LeafNodeSource(%d)", uint8(s))
}

// PSKType is the type of a pre-shared key (RFC 9420 §8.4).
type PSKType uint8

// PSK types.
const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

func (t PSKType) valid() bool { return t == PSKTypeExternal || t == PSKTypeResumption }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t PSKType) String() string {
	switch t {
	case PSKTypeExternal:
		return "external"
	case PSKTypeResumption:
		return "resumption"
	}
	return fmt.Sprintf("PSKType(%d)", uint8(t))
}

// ResumptionPSKUsage says what a resumption PSK is used for (RFC 9420 §8.4).
type ResumptionPSKUsage uint8

// Resumption PSK usages.
const (
	ResumptionPSKUsageApplication ResumptionPSKUsage = 1
	ResumptionPSKUsageReinit      ResumptionPSKUsage = 2
	ResumptionPSKUsageBranch      ResumptionPSKUsage = 3
)

var resumptionPSKUsageNames = [...]string{1: "application", 2: "reinit", 3: "branch"}

func (u ResumptionPSKUsage) valid() bool { return u >= 1 && u <= 3 }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (u ResumptionPSKUsage) String() string {
	if u.valid() {
		return resumptionPSKUsageNames[u]
	}
	return fmt.Sprintf("ResumptionPSKUsage(%d)", uint8(u))
}

// ProposalOrRefType says whether a ProposalOrRef holds a proposal or a
// reference to one (RFC 9420 §12.4).
type ProposalOrRefType uint8

// ProposalOrRef types.
const (
	ProposalOrRefTypeProposal  ProposalOrRefType = 1
	ProposalOrRefTypeReference ProposalOrRefType = 2
)

func (t ProposalOrRefType) valid() bool {
	return t == ProposalOrRefTypeProposal || t == ProposalOrRefTypeReference
}

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t ProposalOrRefType) String() string {
	switch t {
	case ProposalOrRefTypeProposal:
		return "proposal"
	case ProposalOrRefTypeReference:
		return "reference"
	}
	return fmt.Sprintf("ProposalOrRefType(%d)", uint8(t))
}

// NodeType is the type of a ratchet tree node (RFC 9420 §7.8).
type NodeType uint8

// Node types.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

func (t NodeType) valid() bool { return t == NodeTypeLeaf || t == NodeTypeParent }

// String returns the RFC 9420 name of the value, or the type and number
// for an unknown value.
func (t NodeType) String() string {
	switch t {
	case NodeTypeLeaf:
		return "leaf"
	case NodeTypeParent:
		return "parent"
	}
	return fmt.Sprintf("NodeType(%d)", uint8(t))
}

// enum8 and enum16 are the closed enumerations: a value outside the known
// set cannot be decoded (it selects no body, or the RFC fixes the value).
type enum8 interface {
	~uint8
	valid() bool
	String() string
}

type enum16 interface {
	~uint16
	valid() bool
	String() string
}

// decodeEnum8 reads a one-byte enumeration and rejects unknown values.
func decodeEnum8[T enum8](r *codec.Reader, field string, v *T) {
	var x uint8
	r.Uint8(field, &x)
	if r.Failed() {
		return
	}
	if !T(x).valid() {
		r.Fail(field, "unknown value %v", T(x))
		return
	}
	*v = T(x)
}

// decodeEnum16 reads a two-byte enumeration and rejects unknown values.
func decodeEnum16[T enum16](r *codec.Reader, field string, v *T) {
	var x uint16
	r.Uint16(field, &x)
	if r.Failed() {
		return
	}
	if !T(x).valid() {
		r.Fail(field, "unsupported value %v", T(x))
		return
	}
	*v = T(x)
}

// encodeEnum8 writes a one-byte enumeration, failing the Writer on a value
// decodeEnum8 would reject.
func encodeEnum8[T enum8](w *codec.Writer, field string, v T) bool {
	if !v.valid() {
		encodeFail(w, field, "unknown value %v", v)
		return false
	}
	w.Uint8(uint8(v))
	return true
}

// encodeEnum16 writes a two-byte enumeration, failing the Writer on a value
// decodeEnum16 would reject.
func encodeEnum16[T enum16](w *codec.Writer, field string, v T) bool {
	if !v.valid() {
		encodeFail(w, field, "unsupported value %v", v)
		return false
	}
	w.Uint16(uint16(v))
	return true
}

// decodeVersion reads a ProtocolVersion that RFC 9420 fixes to mls10.
func decodeVersion(r *codec.Reader, field string, v *ProtocolVersion) {
	var x uint16
	r.Uint16(field, &x)
	if r.Failed() {
		return
	}
	if ProtocolVersion(x) != MLS10 {
		r.Fail(field, "unsupported protocol version %v (want mls10)", ProtocolVersion(x))
		return
	}
	*v = MLS10
}

// encodeVersion writes a ProtocolVersion that RFC 9420 fixes to mls10.
func encodeVersion(w *codec.Writer, field string, v ProtocolVersion) {
	if v != MLS10 {
		encodeFail(w, field, "unsupported protocol version %v (want mls10)", v)
		return
	}
	w.Uint16(uint16(v))
}

// EncodeError is returned by the encoders (MarshalMLS and the like) when a
// value cannot be encoded: an unknown value in a field that selects a body, a
// missing body, or a value the decoder would reject.
type EncodeError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *EncodeError) Error() string { return "mls: encode " + e.Field + ": " + e.Reason }

// encodeFail makes w fail with an EncodeError, keeping the first error.
func encodeFail(w *codec.Writer, field, format string, args ...any) {
	if _, err := w.Bytes(); err != nil {
		return
	}
	w.SetError(&EncodeError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// decodeList reads a vector of structures T into out.
func decodeList[T any, P interface {
	*T
	decode(*codec.Reader)
}](r *codec.Reader, field string, out *[]T) {
	r.Vector(field, func(v *codec.Reader) {
		var list []T
		for !v.Empty() {
			var x T
			P(&x).decode(v)
			list = append(list, x)
		}
		if !v.Failed() {
			*out = list
		}
	})
}

// encodeList writes a vector of structures T.
func encodeList[T any, P interface {
	*T
	encode(*codec.Writer)
}](w *codec.Writer, list []T) {
	w.Vector(func(v *codec.Writer) {
		for i := range list {
			P(&list[i]).encode(v)
		}
	})
}

// decodeUint16List reads a vector of uint16 values (enumerations whose
// unknown values are kept, as in Capabilities).
func decodeUint16List[T ~uint16](r *codec.Reader, field string, out *[]T) {
	r.Vector(field, func(v *codec.Reader) {
		var list []T
		for !v.Empty() {
			var x uint16
			v.Uint16("value", &x)
			list = append(list, T(x))
		}
		if !v.Failed() {
			*out = list
		}
	})
}

// encodeUint16List writes a vector of uint16 values.
func encodeUint16List[T ~uint16](w *codec.Writer, list []T) {
	w.Vector(func(v *codec.Writer) {
		for _, x := range list {
			v.Uint16(uint16(x))
		}
	})
}

// decodeUint32List reads a vector of uint32 values.
func decodeUint32List(r *codec.Reader, field string, out *[]uint32) {
	r.Vector(field, func(v *codec.Reader) {
		var list []uint32
		for !v.Empty() {
			var x uint32
			v.Uint32("value", &x)
			list = append(list, x)
		}
		if !v.Failed() {
			*out = list
		}
	})
}

// encodeUint32List writes a vector of uint32 values.
func encodeUint32List(w *codec.Writer, list []uint32) {
	w.Vector(func(v *codec.Writer) {
		for _, x := range list {
			v.Uint32(x)
		}
	})
}

// decodeOpaqueList reads a vector of opaque<V> values, each named elem.
func decodeOpaqueList(r *codec.Reader, field, elem string, out *[][]byte) {
	r.Vector(field, func(v *codec.Reader) {
		var list [][]byte
		for !v.Empty() {
			var x []byte
			v.Opaque(elem, &x)
			list = append(list, x)
		}
		if !v.Failed() {
			*out = list
		}
	})
}

// encodeOpaqueList writes a vector of opaque<V> values.
func encodeOpaqueList(w *codec.Writer, list [][]byte) {
	w.Vector(func(v *codec.Writer) {
		for _, x := range list {
			v.Opaque(x)
		}
	})
}

// unmarshalInto decodes b into *x, rejecting trailing bytes (what names the
// structure in that error). *x is only written on success.
func unmarshalInto[T any, P interface {
	*T
	decode(*codec.Reader)
}](b []byte, what string, x P) error {
	var t T
	r := codec.NewReader(b)
	P(&t).decode(r)
	if err := r.Finish(what); err != nil {
		return err
	}
	*x = t
	return nil
}

// marshal encodes x.
func marshal(x interface{ encode(*codec.Writer) }) ([]byte, error) {
	return codec.Marshal(x.encode)
}
