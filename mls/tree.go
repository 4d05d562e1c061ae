package mls

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// ErrInvalidTree is wrapped by every ratchet tree validation failure.
var ErrInvalidTree = errors.New("mls: invalid ratchet tree")

func invalidTree(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidTree}, args...)...)
}

// tree is the public ratchet tree of a group (RFC 9420 §7): an array of
// 2n-1 nodes for n leaves, n a power of two, nil for a blank node. Tree
// hashes are cached per node and invalidated along the path of a change.
type tree struct {
	cs    CipherSuite
	s     *suite.Suite
	nodes []*Node
	hash  [][]byte
}

func newTree(cs CipherSuite, nodes RatchetTree) (*tree, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, invalidTree("no nodes")
	}
	if len(nodes)%2 == 0 {
		return nil, invalidTree("%d nodes: a tree has an odd number", len(nodes))
	}
	leaves := uint32(1)
	for tm.Width(leaves) < uint32(len(nodes)) {
		leaves *= 2
	}
	t := &tree{cs: cs, s: s, nodes: make([]*Node, tm.Width(leaves))}
	t.hash = make([][]byte, len(t.nodes))
	for i, n := range nodes {
		if n == nil {
			continue
		}
		leaf := tm.NodeIndex(i).IsLeaf()
		if leaf != (n.NodeType == NodeTypeLeaf) || (leaf && n.Leaf == nil) || (!leaf && n.Parent == nil) {
			return nil, invalidTree("node %d has type %v at a %s position", i, n.NodeType, map[bool]string{true: "leaf", false: "parent"}[leaf])
		}
		t.nodes[i] = n
	}
	return t, nil
}

// newOneLeafTree is the tree of a group's creator.
func newOneLeafTree(cs CipherSuite, ln *LeafNode) (*tree, error) {
	return newTree(cs, RatchetTree{{NodeType: NodeTypeLeaf, Leaf: ln}})
}

// export returns the tree in its wire form: trailing blank nodes removed.
func (t *tree) export() RatchetTree {
	end := len(t.nodes)
	for end > 1 && t.nodes[end-1] == nil {
		end--
	}
	return slices.Clone(RatchetTree(t.nodes[:end]))
}

// clone copies the node array and hash cache; nodes themselves are shared,
// as they are replaced, never mutated, once in a tree.
func (t *tree) clone() *tree {
	return &tree{cs: t.cs, s: t.s, nodes: slices.Clone(t.nodes), hash: slices.Clone(t.hash)}
}

func (t *tree) leafCount() uint32 { return uint32(len(t.nodes)+1) / 2 }

func (t *tree) leaf(l tm.LeafIndex) *LeafNode {
	if uint32(l) >= t.leafCount() {
		return nil
	}
	if n := t.nodes[l.Node()]; n != nil {
		return n.Leaf
	}
	return nil
}

func (t *tree) parent(x tm.NodeIndex) *ParentNode {
	if n := t.nodes[x]; n != nil {
		return n.Parent
	}
	return nil
}

// set replaces node x and invalidates the cached hashes above it.
func (t *tree) set(x tm.NodeIndex, n *Node) {
	t.nodes[x] = n
	t.invalidate(x)
}

func (t *tree) invalidate(x tm.NodeIndex) {
	n := t.leafCount()
	for {
		t.hash[x] = nil
		p, ok := tm.Parent(x, n)
		if !ok {
			return
		}
		x = p
	}
}

func (t *tree) setLeaf(l tm.LeafIndex, ln *LeafNode) {
	t.set(l.Node(), &Node{NodeType: NodeTypeLeaf, Leaf: ln})
}

// blankPath blanks the parents on leaf l's direct path.
func (t *tree) blankPath(l tm.LeafIndex) {
	for _, p := range tm.DirectPath(l.Node(), t.leafCount()) {
		t.set(p, nil)
	}
}

// addLeaf puts ln in the leftmost blank leaf, extending the tree if there is
// none, and records it as unmerged in the non-blank parents above it (RFC
// 9420 §7.7).
func (t *tree) addLeaf(ln *LeafNode) tm.LeafIndex {
	l := tm.LeafIndex(0)
	for ; uint32(l) < t.leafCount(); l++ {
		if t.nodes[l.Node()] == nil {
			break
		}
	}
	if uint32(l) == t.leafCount() {
		width := tm.Width(2 * t.leafCount())
		t.nodes = append(t.nodes, make([]*Node, int(width)-len(t.nodes))...)
		t.hash = append(t.hash, make([][]byte, int(width)-len(t.hash))...)
		t.invalidate(tm.NodeIndex(len(t.nodes) - 1))
	}
	t.setLeaf(l, ln)
	for _, p := range tm.DirectPath(l.Node(), t.leafCount()) {
		if pn := t.parent(p); pn != nil {
			c := *pn
			c.UnmergedLeaves = append(slices.Clone(pn.UnmergedLeaves), uint32(l))
			slices.Sort(c.UnmergedLeaves)
			t.set(p, &Node{NodeType: NodeTypeParent, Parent: &c})
		}
	}
	return l
}

