package mls

import (
	"bytes"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

type treeKEMCase struct {
	CipherSuite             suiteNum `json:"cipher_suite"`
	GroupID                 tv.Hex   `json:"group_id"`
	Epoch                   uint64   `json:"epoch"`
	ConfirmedTranscriptHash tv.Hex   `json:"confirmed_transcript_hash"`
	RatchetTree             tv.Hex   `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32 `json:"index"`
		EncryptionPriv tv.Hex `json:"encryption_priv"`
		SignaturePriv  tv.Hex `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32 `json:"node"`
			PathSecret tv.Hex `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32   `json:"sender"`
		UpdatePath    tv.Hex   `json:"update_path"`
		PathSecrets   []tv.Hex `json:"path_secrets"`
		CommitSecret  tv.Hex   `json:"commit_secret"`
		TreeHashAfter tv.Hex   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// testVectorsTreeKEM follows FORMAT.md's "TreeKEM": private states consistent
// with the tree; every update path processed by every other member (path
// secret and commit secret), merged (tree hash after); and a new update
// path from each sender that every other member decrypts to the same commit
// secret.
func testVectorsTreeKEM(t *testing.T) {
	var cases []treeKEMCase
	tv.Load(t, "treekem", &cases)
	tv.ForEachCase(t, "treekem", len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
		c := &cases[i]
		checkTreeKEM(t, c)
	})
}

func checkTreeKEM(t *testing.T, c *treeKEMCase) {
	cs := CipherSuite(c.CipherSuite)
	base := decodeTree(t, cs, c.RatchetTree)
	context := func(treeHash []byte) ([]byte, error) {
		return (&GroupContext{Version: MLS10, CipherSuite: cs, GroupID: c.GroupID, Epoch: c.Epoch,
			TreeHash: treeHash, ConfirmedTranscriptHash: c.ConfirmedTranscriptHash}).MarshalMLS()
	}
	privs := map[tm.LeafIndex]*treePrivate{}
	signers := map[tm.LeafIndex]*Signer{}
	for _, lp := range c.LeavesPrivate {
		l := tm.LeafIndex(lp.Index)
		p := &treePrivate{leaf: l, keys: map[tm.NodeIndex][]byte{l.Node(): lp.EncryptionPriv}}
		if pub, err := base.s.HPKEPublicKey(lp.EncryptionPriv); err != nil || !bytes.Equal(pub, base.leaf(l).EncryptionKey) {
			t.Fatalf("leaf %d: encryption key does not match the tree (%v)", l, err)
		}
		for _, ps := range lp.PathSecrets {
			x := tm.NodeIndex(ps.Node)
			if base.nodes[x] == nil {
				t.Fatalf("leaf %d holds a secret for blank node %d", l, x)
			}
			nodePriv, nodePub, err := base.nodeKeys(ps.PathSecret)
			if err != nil || !bytes.Equal(nodePub, base.encryptionKey(x)) {
				t.Fatalf("leaf %d: path secret of node %d does not match the tree (%v)", l, x, err)
			}
			p.keys[x] = nodePriv
		}
		privs[l] = p
		s, err := NewSigner(cs, lp.SignaturePriv)
		if err != nil {
			t.Fatal(err)
		}
		signers[l] = s
	}

	for _, u := range c.UpdatePaths {
		sender := tm.LeafIndex(u.Sender)
		var up UpdatePath
		if err := up.UnmarshalMLS(u.UpdatePath); err != nil {
			t.Fatal(err)
		}
		tbs, _ := up.LeafNode.TBS(c.GroupID, u.Sender)
		if err := VerifyWithLabel(cs, up.LeafNode.SignatureKey, labelLeafNode, tbs, up.LeafNode.Signature); err != nil {
			t.Errorf("sender %d: leaf signature: %v", sender, err)
		}
		merged := base.clone()
		if _, err := merged.mergePath(sender, &up, nil, nil, context); err != nil {
			t.Fatalf("sender %d: merging: %v", sender, err)
		}
		if !bytes.Equal(merged.rootHash(), u.TreeHashAfter) {
			t.Errorf("sender %d: tree hash after = %x, want %x", sender, merged.rootHash(), u.TreeHashAfter)
		}
		for j, want := range u.PathSecrets {
			l := tm.LeafIndex(j)
			if l == sender || base.leaf(l) == nil {
				continue
			}
			res, err := base.clone().mergePath(sender, &up, privs[l], nil, context)
			if err != nil {
				t.Fatalf("sender %d, receiver %d: %v", sender, l, err)
			}
			if got := lowestSecret(res, merged, sender); !bytes.Equal(got, want) {
				t.Errorf("sender %d, receiver %d: path secret %x, want %x", sender, l, got, want)
			}
			if !bytes.Equal(res.commitSecret, u.CommitSecret) {
				t.Errorf("sender %d, receiver %d: commit secret %x, want %x", sender, l, res.commitSecret, u.CommitSecret)
			}
		}

		// A new update path from the same sender.
		fresh := base.clone()
		up2, mine, err := fresh.createPath(privs[sender], *base.leaf(sender), signers[sender], c.GroupID, nil, context)
		if err != nil {
			t.Fatalf("sender %d: creating a path: %v", sender, err)
		}
		for l, p := range privs {
			if l == sender {
				continue
			}
			res, err := base.clone().mergePath(sender, up2, p, nil, context)
			if err != nil {
				t.Fatalf("sender %d, receiver %d, new path: %v", sender, l, err)
			}
			if !bytes.Equal(res.commitSecret, mine.commitSecret) {
				t.Errorf("sender %d, receiver %d: new path commit secret differs", sender, l)
			}
		}
	}
}

// lowestSecret returns the path secret a receiver decrypted: the one of the
// lowest node of the sender's filtered path it learnt.
func lowestSecret(res *pathResult, merged *tree, sender tm.LeafIndex) []byte {
	for _, step := range merged.filteredPath(sender) {
		if s, ok := res.pathSecrets[step.node]; ok {
			return s
		}
	}
	return nil
}
