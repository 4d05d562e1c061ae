package mls

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// Header is what a server needs to route an MLSMessage without decrypting
// it: the wire format and, for public and private messages, the group, epoch,
// content type and authenticated data. Byte slices alias the parsed input; copy
// them if the input buffer is reused.
type Header struct {
	Version    ProtocolVersion
	WireFormat WireFormat
	// GroupID, Epoch, ContentType and AuthenticatedData are set for
	// PublicMessage and PrivateMessage, and zero for the other wire formats.
	GroupID           []byte
	Epoch             uint64
	ContentType       ContentType
	AuthenticatedData []byte
	// SenderType is set for PublicMessage only (a PrivateMessage's sender is
	// encrypted); it is zero otherwise.
	SenderType SenderType
}

// ParseHeader parses the header of an MLSMessage. It accepts exactly the
// messages MLSMessage.UnmarshalMLS accepts and fails with the same error
// otherwise. See Header.Parse.
func ParseHeader(b []byte) (*Header, error) {
	h := new(Header)
	if err := h.Parse(b); err != nil {
		return nil, err
	}
	return h, nil
}

// Parse parses the header of the MLSMessage b into h. Byte slices in h alias
// b.
//
// A PrivateMessage is read in place without allocating: the framing of
// encrypted_sender_data and ciphertext and the absence of trailing bytes are
// checked, nothing is decrypted. Other wire formats are decoded in full (so
// that Parse accepts exactly what MLSMessage.UnmarshalMLS accepts: a
// PublicMessage's framing depends on every field of its content), which
// allocates. On error h is zeroed and the error is the one
// MLSMessage.UnmarshalMLS gives (a *codec.Error).
func (h *Header) Parse(b []byte) error {
	*h = Header{}
	if h.parsePrivate(b) {
		return nil
	}
	*h = Header{}
	var m MLSMessage
	if err := m.UnmarshalMLS(b); err != nil {
		return err
	}
	switch m.WireFormat {
	case WireFormatPrivateMessage:
		// parsePrivate accepts every valid PrivateMessage.
		return &codec.Error{Field: "mls_message", Reason: "internal error: header parser disagrees with decoder"}
	case WireFormatPublicMessage:
		c := &m.PublicMessage.Content
		h.GroupID = c.GroupID
		h.Epoch = c.Epoch
		h.ContentType = c.ContentType
		h.AuthenticatedData = c.AuthenticatedData
		h.SenderType = c.Sender.SenderType
	}
	h.Version = m.Version
	h.WireFormat = m.WireFormat
	return nil
}

// parsePrivate reads b as an MLSMessage holding a PrivateMessage, reporting
// whether it is one and valid. It checks what PrivateMessage.decode checks;
// Parse falls back on the full decoder, for the other wire formats and for
// the error, when it returns false.
func (h *Header) parsePrivate(b []byte) bool {
	s := cryptobyte.String(b)
	var version, wf uint16
	var ct uint8
	var esd, ciphertext []byte
	if !s.ReadUint16(&version) || ProtocolVersion(version) != MLS10 ||
		!s.ReadUint16(&wf) || WireFormat(wf) != WireFormatPrivateMessage ||
		!readOpaque(&s, &h.GroupID) ||
		!s.ReadUint64(&h.Epoch) ||
		!s.ReadUint8(&ct) || !ContentType(ct).valid() ||
		!readOpaque(&s, &h.AuthenticatedData) ||
		!readOpaque(&s, &esd) ||
		!readOpaque(&s, &ciphertext) ||
		!s.Empty() {
		return false
	}
	h.Version = MLS10
	h.WireFormat = WireFormatPrivateMessage
	h.ContentType = ContentType(ct)
	return true
}

// readOpaque reads an opaque<V> from s without copying.
func readOpaque(s *cryptobyte.String, out *[]byte) bool {
	n, err := codec.ReadVarint(s)
	return err == nil && s.ReadBytes(out, int(n))
}
