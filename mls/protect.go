package mls

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/secrettree"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	"github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// Labels of the signatures in message framing (RFC 9420 §6.1).
const labelFramedContent = "FramedContentTBS"

// Errors of message protection. Each is wrapped with what was being checked.
var (
	// ErrWrongGroup: the message names another group or another epoch.
	ErrWrongGroup = errors.New("mls: message is for another group or epoch")
	// ErrMembershipTag: a PublicMessage's membership tag does not verify.
	ErrMembershipTag = errors.New("mls: invalid membership tag")
	// ErrDecrypt: a PrivateMessage's sender data or content does not decrypt.
	ErrDecrypt = errors.New("mls: decryption failed")
	// ErrContent: the content may not be sent this way (an application
	// message as a PublicMessage, a non-member sender in a PrivateMessage, a
	// commit without a confirmation tag).
	ErrContent = errors.New("mls: content not allowed in this framing")
)

// KeyLookup returns the signature public key of a message's sender, or an
// error if the sender is not one the group accepts (for example a leaf index
// with no member).
type KeyLookup func(Sender) ([]byte, error)

// EpochKeysConfig tunes an EpochKeys. The zero value is usable.
type EpochKeysConfig struct {
	// OutOfOrder is how many generations below the newest received one keep
	// their keys, per sender and ratchet. Zero means 32; negative means none.
	OutOfOrder int
	// MaxForward is how many generations a received message may skip ahead.
	// Zero means 1024.
	MaxForward uint32
	// PaddingBlock pads every PrivateMessage plaintext to a multiple of this
	// many bytes, hiding exact lengths. Zero means no padding.
	PaddingBlock int
	// Rand supplies reuse guards. Nil means crypto/rand.
	Rand io.Reader
}

// EpochKeys protects and unprotects the messages of one epoch of a group
// (RFC 9420 §6): it holds the GroupContext, the sender-data secret, the
// membership key and the secret tree. It is not safe for concurrent use.
type EpochKeys struct {
	s                *suite.Suite
	ctx              GroupContext
	leaves           uint32
	senderDataSecret []byte
	membershipKey    []byte
	tree             *secrettree.Tree
	padding          int
	rand             io.Reader
}

// NewEpochKeys returns the protection state of the epoch described by ctx in
// a group whose ratchet tree has leaves leaves (a power of two), from the key schedule's encryption secret,
// sender-data secret and membership key. cfg may be nil.
func NewEpochKeys(ctx *GroupContext, leaves uint32, encryptionSecret, senderDataSecret, membershipKey []byte, cfg *EpochKeysConfig) (*EpochKeys, error) {
	s, err := ctx.CipherSuite.impl()
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &EpochKeysConfig{}
	}
	tc := secrettree.Config{OutOfOrder: secrettree.DefaultOutOfOrder, MaxForward: cfg.MaxForward}
	switch {
	case cfg.OutOfOrder > 0:
		tc.OutOfOrder = uint32(cfg.OutOfOrder)
	case cfg.OutOfOrder < 0:
		tc.OutOfOrder = 0
	}
	if cfg.PaddingBlock < 0 {
		return nil, errorf("negative padding block %d", cfg.PaddingBlock)
	}
	tree, err := secrettree.New(s, encryptionSecret, leaves, tc)
	if err != nil {
		return nil, err
	}
	r := cfg.Rand
	if r == nil {
		r = rand.Reader
	}
	return &EpochKeys{
		s:                s,
		ctx:              *ctx,
		leaves:           leaves,
		senderDataSecret: append([]byte(nil), senderDataSecret...),
		membershipKey:    append([]byte(nil), membershipKey...),
		tree:             tree,
		padding:          cfg.PaddingBlock,
		rand:             r,
	}, nil
}

// GroupContext returns the epoch's group context.
func (k *EpochKeys) GroupContext() *GroupContext { return &k.ctx }

func (k *EpochKeys) checkEpoch(groupID []byte, epoch uint64) error {
	if !bytes.Equal(groupID, k.ctx.GroupID) || epoch != k.ctx.Epoch {
		return fmt.Errorf("%w: group %x epoch %d, this epoch is group %x epoch %d",
			ErrWrongGroup, groupID, epoch, k.ctx.GroupID, k.ctx.Epoch)
	}
	return nil
}

