package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// Labels of the Welcome (RFC 9420 §12.4.3).
const (
	labelGroupInfo = "GroupInfoTBS"
	labelWelcome   = "Welcome"
)

// resolvedProposal is one entry of a commit's proposal list.
type resolvedProposal struct {
	p      *Proposal
	sender Sender
}

// added is a member added by a commit.
type added struct {
	leaf tm.LeafIndex
	kp   *KeyPackage
}

// applied is the result of applying a valid proposal list (RFC 9420 §12.3)
// to a copy of the tree and extensions.
type applied struct {
	tree         *tree
	extensions   Extensions
	added        []added
	exclude      map[tm.LeafIndex]bool
	removed      []tm.LeafIndex
	updated      map[tm.LeafIndex]*LeafNode
	psks         []PreSharedKeyID
	externalInit *ExternalInit
	reinit       *ReInit
	needsPath    bool
}

func requiredCapabilities(exts Extensions) (*RequiredCapabilities, error) {
	e, ok := exts.Find(ExtensionTypeRequiredCapabilities)
	if !ok {
		return nil, nil
	}
	var rc RequiredCapabilities
	if err := rc.UnmarshalMLS(e.Data); err != nil {
		return nil, err
	}
	return &rc, nil
}

// applyProposals validates a commit's proposal list (RFC 9420 §12.2) and
// applies it to a copy of the current tree (§12.3). committer is the
// member's leaf for a regular commit; external says the commit comes from a
// new member.
func (g *Group) applyProposals(list []resolvedProposal, committer tm.LeafIndex, external bool) (*applied, error) {
	st := g.st
	a := &applied{tree: st.tree.clone(), extensions: st.ctx.Extensions, exclude: map[tm.LeafIndex]bool{},
		updated: map[tm.LeafIndex]*LeafNode{}, needsPath: len(list) == 0}
	var adds, updates, removes, psks, gces []resolvedProposal
	touched := map[tm.LeafIndex]bool{}
	for _, rp := range list {
		switch rp.p.ProposalType {
		case ProposalTypeAdd:
			adds = append(adds, rp)
		case ProposalTypeUpdate:
			updates = append(updates, rp)
		case ProposalTypeRemove:
			removes = append(removes, rp)
		case ProposalTypePSK:
			psks = append(psks, rp)
		case ProposalTypeGroupContextExtensions:
			gces = append(gces, rp)
		case ProposalTypeReInit:
			if len(list) != 1 {
				return nil, invalidCommit("a ReInit proposal must be alone in its commit")
			}
			if rp.p.ReInit.Version < st.ctx.Version {
				return nil, invalidCommit("ReInit to version %v, below the group's", rp.p.ReInit.Version)
			}
			a.reinit = rp.p.ReInit
		case ProposalTypeExternalInit:
			if !external {
				return nil, invalidCommit("ExternalInit in a regular commit")
			}
			if a.externalInit != nil {
				return nil, invalidCommit("two ExternalInit proposals")
			}
			a.externalInit = rp.p.ExternalInit
		default:
			return nil, invalidCommit("unsupported proposal type %v", rp.p.ProposalType)
		}
	}
	if external {
		if a.externalInit == nil || len(adds)+len(updates)+len(gces) > 0 || len(removes) > 1 || a.reinit != nil {
			return nil, invalidCommit("an external commit holds one ExternalInit, at most one Remove and PSKs only")
		}
		a.needsPath = true
	}
	if len(gces) > 1 {
		return nil, invalidCommit("%d GroupContextExtensions proposals", len(gces))
	}
	if len(gces) == 1 {
		a.extensions = gces[0].p.GroupContextExtensions.Extensions
	}
	required, err := requiredCapabilities(a.extensions)
	if err != nil {
		return nil, invalidCommit("required_capabilities: %v", err)
	}

	for _, rp := range updates {
		if rp.sender.SenderType != SenderTypeMember {
			return nil, invalidCommit("update from a non-member")
		}
		l := tm.LeafIndex(rp.sender.LeafIndex)
		if !external && l == committer {
			return nil, invalidCommit("the committer's own Update")
		}
		if touched[l] {
			return nil, invalidCommit("several Updates or Removes for leaf %d", l)
		}
		touched[l] = true
		ln := &rp.p.Update.LeafNode
		cur := st.tree.leaf(l)
		if cur == nil {
			return nil, invalidCommit("update for blank leaf %d", l)
		}
		if ln.LeafNodeSource != LeafNodeSourceUpdate {
			return nil, invalidCommit("update leaf has source %v", ln.LeafNodeSource)
		}
		if bytes.Equal(ln.EncryptionKey, cur.EncryptionKey) {
			return nil, invalidCommit("update for leaf %d keeps its encryption key", l)
		}
		if err := g.validateLeaf(a.tree, ln, l, required); err != nil {
			return nil, invalidCommit("update for leaf %d: %v", l, err)
		}
		a.tree.setLeaf(l, ln)
		a.tree.blankPath(l)
		a.updated[l] = ln
		a.needsPath = true
	}
	for _, rp := range removes {
		l := tm.LeafIndex(rp.p.Remove.Removed)
		if !external && l == committer {
			return nil, invalidCommit("the committer removes itself")
		}
		if touched[l] {
			return nil, invalidCommit("several Updates or Removes for leaf %d", l)
		}
		touched[l] = true
		if a.tree.leaf(l) == nil {
			return nil, invalidCommit("remove of blank leaf %d", l)
		}
		a.tree.removeLeaf(l)
		a.removed = append(a.removed, l)
		a.needsPath = true
	}
	for _, rp := range adds {
		kp := &rp.p.Add.KeyPackage
		err := kp.Validate(KeyPackageCheck{CipherSuite: st.ctx.CipherSuite, Now: g.cfg.now(),
			RequiredExtensions: reqExt(required), RequiredProposals: reqProp(required), RequiredCredentials: reqCred(required)})
		if err != nil {
			return nil, invalidCommit("add: %v", err)
		}
		if err := checkLeafCompat(&kp.LeafNode, nil, a.credentialTypes(), "added member"); err != nil {
			return nil, invalidCommit("add: %v", err)
		}
		for i := range a.tree.leafCount() {
			if ln := a.tree.leaf(tm.LeafIndex(i)); ln != nil && bytes.Equal(ln.SignatureKey, kp.LeafNode.SignatureKey) {
				return nil, invalidCommit("add of a client already in the group (signature key of leaf %d)", i)
			}
		}
		l := a.tree.addLeaf(&kp.LeafNode)
		a.added = append(a.added, added{leaf: l, kp: kp})
		a.exclude[l] = true
	}
	seen := map[string]bool{}
	for _, rp := range psks {
		id := &rp.p.PreSharedKey.PSK
		if len(id.PSKNonce) != st.tree.s.HashSize() {
			return nil, invalidCommit("PSK nonce of %d bytes, want %d", len(id.PSKNonce), st.tree.s.HashSize())
		}
		if id.PSKType == PSKTypeResumption && id.Usage != ResumptionPSKUsageApplication {
			return nil, invalidCommit("resumption PSK with usage %v outside a reinit or branch", id.Usage)
		}
		enc, err := id.MarshalMLS()
		if err != nil {
			return nil, invalidCommit("PSK: %v", err)
		}
		if seen[string(enc)] {
			return nil, invalidCommit("the same PSK twice")
		}
		seen[string(enc)] = true
		a.psks = append(a.psks, *id)
	}
	// Every remaining member must support the required capabilities, and
	// keys must stay unique.
	if len(gces) == 1 && required != nil {
		for i := range a.tree.leafCount() {
			if ln := a.tree.leaf(tm.LeafIndex(i)); ln != nil {
				if err := checkLeafCompat(ln, required, nil, fmt.Sprintf("leaf %d", i)); err != nil {
					return nil, invalidCommit("GroupContextExtensions: %v", err)
				}
			}
		}
	}
	if err := a.tree.checkUniqueKeys(); err != nil {
		return nil, invalidCommit("%v", err)
	}
	return a, nil
}

