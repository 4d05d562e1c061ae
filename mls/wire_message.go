package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// MLSMessage is the outer framing of every MLS message (RFC 9420 §6). The
// body selected by WireFormat is set; the others are nil. Version must be
// mls10.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

func (m *MLSMessage) body() interface{ encode(*codec.Writer) } {
	switch m.WireFormat {
	case WireFormatPublicMessage:
		if m.PublicMessage != nil {
			return m.PublicMessage
		}
	case WireFormatPrivateMessage:
		if m.PrivateMessage != nil {
			return m.PrivateMessage
		}
	case WireFormatWelcome:
		if m.Welcome != nil {
			return m.Welcome
		}
	case WireFormatGroupInfo:
		if m.GroupInfo != nil {
			return m.GroupInfo
		}
	case WireFormatKeyPackage:
		if m.KeyPackage != nil {
			return m.KeyPackage
		}
	}
	return nil
}

func (m *MLSMessage) encode(w *codec.Writer) {
	encodeVersion(w, "mls_message.version", m.Version)
	if !encodeEnum16(w, "mls_message.wire_format", m.WireFormat) {
		return
	}
	b := m.body()
	if b == nil {
		encodeFail(w, "mls_message", "missing body for wire format %v", m.WireFormat)
		return
	}
	b.encode(w)
}

func (m *MLSMessage) decode(r *codec.Reader) {
	decodeVersion(r, "mls_message.version", &m.Version)
	decodeEnum16(r, "mls_message.wire_format", &m.WireFormat)
	if r.Failed() {
		return
	}
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.decode(r)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.decode(r)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.decode(r)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.decode(r)
	case WireFormatKeyPackage:
		// RFC 9420 §10: the KeyPackage's version must equal the
		// MLSMessage's; both are required to be mls10 here.
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.decode(r)
	}
}

// MarshalMLS encodes the MLSMessage.
func (m *MLSMessage) MarshalMLS() ([]byte, error) { return marshal(m) }

// UnmarshalMLS decodes an MLSMessage. Byte slices in the result alias b.
func (m *MLSMessage) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "mls_message", m) }

// Sender identifies the sender of a FramedContent (RFC 9420 §6).
type Sender struct {
	SenderType SenderType
	// LeafIndex is set for member senders.
	LeafIndex uint32
	// SenderIndex is set for external senders: an index into the
	// external_senders extension.
	SenderIndex uint32
}

func (s *Sender) encode(w *codec.Writer) {
	if !encodeEnum8(w, "sender.sender_type", s.SenderType) {
		return
	}
	switch s.SenderType {
	case SenderTypeMember:
		w.Uint32(s.LeafIndex)
	case SenderTypeExternal:
		w.Uint32(s.SenderIndex)
	}
}

func (s *Sender) decode(r *codec.Reader) {
	decodeEnum8(r, "sender.sender_type", &s.SenderType)
	switch s.SenderType {
	case SenderTypeMember:
		r.Uint32("sender.leaf_index", &s.LeafIndex)
	case SenderTypeExternal:
		r.Uint32("sender.sender_index", &s.SenderIndex)
	}
}

// encodeContentBody writes the content selected by ct (not ct itself), as
// FramedContent and PrivateMessageContent carry it.
func encodeContentBody(w *codec.Writer, what string, ct ContentType, app []byte, p *Proposal, c *Commit) {
	switch ct {
	case ContentTypeApplication:
		w.Opaque(app)
	case ContentTypeProposal:
		if p == nil {
			encodeFail(w, what+".proposal", "missing for content type proposal")
			return
		}
		p.encode(w)
	case ContentTypeCommit:
		if c == nil {
			encodeFail(w, what+".commit", "missing for content type commit")
			return
		}
		c.encode(w)
	default:
		encodeFail(w, what+".content_type", "unknown value %v", ct)
	}
}

// decodeContentBody reads the content selected by ct.
func decodeContentBody(r *codec.Reader, what string, ct ContentType, app *[]byte, p **Proposal, c **Commit) {
	if r.Failed() {
		return
	}
	switch ct {
	case ContentTypeApplication:
		r.Opaque(what+".application_data", app)
	case ContentTypeProposal:
		*p = new(Proposal)
		(*p).decode(r)
	case ContentTypeCommit:
		*c = new(Commit)
		(*c).decode(r)
	default:
		r.Fail(what+".content_type", "unknown value %v", ct)
	}
}

// FramedContent is the content of a handshake or application message with
// its framing (RFC 9420 §6). The body selected by ContentType is set:
// Application (application_data), Proposal or Commit.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	Application       []byte
	Proposal          *Proposal
	Commit            *Commit
}