// removeLeaf blanks leaf l and its direct path, then truncates the tree.
func (t *tree) removeLeaf(l tm.LeafIndex) {
	t.set(l.Node(), nil)
	t.blankPath(l)
	t.truncate()
}

// truncate halves the tree while the right half holds no leaf (RFC 9420
// §7.8).
func (t *tree) truncate() {
	for t.leafCount() > 1 {
		n := t.leafCount()
		empty := true
		for l := n / 2; l < n; l++ {
			if t.nodes[tm.LeafIndex(l).Node()] != nil {
				empty = false
				break
			}
		}
		if !empty {
			return
		}
		w := tm.Width(n / 2)
		t.nodes, t.hash = t.nodes[:w], t.hash[:w]
		t.invalidate(tm.Root(n / 2))
	}
}

// resolution lists the nodes that cover the subtree of x (RFC 9420 §4.1.1),
// in left-to-right order, leaving out the leaves in exclude.
func (t *tree) resolution(x tm.NodeIndex, exclude map[tm.LeafIndex]bool) []tm.NodeIndex {
	var out []tm.NodeIndex
	t.resolve(x, exclude, &out)
	return out
}

func (t *tree) resolve(x tm.NodeIndex, exclude map[tm.LeafIndex]bool, out *[]tm.NodeIndex) {
	n := t.nodes[x]
	if x.IsLeaf() {
		if n != nil && !exclude[x.Leaf()] {
			*out = append(*out, x)
		}
		return
	}
	if n != nil {
		*out = append(*out, x)
		for _, u := range n.Parent.UnmergedLeaves {
			if !exclude[tm.LeafIndex(u)] {
				*out = append(*out, tm.LeafIndex(u).Node())
			}
		}
		return
	}
	l, _ := tm.Left(x)
	r, _ := tm.Right(x)
	t.resolve(l, exclude, out)
	t.resolve(r, exclude, out)
}

// pathStep is one node of a filtered direct path with its copath child.
type pathStep struct {
	node, copath tm.NodeIndex
}

// filteredPath is leaf l's filtered direct path: its ancestors whose child
// on l's copath has a non-empty resolution (RFC 9420 §4.1.2).
func (t *tree) filteredPath(l tm.LeafIndex) []pathStep {
	n := t.leafCount()
	var out []pathStep
	x := l.Node()
	for {
		p, ok := tm.Parent(x, n)
		if !ok {
			return out
		}
		s, _ := tm.Sibling(x, n)
		if t.hasResolution(s) {
			out = append(out, pathStep{node: p, copath: s})
		}
		x = p
	}
}

// hasResolution reports whether the subtree of x holds any non-blank node.
func (t *tree) hasResolution(x tm.NodeIndex) bool {
	if t.nodes[x] != nil {
		return true
	}
	if x.IsLeaf() {
		return false
	}
	l, _ := tm.Left(x)
	r, _ := tm.Right(x)
	return t.hasResolution(l) || t.hasResolution(r)
}

// treeHash is the tree hash of the subtree at x (RFC 9420 §7.8), cached.
func (t *tree) treeHash(x tm.NodeIndex) []byte {
	if h := t.hash[x]; h != nil {
		return h
	}
	h := t.computeHash(x, nil)
	t.hash[x] = h
	return h
}

func (t *tree) rootHash() []byte { return t.treeHash(tm.Root(t.leafCount())) }

// computeHash hashes the subtree at x. With removed non-empty, it is the
// "original" tree hash of RFC 9420 §7.9: the leaves in removed blanked and
// dropped from every unmerged_leaves list; cached hashes are used for
// subtrees removed does not touch.
func (t *tree) computeHash(x tm.NodeIndex, removed []uint32) []byte {
	w := codec.NewWriter(make([]byte, 0, 256))
	n := t.nodes[x]
	if x.IsLeaf() {
		l := uint32(x.Leaf())
		if slices.Contains(removed, l) {
			n = nil
		}
		w.Uint8(uint8(NodeTypeLeaf))
		w.Uint32(l)
		w.Optional(n != nil, func(w *codec.Writer) { n.Leaf.encode(w) })
	} else {
		left, _ := tm.Left(x)
		right, _ := tm.Right(x)
		w.Uint8(uint8(NodeTypeParent))
		w.Optional(n != nil, func(w *codec.Writer) {
			p := n.Parent
			if len(removed) > 0 {
				c := *p
				c.UnmergedLeaves = slices.DeleteFunc(slices.Clone(p.UnmergedLeaves), func(u uint32) bool { return slices.Contains(removed, u) })
				p = &c
			}
			p.encode(w)
		})
		w.Opaque(t.subtreeHash(left, removed))
		w.Opaque(t.subtreeHash(right, removed))
	}
	b, err := w.Bytes()
	if err != nil {
		// Nodes in a tree were decoded or built by this package and encode.
		panic("mls: encoding a tree hash input: " + err.Error())
	}
	return t.s.Hash(b)
}

