package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// Errors of group operations.
var (
	// ErrRemoved: this member was removed from the group (or the group was
	// reinitialised); it can no longer send.
	ErrRemoved = errors.New("mls: no longer a member of the group")
	// ErrInvalidCommit wraps every reason a commit or its proposals are
	// refused.
	ErrInvalidCommit = errors.New("mls: invalid commit")
	// ErrUnknownEpoch: a message for an epoch whose keys are not (or no
	// longer) kept.
	ErrUnknownEpoch = errors.New("mls: message for an epoch whose keys are not kept")
)

func invalidCommit(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCommit}, args...)...)
}

// DefaultEpochHistory is how many past epochs keep their keys by default.
const DefaultEpochHistory = 4

// GroupConfig tunes a Group. The zero value is usable.
type GroupConfig struct {
	// PublicHandshake frames this member's proposals and commits as
	// PublicMessages; the default is PrivateMessage, as MSC4256 requires.
	PublicHandshake bool
	// EpochHistory is how many past epochs keep their message keys (for late
	// application messages) and resumption PSKs. Zero means
	// DefaultEpochHistory; negative means none.
	EpochHistory int
	// Keys tunes message protection in every epoch.
	Keys EpochKeysConfig
	// ExternalPSK returns the secret of an external PSK by its psk_id.
	ExternalPSK func(pskID []byte) ([]byte, bool)
	// Now is the clock for lifetime checks; nil means time.Now.
	Now func() time.Time
}

func (c *GroupConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *GroupConfig) history() int {
	switch {
	case c.EpochHistory == 0:
		return DefaultEpochHistory
	case c.EpochHistory < 0:
		return 0
	}
	return c.EpochHistory
}

// epochState is everything one epoch of the group is: the context, the
// tree, this member's private keys, the epoch's secrets and message keys,
// and the interim transcript hash.
type epochState struct {
	ctx     GroupContext
	tree    *tree
	priv    *treePrivate
	secrets *keyschedule.Epoch
	keys    *EpochKeys
	interim []byte
}

// pastEpoch keeps what late messages of an old epoch need.
type pastEpoch struct {
	epoch      uint64
	keys       *EpochKeys
	tree       *tree
	resumption []byte
}

// cachedProposal is a proposal received or sent in the current epoch.
type cachedProposal struct {
	proposal *Proposal
	ref      []byte
	sender   Sender
}

// Group is one member's state of an MLS group. It is not safe for
// concurrent use.
type Group struct {
	cfg       GroupConfig
	signer    *Signer
	st        *epochState
	proposals []cachedProposal
	past      []*pastEpoch
	// updates holds the private keys of this member's proposed Updates in
	// the current epoch, by public key.
	updates map[string][]byte
	// reinit is set once a ReInit was committed: the group is closed.
	reinit  *ReInit
	removed bool
}

// CreateParams describes a new group.
type CreateParams struct {
	GroupID []byte
	Signer  *Signer
	// Credential, Capabilities and LeafExtensions make the creator's leaf
	// (see KeyPackageParams for the capability defaults).
	Credential     Credential
	Capabilities   *Capabilities
	LeafExtensions Extensions
	// Extensions are the group context extensions of epoch 0.
	Extensions Extensions
	Config     GroupConfig
}

// CreateGroup creates a group whose only member is the caller, in epoch 0
// (RFC 9420 §11).
func CreateGroup(p CreateParams) (*Group, error) {
	if p.Signer == nil {
		return nil, errNilSigner
	}
	kp, secrets, err := NewKeyPackage(KeyPackageParams{Signer: p.Signer, Credential: p.Credential,
		Capabilities: p.Capabilities, LeafExtensions: p.LeafExtensions, Now: p.Config.Now})
	if err != nil {
		return nil, err
	}
	cs := p.Signer.CipherSuite()
	t, err := newOneLeafTree(cs, &kp.LeafNode)
	if err != nil {
		return nil, err
	}
	if rc, err := requiredCapabilities(p.Extensions); err != nil {
		return nil, err
	} else if err := checkLeafCompat(&kp.LeafNode, rc, nil, "creator"); err != nil {
		return nil, err
	}
	ctx := GroupContext{Version: MLS10, CipherSuite: cs, GroupID: bytes.Clone(p.GroupID), Epoch: 0,
		TreeHash: t.rootHash(), ConfirmedTranscriptHash: []byte{}, Extensions: p.Extensions}
	initSecret := make([]byte, t.s.HashSize())
	if _, err := rand.Read(initSecret); err != nil {
		return nil, err
	}
	g := &Group{cfg: p.Config, signer: p.Signer}
	st := &epochState{ctx: ctx, tree: t, priv: &treePrivate{leaf: 0, keys: map[tm.NodeIndex][]byte{0: secrets.EncryptionKey}}}
	if err := g.enterEpoch(st, initSecret, nil, nil); err != nil {
		return nil, err
	}
	tag := t.s.MAC(st.secrets.ConfirmationKey, ctx.ConfirmedTranscriptHash)
	if st.interim, err = InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, tag); err != nil {
		return nil, err
	}
	g.st = st
	return g, nil
}