// sign fills auth for c sent in wire format wf.
func (k *EpochKeys) sign(wf WireFormat, c *FramedContent, signer *Signer, confirmationTag []byte) (FramedContentAuthData, error) {
	var auth FramedContentAuthData
	if c.ContentType == ContentTypeCommit {
		if len(confirmationTag) == 0 {
			return auth, fmt.Errorf("%w: a commit needs a confirmation tag", ErrContent)
		}
		auth.ConfirmationTag = confirmationTag
	} else if len(confirmationTag) != 0 {
		return auth, fmt.Errorf("%w: only commits carry a confirmation tag", ErrContent)
	}
	var err error
	auth.Signature, err = k.signature(wf, c, signer)
	return auth, err
}

// signature signs c for wire format wf under this epoch's group context.
func (k *EpochKeys) signature(wf WireFormat, c *FramedContent, signer *Signer) ([]byte, error) {
	if signer == nil {
		return nil, errNilSigner
	}
	if signer.CipherSuite() != k.ctx.CipherSuite {
		return nil, errorf("signer is for %v, the group uses %v", signer.CipherSuite(), k.ctx.CipherSuite)
	}
	if err := k.checkEpoch(c.GroupID, c.Epoch); err != nil {
		return nil, err
	}
	return signFramedContent(wf, c, &k.ctx, signer)
}

// signFramedContent signs FramedContentTBS (RFC 9420 §6.1).
func signFramedContent(wf WireFormat, c *FramedContent, ctx *GroupContext, signer *Signer) ([]byte, error) {
	tbs, err := FramedContentTBS(wf, c, ctx)
	if err != nil {
		return nil, err
	}
	sig, err := signer.SignWithLabel(labelFramedContent, tbs)
	if err != nil {
		return nil, errorf("signing framed content: %w", err)
	}
	return sig, nil
}

// verify checks the signature on content c sent in wire format wf.
func (k *EpochKeys) verify(wf WireFormat, c *FramedContent, auth *FramedContentAuthData, lookup KeyLookup) error {
	pub, err := lookup(c.Sender)
	if err != nil {
		return errorf("sender %v: %w", c.Sender.SenderType, err)
	}
	tbs, err := FramedContentTBS(wf, c, &k.ctx)
	if err != nil {
		return err
	}
	if err := k.s.VerifyWithLabel(pub, labelFramedContent, tbs, auth.Signature); err != nil {
		return errorf("verifying the %v signature: %w", c.ContentType, err)
	}
	if c.ContentType == ContentTypeCommit && len(auth.ConfirmationTag) != k.s.HashSize() {
		return fmt.Errorf("%w: commit confirmation tag is %d bytes, want %d", ErrContent, len(auth.ConfirmationTag), k.s.HashSize())
	}
	return nil
}

// ProtectPublic signs c and frames it as a PublicMessage (RFC 9420 §6.2),
// with a membership tag when the sender is a member. confirmationTag is
// required for commits and must be nil otherwise. Application messages
// cannot be PublicMessages.
func (k *EpochKeys) ProtectPublic(c *FramedContent, signer *Signer, confirmationTag []byte) (*PublicMessage, error) {
	if c.ContentType == ContentTypeApplication {
		return nil, fmt.Errorf("%w: application messages must be PrivateMessages (RFC 9420 §6.2)", ErrContent)
	}
	auth, err := k.sign(WireFormatPublicMessage, c, signer, confirmationTag)
	if err != nil {
		return nil, err
	}
	return k.framePublic(c, auth)
}

// framePublic frames signed content as a PublicMessage, adding the
// membership tag for a member sender.
func (k *EpochKeys) framePublic(c *FramedContent, auth FramedContentAuthData) (*PublicMessage, error) {
	m := &PublicMessage{Content: *c, Auth: auth}
	if c.Sender.SenderType == SenderTypeMember {
		tbm, err := AuthenticatedContentTBM(WireFormatPublicMessage, c, &auth, &k.ctx)
		if err != nil {
			return nil, err
		}
		m.MembershipTag = k.s.MAC(k.membershipKey, tbm)
	}
	return m, nil
}