func reqExt(r *RequiredCapabilities) []ExtensionType {
	if r == nil {
		return nil
	}
	return r.ExtensionTypes
}

func reqProp(r *RequiredCapabilities) []ProposalType {
	if r == nil {
		return nil
	}
	return r.ProposalTypes
}

func reqCred(r *RequiredCapabilities) []CredentialType {
	if r == nil {
		return nil
	}
	return r.CredentialTypes
}

func (a *applied) credentialTypes() map[CredentialType]bool {
	m := map[CredentialType]bool{}
	for i := range a.tree.leafCount() {
		if ln := a.tree.leaf(tm.LeafIndex(i)); ln != nil {
			m[ln.Credential.CredentialType] = true
		}
	}
	return m
}

// checkUniqueKeys checks that no two leaves share a signature key and no two
// nodes an encryption key.
func (t *tree) checkUniqueKeys() error {
	sig := map[string]bool{}
	enc := map[string]bool{}
	for i, n := range t.nodes {
		if n == nil {
			continue
		}
		k := string(t.encryptionKey(tm.NodeIndex(i)))
		if enc[k] {
			return fmt.Errorf("encryption key of node %d used twice", i)
		}
		enc[k] = true
		if n.Leaf != nil {
			if sig[string(n.Leaf.SignatureKey)] {
				return fmt.Errorf("signature key of leaf %d used twice", i/2)
			}
			sig[string(n.Leaf.SignatureKey)] = true
		}
	}
	return nil
}

