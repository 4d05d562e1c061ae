package mls

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"maps"

	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// Labels of TreeKEM (RFC 9420 §7.4, §7.6).
const labelUpdatePathNode = "UpdatePathNode"

// treePrivate is what one member holds privately about the tree: its leaf
// and the HPKE private keys of its leaf and of the parents on its direct path
// it knows (the tree invariant of RFC 9420 §7.3).
type treePrivate struct {
	leaf tm.LeafIndex
	keys map[tm.NodeIndex][]byte
}

func (p *treePrivate) clone() *treePrivate {
	return &treePrivate{leaf: p.leaf, keys: maps.Clone(p.keys)}
}

// nodeKeys derives a node's key pair from its path secret.
func (t *tree) nodeKeys(pathSecret []byte) (priv, pub []byte, err error) {
	ns, err := t.s.DeriveSecret(pathSecret, "node")
	if err != nil {
		return nil, nil, err
	}
	return t.s.DeriveKeyPair(ns)
}

// encryptionKey returns the public HPKE key of a non-blank node.
func (t *tree) encryptionKey(x tm.NodeIndex) []byte {
	n := t.nodes[x]
	if n.Leaf != nil {
		return n.Leaf.EncryptionKey
	}
	return n.Parent.EncryptionKey
}

// setPathParentHashes sets the parent_hash of each parent on the filtered
// path fp (already holding their new keys) from the root down, and returns
// the parent hash the leaf must carry (RFC 9420 §7.9).
func (t *tree) setPathParentHashes(fp []pathStep) []byte {
	var above []byte
	for i := len(fp) - 1; i >= 0; i-- {
		p := *t.parent(fp[i].node)
		p.ParentHash = above
		t.set(fp[i].node, &Node{NodeType: NodeTypeParent, Parent: &p})
		above = t.parentHash(&p, t.treeHash(fp[i].copath))
	}
	return above
}

// pathResult is what creating or processing an UpdatePath yields.
type pathResult struct {
	commitSecret []byte
	// pathSecrets holds the path secret of each parent on the committer's
	// filtered path that the member learnt (all of them for the committer).
	pathSecrets map[tm.NodeIndex][]byte
	priv        *treePrivate
}

