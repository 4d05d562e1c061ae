package mls

import (
	"fmt"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// wireVectorItem is a serialised structure found in a vector file.
type wireVectorItem struct {
	where string
	data  []byte
	value wireValue
}

// wireVectorItems returns the serialised structures of every vector file but
// messages.json (which testVectorsMessages covers), with the type to decode
// each with.
func wireVectorItems(t testing.TB) []wireVectorItem {
	var items []wireVectorItem
	add := func(where string, data []byte, v wireValue) {
		if data != nil {
			items = append(items, wireVectorItem{where, data, v})
		}
	}
	msg := func() wireValue { return new(MLSMessage) }
	tree := func() wireValue { return new(RatchetTree) }

	var welcome []struct {
		KeyPackage testvectors.Hex `json:"key_package"`
		Welcome    testvectors.Hex `json:"welcome"`
	}
	testvectors.Load(t, "welcome", &welcome)
	for i, v := range welcome {
		add(fmt.Sprintf("welcome[%d].key_package", i), v.KeyPackage, msg())
		add(fmt.Sprintf("welcome[%d].welcome", i), v.Welcome, msg())
	}

	var protection []struct {
		Proposal        testvectors.Hex `json:"proposal"`
		ProposalPub     testvectors.Hex `json:"proposal_pub"`
		ProposalPriv    testvectors.Hex `json:"proposal_priv"`
		Commit          testvectors.Hex `json:"commit"`
		CommitPub       testvectors.Hex `json:"commit_pub"`
		CommitPriv      testvectors.Hex `json:"commit_priv"`
		ApplicationPriv testvectors.Hex `json:"application_priv"`
	}
	testvectors.Load(t, "message-protection", &protection)
	for i, v := range protection {
		p := fmt.Sprintf("message-protection[%d].", i)
		add(p+"proposal", v.Proposal, new(Proposal))
		add(p+"proposal_pub", v.ProposalPub, msg())
		add(p+"proposal_priv", v.ProposalPriv, msg())
		add(p+"commit", v.Commit, new(Commit))
		add(p+"commit_pub", v.CommitPub, msg())
		add(p+"commit_priv", v.CommitPriv, msg())
		add(p+"application_priv", v.ApplicationPriv, msg())
	}

	for _, file := range []string{"passive-client-welcome", "passive-client-handling-commit"} {
		var passive []struct {
			KeyPackage  testvectors.Hex `json:"key_package"`
			Welcome     testvectors.Hex `json:"welcome"`
			RatchetTree testvectors.Hex `json:"ratchet_tree"`
			Epochs      []struct {
				Proposals []testvectors.Hex `json:"proposals"`
				Commit    testvectors.Hex   `json:"commit"`
			} `json:"epochs"`
		}
		testvectors.Load(t, file, &passive)
		for i, v := range passive {
			p := fmt.Sprintf("%s[%d].", file, i)
			add(p+"key_package", v.KeyPackage, msg())
			add(p+"welcome", v.Welcome, msg())
			add(p+"ratchet_tree", v.RatchetTree, tree())
			for j, e := range v.Epochs {
				for k, prop := range e.Proposals {
					add(fmt.Sprintf("%sepochs[%d].proposals[%d]", p, j, k), prop, msg())
				}
				add(fmt.Sprintf("%sepochs[%d].commit", p, j), e.Commit, msg())
			}
		}
	}

	var validation []struct {
		Tree testvectors.Hex `json:"tree"`
	}
	testvectors.Load(t, "tree-validation", &validation)
	for i, v := range validation {
		add(fmt.Sprintf("tree-validation[%d].tree", i), v.Tree, tree())
	}

	var treekem []struct {
		RatchetTree testvectors.Hex `json:"ratchet_tree"`
		UpdatePaths []struct {
			UpdatePath testvectors.Hex `json:"update_path"`
		} `json:"update_paths"`
	}
	testvectors.Load(t, "treekem", &treekem)
	for i, v := range treekem {
		add(fmt.Sprintf("treekem[%d].ratchet_tree", i), v.RatchetTree, tree())
		for j, u := range v.UpdatePaths {
			add(fmt.Sprintf("treekem[%d].update_paths[%d].update_path", i, j), u.UpdatePath, new(UpdatePath))
		}
	}

	var operations []struct {
		TreeBefore testvectors.Hex `json:"tree_before"`
		TreeAfter  testvectors.Hex `json:"tree_after"`
		Proposal   testvectors.Hex `json:"proposal"`
	}
	testvectors.Load(t, "tree-operations", &operations)
	for i, v := range operations {
		add(fmt.Sprintf("tree-operations[%d].tree_before", i), v.TreeBefore, tree())
		add(fmt.Sprintf("tree-operations[%d].tree_after", i), v.TreeAfter, tree())
		add(fmt.Sprintf("tree-operations[%d].proposal", i), v.Proposal, new(Proposal))
	}

	var transcript []struct {
		AuthenticatedContent testvectors.Hex `json:"authenticated_content"`
	}
	testvectors.Load(t, "transcript-hashes", &transcript)
	for i, v := range transcript {
		add(fmt.Sprintf("transcript-hashes[%d].authenticated_content", i), v.AuthenticatedContent, new(AuthenticatedContent))
	}

	var schedule []struct {
		Epochs []struct {
			GroupContext testvectors.Hex `json:"group_context"`
		} `json:"epochs"`
	}
	testvectors.Load(t, "key-schedule", &schedule)
	for i, v := range schedule {
		for j, e := range v.Epochs {
			add(fmt.Sprintf("key-schedule[%d].epochs[%d].group_context", i, j), e.GroupContext, new(GroupContext))
		}
	}
	return items
}

// TestRoundTripAllVectorFiles decodes every serialised structure of the
// vector files other than messages.json and checks that it re-encodes to the
// same bytes.
func TestRoundTripAllVectorFiles(t *testing.T) {
	items := wireVectorItems(t)
	structures := 0
	for _, it := range items {
		n, err := wireRoundTrip(it.data, it.value)
		if err != nil {
			t.Errorf("%s: %v", it.where, err)
			continue
		}
		structures += n
	}
	if len(items) < 1000 {
		t.Errorf("only %d structures found in the vector files", len(items))
	}
	t.Logf("%d serialised values in the vector files, %d structures decoded and re-encoded", len(items), structures)
}
