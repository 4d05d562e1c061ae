package mls

import (
	"fmt"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// ParentNode is the content of a parent node of the ratchet tree (RFC 9420
// §7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []uint32
}

func (p *ParentNode) encode(w *codec.Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	encodeUint32List(w, p.UnmergedLeaves)
}

func (p *ParentNode) decode(r *codec.Reader) {
	r.Opaque("parent_node.encryption_key", &p.EncryptionKey)
	r.Opaque("parent_node.parent_hash", &p.ParentHash)
	decodeUint32List(r, "parent_node.unmerged_leaves", &p.UnmergedLeaves)
}

// MarshalMLS encodes the ParentNode.
func (p *ParentNode) MarshalMLS() ([]byte, error) { return marshal(p) }

// UnmarshalMLS decodes a ParentNode.
func (p *ParentNode) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "parent_node", p) }

// Node is a non-blank node of the ratchet tree (RFC 9420 §12.4.3.3): Leaf is
// set when NodeType is leaf, Parent when it is parent.
type Node struct {
	NodeType NodeType
	Leaf     *LeafNode
	Parent   *ParentNode
}

func (n *Node) encode(w *codec.Writer) {
	if !encodeEnum8(w, "node.node_type", n.NodeType) {
		return
	}
	switch n.NodeType {
	case NodeTypeLeaf:
		if n.Leaf == nil {
			encodeFail(w, "node.leaf_node", "missing for node type leaf")
			return
		}
		n.Leaf.encode(w)
	case NodeTypeParent:
		if n.Parent == nil {
			encodeFail(w, "node.parent_node", "missing for node type parent")
			return
		}
		n.Parent.encode(w)
	}
}

func (n *Node) decode(r *codec.Reader) {
	decodeEnum8(r, "node.node_type", &n.NodeType)
	switch n.NodeType {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.decode(r)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.decode(r)
	}
}

// MarshalMLS encodes the Node.
func (n *Node) MarshalMLS() ([]byte, error) { return marshal(n) }

// UnmarshalMLS decodes a Node.
func (n *Node) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "node", n) }

// RatchetTree is `optional<Node> ratchet_tree<V>`, the body of the
// ratchet_tree extension (RFC 9420 §12.4.3.3): the nodes in array order, nil
// for a blank node.
//
// Besides the grammar, decoding enforces the two rules about the list's shape
// that need no tree semantics: the last node must not be blank ("The receiver
// MUST check that the last node in ratchet_tree is non-blank"), and nodes at
// even indices must be leaves and at odd indices parents (array-based trees,
// RFC 9420 §20). Encoding refuses the same lists.
type RatchetTree []*Node

// checkShape returns the index of the first node in the wrong place, and why.
func (t RatchetTree) checkShape() (int, string) {
	if len(t) == 0 {
		return 0, "empty tree"
	}
	if t[len(t)-1] == nil {
		return len(t) - 1, "last node is blank"
	}
	for i, n := range t {
		if n == nil {
			continue
		}
		if want := NodeTypeLeaf + NodeType(i%2); n.NodeType != want {
			return i, fmt.Sprintf("node %d is a %v node, want %v", i, n.NodeType, want)
		}
	}
	return -1, ""
}

func (t *RatchetTree) encode(w *codec.Writer) {
	if i, why := t.checkShape(); i >= 0 {
		encodeFail(w, "ratchet_tree", "%s", why)
		return
	}
	w.Vector(func(w *codec.Writer) {
		for _, n := range *t {
			w.Optional(n != nil, func(w *codec.Writer) { n.encode(w) })
		}
	})
}

func (t *RatchetTree) decode(r *codec.Reader) {
	var tree RatchetTree
	r.Vector("ratchet_tree", func(v *codec.Reader) {
		for !v.Empty() {
			var n *Node
			v.Optional("node", func(r *codec.Reader) {
				n = new(Node)
				n.decode(r)
			})
			tree = append(tree, n)
		}
	})
	if r.Failed() {
		return
	}
	if i, why := tree.checkShape(); i >= 0 {
		r.Fail("ratchet_tree", "%s", why)
		return
	}
	*t = tree
}

// MarshalMLS encodes the tree as `optional<Node> ratchet_tree<V>`.
func (t RatchetTree) MarshalMLS() ([]byte, error) { return marshal(&t) }

// UnmarshalMLS decodes `optional<Node> ratchet_tree<V>`.
func (t *RatchetTree) UnmarshalMLS(b []byte) error { return unmarshalInto(b, "ratchet_tree", t) }