func (c *FramedContent) encode(w *codec.Writer) {
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	c.Sender.encode(w)
	w.Opaque(c.AuthenticatedData)
	if !encodeEnum8(w, "framed_content.content_type", c.ContentType) {
		return
	}
	encodeContentBody(w, "framed_content", c.ContentType, c.Application, c.Proposal, c.Commit)
}

func (c *FramedContent) decode(r *codec.Reader) {
	r.Opaque("framed_content.group_id", &c.GroupID)
	r.Uint64("framed_content.epoch", &c.Epoch)
	c.Sender.decode(r)
	r.Opaque("framed_content.authenticated_data", &c.AuthenticatedData)
	decodeEnum8(r, "framed_content.content_type", &c.ContentType)
	decodeContentBody(r, "framed_content", c.ContentType, &c.Application, &c.Proposal, &c.Commit)
}

// MarshalMLS encodes the FramedContent.
func (c *FramedContent) MarshalMLS() ([]byte, error) { return marshal(c) }

// UnmarshalMLS decodes a FramedContent.
func (c *FramedContent) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "framed_content", c)
}

// FramedContentAuthData authenticates a FramedContent (RFC 9420 §6.1).
// ConfirmationTag is present iff the content type is commit, so encoding and
// decoding take the content type.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte
}

func (a *FramedContentAuthData) encode(w *codec.Writer, ct ContentType) {
	w.Opaque(a.Signature)
	if ct == ContentTypeCommit {
		w.Opaque(a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) decode(r *codec.Reader, ct ContentType) {
	r.Opaque("framed_content_auth_data.signature", &a.Signature)
	if ct == ContentTypeCommit {
		r.Opaque("framed_content_auth_data.confirmation_tag", &a.ConfirmationTag)
	}
}

// AuthenticatedContent is a FramedContent with its authentication data and
// the wire format it is (to be) sent in (RFC 9420 §6). WireFormat must be
// mls_public_message or mls_private_message, the two formats that carry
// framed content.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

func validContentWireFormat(wf WireFormat) bool {
	return wf == WireFormatPublicMessage || wf == WireFormatPrivateMessage
}

func (ac *AuthenticatedContent) encode(w *codec.Writer) {
	if !validContentWireFormat(ac.WireFormat) {
		encodeFail(w, "authenticated_content.wire_format", "%v does not carry framed content", ac.WireFormat)
		return
	}
	w.Uint16(uint16(ac.WireFormat))
	ac.Content.encode(w)
	ac.Auth.encode(w, ac.Content.ContentType)
}

func (ac *AuthenticatedContent) decode(r *codec.Reader) {
	var wf uint16
	r.Uint16("authenticated_content.wire_format", &wf)
	if r.Failed() {
		return
	}
	ac.WireFormat = WireFormat(wf)
	if !validContentWireFormat(ac.WireFormat) {
		r.Fail("authenticated_content.wire_format", "%v does not carry framed content", ac.WireFormat)
		return
	}
	ac.Content.decode(r)
	ac.Auth.decode(r, ac.Content.ContentType)
}

// MarshalMLS encodes the AuthenticatedContent (the input of a ProposalRef,
// for instance).
func (ac *AuthenticatedContent) MarshalMLS() ([]byte, error) { return marshal(ac) }

// UnmarshalMLS decodes an AuthenticatedContent.
func (ac *AuthenticatedContent) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "authenticated_content", ac)
}

// PublicMessage is a signed, unencrypted message (RFC 9420 §6.2).
// MembershipTag is present iff the sender is a member.
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte
}

func (m *PublicMessage) encode(w *codec.Writer) {
	m.Content.encode(w)
	m.Auth.encode(w, m.Content.ContentType)
	if m.Content.Sender.SenderType == SenderTypeMember {
		w.Opaque(m.MembershipTag)
	}
}

func (m *PublicMessage) decode(r *codec.Reader) {
	m.Content.decode(r)
	m.Auth.decode(r, m.Content.ContentType)
	if m.Content.Sender.SenderType == SenderTypeMember {
		r.Opaque("public_message.membership_tag", &m.MembershipTag)
	}
}

// MarshalMLS encodes the PublicMessage (without an MLSMessage wrapper).
func (m *PublicMessage) MarshalMLS() ([]byte, error) { return marshal(m) }

// UnmarshalMLS decodes a PublicMessage (without an MLSMessage wrapper).
func (m *PublicMessage) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "public_message", m)
}

// PrivateMessage is an encrypted message (RFC 9420 §6.3).
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (m *PrivateMessage) encode(w *codec.Writer) {
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	if !encodeEnum8(w, "private_message.content_type", m.ContentType) {
		return
	}
	w.Opaque(m.AuthenticatedData)
	w.Opaque(m.EncryptedSenderData)
	w.Opaque(m.Ciphertext)
}

