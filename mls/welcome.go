package mls

import (
	"bytes"

	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// JoinParams is what a new member needs to join from a Welcome.
type JoinParams struct {
	// KeyPackage and Secrets are the joiner's KeyPackage (the one the
	// Welcome is for) and its private keys; Signer is its signature key.
	KeyPackage *KeyPackage
	Secrets    *KeyPackageSecrets
	Signer     *Signer
	// RatchetTree is the group's tree when the Welcome's GroupInfo does not
	// carry the ratchet_tree extension.
	RatchetTree RatchetTree
	Config      GroupConfig
}

// JoinFromWelcome joins a group from a Welcome (RFC 9420 §12.4.3.1): it
// finds and decrypts the joiner's GroupSecrets, decrypts and verifies the
// GroupInfo, validates the whole ratchet tree, derives the joiner's private
// keys and the epoch's secrets, and checks the confirmation tag.
func JoinFromWelcome(w *Welcome, p JoinParams) (*Group, error) {
	kp := p.KeyPackage
	if kp == nil || p.Secrets == nil || p.Signer == nil {
		return nil, errorf("join: key package, its secrets and a signer are required")
	}
	if w.CipherSuite != kp.CipherSuite || p.Signer.CipherSuite() != kp.CipherSuite {
		return nil, errorf("join: Welcome for %v, key package for %v", w.CipherSuite, kp.CipherSuite)
	}
	g := &Group{cfg: p.Config, signer: p.Signer}
	gs, gi, pskSecret, err := decryptWelcome(w, kp, p.Secrets.InitKey, p.Config.ExternalPSK)
	if err != nil {
		return nil, err
	}
	s, _ := w.CipherSuite.impl()
	if gi.GroupContext.CipherSuite != kp.CipherSuite {
		return nil, errorf("join: group uses %v, key package %v", gi.GroupContext.CipherSuite, kp.CipherSuite)
	}
	t, err := treeForGroupInfo(gi, p.RatchetTree)
	if err != nil {
		return nil, err
	}
	if err := verifyGroupInfo(t, gi); err != nil {
		return nil, err
	}
	rc, err := requiredCapabilities(gi.GroupContext.Extensions)
	if err != nil {
		return nil, err
	}
	if err := t.validate(gi.GroupContext.GroupID, gi.GroupContext.TreeHash, rc); err != nil {
		return nil, err
	}
	me := tm.LeafIndex(0)
	leafBytes, err := kp.LeafNode.MarshalMLS()
	if err != nil {
		return nil, err
	}
	found := false
	for ; uint32(me) < t.leafCount(); me++ {
		if ln := t.leaf(me); ln != nil {
			if b, err := ln.MarshalMLS(); err == nil && bytes.Equal(b, leafBytes) {
				found = true
				break
			}
		}
	}
	if !found {
		return nil, errorf("join: the tree has no leaf for this key package")
	}
	priv, err := t.privateFromPathSecret(me, p.Secrets.EncryptionKey, tm.LeafIndex(gi.Signer), gs.PathSecret)
	if err != nil {
		return nil, errorf("join: %w", err)
	}
	st := &epochState{ctx: gi.GroupContext, tree: t, priv: priv}
	gc, err := st.ctx.MarshalMLS()
	if err != nil {
		return nil, err
	}
	if st.secrets, err = keyschedule.FromJoiner(s, gs.JoinerSecret, pskSecret, gc); err != nil {
		return nil, err
	}
	if !VerifyConfirmationTag(st.ctx.CipherSuite, st.secrets.ConfirmationKey, st.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		return nil, errorf("join: the group info's confirmation tag does not verify")
	}
	if st.interim, err = InterimTranscriptHash(st.ctx.CipherSuite, st.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
		return nil, err
	}
	if st.keys, err = NewEpochKeys(&st.ctx, t.leafCount(), st.secrets.EncryptionSecret, st.secrets.SenderDataSecret, st.secrets.MembershipKey, &g.cfg.Keys); err != nil {
		return nil, err
	}
	g.st = st
	return g, nil
}

// decryptWelcome finds and decrypts the GroupSecrets for kp and the
// GroupInfo, and returns them with the PSK secret (RFC 9420 §12.4.3.1).
func decryptWelcome(w *Welcome, kp *KeyPackage, initPriv []byte, externalPSK func([]byte) ([]byte, bool)) (*GroupSecrets, *GroupInfo, []byte, error) {
	s, err := w.CipherSuite.impl()
	if err != nil {
		return nil, nil, nil, err
	}
	ref, err := kp.Ref()
	if err != nil {
		return nil, nil, nil, err
	}
	var mine *EncryptedGroupSecrets
	for i := range w.Secrets {
		if bytes.Equal(w.Secrets[i].NewMember, ref) {
			mine = &w.Secrets[i]
			break
		}
	}
	if mine == nil {
		return nil, nil, nil, errorf("join: the Welcome has no secrets for this key package")
	}
	plain, err := s.DecryptWithLabel(initPriv, labelWelcome, w.EncryptedGroupInfo,
		mine.EncryptedGroupSecrets.KEMOutput, mine.EncryptedGroupSecrets.Ciphertext)
	if err != nil {
		return nil, nil, nil, errorf("join: decrypting group secrets: %w", err)
	}
	var gs GroupSecrets
	if err := gs.UnmarshalMLS(plain); err != nil {
		return nil, nil, nil, err
	}
	var pskSecret []byte
	if len(gs.PSKs) > 0 {
		psks := make([]keyschedule.PSK, len(gs.PSKs))
		for i := range gs.PSKs {
			id := &gs.PSKs[i]
			if id.PSKType != PSKTypeExternal {
				return nil, nil, nil, errorf("join: resumption PSKs need the old group's state")
			}
			secret, ok := []byte(nil), false
			if externalPSK != nil {
				secret, ok = externalPSK(id.PSKID)
			}
			if !ok {
				return nil, nil, nil, errorf("join: external PSK %x is not known", id.PSKID)
			}
			enc, err := id.MarshalMLS()
			if err != nil {
				return nil, nil, nil, err
			}
			psks[i] = keyschedule.PSK{ID: enc, Secret: secret}
		}
		if pskSecret, err = keyschedule.PSKSecret(s, psks); err != nil {
			return nil, nil, nil, err
		}
	} else {
		pskSecret = keyschedule.Zero(s)
	}
	ws, err := keyschedule.WelcomeSecret(s, gs.JoinerSecret, pskSecret)
	if err != nil {
		return nil, nil, nil, err
	}
	key, nonce, err := keyschedule.WelcomeKeyNonce(s, ws)
	if err != nil {
		return nil, nil, nil, err
	}
	aead, err := s.AEAD(key)
	if err != nil {
		return nil, nil, nil, err
	}
	giBytes, err := aead.Open(nil, nonce, w.EncryptedGroupInfo, nil)
	if err != nil {
		return nil, nil, nil, errorf("join: decrypting the group info: %w", ErrDecrypt)
	}
	var gi GroupInfo
	if err := gi.UnmarshalMLS(giBytes); err != nil {
		return nil, nil, nil, err
	}
	return &gs, &gi, pskSecret, nil
}

// treeForGroupInfo takes the tree from the GroupInfo's ratchet_tree
// extension, or else from the caller.
func treeForGroupInfo(gi *GroupInfo, given RatchetTree) (*tree, error) {
	nodes := given
	if e, ok := gi.Extensions.Find(ExtensionTypeRatchetTree); ok {
		if err := nodes.UnmarshalMLS(e.Data); err != nil {
			return nil, err
		}
	}
	if nodes == nil {
		return nil, errorf("join: no ratchet tree in the group info and none given")
	}
	return newTree(gi.GroupContext.CipherSuite, nodes)
}

// verifyGroupInfo checks the GroupInfo's signature by its signer's leaf.
func verifyGroupInfo(t *tree, gi *GroupInfo) error {
	signer := t.leaf(tm.LeafIndex(gi.Signer))
	if signer == nil {
		return errorf("group info signed by blank leaf %d", gi.Signer)
	}
	tbs, err := gi.TBS()
	if err != nil {
		return err
	}
	if err := t.s.VerifyWithLabel(signer.SignatureKey, labelGroupInfo, tbs, gi.Signature); err != nil {
		return errorf("group info signature: %w", err)
	}
	return nil
}

// ExternalJoinParams is what a client needs to join by external commit.
type ExternalJoinParams struct {
	// GroupInfo must carry the external_pub extension; RatchetTree is needed
	// when it does not carry ratchet_tree.
	GroupInfo   *GroupInfo
	RatchetTree RatchetTree
	Signer      *Signer
	Credential  Credential
	// Capabilities and LeafExtensions make the joiner's leaf.
	Capabilities   *Capabilities
	LeafExtensions Extensions
	// RemoveLeaf, when set, removes that leaf (an old instance of the same
	// client) in the same commit.
	RemoveLeaf *uint32
	// AuthenticatedData goes into the commit's framing.
	AuthenticatedData []byte
	Config            GroupConfig
}

// JoinExternal joins a group by external commit (RFC 9420 §12.4.3.2): it
// returns the joiner's group, already in the new epoch, and the commit (a
// PublicMessage) for the members.
func JoinExternal(p ExternalJoinParams) (*Group, *MLSMessage, error) {
	gi := p.GroupInfo
	if p.Signer == nil || gi == nil {
		return nil, nil, errorf("external join: a group info and a signer are required")
	}
	cs := gi.GroupContext.CipherSuite
	if p.Signer.CipherSuite() != cs {
		return nil, nil, errorf("external join: signer for %v, group uses %v", p.Signer.CipherSuite(), cs)
	}
	t, err := treeForGroupInfo(gi, p.RatchetTree)
	if err != nil {
		return nil, nil, err
	}
	if err := verifyGroupInfo(t, gi); err != nil {
		return nil, nil, err
	}
	rc, err := requiredCapabilities(gi.GroupContext.Extensions)
	if err != nil {
		return nil, nil, err
	}
	if err := t.validate(gi.GroupContext.GroupID, gi.GroupContext.TreeHash, rc); err != nil {
		return nil, nil, err
	}
	e, ok := gi.Extensions.Find(ExtensionTypeExternalPub)
	if !ok {
		return nil, nil, errorf("external join: the group info has no external_pub")
	}
	var ep ExternalPub
	if err := ep.UnmarshalMLS(e.Data); err != nil {
		return nil, nil, err
	}
	kemOutput, initSecret, err := t.s.ExternalInit(ep.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	kp, kpSecrets, err := NewKeyPackage(KeyPackageParams{Signer: p.Signer, Credential: p.Credential,
		Capabilities: p.Capabilities, LeafExtensions: p.LeafExtensions, Now: p.Config.Now})
	if err != nil {
		return nil, nil, err
	}
	// The joiner stands in the group's current epoch, as an outsider.
	g := &Group{cfg: p.Config, signer: p.Signer}
	g.st = &epochState{ctx: gi.GroupContext, tree: t, priv: &treePrivate{keys: map[tm.NodeIndex][]byte{}}}
	if g.st.interim, err = InterimTranscriptHash(cs, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
		return nil, nil, err
	}
	// pskSecretOf needs the current epoch's secrets only for resumption
	// PSKs, which an outsider cannot have.
	g.st.secrets = &keyschedule.Epoch{}

	props := []*Proposal{{ProposalType: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: kemOutput}}}
	if p.RemoveLeaf != nil {
		props = append(props, &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: *p.RemoveLeaf}})
	}
	list := make([]resolvedProposal, len(props))
	por := make([]ProposalOrRef, len(props))
	for i, pr := range props {
		list[i] = resolvedProposal{p: pr, sender: Sender{SenderType: SenderTypeNewMemberCommit}}
		por[i] = ProposalOrRef{Type: ProposalOrRefTypeProposal, Proposal: pr}
	}
	a, err := g.applyProposals(list, 0, true)
	if err != nil {
		return nil, nil, err
	}
	me := a.tree.addLeaf(&kp.LeafNode)
	next := &epochState{ctx: gi.GroupContext, tree: a.tree}
	next.ctx.Epoch++
	next.ctx.Extensions = a.extensions
	leaf := kp.LeafNode
	up, path, err := a.tree.createPath(&treePrivate{leaf: me, keys: map[tm.NodeIndex][]byte{me.Node(): kpSecrets.EncryptionKey}},
		leaf, p.Signer, gi.GroupContext.GroupID, a.exclude, g.provisional(&next.ctx))
	if err != nil {
		return nil, nil, err
	}
	next.priv = path.priv
	next.ctx.TreeHash = a.tree.rootHash()
	content := &FramedContent{GroupID: gi.GroupContext.GroupID, Epoch: gi.GroupContext.Epoch,
		Sender: Sender{SenderType: SenderTypeNewMemberCommit}, AuthenticatedData: p.AuthenticatedData,
		ContentType: ContentTypeCommit, Commit: &Commit{Proposals: por, Path: up}}
	sig, err := signFramedContent(WireFormatPublicMessage, content, &gi.GroupContext, p.Signer)
	if err != nil {
		return nil, nil, err
	}
	tag, _, err := g.finishEpoch(next, a, WireFormatPublicMessage, content, sig, initSecret, path.commitSecret, nil)
	if err != nil {
		return nil, nil, err
	}
	msg := &MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: *content, Auth: FramedContentAuthData{Signature: sig, ConfirmationTag: tag}}}
	g.st = next
	return g, msg, nil
}