// enterEpoch runs the key schedule for st, whose context is final, and
// makes its message keys. An absent commit or PSK secret is the zero string.
func (g *Group) enterEpoch(st *epochState, initSecret, commitSecret, pskSecret []byte) error {
	gc, err := st.ctx.MarshalMLS()
	if err != nil {
		return err
	}
	s := st.tree.s
	if commitSecret == nil {
		commitSecret = keyschedule.Zero(s)
	}
	if pskSecret == nil {
		pskSecret = keyschedule.Zero(s)
	}
	if st.secrets, err = keyschedule.New(s, initSecret, commitSecret, pskSecret, gc); err != nil {
		return err
	}
	st.keys, err = NewEpochKeys(&st.ctx, st.tree.leafCount(), st.secrets.EncryptionSecret, st.secrets.SenderDataSecret, st.secrets.MembershipKey, &g.cfg.Keys)
	return err
}

// prune drops private keys of nodes that are blank in the tree.
func (p *treePrivate) prune(t *tree) {
	for n := range p.keys {
		if int(n) >= len(t.nodes) || t.nodes[n] == nil {
			delete(p.keys, n)
		}
	}
}

// GroupID returns the group's ID.
func (g *Group) GroupID() []byte { return g.st.ctx.GroupID }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.st.ctx.Epoch }

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.st.ctx.CipherSuite }

// Context returns a copy of the current group context.
func (g *Group) Context() GroupContext { return g.st.ctx }

// Extensions returns the current group context extensions.
func (g *Group) Extensions() Extensions { return g.st.ctx.Extensions }

// LeafIndex returns this member's leaf.
func (g *Group) LeafIndex() uint32 { return uint32(g.st.priv.leaf) }

// EpochAuthenticator returns the current epoch's authenticator (RFC 9420
// §8.7): members with the same value share the same view of the group.
func (g *Group) EpochAuthenticator() []byte { return bytes.Clone(g.st.secrets.EpochAuthenticator) }

// Export is the MLS exporter of the current epoch (RFC 9420 §8.5).
func (g *Group) Export(label string, context []byte, length uint16) ([]byte, error) {
	return (&EpochSecrets{Epoch: *g.st.secrets, cs: g.CipherSuite()}).Export(label, context, length)
}

// Member is a leaf of the group.
type Member struct {
	LeafIndex uint32
	LeafNode  *LeafNode
}

// Members lists the current members in leaf order.
func (g *Group) Members() []Member {
	var out []Member
	for i := range g.st.tree.leafCount() {
		if ln := g.st.tree.leaf(tm.LeafIndex(i)); ln != nil {
			out = append(out, Member{LeafIndex: i, LeafNode: ln})
		}
	}
	return out
}

// RatchetTree returns the current tree in its wire form.
func (g *Group) RatchetTree() RatchetTree { return g.st.tree.export() }

// Removed reports whether this member has been removed from the group, or
// the group reinitialised by a committed ReInit.
func (g *Group) Removed() bool { return g.removed || g.reinit != nil }

// PendingReInit returns the ReInit committed in this group, if any.
func (g *Group) PendingReInit() *ReInit { return g.reinit }

func (g *Group) checkActive() error {
	if g.Removed() {
		return ErrRemoved
	}
	return nil
}

func (g *Group) handshakeWireFormat() WireFormat {
	if g.cfg.PublicHandshake {
		return WireFormatPublicMessage
	}
	return WireFormatPrivateMessage
}

func (g *Group) memberSender() Sender {
	return Sender{SenderType: SenderTypeMember, LeafIndex: uint32(g.st.priv.leaf)}
}