func (m *PrivateMessage) decode(r *codec.Reader) {
	r.Opaque("private_message.group_id", &m.GroupID)
	r.Uint64("private_message.epoch", &m.Epoch)
	decodeEnum8(r, "private_message.content_type", &m.ContentType)
	r.Opaque("private_message.authenticated_data", &m.AuthenticatedData)
	r.Opaque("private_message.encrypted_sender_data", &m.EncryptedSenderData)
	r.Opaque("private_message.ciphertext", &m.Ciphertext)
}

// MarshalMLS encodes the PrivateMessage (without an MLSMessage wrapper).
func (m *PrivateMessage) MarshalMLS() ([]byte, error) { return marshal(m) }

// UnmarshalMLS decodes a PrivateMessage (without an MLSMessage wrapper).
func (m *PrivateMessage) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "private_message", m)
}

// PrivateMessageContent is the plaintext of PrivateMessage.ciphertext (RFC
// 9420 §6.3.1). ContentType is not encoded: it comes from the enclosing
// PrivateMessage and selects the body (Application, Proposal or Commit).
// Padding is the number of zero bytes after the auth data.
type PrivateMessageContent struct {
	ContentType ContentType
	Application []byte
	Proposal    *Proposal
	Commit      *Commit
	Auth        FramedContentAuthData
	Padding     int
}

func (c *PrivateMessageContent) encode(w *codec.Writer, padding int) {
	encodeContentBody(w, "private_message_content", c.ContentType, c.Application, c.Proposal, c.Commit)
	c.Auth.encode(w, c.ContentType)
	if padding < 0 || padding > codec.MaxVarint {
		encodeFail(w, "private_message_content.padding", "invalid padding length %d", padding)
		return
	}
	w.Fixed(make([]byte, padding))
}

func (c *PrivateMessageContent) decode(r *codec.Reader, ct ContentType) {
	c.ContentType = ct
	decodeContentBody(r, "private_message_content", ct, &c.Application, &c.Proposal, &c.Commit)
	c.Auth.decode(r, ct)
	if r.Failed() {
		return
	}
	// RFC 9420 §6.3.1: the padding is every remaining byte, and "A receiver
	// MUST verify that there are no non-zero bytes in the padding field".
	var pad []byte
	r.Fixed("private_message_content.padding", r.Len(), &pad)
	for i, b := range pad {
		if b != 0 {
			r.Fail("private_message_content.padding", "non-zero byte 0x%02x at padding offset %d", b, i)
			return
		}
	}
	c.Padding = len(pad)
}

// MarshalMLS encodes the PrivateMessageContent with c.Padding zero bytes of
// padding.
func (c *PrivateMessageContent) MarshalMLS() ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) { c.encode(w, c.Padding) })
}

// UnmarshalPrivateMessageContent decodes a decrypted PrivateMessage
// ciphertext whose content type (from the PrivateMessage) is ct. It rejects
// non-zero padding.
func UnmarshalPrivateMessageContent(b []byte, ct ContentType) (*PrivateMessageContent, error) {
	var c PrivateMessageContent
	r := codec.NewReader(b)
	c.decode(r, ct)
	if err := r.Finish("private_message_content"); err != nil {
		return nil, err
	}
	return &c, nil
}

// SenderData is the plaintext of PrivateMessage.encrypted_sender_data (RFC
// 9420 §6.3.2).
type SenderData struct {
	LeafIndex  uint32
	Generation uint32
	ReuseGuard [4]byte
}

func (s *SenderData) encode(w *codec.Writer) {
	w.Uint32(s.LeafIndex)
	w.Uint32(s.Generation)
	w.Fixed(s.ReuseGuard[:])
}

func (s *SenderData) decode(r *codec.Reader) {
	r.Uint32("sender_data.leaf_index", &s.LeafIndex)
	r.Uint32("sender_data.generation", &s.Generation)
	var g []byte
	r.Fixed("sender_data.reuse_guard", 4, &g)
	copy(s.ReuseGuard[:], g)
}

// MarshalMLS encodes the SenderData.
func (s *SenderData) MarshalMLS() ([]byte, error) { return marshal(s) }

// UnmarshalMLS decodes a SenderData.
func (s *SenderData) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "sender_data", s) }

// SenderDataAAD is the additional data of the sender data encryption (RFC
// 9420 §6.3.2).
type SenderDataAAD struct {
	GroupID     []byte
	Epoch       uint64
	ContentType ContentType
}