// validateLeaf checks a leaf node from an Update or a commit path for leaf
// l (RFC 9420 §7.3).
func (g *Group) validateLeaf(t *tree, ln *LeafNode, l tm.LeafIndex, required *RequiredCapabilities) error {
	if err := t.s.CheckHPKEPublicKey(ln.EncryptionKey); err != nil {
		return err
	}
	credTypes := map[CredentialType]bool{}
	for i := range t.leafCount() {
		if other := t.leaf(tm.LeafIndex(i)); other != nil && tm.LeafIndex(i) != l {
			credTypes[other.Credential.CredentialType] = true
		}
	}
	return t.validateLeaf(ln, g.st.ctx.GroupID, l, required, credTypes)
}

// CommitOptions tunes a commit.
type CommitOptions struct {
	// Proposals are committed by value, after the cached proposals (which
	// go by reference unless SkipCached; this member's own cached Updates
	// are left out, its commit's path updating its leaf instead).
	Proposals  []*Proposal
	SkipCached bool
	// NoPath leaves out the UpdatePath when the proposals allow it.
	NoPath bool
	// AuthenticatedData goes, unencrypted but authenticated, into the
	// commit's framing (MSC4256 puts its federation map there).
	AuthenticatedData []byte
	// OmitRatchetTree leaves the ratchet_tree extension out of the Welcome's
	// GroupInfo; joiners then need the tree from elsewhere.
	OmitRatchetTree bool
	// GroupInfoExtensions are added to the GroupInfo (Welcome and
	// StagedCommit.GroupInfo); ExternalPub adds the external_pub extension
	// so that non-members can join by external commit.
	GroupInfoExtensions Extensions
	ExternalPub         bool
}

// StagedCommit is a commit that has not changed the group yet: one this
// member created (Message and, when members are added, Welcome to send) or
// one it received. Merge applies it; dropping it discards it.
type StagedCommit struct {
	// Message is the commit to send (created commits only).
	Message *MLSMessage
	// Welcome is the Welcome for added members (created commits with
	// adds only).
	Welcome *MLSMessage
	// GroupInfo is the signed GroupInfo of the new epoch (created commits
	// only), for external joins.
	GroupInfo *GroupInfo

	Sender            Sender
	AuthenticatedData []byte
	Proposals         []*Proposal
	// Added and Removed list the leaves the commit adds and removes.
	Added, Removed []uint32
	// NewEpoch is the epoch the commit starts.
	NewEpoch uint64
	// RemovesSelf: the commit removes this member.
	RemovesSelf bool
	// ReInit is the committed ReInit, if any.
	ReInit *ReInit

	base *epochState
	next *epochState
}