// UnprotectPublic verifies a PublicMessage: group and epoch, the membership
// tag of a member sender, and the signature with the key lookup returns.
func (k *EpochKeys) UnprotectPublic(m *PublicMessage, lookup KeyLookup) (*AuthenticatedContent, error) {
	c := &m.Content
	if err := k.checkEpoch(c.GroupID, c.Epoch); err != nil {
		return nil, err
	}
	if c.ContentType == ContentTypeApplication {
		return nil, fmt.Errorf("%w: application message sent as a PublicMessage", ErrContent)
	}
	if c.Sender.SenderType == SenderTypeMember {
		if c.Sender.LeafIndex >= k.leaves {
			return nil, errorf("sender leaf %d outside a tree of %d leaves", c.Sender.LeafIndex, k.leaves)
		}
		tbm, err := AuthenticatedContentTBM(WireFormatPublicMessage, c, &m.Auth, &k.ctx)
		if err != nil {
			return nil, err
		}
		if !hmac.Equal(k.s.MAC(k.membershipKey, tbm), m.MembershipTag) {
			return nil, ErrMembershipTag
		}
	}
	if err := k.verify(WireFormatPublicMessage, c, &m.Auth, lookup); err != nil {
		return nil, err
	}
	return &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: *c, Auth: m.Auth}, nil
}

func ratchetKind(ct ContentType) secrettree.Kind {
	if ct == ContentTypeApplication {
		return secrettree.Application
	}
	return secrettree.Handshake
}

// ProtectPrivate signs c and encrypts it as a PrivateMessage (RFC 9420
// §6.3) with the next key of the sender's ratchet. The sender must be a
// member; confirmationTag is required for commits and nil otherwise.
func (k *EpochKeys) ProtectPrivate(c *FramedContent, signer *Signer, confirmationTag []byte) (*PrivateMessage, error) {
	if c.Sender.SenderType != SenderTypeMember {
		return nil, fmt.Errorf("%w: only members send PrivateMessages, not %v", ErrContent, c.Sender.SenderType)
	}
	if c.Sender.LeafIndex >= k.leaves {
		return nil, errorf("sender leaf %d outside a tree of %d leaves", c.Sender.LeafIndex, k.leaves)
	}
	auth, err := k.sign(WireFormatPrivateMessage, c, signer, confirmationTag)
	if err != nil {
		return nil, err
	}
	return k.sealPrivate(c, auth)
}

// sealPrivate encrypts signed content as a PrivateMessage with the next key
// of the sender's ratchet.
func (k *EpochKeys) sealPrivate(c *FramedContent, auth FramedContentAuthData) (*PrivateMessage, error) {
	pmc := PrivateMessageContent{ContentType: c.ContentType, Application: c.Application, Proposal: c.Proposal, Commit: c.Commit, Auth: auth}
	plain, err := codec.Marshal(func(w *codec.Writer) { pmc.encode(w, 0) })
	if err != nil {
		return nil, err
	}
	if k.padding > 0 && len(plain)%k.padding != 0 {
		plain = append(plain, make([]byte, k.padding-len(plain)%k.padding)...)
	}

	var guard [4]byte
	if _, err := io.ReadFull(k.rand, guard[:]); err != nil {
		return nil, errorf("reading a reuse guard: %w", err)
	}
	kn, err := k.tree.Next(ratchetKind(c.ContentType), treemath.LeafIndex(c.Sender.LeafIndex))
	if err != nil {
		return nil, err
	}
	m := &PrivateMessage{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}
	aad, err := marshal(&PrivateContentAAD{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData})
	if err != nil {
		return nil, err
	}
	aead, err := k.s.AEAD(kn.Key)
	if err != nil {
		return nil, err
	}
	m.Ciphertext = aead.Seal(nil, guarded(kn.Nonce, guard), plain, aad)

	sd, err := marshal(&SenderData{LeafIndex: c.Sender.LeafIndex, Generation: kn.Generation, ReuseGuard: guard})
	if err != nil {
		return nil, err
	}
	sdAEAD, sdNonce, sdAAD, err := k.senderData(m)
	if err != nil {
		return nil, err
	}
	m.EncryptedSenderData = sdAEAD.Seal(nil, sdNonce, sd, sdAAD)
	return m, nil
}

