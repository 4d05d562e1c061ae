package mls

// TestWireSignatureVectors checks the to-be-signed encoders against real
// signatures from other implementations: a wrong byte in LeafNode.TBS or
// KeyPackage.TBS makes a signature fail.

import (
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// TestWireSignatureVectors checks LeafNode.TBS with the trees of
// tree-validation.json and KeyPackage.TBS and LeafNode.TBS with the key
// packages of welcome.json and the passive-client files, by verifying their
// signatures.
func TestWireSignatureVectors(t *testing.T) {
	checked, skipped := 0, 0
	verify := func(where string, cs uint16, pub []byte, label string, tbs []byte, err error, sig []byte) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if !CipherSuite(cs).Supported() {
			skipped++
			return
		}
		checked++
		if err := VerifyWithLabel(CipherSuite(cs), pub, label, tbs, sig); err != nil {
			t.Errorf("%s (suite %d): %s signature: %v", where, cs, label, err)
		}
	}

	var trees []struct {
		CipherSuite uint16          `json:"cipher_suite"`
		Tree        testvectors.Hex `json:"tree"`
		GroupID     testvectors.Hex `json:"group_id"`
	}
	testvectors.Load(t, "tree-validation", &trees)
	for i, v := range trees {
		var tree RatchetTree
		if err := tree.UnmarshalMLS(v.Tree); err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
		for j, n := range tree {
			if n == nil || n.Leaf == nil {
				continue
			}
			tbs, err := n.Leaf.TBS(v.GroupID, uint32(j/2))
			verify("tree-validation leaf", v.CipherSuite, n.Leaf.SignatureKey, "LeafNodeTBS", tbs, err, n.Leaf.Signature)
		}
	}

	var kps []struct {
		CipherSuite uint16          `json:"cipher_suite"`
		KeyPackage  testvectors.Hex `json:"key_package"`
	}
	for _, file := range []string{"welcome", "passive-client-welcome", "passive-client-handling-commit"} {
		testvectors.Load(t, file, &kps)
		for i, v := range kps {
			var m MLSMessage
			if err := m.UnmarshalMLS(v.KeyPackage); err != nil {
				t.Fatalf("%s %d: %v", file, i, err)
			}
			kp := m.KeyPackage
			tbs, err := kp.TBS()
			verify(file+" key package", v.CipherSuite, kp.LeafNode.SignatureKey, "KeyPackageTBS", tbs, err, kp.Signature)
			tbs, err = kp.LeafNode.TBS(nil, 0)
			verify(file+" key package leaf", v.CipherSuite, kp.LeafNode.SignatureKey, "LeafNodeTBS", tbs, err, kp.LeafNode.Signature)
		}
	}
	t.Logf("%d signatures verified, %d not checked (suite not supported: Ed448)", checked, skipped)
	if checked == 0 {
		t.Error("no signature checked")
	}
}