// Commit creates a commit of the cached proposals and opts.Proposals. The
// group does not change until Merge; until then it can still send and
// receive in the current epoch, and the commit can be dropped if the
// delivery service (in MSC4256, the homeserver) does not accept it.
func (g *Group) Commit(opts CommitOptions) (*StagedCommit, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	st := g.st
	me := st.priv.leaf
	var list []resolvedProposal
	var por []ProposalOrRef
	if !opts.SkipCached {
		for _, cp := range g.proposals {
			// The committer's own Updates are superseded by its path (RFC
			// 9420 §12.2 forbids committing them).
			if cp.proposal.ProposalType == ProposalTypeUpdate && cp.sender == g.memberSender() {
				continue
			}
			list = append(list, resolvedProposal{p: cp.proposal, sender: cp.sender})
			por = append(por, ProposalOrRef{Type: ProposalOrRefTypeReference, Reference: cp.ref})
		}
	}
	for _, p := range opts.Proposals {
		if p.ProposalType == ProposalTypeUpdate {
			return nil, invalidCommit("the committer's own Update: commit with a path instead")
		}
		list = append(list, resolvedProposal{p: p, sender: g.memberSender()})
		por = append(por, ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: p})
	}
	a, err := g.applyProposals(list, me, false)
	if err != nil {
		return nil, err
	}
	if opts.NoPath && a.needsPath {
		return nil, invalidCommit("these proposals need a path")
	}
	next := &epochState{ctx: st.ctx, tree: a.tree, priv: st.priv.clone()}
	next.ctx.Epoch++
	next.ctx.Extensions = a.extensions
	commit := &Commit{Proposals: por}
	var path *pathResult
	if !opts.NoPath {
		leaf, _, err := g.freshLeaf(LeafNodeSourceCommit)
		if err != nil {
			return nil, err
		}
		commit.Path, path, err = a.tree.createPath(st.priv, *leaf, g.signer, st.ctx.GroupID, a.exclude, g.provisional(&next.ctx))
		if err != nil {
			return nil, err
		}
		next.priv = path.priv
	}
	next.priv.prune(a.tree)
	next.ctx.TreeHash = a.tree.rootHash()

	wf := g.handshakeWireFormat()
	content := &FramedContent{GroupID: st.ctx.GroupID, Epoch: st.ctx.Epoch, Sender: g.memberSender(),
		AuthenticatedData: opts.AuthenticatedData, ContentType: ContentTypeCommit, Commit: commit}
	sig, err := st.keys.signature(wf, content, g.signer)
	if err != nil {
		return nil, err
	}
	var commitSecret []byte
	if path != nil {
		commitSecret = path.commitSecret
	}
	tag, pskSecret, err := g.finishEpoch(next, a, wf, content, sig, st.secrets.InitSecret, commitSecret, nil)
	if err != nil {
		return nil, err
	}
	auth := FramedContentAuthData{Signature: sig, ConfirmationTag: tag}
	msg, err := frame(st.keys, wf, content, auth)
	if err != nil {
		return nil, err
	}
	sc := g.staged(a, content, next)
	sc.Message = msg
	if sc.GroupInfo, err = g.groupInfo(next, tag, opts); err != nil {
		return nil, err
	}
	if len(a.added) > 0 {
		if sc.Welcome, err = g.welcome(next, a, sc.GroupInfo, path, pskSecret, opts); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// provisional returns the function that encodes the provisional group
// context (new epoch and extensions, old confirmed transcript hash) for a
// tree hash.
func (g *Group) provisional(next *GroupContext) func([]byte) ([]byte, error) {
	return func(treeHash []byte) ([]byte, error) {
		ctx := *next
		ctx.TreeHash = treeHash
		ctx.ConfirmedTranscriptHash = g.st.ctx.ConfirmedTranscriptHash
		return ctx.MarshalMLS()
	}
}

// finishEpoch completes next from the commit: the confirmed transcript hash,
// the PSK secret, the key schedule, the confirmation tag (returned, or
// checked against wantTag when processing) and the interim transcript hash.
func (g *Group) finishEpoch(next *epochState, a *applied, wf WireFormat, content *FramedContent, sig, initSecret, commitSecret, wantTag []byte) (tag, pskSecret []byte, err error) {
	cs := g.st.ctx.CipherSuite
	ac := &AuthenticatedContent{WireFormat: wf, Content: *content, Auth: FramedContentAuthData{Signature: sig}}
	if next.ctx.ConfirmedTranscriptHash, err = ConfirmedTranscriptHash(cs, g.st.interim, ac); err != nil {
		return nil, nil, err
	}
	if pskSecret, err = g.pskSecret(a.psks); err != nil {
		return nil, nil, err
	}
	if err := g.enterEpoch(next, initSecret, commitSecret, pskSecret); err != nil {
		return nil, nil, err
	}
	tag = next.tree.s.MAC(next.secrets.ConfirmationKey, next.ctx.ConfirmedTranscriptHash)
	if wantTag != nil && !VerifyConfirmationTag(cs, next.secrets.ConfirmationKey, next.ctx.ConfirmedTranscriptHash, wantTag) {
		return nil, nil, invalidCommit("confirmation tag does not match")
	}
	if next.interim, err = InterimTranscriptHash(cs, next.ctx.ConfirmedTranscriptHash, tag); err != nil {
		return nil, nil, err
	}
	return tag, pskSecret, nil
}

func (g *Group) pskSecret(ids []PreSharedKeyID) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	psks := make([]keyschedule.PSK, len(ids))
	for i := range ids {
		secret, err := g.pskSecretOf(&ids[i])
		if err != nil {
			return nil, err
		}
		enc, err := ids[i].MarshalMLS()
		if err != nil {
			return nil, err
		}
		psks[i] = keyschedule.PSK{ID: enc, Secret: secret}
	}
	return keyschedule.PSKSecret(g.st.tree.s, psks)
}