// frame protects signed content c with auth in the epoch of keys, in wire
// format wf, and wraps it in an MLSMessage.
func frame(keys *EpochKeys, wf WireFormat, c *FramedContent, auth FramedContentAuthData) (*MLSMessage, error) {
	m := &MLSMessage{Version: MLS10, WireFormat: wf}
	var err error
	if wf == WireFormatPublicMessage {
		m.PublicMessage, err = keys.framePublic(c, auth)
	} else {
		m.PrivateMessage, err = keys.sealPrivate(c, auth)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Encrypt protects an application message, with caller-chosen
// authenticated data, as a PrivateMessage of the current epoch.
func (g *Group) Encrypt(plaintext, authenticatedData []byte) (*MLSMessage, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	c := &FramedContent{GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch, Sender: g.memberSender(),
		AuthenticatedData: authenticatedData, ContentType: ContentTypeApplication, Application: plaintext}
	pm, err := g.st.keys.ProtectPrivate(c, g.signer, nil)
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}, nil
}

// keyLookup returns the signature keys of senders in the epoch of t and
// ctx: members by leaf, external senders from the extension.
func keyLookup(t *tree, ctx *GroupContext) KeyLookup {
	return func(s Sender) ([]byte, error) {
		switch s.SenderType {
		case SenderTypeMember:
			if ln := t.leaf(tm.LeafIndex(s.LeafIndex)); ln != nil {
				return ln.SignatureKey, nil
			}
			return nil, fmt.Errorf("no member at leaf %d", s.LeafIndex)
		case SenderTypeExternal:
			ext, ok := ctx.Extensions.Find(ExtensionTypeExternalSenders)
			if !ok {
				return nil, errors.New("the group has no external senders")
			}
			var es ExternalSenders
			if err := es.UnmarshalMLS(ext.Data); err != nil {
				return nil, err
			}
			if int(s.SenderIndex) >= len(es) {
				return nil, fmt.Errorf("no external sender %d", s.SenderIndex)
			}
			return es[s.SenderIndex].SignatureKey, nil
		}
		return nil, fmt.Errorf("sender type %v needs the message's own key", s.SenderType)
	}
}

// Received is a processed message.
type Received struct {
	// ContentType says which of Application, Proposal or Commit is set.
	ContentType       ContentType
	Sender            Sender
	Epoch             uint64
	AuthenticatedData []byte
	// Application is the plaintext of an application message.
	Application []byte
	// Proposal is a proposal now cached for a later commit.
	Proposal *Proposal
	// Commit is a commit staged for Merge; the group is unchanged until then.
	Commit *StagedCommit
}

// Process reads a message for the group: an application message of the
// current epoch or of a past one still kept, a proposal (cached), or a
// commit (staged, not applied: call Merge to apply it).
func (g *Group) Process(m *MLSMessage) (*Received, error) {
	var ac *AuthenticatedContent
	var err error
	switch m.WireFormat {
	case WireFormatPrivateMessage:
		ac, err = g.unprotectPrivate(m.PrivateMessage)
	case WireFormatPublicMessage:
		ac, err = g.unprotectPublic(m.PublicMessage)
	default:
		return nil, errorf("process: wire format %v is not a group message", m.WireFormat)
	}
	if err != nil {
		return nil, err
	}
	r := &Received{ContentType: ac.Content.ContentType, Sender: ac.Content.Sender, Epoch: ac.Content.Epoch,
		AuthenticatedData: ac.Content.AuthenticatedData}
	switch ac.Content.ContentType {
	case ContentTypeApplication:
		r.Application = ac.Content.Application
	case ContentTypeProposal:
		if err := g.cacheProposal(ac); err != nil {
			return nil, err
		}
		r.Proposal = ac.Content.Proposal
	case ContentTypeCommit:
		if r.Commit, err = g.processCommit(ac); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (g *Group) unprotectPrivate(pm *PrivateMessage) (*AuthenticatedContent, error) {
	if !bytes.Equal(pm.GroupID, g.st.ctx.GroupID) {
		return nil, fmt.Errorf("%w: group %x", ErrWrongGroup, pm.GroupID)
	}
	if pm.Epoch == g.st.ctx.Epoch {
		return g.st.keys.UnprotectPrivate(pm, keyLookup(g.st.tree, &g.st.ctx))
	}
	if pm.ContentType != ContentTypeApplication {
		return nil, fmt.Errorf("%w: %v of epoch %d in epoch %d", ErrWrongGroup, pm.ContentType, pm.Epoch, g.st.ctx.Epoch)
	}
	for _, p := range g.past {
		if p.epoch == pm.Epoch {
			return p.keys.UnprotectPrivate(pm, keyLookup(p.tree, p.keys.GroupContext()))
		}
	}
	return nil, fmt.Errorf("%w: epoch %d (current %d)", ErrUnknownEpoch, pm.Epoch, g.st.ctx.Epoch)
}

func (g *Group) unprotectPublic(pm *PublicMessage) (*AuthenticatedContent, error) {
	c := &pm.Content
	lookup := keyLookup(g.st.tree, &g.st.ctx)
	switch c.Sender.SenderType {
	case SenderTypeNewMemberCommit:
		if c.ContentType != ContentTypeCommit || c.Commit == nil || c.Commit.Path == nil {
			return nil, fmt.Errorf("%w: a new member's commit needs a path", ErrContent)
		}
		key := c.Commit.Path.LeafNode.SignatureKey
		lookup = func(Sender) ([]byte, error) { return key, nil }
	case SenderTypeNewMemberProposal:
		if c.ContentType != ContentTypeProposal || c.Proposal.ProposalType != ProposalTypeAdd {
			return nil, fmt.Errorf("%w: a new member may only propose its own Add", ErrContent)
		}
		key := c.Proposal.Add.KeyPackage.LeafNode.SignatureKey
		lookup = func(Sender) ([]byte, error) { return key, nil }
	}
	return g.st.keys.UnprotectPublic(pm, lookup)
}

// proposalRef is MakeProposalRef of an AuthenticatedContent (RFC 9420 §5.2).
func proposalRef(cs CipherSuite, ac *AuthenticatedContent) ([]byte, error) {
	b, err := ac.MarshalMLS()
	if err != nil {
		return nil, err
	}
	return RefHash(cs, "MLS 1.0 Proposal Reference", b)
}

func (g *Group) cacheProposal(ac *AuthenticatedContent) error {
	p := ac.Content.Proposal
	if ac.Content.Sender.SenderType == SenderTypeExternal {
		switch p.ProposalType {
		case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePSK, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
		default:
			return fmt.Errorf("%w: external senders may not propose %v", ErrContent, p.ProposalType)
		}
	}
	if p.ProposalType == ProposalTypeExternalInit {
		return fmt.Errorf("%w: ExternalInit only comes by value in an external commit", ErrContent)
	}
	if p.ProposalType == ProposalTypeUpdate && ac.Content.Sender.SenderType != SenderTypeMember {
		return fmt.Errorf("%w: only members propose updates", ErrContent)
	}
	ref, err := proposalRef(g.CipherSuite(), ac)
	if err != nil {
		return err
	}
	g.proposals = append(g.proposals, cachedProposal{proposal: p, ref: ref, sender: ac.Content.Sender})
	return nil
}

// PendingProposals returns the proposals cached in this epoch.
func (g *Group) PendingProposals() []*Proposal {
	out := make([]*Proposal, len(g.proposals))
	for i, p := range g.proposals {
		out[i] = p.proposal
	}
	return out
}

// ClearProposals drops the proposals cached in this epoch.
func (g *Group) ClearProposals() { g.proposals = nil }

// Propose sends a proposal in the current epoch, with caller-chosen
// authenticated data; it is cached so that this member's next commit
// includes it by reference.
func (g *Group) Propose(p *Proposal, authenticatedData []byte) (*MLSMessage, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	if p.ProposalType == ProposalTypeExternalInit {
		return nil, fmt.Errorf("%w: ExternalInit is only for external commits", ErrContent)
	}
	c := &FramedContent{GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch, Sender: g.memberSender(),
		AuthenticatedData: authenticatedData, ContentType: ContentTypeProposal, Proposal: p}
	wf := g.handshakeWireFormat()
	sig, err := g.st.keys.signature(wf, c, g.signer)
	if err != nil {
		return nil, err
	}
	auth := FramedContentAuthData{Signature: sig}
	ac := &AuthenticatedContent{WireFormat: wf, Content: *c, Auth: auth}
	if err := g.cacheProposal(ac); err != nil {
		return nil, err
	}
	return frame(g.st.keys, wf, c, auth)
}

// ProposeAdd proposes adding the client of kp.
func (g *Group) ProposeAdd(kp *KeyPackage, authenticatedData []byte) (*MLSMessage, error) {
	return g.Propose(&Proposal{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}, authenticatedData)
}

// ProposeRemove proposes removing the member at leaf.
func (g *Group) ProposeRemove(leaf uint32, authenticatedData []byte) (*MLSMessage, error) {
	return g.Propose(&Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: leaf}}, authenticatedData)
}

// ProposeUpdate proposes a fresh encryption key for this member's leaf. The
// private key is kept until a commit applies the update.
func (g *Group) ProposeUpdate(authenticatedData []byte) (*MLSMessage, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	ln, priv, err := g.freshLeaf(LeafNodeSourceUpdate)
	if err != nil {
		return nil, err
	}
	m, err := g.Propose(&Proposal{ProposalType: ProposalTypeUpdate, Update: &Update{LeafNode: *ln}}, authenticatedData)
	if err != nil {
		return nil, err
	}
	if g.updates == nil {
		g.updates = map[string][]byte{}
	}
	g.updates[string(ln.EncryptionKey)] = priv
	return m, nil
}

// ProposeGroupContextExtensions proposes replacing the group context
// extensions with exts.
func (g *Group) ProposeGroupContextExtensions(exts Extensions, authenticatedData []byte) (*MLSMessage, error) {
	return g.Propose(&Proposal{ProposalType: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: exts}}, authenticatedData)
}

