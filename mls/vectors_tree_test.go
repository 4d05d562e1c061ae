package mls

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// suiteNum reads a cipher suite that some vector files write as a string.
type suiteNum uint16

func (s *suiteNum) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseUint(string(bytes.Trim(b, `"`)), 10, 16)
	*s = suiteNum(v)
	return err
}

func decodeTree(t *testing.T, cs CipherSuite, b []byte) *tree {
	t.Helper()
	var rt RatchetTree
	if err := rt.UnmarshalMLS(b); err != nil {
		t.Fatal(err)
	}
	tr, err := newTree(cs, rt)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// testVectorsTreeValidation follows FORMAT.md's "Tree Validation":
// resolutions, tree hashes, parent hashes and leaf signatures.
func testVectorsTreeValidation(t *testing.T) {
	var cases []struct {
		CipherSuite suiteNum   `json:"cipher_suite"`
		Tree        tv.Hex     `json:"tree"`
		GroupID     tv.Hex     `json:"group_id"`
		Resolutions [][]uint32 `json:"resolutions"`
		TreeHashes  []tv.Hex   `json:"tree_hashes"`
	}
	tv.Load(t, "tree-validation", &cases)
	tv.ForEachCase(t, "tree-validation", len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
		c := &cases[i]
		cs := CipherSuite(c.CipherSuite)
		tr := decodeTree(t, cs, c.Tree)
		if len(c.Resolutions) != len(tr.nodes) {
			t.Fatalf("%d resolutions for %d nodes", len(c.Resolutions), len(tr.nodes))
		}
		for x := range tr.nodes {
			got := tr.resolution(tm.NodeIndex(x), nil)
			want := make([]tm.NodeIndex, len(c.Resolutions[x]))
			for k, r := range c.Resolutions[x] {
				want[k] = tm.NodeIndex(r)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("resolution(%d) = %v, want %v", x, got, want)
			}
			if h := tr.treeHash(tm.NodeIndex(x)); !bytes.Equal(h, c.TreeHashes[x]) {
				t.Errorf("tree hash of node %d = %x, want %x", x, h, c.TreeHashes[x])
			}
		}
		if err := tr.validate(c.GroupID, tr.rootHash(), nil); err != nil {
			t.Errorf("validate: %v", err)
		}
	})
}

// testVectorsTreeOperations follows FORMAT.md's "Tree Operations".
func testVectorsTreeOperations(t *testing.T) {
	var cases []struct {
		CipherSuite    suiteNum `json:"cipher_suite"`
		TreeBefore     tv.Hex   `json:"tree_before"`
		Proposal       tv.Hex   `json:"proposal"`
		ProposalSender suiteNum `json:"proposal_sender"`
		TreeHashBefore tv.Hex   `json:"tree_hash_before"`
		TreeAfter      tv.Hex   `json:"tree_after"`
		TreeHashAfter  tv.Hex   `json:"tree_hash_after"`
	}
	tv.Load(t, "tree-operations", &cases)
	tv.ForEachCase(t, "tree-operations", len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
		c := &cases[i]
		cs := CipherSuite(c.CipherSuite)
		tr := decodeTree(t, cs, c.TreeBefore)
		if h := tr.rootHash(); !bytes.Equal(h, c.TreeHashBefore) {
			t.Fatalf("tree hash before = %x, want %x", h, c.TreeHashBefore)
		}
		var p Proposal
		if err := p.UnmarshalMLS(c.Proposal); err != nil {
			t.Fatal(err)
		}
		switch p.ProposalType {
		case ProposalTypeAdd:
			tr.addLeaf(&p.Add.KeyPackage.LeafNode)
		case ProposalTypeRemove:
			tr.removeLeaf(tm.LeafIndex(p.Remove.Removed))
		case ProposalTypeUpdate:
			l := tm.LeafIndex(c.ProposalSender)
			tr.setLeaf(l, &p.Update.LeafNode)
			tr.blankPath(l)
		default:
			t.Fatalf("proposal type %v", p.ProposalType)
		}
		after, err := tr.export().MarshalMLS()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(after, c.TreeAfter) {
			t.Errorf("tree after %v:\n got %x\nwant %x", p.ProposalType, after, c.TreeAfter)
		}
		if h := tr.rootHash(); !bytes.Equal(h, c.TreeHashAfter) {
			t.Errorf("tree hash after = %x, want %x", h, c.TreeHashAfter)
		}
	})
}
