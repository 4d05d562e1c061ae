// Package treemath is the index arithmetic of MLS's array-based ratchet tree
// (RFC 9420 §4.2 and Appendix C): leaves at even node indices, parents at odd
// ones, and trees whose leaf count is a power of two.
package treemath

// NodeIndex is a position in the array representation of the tree.
type NodeIndex uint32

// LeafIndex is the position of a leaf among the leaves.
type LeafIndex uint32

// Node returns the node index of leaf l.
func (l LeafIndex) Node() NodeIndex { return NodeIndex(2 * l) }

// IsLeaf reports whether x is a leaf position.
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// Leaf returns the leaf index of the leaf node x.
func (x NodeIndex) Leaf() LeafIndex { return LeafIndex(x >> 1) }

// log2 is the exponent of the largest power of two not above x (0 for 0).
func log2(x uint32) uint32 {
	if x == 0 {
		return 0
	}
	k := uint32(0)
	for x>>k > 0 {
		k++
	}
	return k - 1
}

// Level is the height of x: 0 for leaves, 1 for their parents, and so on.
func Level(x NodeIndex) uint32 {
	k := uint32(0)
	for (x>>k)&1 == 1 {
		k++
	}
	return k
}

// Width is the number of nodes in a tree with n leaves.
func Width(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// Root is the root of a tree with n leaves.
func Root(n uint32) NodeIndex {
	return NodeIndex(1<<log2(Width(n)) - 1)
}

// Left is the left child of the parent node x. ok is false for a leaf.
func Left(x NodeIndex) (NodeIndex, bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ (1 << (k - 1)), true
}

// Right is the right child of the parent node x. ok is false for a leaf.
func Right(x NodeIndex) (NodeIndex, bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ (3 << (k - 1)), true
}

// Parent is the parent of x in a tree with n leaves; ok is false for the root.
func Parent(x NodeIndex, n uint32) (NodeIndex, bool) {
	if x == Root(n) {
		return 0, false
	}
	k := Level(x)
	b := (x >> (k + 1)) & 1
	return (x | 1<<k) ^ (b << (k + 1)), true
}

// Sibling is the other child of x's parent; ok is false for the root.
func Sibling(x NodeIndex, n uint32) (NodeIndex, bool) {
	p, ok := Parent(x, n)
	if !ok {
		return 0, false
	}
	if x < p {
		r, _ := Right(p)
		return r, true
	}
	l, _ := Left(p)
	return l, true
}

// DirectPath lists x's ancestors from its parent up to the root.
func DirectPath(x NodeIndex, n uint32) []NodeIndex {
	var d []NodeIndex
	for {
		p, ok := Parent(x, n)
		if !ok {
			return d
		}
		d = append(d, p)
		x = p
	}
}

// Copath lists the siblings of x and of its ancestors below the root, from
// the leaf up.
func Copath(x NodeIndex, n uint32) []NodeIndex {
	var c []NodeIndex
	for {
		s, ok := Sibling(x, n)
		if !ok {
			return c
		}
		c = append(c, s)
		x, _ = Parent(x, n)
	}
}

// CommonAncestor is the lowest node whose subtree holds both x and y.
func CommonAncestor(x, y NodeIndex) NodeIndex {
	lx, ly := Level(x)+1, Level(y)+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	k := uint32(0)
	for x != y {
		x, y = x>>1, y>>1
		k++
	}
	return x<<k + 1<<(k-1) - 1
}
