package mls

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// MatrixIdentity is the identity an MLS-mode Matrix client puts in its
// BasicCredential (SPEC-NOTES §9): the TLS encoding of
//
//	struct { opaque user_id<V>; opaque device_id<V>; opaque signature_key<V>; }
//
// with UTF-8 user and device IDs and the client's MLS signature public key,
// which must equal its leaf node's signature_key.
type MatrixIdentity struct {
	UserID       string
	DeviceID     string
	SignatureKey []byte
}

// maxMatrixUserID is the Matrix limit on the length of a user ID.
const maxMatrixUserID = 255

func (id *MatrixIdentity) check() error {
	switch {
	case !utf8.ValidString(id.UserID):
		return errorf("matrix identity: user_id is not UTF-8")
	case len(id.UserID) > maxMatrixUserID:
		return errorf("matrix identity: user_id is %d bytes, over the %d allowed", len(id.UserID), maxMatrixUserID)
	case len(id.UserID) < 4 || id.UserID[0] != '@' || strings.IndexByte(id.UserID, ':') < 2 || strings.HasSuffix(id.UserID, ":"):
		return errorf("matrix identity: user_id %q is not of the form @localpart:server", id.UserID)
	case id.DeviceID == "":
		return errorf("matrix identity: device_id is empty")
	case !utf8.ValidString(id.DeviceID):
		return errorf("matrix identity: device_id is not UTF-8")
	case len(id.SignatureKey) == 0:
		return errorf("matrix identity: signature_key is empty")
	}
	return nil
}

// Marshal encodes the identity, after checking its fields.
func (id *MatrixIdentity) Marshal() ([]byte, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	return codec.Marshal(func(w *codec.Writer) {
		w.Opaque([]byte(id.UserID))
		w.Opaque([]byte(id.DeviceID))
		w.Opaque(id.SignatureKey)
	})
}

// ParseMatrixIdentity decodes and checks an encoded MatrixIdentity.
func ParseMatrixIdentity(b []byte) (*MatrixIdentity, error) {
	r := codec.NewReader(b)
	var user, device, key []byte
	r.Opaque("matrix_identity.user_id", &user)
	r.Opaque("matrix_identity.device_id", &device)
	r.Opaque("matrix_identity.signature_key", &key)
	if err := r.Finish("matrix_identity"); err != nil {
		return nil, err
	}
	id := &MatrixIdentity{UserID: string(user), DeviceID: string(device), SignatureKey: bytes.Clone(key)}
	if err := id.check(); err != nil {
		return nil, err
	}
	return id, nil
}

// NewMatrixCredential returns the BasicCredential carrying id.
func NewMatrixCredential(id *MatrixIdentity) (Credential, error) {
	b, err := id.Marshal()
	if err != nil {
		return Credential{}, err
	}
	return Credential{CredentialType: CredentialTypeBasic, Identity: b}, nil
}

// MatrixIdentity parses the Matrix identity of a basic credential.
func (c *Credential) MatrixIdentity() (*MatrixIdentity, error) {
	if c.CredentialType != CredentialTypeBasic {
		return nil, errorf("matrix identity: credential type %v, want basic", c.CredentialType)
	}
	return ParseMatrixIdentity(c.Identity)
}

// MatrixIdentity returns the Matrix identity of the leaf's credential, and
// checks that its signature key is the leaf's.
func (ln *LeafNode) MatrixIdentity() (*MatrixIdentity, error) {
	id, err := ln.Credential.MatrixIdentity()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(id.SignatureKey, ln.SignatureKey) {
		return nil, errorf("matrix identity: signature_key differs from the leaf node's")
	}
	return id, nil
}
