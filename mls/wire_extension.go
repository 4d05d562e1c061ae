package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// Extension is an extension of a KeyPackage, LeafNode, GroupContext or
// GroupInfo (RFC 9420 §7.2). Data is kept as sent, whether or not Type is
// known; the typed bodies below decode it.
type Extension struct {
	Type ExtensionType
	Data []byte
}

func (e *Extension) encode(w *codec.Writer) {
	w.Uint16(uint16(e.Type))
	w.Opaque(e.Data)
}

func (e *Extension) decode(r *codec.Reader) {
	var t uint16
	r.Uint16("extension_type", &t)
	e.Type = ExtensionType(t)
	r.Opaque("extension_data", &e.Data)
}

// Extensions is a list of extensions, `Extension extensions<V>`.
type Extensions []Extension

// Find returns the extension of type t, if the list holds one.
func (l Extensions) Find(t ExtensionType) (*Extension, bool) {
	for i := range l {
		if l[i].Type == t {
			return &l[i], true
		}
	}
	return nil, false
}

// duplicate returns a type that occurs more than once in l, if any.
func (l Extensions) duplicate() (ExtensionType, bool) {
	if len(l) <= 16 {
		for i := range l {
			for j := i + 1; j < len(l); j++ {
				if l[i].Type == l[j].Type {
					return l[i].Type, true
				}
			}
		}
		return 0, false
	}
	seen := make(map[ExtensionType]struct{}, len(l))
	for _, e := range l {
		if _, ok := seen[e.Type]; ok {
			return e.Type, true
		}
		seen[e.Type] = struct{}{}
	}
	return 0, false
}

// decodeExtensions reads an extension list. RFC 9420 §13.4: "Any field
// containing a list of extensions MUST NOT have more than one extension of
// any given type", so a repeated type is a decoding error.
func decodeExtensions(r *codec.Reader, field string, out *Extensions) {
	var l []Extension
	decodeList(r, field, &l)
	if r.Failed() {
		return
	}
	if t, dup := Extensions(l).duplicate(); dup {
		r.Fail(field, "duplicate extension type %v (RFC 9420 §13.4)", t)
		return
	}
	*out = l
}

// encodeExtensions writes an extension list, refusing duplicates as
// decodeExtensions does.
func encodeExtensions(w *codec.Writer, field string, l Extensions) {
	if t, dup := l.duplicate(); dup {
		encodeFail(w, field, "duplicate extension type %v (RFC 9420 §13.4)", t)
		return
	}
	encodeList(w, l)
}

func (l *Extensions) encode(w *codec.Writer) { encodeExtensions(w, "extensions", *l) }
func (l *Extensions) decode(r *codec.Reader) { decodeExtensions(r, "extensions", l) }

// MarshalMLS encodes the list as `Extension extensions<V>`.
func (l Extensions) MarshalMLS() ([]byte, error) { return marshal(&l) }

// UnmarshalMLS decodes `Extension extensions<V>`; duplicate types are
// rejected.
func (l *Extensions) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "extensions", l) }

// ApplicationID is the body of the application_id extension (RFC 9420
// §5.3.3): `opaque application_id<V>`.
type ApplicationID struct {
	ID []byte
}

func (a *ApplicationID) encode(w *codec.Writer) { w.Opaque(a.ID) }
func (a *ApplicationID) decode(r *codec.Reader) { r.Opaque("application_id", &a.ID) }

// MarshalMLS encodes the extension body.
func (a *ApplicationID) MarshalMLS() ([]byte, error) { return marshal(a) }

// UnmarshalMLS decodes the extension body.
func (a *ApplicationID) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "application_id", a)
}

// RequiredCapabilities is the body of the required_capabilities extension
// (RFC 9420 §11.1). Unknown values are kept.
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType
	ProposalTypes   []ProposalType
	CredentialTypes []CredentialType
}

func (c *RequiredCapabilities) encode(w *codec.Writer) {
	encodeUint16List(w, c.ExtensionTypes)
	encodeUint16List(w, c.ProposalTypes)
	encodeUint16List(w, c.CredentialTypes)
}

func (c *RequiredCapabilities) decode(r *codec.Reader) {
	decodeUint16List(r, "required_capabilities.extension_types", &c.ExtensionTypes)
	decodeUint16List(r, "required_capabilities.proposal_types", &c.ProposalTypes)
	decodeUint16List(r, "required_capabilities.credential_types", &c.CredentialTypes)
}

// MarshalMLS encodes the extension body.
func (c *RequiredCapabilities) MarshalMLS() ([]byte, error) { return marshal(c) }

// UnmarshalMLS decodes the extension body.
func (c *RequiredCapabilities) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "required_capabilities", c)
}

// ExternalPub is the body of the external_pub extension (RFC 9420
// §12.4.3.2).
type ExternalPub struct {
	PublicKey []byte
}

func (e *ExternalPub) encode(w *codec.Writer) { w.Opaque(e.PublicKey) }
func (e *ExternalPub) decode(r *codec.Reader) { r.Opaque("external_pub", &e.PublicKey) }

// MarshalMLS encodes the extension body.
func (e *ExternalPub) MarshalMLS() ([]byte, error) { return marshal(e) }

// UnmarshalMLS decodes the extension body.
func (e *ExternalPub) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "external_pub", e) }

// ExternalSender is an entry of the external_senders extension (RFC 9420
// §12.1.8.1).
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

func (e *ExternalSender) encode(w *codec.Writer) {
	w.Opaque(e.SignatureKey)
	e.Credential.encode(w)
}

func (e *ExternalSender) decode(r *codec.Reader) {
	r.Opaque("external_sender.signature_key", &e.SignatureKey)
	e.Credential.decode(r)
}

// ExternalSenders is the body of the external_senders extension,
// `ExternalSender external_senders<V>`.
type ExternalSenders []ExternalSender

func (l *ExternalSenders) encode(w *codec.Writer) { encodeList(w, *l) }
func (l *ExternalSenders) decode(r *codec.Reader) {
	decodeList(r, "external_senders", (*[]ExternalSender)(l))
}

// MarshalMLS encodes the extension body.
func (l ExternalSenders) MarshalMLS() ([]byte, error) { return marshal(&l) }

// UnmarshalMLS decodes the extension body.
func (l *ExternalSenders) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "external_senders", l)
}

// LastResort is the body of the last_resort KeyPackage extension
// (draft-ietf-mls-extensions, type 0x000A): it is empty.
type LastResort struct{}

func (*LastResort) encode(*codec.Writer) {}
func (*LastResort) decode(*codec.Reader) {}

// MarshalMLS encodes the (empty) extension body.
func (l *LastResort) MarshalMLS() ([]byte, error) { return []byte{}, nil }

// UnmarshalMLS checks that the extension body is empty.
func (l *LastResort) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "last_resort", l) }