// subtreeHash is the tree hash of x, original with respect to removed.
func (t *tree) subtreeHash(x tm.NodeIndex, removed []uint32) []byte {
	if len(removed) == 0 || !t.touches(x, removed) {
		return t.treeHash(x)
	}
	return t.computeHash(x, removed)
}

// touches reports whether any leaf in leaves is in the subtree of x.
func (t *tree) touches(x tm.NodeIndex, leaves []uint32) bool {
	lo, hi := subtreeLeaves(x)
	for _, l := range leaves {
		if l >= lo && l < hi {
			return true
		}
	}
	return false
}

// subtreeLeaves returns the range [lo, hi) of leaf indices under x.
func subtreeLeaves(x tm.NodeIndex) (lo, hi uint32) {
	k := tm.Level(x)
	lo = uint32(x>>(k+1)) << k
	return lo, lo + 1<<k
}

// parentHash is the parent hash of parent p with copath child sibling whose
// original tree hash is siblingHash (RFC 9420 §7.9).
func (t *tree) parentHash(p *ParentNode, siblingHash []byte) []byte {
	w := codec.NewWriter(make([]byte, 0, 200))
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.Opaque(siblingHash)
	b, err := w.Bytes()
	if err != nil {
		panic("mls: encoding a parent hash input: " + err.Error())
	}
	return t.s.Hash(b)
}

// nodeParentHash is the parent_hash field of node x: a parent's, or a leaf's
// with source commit; nil otherwise.
func (t *tree) nodeParentHash(x tm.NodeIndex) []byte {
	n := t.nodes[x]
	switch {
	case n == nil:
		return nil
	case n.Parent != nil:
		return n.Parent.ParentHash
	case n.Leaf.LeafNodeSource == LeafNodeSourceCommit:
		return n.Leaf.ParentHash
	}
	return nil
}

// verifyParentHashes checks that every non-blank parent node is parent-hash
// valid (RFC 9420 §7.9.2), top down: exactly one descendant D of each parent
// P carries P's parent hash, lies in the resolution of its child C, and P's
// unmerged leaves under C are C's resolution without D.
func (t *tree) verifyParentHashes() error {
	for i, n := range t.nodes {
		x := tm.NodeIndex(i)
		if n == nil || x.IsLeaf() {
			continue
		}
		p := n.Parent
		found := 0
		for _, pair := range [2][2]func(tm.NodeIndex) (tm.NodeIndex, bool){{tm.Left, tm.Right}, {tm.Right, tm.Left}} {
			c, _ := pair[0](x)
			s, _ := pair[1](x)
			ph := t.parentHash(p, t.subtreeHash(s, p.UnmergedLeaves))
			res := t.resolution(c, nil)
			var unmergedUnderC []tm.NodeIndex
			lo, hi := subtreeLeaves(c)
			for _, u := range p.UnmergedLeaves {
				if u >= lo && u < hi {
					unmergedUnderC = append(unmergedUnderC, tm.LeafIndex(u).Node())
				}
			}
			for j, d := range res {
				if !bytes.Equal(t.nodeParentHash(d), ph) {
					continue
				}
				rest := append(slices.Clone(res[:j]), res[j+1:]...)
				if slices.Equal(sortedNodes(rest), sortedNodes(unmergedUnderC)) {
					found++
				}
			}
		}
		if found != 1 {
			return invalidTree("parent node %d is not parent-hash valid (%d descendants match)", x, found)
		}
	}
	return nil
}

func sortedNodes(xs []tm.NodeIndex) []tm.NodeIndex {
	c := slices.Clone(xs)
	slices.Sort(c)
	return c
}