// NewPSKProposal returns a PreSharedKey proposal for an external PSK (known
// to every member through GroupConfig.ExternalPSK) with a fresh nonce.
func (g *Group) NewPSKProposal(pskID []byte) (*Proposal, error) {
	return g.pskProposal(PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: bytes.Clone(pskID)})
}

// NewResumptionPSKProposal returns a PreSharedKey proposal for the
// resumption PSK of a past epoch of this group (usage application).
func (g *Group) NewResumptionPSKProposal(epoch uint64) (*Proposal, error) {
	return g.pskProposal(PreSharedKeyID{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageApplication,
		PSKGroupID: bytes.Clone(g.st.ctx.GroupID), PSKEpoch: epoch})
}

func (g *Group) pskProposal(id PreSharedKeyID) (*Proposal, error) {
	id.PSKNonce = make([]byte, g.st.tree.s.HashSize())
	if _, err := rand.Read(id.PSKNonce); err != nil {
		return nil, err
	}
	if _, err := g.pskSecretOf(&id); err != nil {
		return nil, err
	}
	return &Proposal{ProposalType: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}}, nil
}

// pskSecretOf finds the secret of a PSK: an external one through the
// config, a resumption one of this group from the current or a kept epoch.
func (g *Group) pskSecretOf(id *PreSharedKeyID) ([]byte, error) {
	switch id.PSKType {
	case PSKTypeExternal:
		if g.cfg.ExternalPSK != nil {
			if s, ok := g.cfg.ExternalPSK(id.PSKID); ok {
				return s, nil
			}
		}
		return nil, invalidCommit("external PSK %x is not known", id.PSKID)
	case PSKTypeResumption:
		if !bytes.Equal(id.PSKGroupID, g.st.ctx.GroupID) {
			return nil, invalidCommit("resumption PSK of another group %x", id.PSKGroupID)
		}
		if id.PSKEpoch == g.st.ctx.Epoch {
			return g.st.secrets.ResumptionPSK, nil
		}
		for _, p := range g.past {
			if p.epoch == id.PSKEpoch {
				return p.resumption, nil
			}
		}
		return nil, invalidCommit("resumption PSK of epoch %d is not kept", id.PSKEpoch)
	}
	return nil, invalidCommit("PSK type %v", id.PSKType)
}

// freshLeaf returns this member's leaf with a new encryption key, for an
// Update (signed) or a commit path (signed later by createPath).
func (g *Group) freshLeaf(source LeafNodeSource) (*LeafNode, []byte, error) {
	cur := g.st.tree.leaf(g.st.priv.leaf)
	ln := *cur
	ln.LeafNodeSource, ln.Lifetime, ln.ParentHash = source, nil, nil
	if source != LeafNodeSourceUpdate {
		return &ln, nil, nil
	}
	priv, pub, err := g.st.tree.s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	ln.EncryptionKey = pub
	if err := ln.sign(g.signer, g.st.ctx.GroupID, uint32(g.st.priv.leaf)); err != nil {
		return nil, nil, err
	}
	return &ln, priv, nil
}