func (a *SenderDataAAD) encode(w *codec.Writer) {
	w.Opaque(a.GroupID)
	w.Uint64(a.Epoch)
	encodeEnum8(w, "sender_data_aad.content_type", a.ContentType)
}

func (a *SenderDataAAD) decode(r *codec.Reader) {
	r.Opaque("sender_data_aad.group_id", &a.GroupID)
	r.Uint64("sender_data_aad.epoch", &a.Epoch)
	decodeEnum8(r, "sender_data_aad.content_type", &a.ContentType)
}

// MarshalMLS encodes the SenderDataAAD.
func (a *SenderDataAAD) MarshalMLS() ([]byte, error) { return marshal(a) }

// UnmarshalMLS decodes a SenderDataAAD.
func (a *SenderDataAAD) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "sender_data_aad", a)
}

// PrivateContentAAD is the additional data of the content encryption (RFC
// 9420 §6.3.1).
type PrivateContentAAD struct {
	GroupID           []byte
	Epoch             uint64
	ContentType       ContentType
	AuthenticatedData []byte
}

func (a *PrivateContentAAD) encode(w *codec.Writer) {
	w.Opaque(a.GroupID)
	w.Uint64(a.Epoch)
	encodeEnum8(w, "private_content_aad.content_type", a.ContentType)
	w.Opaque(a.AuthenticatedData)
}

func (a *PrivateContentAAD) decode(r *codec.Reader) {
	r.Opaque("private_content_aad.group_id", &a.GroupID)
	r.Uint64("private_content_aad.epoch", &a.Epoch)
	decodeEnum8(r, "private_content_aad.content_type", &a.ContentType)
	r.Opaque("private_content_aad.authenticated_data", &a.AuthenticatedData)
}

// MarshalMLS encodes the PrivateContentAAD.
func (a *PrivateContentAAD) MarshalMLS() ([]byte, error) { return marshal(a) }

// UnmarshalMLS decodes a PrivateContentAAD.
func (a *PrivateContentAAD) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "private_content_aad", a)
}

// encodeFramedContentTBS writes FramedContentTBS (RFC 9420 §6.1): version
// mls10, wf, the content and, for member and new_member_commit senders, ctx
// (which must then be non-nil; it is ignored for other senders).
func encodeFramedContentTBS(w *codec.Writer, wf WireFormat, c *FramedContent, ctx *GroupContext) {
	w.Uint16(uint16(MLS10))
	if !validContentWireFormat(wf) {
		encodeFail(w, "framed_content_tbs.wire_format", "%v does not carry framed content", wf)
		return
	}
	w.Uint16(uint16(wf))
	c.encode(w)
	switch c.Sender.SenderType {
	case SenderTypeMember, SenderTypeNewMemberCommit:
		if ctx == nil {
			encodeFail(w, "framed_content_tbs.context", "group context required for sender type %v", c.Sender.SenderType)
			return
		}
		ctx.encode(w)
	}
}

// FramedContentTBS returns the encoded FramedContentTBS, the content of a
// FramedContent's signature (RFC 9420 §6.1). ctx is the group context of the
// epoch; it is required for member and new_member_commit senders and ignored
// for the others.
func FramedContentTBS(wf WireFormat, c *FramedContent, ctx *GroupContext) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) { encodeFramedContentTBS(w, wf, c, ctx) })
}

// AuthenticatedContentTBM returns the encoded AuthenticatedContentTBM, the
// input of a PublicMessage's membership tag (RFC 9420 §6.2): the
// FramedContentTBS followed by the auth data.
func AuthenticatedContentTBM(wf WireFormat, c *FramedContent, auth *FramedContentAuthData, ctx *GroupContext) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) {
		encodeFramedContentTBS(w, wf, c, ctx)
		auth.encode(w, c.ContentType)
	})
}

// ConfirmedTranscriptHashInput returns the encoded
// ConfirmedTranscriptHashInput (RFC 9420 §8.2) of a commit's content and
// signature.
func ConfirmedTranscriptHashInput(wf WireFormat, c *FramedContent, signature []byte) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) {
		if !validContentWireFormat(wf) {
			encodeFail(w, "confirmed_transcript_hash_input.wire_format", "%v does not carry framed content", wf)
			return
		}
		if c.ContentType != ContentTypeCommit {
			encodeFail(w, "confirmed_transcript_hash_input.content", "content type %v, want commit", c.ContentType)
			return
		}
		w.Uint16(uint16(wf))
		c.encode(w)
		w.Opaque(signature)
	})
}

// InterimTranscriptHashInput returns the encoded InterimTranscriptHashInput
// (RFC 9420 §8.2): the confirmation tag as a MAC<V>.
func InterimTranscriptHashInput(confirmationTag []byte) ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) { w.Opaque(confirmationTag) })
}