func (g *Group) staged(a *applied, content *FramedContent, next *epochState) *StagedCommit {
	sc := &StagedCommit{Sender: content.Sender, AuthenticatedData: content.AuthenticatedData,
		NewEpoch: g.st.ctx.Epoch + 1, ReInit: a.reinit, base: g.st, next: next}
	for _, ad := range a.added {
		sc.Added = append(sc.Added, uint32(ad.leaf))
	}
	for _, l := range a.removed {
		sc.Removed = append(sc.Removed, uint32(l))
		if l == g.st.priv.leaf {
			sc.RemovesSelf = true
		}
	}
	return sc
}

// groupInfo signs the GroupInfo of the new epoch.
func (g *Group) groupInfo(next *epochState, tag []byte, opts CommitOptions) (*GroupInfo, error) {
	gi := &GroupInfo{GroupContext: next.ctx, ConfirmationTag: tag, Signer: uint32(next.priv.leaf)}
	gi.Extensions = slices.Clone(opts.GroupInfoExtensions)
	if opts.ExternalPub {
		_, pub, err := next.secrets.ExternalKeyPair()
		if err != nil {
			return nil, err
		}
		b, err := (&ExternalPub{PublicKey: pub}).MarshalMLS()
		if err != nil {
			return nil, err
		}
		gi.Extensions = append(gi.Extensions, Extension{Type: ExtensionTypeExternalPub, Data: b})
	}
	return signGroupInfo(gi, g.signer)
}

func signGroupInfo(gi *GroupInfo, signer *Signer) (*GroupInfo, error) {
	tbs, err := gi.TBS()
	if err != nil {
		return nil, err
	}
	if gi.Signature, err = signer.SignWithLabel(labelGroupInfo, tbs); err != nil {
		return nil, err
	}
	return gi, nil
}

