package treemath

import (
	"fmt"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

func TestVectors(t *testing.T) {
	t.Run("tree-math", func(t *testing.T) {
		var cases []struct {
			NLeaves uint32    `json:"n_leaves"`
			NNodes  uint32    `json:"n_nodes"`
			Root    uint32    `json:"root"`
			Left    []*uint32 `json:"left"`
			Right   []*uint32 `json:"right"`
			Parent  []*uint32 `json:"parent"`
			Sibling []*uint32 `json:"sibling"`
		}
		tv.Load(t, "tree-math", &cases)
		for _, c := range cases {
			n := c.NLeaves
			if got := Width(n); got != c.NNodes {
				t.Errorf("Width(%d) = %d, want %d", n, got, c.NNodes)
			}
			if got := Root(n); uint32(got) != c.Root {
				t.Errorf("Root(%d) = %d, want %d", n, got, c.Root)
			}
			for i := range c.NNodes {
				x := NodeIndex(i)
				check := func(what string, got NodeIndex, ok bool, want *uint32) {
					switch {
					case want == nil && ok:
						t.Errorf("n=%d %s(%d) = %d, want none", n, what, i, got)
					case want != nil && (!ok || uint32(got) != *want):
						t.Errorf("n=%d %s(%d) = %d,%v, want %d", n, what, i, got, ok, *want)
					}
				}
				l, ok := Left(x)
				check("left", l, ok, c.Left[i])
				r, ok := Right(x)
				check("right", r, ok, c.Right[i])
				p, ok := Parent(x, n)
				check("parent", p, ok, c.Parent[i])
				s, ok := Sibling(x, n)
				check("sibling", s, ok, c.Sibling[i])
			}
		}
		t.Logf("tree-math: %d cases ran (suite-independent)", len(cases))
	})
}

func TestPathsAndAncestors(t *testing.T) {
	const n = 8
	if got := fmt.Sprint(DirectPath(LeafIndex(2).Node(), n)); got != "[5 3 7]" {
		t.Errorf("DirectPath(leaf 2) = %s", got)
	}
	if got := fmt.Sprint(Copath(LeafIndex(2).Node(), n)); got != "[6 1 11]" {
		t.Errorf("Copath(leaf 2) = %s", got)
	}
	if len(DirectPath(Root(n), n)) != 0 || len(Copath(Root(n), n)) != 0 {
		t.Error("the root has a path")
	}
	// The direct definition against the semantic one: the lowest common
	// member of both paths.
	for x := NodeIndex(0); x < NodeIndex(Width(n)); x++ {
		for y := NodeIndex(0); y < NodeIndex(Width(n)); y++ {
			want := semanticAncestor(x, y, n)
			if got := CommonAncestor(x, y); got != want {
				t.Fatalf("CommonAncestor(%d, %d) = %d, want %d", x, y, got, want)
			}
		}
	}
}

func semanticAncestor(x, y NodeIndex, n uint32) NodeIndex {
	in := map[NodeIndex]bool{x: true}
	for _, p := range DirectPath(x, n) {
		in[p] = true
	}
	for _, c := range append([]NodeIndex{y}, DirectPath(y, n)...) {
		if in[c] {
			return c
		}
	}
	panic("no common ancestor")
}