// createPath replaces priv.leaf's direct path in t (which already has the
// commit's proposals applied) with fresh keys, as a committer does (RFC 9420
// §7.4-§7.6). leaf is the new leaf node with everything but the encryption
// key, source, parent hash and signature; it is signed with signer for
// groupID. exclude are the leaves added by this commit. context returns the
// encoded provisional GroupContext for a tree hash.
func (t *tree) createPath(priv *treePrivate, leaf LeafNode, signer *Signer, groupID []byte,
	exclude map[tm.LeafIndex]bool, context func(treeHash []byte) ([]byte, error)) (*UpdatePath, *pathResult, error) {
	l := priv.leaf
	t.blankPath(l)
	fp := t.filteredPath(l)

	leafPriv, leafPub, err := t.s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	res := &pathResult{pathSecrets: map[tm.NodeIndex][]byte{}, priv: &treePrivate{leaf: l, keys: map[tm.NodeIndex][]byte{l.Node(): leafPriv}}}
	secret := make([]byte, t.s.HashSize())
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, err
	}
	secrets := make([][]byte, len(fp))
	for i, step := range fp {
		secrets[i] = secret
		nodePriv, nodePub, err := t.nodeKeys(secret)
		if err != nil {
			return nil, nil, err
		}
		res.pathSecrets[step.node] = secret
		res.priv.keys[step.node] = nodePriv
		t.set(step.node, &Node{NodeType: NodeTypeParent, Parent: &ParentNode{EncryptionKey: nodePub}})
		if secret, err = t.s.DeriveSecret(secret, "path"); err != nil {
			return nil, nil, err
		}
	}
	res.commitSecret = secret

	leaf.EncryptionKey = leafPub
	leaf.LeafNodeSource = LeafNodeSourceCommit
	leaf.Lifetime = nil
	leaf.ParentHash = t.setPathParentHashes(fp)
	if err := leaf.sign(signer, groupID, uint32(l)); err != nil {
		return nil, nil, err
	}
	t.setLeaf(l, &leaf)

	ctx, err := context(t.rootHash())
	if err != nil {
		return nil, nil, err
	}
	up := &UpdatePath{LeafNode: leaf, Nodes: make([]UpdatePathNode, len(fp))}
	type job struct {
		step int
		to   tm.NodeIndex
		out  *HPKECiphertext
	}
	var jobs []job
	for i, step := range fp {
		up.Nodes[i].EncryptionKey = t.parent(step.node).EncryptionKey
		reso := t.resolution(step.copath, exclude)
		up.Nodes[i].EncryptedPathSecret = make([]HPKECiphertext, len(reso))
		for j, r := range reso {
			jobs = append(jobs, job{step: i, to: r, out: &up.Nodes[i].EncryptedPathSecret[j]})
		}
	}
	err = parallel(len(jobs), func(k int) error {
		j := jobs[k]
		kem, ct, err := t.s.EncryptWithLabel(t.encryptionKey(j.to), labelUpdatePathNode, ctx, secrets[j.step])
		if err != nil {
			return fmt.Errorf("mls: encrypting the path secret of node %d to node %d: %w", fp[j.step].node, j.to, err)
		}
		*j.out = HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return up, res, nil
}

// mergePath applies a received UpdatePath from leaf sender to t (which has
// the commit's proposals applied) and, when priv is set, decrypts the path
// secret meant for priv's leaf (RFC 9420 §7.5, §12.4.2). The leaf node must
// already be validated by the caller except for its parent hash, which is
// checked here.
func (t *tree) mergePath(sender tm.LeafIndex, up *UpdatePath, priv *treePrivate,
	exclude map[tm.LeafIndex]bool, context func(treeHash []byte) ([]byte, error)) (*pathResult, error) {
	t.blankPath(sender)
	fp := t.filteredPath(sender)
	if len(up.Nodes) != len(fp) {
		return nil, fmt.Errorf("mls: update path has %d nodes, the filtered direct path of leaf %d has %d", len(up.Nodes), sender, len(fp))
	}
	keys := map[string]bool{string(up.LeafNode.EncryptionKey): true}
	for i, step := range fp {
		k := up.Nodes[i].EncryptionKey
		if keys[string(k)] {
			return nil, fmt.Errorf("mls: update path repeats an encryption key")
		}
		keys[string(k)] = true
		t.set(step.node, &Node{NodeType: NodeTypeParent, Parent: &ParentNode{EncryptionKey: k}})
	}
	ph := t.setPathParentHashes(fp)
	if !bytes.Equal(ph, up.LeafNode.ParentHash) {
		return nil, fmt.Errorf("mls: committer's leaf carries parent hash %x, the path gives %x", up.LeafNode.ParentHash, ph)
	}
	leaf := up.LeafNode
	t.setLeaf(sender, &leaf)
	// None of the new keys may appear elsewhere in the tree.
	for i, n := range t.nodes {
		x := tm.NodeIndex(i)
		if n == nil || x == sender.Node() || slicesContainsStep(fp, x) {
			continue
		}
		if keys[string(t.encryptionKey(x))] {
			return nil, fmt.Errorf("mls: update path key already used by node %d", x)
		}
	}
	res := &pathResult{pathSecrets: map[tm.NodeIndex][]byte{}}
	if priv == nil {
		return res, nil
	}
	if priv.leaf == sender {
		return nil, fmt.Errorf("mls: processing one's own update path")
	}
	ctx, err := context(t.rootHash())
	if err != nil {
		return nil, err
	}
	// The first step whose copath subtree holds our leaf: its path secret
	// is encrypted to a node of that subtree's resolution we hold a key for.
	lo := -1
	for i, step := range fp {
		if a, b := subtreeLeaves(step.copath); uint32(priv.leaf) >= a && uint32(priv.leaf) < b {
			lo = i
			break
		}
	}
	if lo < 0 {
		return nil, fmt.Errorf("mls: leaf %d is under no node of the committer's filtered path", priv.leaf)
	}
	reso := t.resolution(fp[lo].copath, exclude)
	if len(reso) != len(up.Nodes[lo].EncryptedPathSecret) {
		return nil, fmt.Errorf("mls: update path node %d has %d ciphertexts for a resolution of %d", fp[lo].node, len(up.Nodes[lo].EncryptedPathSecret), len(reso))
	}
	var secret []byte
	for j, r := range reso {
		key, ok := priv.keys[r]
		if !ok {
			continue
		}
		c := up.Nodes[lo].EncryptedPathSecret[j]
		if secret, err = t.s.DecryptWithLabel(key, labelUpdatePathNode, ctx, c.KEMOutput, c.Ciphertext); err != nil {
			return nil, fmt.Errorf("mls: decrypting the path secret of node %d: %w", fp[lo].node, err)
		}
		break
	}
	if secret == nil {
		return nil, fmt.Errorf("mls: no private key for the resolution of node %d", fp[lo].copath)
	}
	res.priv = priv.clone()
	// Keys for the committer's direct path are replaced.
	for _, p := range tm.DirectPath(sender.Node(), t.leafCount()) {
		delete(res.priv.keys, p)
	}
	for i := lo; i < len(fp); i++ {
		nodePriv, nodePub, err := t.nodeKeys(secret)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(nodePub, up.Nodes[i].EncryptionKey) {
			return nil, fmt.Errorf("mls: path secret of node %d derives another public key than the update path's", fp[i].node)
		}
		res.priv.keys[fp[i].node] = nodePriv
		res.pathSecrets[fp[i].node] = secret
		if secret, err = t.s.DeriveSecret(secret, "path"); err != nil {
			return nil, err
		}
	}
	res.commitSecret = secret
	return res, nil
}

func slicesContainsStep(fp []pathStep, x tm.NodeIndex) bool {
	for _, s := range fp {
		if s.node == x {
			return true
		}
	}
	return false
}

// privateFromPathSecret derives a joiner's private keys from the path secret
// of the lowest common ancestor with the committer (RFC 9420 §12.4.3.1),
// checking them against the tree.
func (t *tree) privateFromPathSecret(me tm.LeafIndex, leafPriv []byte, committer tm.LeafIndex, pathSecret []byte) (*treePrivate, error) {
	priv := &treePrivate{leaf: me, keys: map[tm.NodeIndex][]byte{me.Node(): leafPriv}}
	if pathSecret == nil {
		return priv, nil
	}
	x := tm.CommonAncestor(me.Node(), committer.Node())
	n := t.leafCount()
	secret := pathSecret
	for {
		if t.nodes[x] != nil {
			nodePriv, nodePub, err := t.nodeKeys(secret)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(nodePub, t.encryptionKey(x)) {
				return nil, fmt.Errorf("mls: path secret derives another key than node %d's", x)
			}
			priv.keys[x] = nodePriv
			var err2 error
			if secret, err2 = t.s.DeriveSecret(secret, "path"); err2 != nil {
				return nil, err2
			}
		}
		p, ok := tm.Parent(x, n)
		if !ok {
			return priv, nil
		}
		x = p
	}
}