// validate checks a tree received when joining (RFC 9420 §12.4.3.1): the
// tree hash, parent hashes, every leaf (§7.3, as far as the group allows),
// unmerged leaves, and unique encryption and signature keys.
func (t *tree) validate(groupID []byte, treeHash []byte, required *RequiredCapabilities) error {
	if !bytes.Equal(t.rootHash(), treeHash) {
		return invalidTree("tree hash %x, the group context says %x", t.rootHash(), treeHash)
	}
	if err := t.verifyParentHashes(); err != nil {
		return err
	}
	encKeys := map[string]tm.NodeIndex{}
	sigKeys := map[string]tm.LeafIndex{}
	credTypes := map[CredentialType]bool{}
	for i := range t.leafCount() {
		if ln := t.leaf(tm.LeafIndex(i)); ln != nil {
			credTypes[ln.Credential.CredentialType] = true
		}
	}
	// Leaf signatures are the bulk of the work: check them in parallel.
	var leaves []tm.LeafIndex
	for i := range t.leafCount() {
		if t.leaf(tm.LeafIndex(i)) != nil {
			leaves = append(leaves, tm.LeafIndex(i))
		}
	}
	if err := parallel(len(leaves), func(k int) error {
		return t.validateLeaf(t.leaf(leaves[k]), groupID, leaves[k], required, credTypes)
	}); err != nil {
		return err
	}
	for i, n := range t.nodes {
		x := tm.NodeIndex(i)
		if n == nil {
			continue
		}
		var enc []byte
		if x.IsLeaf() {
			ln := n.Leaf
			enc = ln.EncryptionKey
			if prev, dup := sigKeys[string(ln.SignatureKey)]; dup {
				return invalidTree("leaves %d and %d share a signature key", prev, x.Leaf())
			}
			sigKeys[string(ln.SignatureKey)] = x.Leaf()
		} else {
			p := n.Parent
			enc = p.EncryptionKey
			lo, hi := subtreeLeaves(x)
			for k, u := range p.UnmergedLeaves {
				if k > 0 && p.UnmergedLeaves[k-1] >= u {
					return invalidTree("parent node %d: unmerged_leaves not sorted", x)
				}
				if u < lo || u >= hi || t.leaf(tm.LeafIndex(u)) == nil {
					return invalidTree("parent node %d: unmerged leaf %d is not a non-blank leaf below it", x, u)
				}
				for _, a := range tm.DirectPath(tm.LeafIndex(u).Node(), t.leafCount()) {
					if a == x {
						break
					}
					if ap := t.parent(a); ap != nil && !slices.Contains(ap.UnmergedLeaves, u) {
						return invalidTree("parent node %d lists unmerged leaf %d but node %d between them does not", x, u, a)
					}
				}
			}
		}
		if prev, dup := encKeys[string(enc)]; dup {
			return invalidTree("nodes %d and %d share an encryption key", prev, x)
		}
		encKeys[string(enc)] = x
	}
	return nil
}

// validateLeaf applies RFC 9420 §7.3 to a leaf found in a tree.
func (t *tree) validateLeaf(ln *LeafNode, groupID []byte, l tm.LeafIndex, required *RequiredCapabilities, credTypes map[CredentialType]bool) error {
	if err := t.s.CheckSignaturePublicKey(ln.SignatureKey); err != nil {
		return invalidTree("leaf %d: signature key: %v", l, err)
	}
	tbs, err := ln.TBS(groupID, uint32(l))
	if err != nil {
		return invalidTree("leaf %d: %v", l, err)
	}
	if err := t.s.VerifyWithLabel(ln.SignatureKey, labelLeafNode, tbs, ln.Signature); err != nil {
		return invalidTree("leaf %d: signature: %w", l, err)
	}
	return checkLeafCompat(ln, required, credTypes, fmt.Sprintf("leaf %d", l))
}

// checkLeafCompat checks a leaf against the group: required capabilities,
// credential types in use, extensions listed in capabilities.
func checkLeafCompat(ln *LeafNode, required *RequiredCapabilities, credTypes map[CredentialType]bool, what string) error {
	c := &ln.Capabilities
	if !slices.Contains(c.Credentials, ln.Credential.CredentialType) {
		return invalidTree("%s: capabilities do not list its credential type %v", what, ln.Credential.CredentialType)
	}
	for ct := range credTypes {
		if !slices.Contains(c.Credentials, ct) {
			return invalidTree("%s: capabilities do not list credential type %v used in the group", what, ct)
		}
	}
	for _, e := range ln.Extensions {
		if !isDefaultExtension(e.Type) && !slices.Contains(c.Extensions, e.Type) {
			return invalidTree("%s: extension %v not listed in its capabilities", what, e.Type)
		}
	}
	if required != nil {
		for _, e := range required.ExtensionTypes {
			if !isDefaultExtension(e) && !slices.Contains(c.Extensions, e) {
				return invalidTree("%s: does not support required extension %v", what, e)
			}
		}
		for _, p := range required.ProposalTypes {
			if !isDefaultProposal(p) && !slices.Contains(c.Proposals, p) {
				return invalidTree("%s: does not support required proposal %v", what, p)
			}
		}
		for _, ct := range required.CredentialTypes {
			if !slices.Contains(c.Credentials, ct) {
				return invalidTree("%s: does not support required credential %v", what, ct)
			}
		}
	}
	return nil
}