// guarded XORs the reuse guard into the first four bytes of a copy of nonce
// (RFC 9420 §6.3.1).
func guarded(nonce []byte, guard [4]byte) []byte {
	n := append([]byte(nil), nonce...)
	for i := range guard {
		n[i] ^= guard[i]
	}
	return n
}

// senderData returns the AEAD, nonce and additional data that protect m's
// sender data; the key and nonce depend on m's ciphertext (RFC 9420 §6.3.2).
func (k *EpochKeys) senderData(m *PrivateMessage) (cipher.AEAD, []byte, []byte, error) {
	key, nonce, err := secrettree.SenderDataKeyNonce(k.s, k.senderDataSecret, m.Ciphertext)
	if err != nil {
		return nil, nil, nil, err
	}
	aead, err := k.s.AEAD(key)
	if err != nil {
		return nil, nil, nil, err
	}
	aad, err := marshal(&SenderDataAAD{GroupID: m.GroupID, Epoch: m.Epoch, ContentType: m.ContentType})
	if err != nil {
		return nil, nil, nil, err
	}
	return aead, nonce, aad, nil
}

// UnprotectPrivate decrypts and verifies a PrivateMessage: group and epoch,
// the sender data, the content with the sender's ratchet key for the
// generation it names (a key is used once, and given back if the content
// does not decrypt), zero padding, and the signature with the key lookup
// returns for the member sender.
func (k *EpochKeys) UnprotectPrivate(m *PrivateMessage, lookup KeyLookup) (*AuthenticatedContent, error) {
	if err := k.checkEpoch(m.GroupID, m.Epoch); err != nil {
		return nil, err
	}
	sdAEAD, sdNonce, sdAAD, err := k.senderData(m)
	if err != nil {
		return nil, err
	}
	sdBytes, err := sdAEAD.Open(nil, sdNonce, m.EncryptedSenderData, sdAAD)
	if err != nil {
		return nil, fmt.Errorf("%w: sender data", ErrDecrypt)
	}
	var sd SenderData
	if err := sd.UnmarshalMLS(sdBytes); err != nil {
		return nil, err
	}
	if sd.LeafIndex >= k.leaves {
		return nil, errorf("sender leaf %d outside a tree of %d leaves", sd.LeafIndex, k.leaves)
	}
	kind, leaf := ratchetKind(m.ContentType), treemath.LeafIndex(sd.LeafIndex)
	kn, err := k.tree.Get(kind, leaf, sd.Generation)
	if err != nil {
		return nil, err
	}
	contentAAD, err := marshal(&PrivateContentAAD{GroupID: m.GroupID, Epoch: m.Epoch, ContentType: m.ContentType, AuthenticatedData: m.AuthenticatedData})
	if err != nil {
		return nil, err
	}
	aead, err := k.s.AEAD(kn.Key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, guarded(kn.Nonce, sd.ReuseGuard), m.Ciphertext, contentAAD)
	if err != nil {
		k.tree.Restore(kind, leaf, kn)
		return nil, fmt.Errorf("%w: content of leaf %d generation %d", ErrDecrypt, sd.LeafIndex, sd.Generation)
	}
	pmc, err := UnmarshalPrivateMessageContent(plain, m.ContentType)
	if err != nil {
		return nil, err
	}
	ac := &AuthenticatedContent{
		WireFormat: WireFormatPrivateMessage,
		Content: FramedContent{
			GroupID:           m.GroupID,
			Epoch:             m.Epoch,
			Sender:            Sender{SenderType: SenderTypeMember, LeafIndex: sd.LeafIndex},
			AuthenticatedData: m.AuthenticatedData,
			ContentType:       m.ContentType,
			Application:       pmc.Application,
			Proposal:          pmc.Proposal,
			Commit:            pmc.Commit,
		},
		Auth: pmc.Auth,
	}
	if err := k.verify(WireFormatPrivateMessage, &ac.Content, &ac.Auth, lookup); err != nil {
		return nil, err
	}
	return ac, nil
}