// welcome builds the Welcome for the members a commit adds (RFC 9420
// §12.4.3.1).
func (g *Group) welcome(next *epochState, a *applied, gi *GroupInfo, path *pathResult, pskSecret []byte, opts CommitOptions) (*MLSMessage, error) {
	s := next.tree.s
	info := *gi
	if !opts.OmitRatchetTree {
		tb, err := next.tree.export().MarshalMLS()
		if err != nil {
			return nil, err
		}
		info.Extensions = append(slices.Clone(gi.Extensions), Extension{Type: ExtensionTypeRatchetTree, Data: tb})
		if _, err := signGroupInfo(&info, g.signer); err != nil {
			return nil, err
		}
	}
	giBytes, err := info.MarshalMLS()
	if err != nil {
		return nil, err
	}
	if pskSecret == nil {
		pskSecret = keyschedule.Zero(s)
	}
	ws, err := keyschedule.WelcomeSecret(s, next.secrets.JoinerSecret, pskSecret)
	if err != nil {
		return nil, err
	}
	key, nonce, err := keyschedule.WelcomeKeyNonce(s, ws)
	if err != nil {
		return nil, err
	}
	aead, err := s.AEAD(key)
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: next.ctx.CipherSuite, EncryptedGroupInfo: aead.Seal(nil, nonce, giBytes, nil)}
	hpkeInfo, err := suite.EncryptContext(labelWelcome, w.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	w.Secrets = make([]EncryptedGroupSecrets, len(a.added))
	err = parallel(len(a.added), func(i int) error {
		ad := a.added[i]
		gs := GroupSecrets{JoinerSecret: next.secrets.JoinerSecret, PSKs: a.psks}
		if path != nil {
			gs.PathSecret = path.pathSecrets[tm.CommonAncestor(ad.leaf.Node(), next.priv.leaf.Node())]
		}
		plain, err := gs.MarshalMLS()
		if err != nil {
			return err
		}
		ref, err := ad.kp.Ref()
		if err != nil {
			return err
		}
		kem, ct, err := s.EncryptWithInfo(ad.kp.InitKey, hpkeInfo, plain)
		if err != nil {
			return err
		}
		w.Secrets[i] = EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: HPKECiphertext{KEMOutput: kem, Ciphertext: ct}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: w}, nil
}

// processCommit stages a received commit (RFC 9420 §12.4.2).
func (g *Group) processCommit(ac *AuthenticatedContent) (*StagedCommit, error) {
	st := g.st
	c := &ac.Content
	commit := c.Commit
	external := c.Sender.SenderType == SenderTypeNewMemberCommit
	if !external && c.Sender.SenderType != SenderTypeMember {
		return nil, invalidCommit("commit from a %v sender", c.Sender.SenderType)
	}
	committer := tm.LeafIndex(c.Sender.LeafIndex)
	if !external && committer == st.priv.leaf {
		return nil, invalidCommit("a commit of one's own: merge the staged commit instead")
	}
	var list []resolvedProposal
	for _, por := range commit.Proposals {
		switch por.Type {
		case ProposalOrRefTypeProposal:
			list = append(list, resolvedProposal{p: por.Proposal, sender: c.Sender})
		case ProposalOrRefTypeReference:
			i := slices.IndexFunc(g.proposals, func(cp cachedProposal) bool { return bytes.Equal(cp.ref, por.Reference) })
			if i < 0 {
				return nil, invalidCommit("unknown proposal reference %x", por.Reference)
			}
			list = append(list, resolvedProposal{p: g.proposals[i].proposal, sender: g.proposals[i].sender})
		}
	}
	for _, rp := range list {
		if rp.p.ProposalType == ProposalTypeUpdate && rp.sender == c.Sender {
			return nil, invalidCommit("update by value")
		}
	}
	a, err := g.applyProposals(list, committer, external)
	if err != nil {
		return nil, err
	}
	if a.needsPath && commit.Path == nil {
		return nil, invalidCommit("these proposals need a path")
	}
	next := &epochState{ctx: st.ctx, tree: a.tree, priv: st.priv.clone()}
	next.ctx.Epoch++
	next.ctx.Extensions = a.extensions
	initSecret := st.secrets.InitSecret
	if external {
		// The joiner takes the leftmost blank leaf (RFC 9420 §12.4.2); the
		// path merged below replaces its direct path.
		committer = a.tree.addLeaf(&commit.Path.LeafNode)
		priv, _, err := st.secrets.ExternalKeyPair()
		if err != nil {
			return nil, err
		}
		if initSecret, err = st.tree.s.ExternalInitSecret(priv, a.externalInit.KEMOutput); err != nil {
			return nil, invalidCommit("external init: %v", err)
		}
	}
	sc := g.staged(a, c, next)
	// Our own Update, committed by another member: take its private key.
	if ln, ok := a.updated[st.priv.leaf]; ok {
		key, ok := g.updates[string(ln.EncryptionKey)]
		if !ok {
			return nil, invalidCommit("commit applies an Update of ours we do not know")
		}
		next.priv.keys = map[tm.NodeIndex][]byte{st.priv.leaf.Node(): key}
	}
	// Keys above removed or updated leaves were blanked.
	next.priv.prune(a.tree)
	var commitSecret []byte
	if commit.Path != nil {
		ln := &commit.Path.LeafNode
		if ln.LeafNodeSource != LeafNodeSourceCommit {
			return nil, invalidCommit("path leaf has source %v", ln.LeafNodeSource)
		}
		if cur := st.tree.leaf(committer); !external && cur != nil && bytes.Equal(cur.EncryptionKey, ln.EncryptionKey) {
			return nil, invalidCommit("path leaf keeps the committer's encryption key")
		}
		rc, _ := requiredCapabilities(a.extensions)
		if err := g.validateLeaf(a.tree, ln, committer, rc); err != nil {
			return nil, invalidCommit("path leaf: %v", err)
		}
		var priv *treePrivate
		if !sc.RemovesSelf {
			priv = next.priv
		}
		res, err := a.tree.mergePath(committer, commit.Path, priv, a.exclude, g.provisional(&next.ctx))
		if err != nil {
			return nil, invalidCommit("%v", err)
		}
		if res.priv != nil {
			next.priv = res.priv
		}
		commitSecret = res.commitSecret
	}
	if sc.RemovesSelf {
		sc.next = nil
		return sc, nil
	}
	next.ctx.TreeHash = a.tree.rootHash()
	if _, _, err := g.finishEpoch(next, a, ac.WireFormat, c, ac.Auth.Signature, initSecret, commitSecret, ac.Auth.ConfirmationTag); err != nil {
		return nil, err
	}
	return sc, nil
}

// Merge applies a staged commit: the group moves to the new epoch, keeping
// the old epoch's keys for late messages. A commit that removed this member
// closes the group. Merge fails if the group has moved since the commit was
// staged.
func (g *Group) Merge(sc *StagedCommit) error {
	if sc.base != g.st {
		return errorf("merge: the commit was staged in another epoch or state")
	}
	g.remember(g.st)
	g.proposals, g.updates = nil, nil
	if sc.RemovesSelf || sc.next == nil {
		g.removed = true
		return nil
	}
	g.st = sc.next
	if sc.ReInit != nil {
		g.reinit = sc.ReInit
	}
	return nil
}

// remember keeps an epoch's keys for late messages and its resumption PSK.
func (g *Group) remember(st *epochState) {
	n := g.cfg.history()
	if n == 0 {
		g.past = nil
		return
	}
	g.past = append(g.past, &pastEpoch{epoch: st.ctx.Epoch, keys: st.keys, tree: st.tree, resumption: st.secrets.ResumptionPSK})
	if len(g.past) > n {
		g.past = slices.Delete(g.past, 0, len(g.past)-n)
	}
}
