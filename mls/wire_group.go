package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// GroupContext summarises the state of a group in an epoch (RFC 9420 §8.1).
// Version must be mls10.
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

func (gc *GroupContext) encode(w *codec.Writer) {
	encodeVersion(w, "group_context.version", gc.Version)
	w.Uint16(uint16(gc.CipherSuite))
	w.Opaque(gc.GroupID)
	w.Uint64(gc.Epoch)
	w.Opaque(gc.TreeHash)
	w.Opaque(gc.ConfirmedTranscriptHash)
	encodeExtensions(w, "group_context.extensions", gc.Extensions)
}

func (gc *GroupContext) decode(r *codec.Reader) {
	decodeVersion(r, "group_context.version", &gc.Version)
	var cs uint16
	r.Uint16("group_context.cipher_suite", &cs)
	gc.CipherSuite = CipherSuite(cs)
	r.Opaque("group_context.group_id", &gc.GroupID)
	r.Uint64("group_context.epoch", &gc.Epoch)
	r.Opaque("group_context.tree_hash", &gc.TreeHash)
	r.Opaque("group_context.confirmed_transcript_hash", &gc.ConfirmedTranscriptHash)
	decodeExtensions(r, "group_context.extensions", &gc.Extensions)
}

// MarshalMLS encodes the GroupContext.
func (gc *GroupContext) MarshalMLS() ([]byte, error) { return marshal(gc) }

// UnmarshalMLS decodes a GroupContext.
func (gc *GroupContext) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "group_context", gc)
}

// GroupInfo describes a group to joiners (RFC 9420 §12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte
	Signer          uint32
	Signature       []byte
}

func (gi *GroupInfo) encodeTBS(w *codec.Writer) {
	gi.GroupContext.encode(w)
	encodeExtensions(w, "group_info.extensions", gi.Extensions)
	w.Opaque(gi.ConfirmationTag)
	w.Uint32(gi.Signer)
}

func (gi *GroupInfo) encode(w *codec.Writer) {
	gi.encodeTBS(w)
	w.Opaque(gi.Signature)
}

func (gi *GroupInfo) decode(r *codec.Reader) {
	gi.GroupContext.decode(r)
	decodeExtensions(r, "group_info.extensions", &gi.Extensions)
	r.Opaque("group_info.confirmation_tag", &gi.ConfirmationTag)
	r.Uint32("group_info.signer", &gi.Signer)
	r.Opaque("group_info.signature", &gi.Signature)
}

// MarshalMLS encodes the GroupInfo (without an MLSMessage wrapper).
func (gi *GroupInfo) MarshalMLS() ([]byte, error) { return marshal(gi) }

// UnmarshalMLS decodes a GroupInfo (without an MLSMessage wrapper).
func (gi *GroupInfo) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "group_info", gi) }

// TBS returns the encoded GroupInfoTBS: every field but the signature.
func (gi *GroupInfo) TBS() ([]byte, error) { return codec.Marshal(gi.encodeTBS) }

// GroupSecrets is the secret part of a Welcome for one joiner (RFC 9420
// §12.4.3.1).
type GroupSecrets struct {
	JoinerSecret []byte
	// PathSecret is the optional<PathSecret>: nil when absent. Decoding a
	// present but empty path secret gives a non-nil empty slice, so the
	// encoding round-trips exactly.
	PathSecret []byte
	PSKs       []PreSharedKeyID
}

func (gs *GroupSecrets) encode(w *codec.Writer) {
	w.Opaque(gs.JoinerSecret)
	w.Optional(gs.PathSecret != nil, func(w *codec.Writer) { w.Opaque(gs.PathSecret) })
	encodeList(w, gs.PSKs)
}

func (gs *GroupSecrets) decode(r *codec.Reader) {
	r.Opaque("group_secrets.joiner_secret", &gs.JoinerSecret)
	r.Optional("group_secrets.path_secret", func(r *codec.Reader) {
		var ps []byte
		r.Opaque("group_secrets.path_secret.path_secret", &ps)
		if r.Failed() {
			return
		}
		if ps == nil {
			ps = []byte{}
		}
		gs.PathSecret = ps
	})
	decodeList(r, "group_secrets.psks", &gs.PSKs)
}

// MarshalMLS encodes the GroupSecrets.
func (gs *GroupSecrets) MarshalMLS() ([]byte, error) { return marshal(gs) }

// UnmarshalMLS decodes a GroupSecrets.
func (gs *GroupSecrets) UnmarshalMLS(b []byte) error {
	return unmarshalInto(b, "group_secrets", gs)
}

// EncryptedGroupSecrets is a GroupSecrets encrypted to the joiner whose
// KeyPackageRef is NewMember (RFC 9420 §12.4.3.1).
type EncryptedGroupSecrets struct {
	NewMember             []byte
	EncryptedGroupSecrets HPKECiphertext
}

func (e *EncryptedGroupSecrets) encode(w *codec.Writer) {
	w.Opaque(e.NewMember)
	e.EncryptedGroupSecrets.encode(w)
}

func (e *EncryptedGroupSecrets) decode(r *codec.Reader) {
	r.Opaque("encrypted_group_secrets.new_member", &e.NewMember)
	e.EncryptedGroupSecrets.decode(r)
}

// Welcome welcomes new members to a group (RFC 9420 §12.4.3.1).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (wm *Welcome) encode(w *codec.Writer) {
	w.Uint16(uint16(wm.CipherSuite))
	encodeList(w, wm.Secrets)
	w.Opaque(wm.EncryptedGroupInfo)
}

func (wm *Welcome) decode(r *codec.Reader) {
	var cs uint16
	r.Uint16("welcome.cipher_suite", &cs)
	wm.CipherSuite = CipherSuite(cs)
	decodeList(r, "welcome.secrets", &wm.Secrets)
	r.Opaque("welcome.encrypted_group_info", &wm.EncryptedGroupInfo)
}

// MarshalMLS encodes the Welcome (without an MLSMessage wrapper).
func (wm *Welcome) MarshalMLS() ([]byte, error) { return marshal(wm) }

// UnmarshalMLS decodes a Welcome (without an MLSMessage wrapper).
func (wm *Welcome) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "welcome", wm) }
