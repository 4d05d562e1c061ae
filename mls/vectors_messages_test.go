package mls

import (
	"fmt"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// messagesVector is one entry of messages.json.
type messagesVector struct {
	MLSWelcome                     testvectors.Hex `json:"mls_welcome"`
	MLSGroupInfo                   testvectors.Hex `json:"mls_group_info"`
	MLSKeyPackage                  testvectors.Hex `json:"mls_key_package"`
	RatchetTree                    testvectors.Hex `json:"ratchet_tree"`
	GroupSecrets                   testvectors.Hex `json:"group_secrets"`
	AddProposal                    testvectors.Hex `json:"add_proposal"`
	UpdateProposal                 testvectors.Hex `json:"update_proposal"`
	RemoveProposal                 testvectors.Hex `json:"remove_proposal"`
	PreSharedKeyProposal           testvectors.Hex `json:"pre_shared_key_proposal"`
	ReInitProposal                 testvectors.Hex `json:"re_init_proposal"`
	ExternalInitProposal           testvectors.Hex `json:"external_init_proposal"`
	GroupContextExtensionsProposal testvectors.Hex `json:"group_context_extensions_proposal"`
	Commit                         testvectors.Hex `json:"commit"`
	PublicMessageApplication       testvectors.Hex `json:"public_message_application"`
	PublicMessageProposal          testvectors.Hex `json:"public_message_proposal"`
	PublicMessageCommit            testvectors.Hex `json:"public_message_commit"`
	PrivateMessage                 testvectors.Hex `json:"private_message"`
}

// wireField is one serialised structure of a vector and the type to decode it
// with.
type wireField struct {
	name string
	data []byte
	// value is a fresh value of the structure's type.
	value func() wireValue
	// check, if set, checks the decoded value (for example the wire format
	// of an MLSMessage).
	check func(v wireValue) error
}

// fields lists the structures of a messages.json entry.
func (v *messagesVector) fields() []wireField {
	return []wireField{
		{"mls_welcome", v.MLSWelcome, wireNewMLSMessage, wireWantFormat(WireFormatWelcome, 0)},
		{"mls_group_info", v.MLSGroupInfo, wireNewMLSMessage, wireWantFormat(WireFormatGroupInfo, 0)},
		{"mls_key_package", v.MLSKeyPackage, wireNewMLSMessage, wireWantFormat(WireFormatKeyPackage, 0)},
		{"ratchet_tree", v.RatchetTree, func() wireValue { return new(RatchetTree) }, nil},
		{"group_secrets", v.GroupSecrets, func() wireValue { return new(GroupSecrets) }, nil},
		{"add_proposal", v.AddProposal, func() wireValue { return new(Add) }, nil},
		{"update_proposal", v.UpdateProposal, func() wireValue { return new(Update) }, nil},
		{"remove_proposal", v.RemoveProposal, func() wireValue { return new(Remove) }, nil},
		{"pre_shared_key_proposal", v.PreSharedKeyProposal, func() wireValue { return new(PreSharedKey) }, nil},
		{"re_init_proposal", v.ReInitProposal, func() wireValue { return new(ReInit) }, nil},
		{"external_init_proposal", v.ExternalInitProposal, func() wireValue { return new(ExternalInit) }, nil},
		{"group_context_extensions_proposal", v.GroupContextExtensionsProposal, func() wireValue { return new(GroupContextExtensions) }, nil},
		{"commit", v.Commit, func() wireValue { return new(Commit) }, nil},
		{"public_message_application", v.PublicMessageApplication, wireNewMLSMessage, wireWantFormat(WireFormatPublicMessage, ContentTypeApplication)},
		{"public_message_proposal", v.PublicMessageProposal, wireNewMLSMessage, wireWantFormat(WireFormatPublicMessage, ContentTypeProposal)},
		{"public_message_commit", v.PublicMessageCommit, wireNewMLSMessage, wireWantFormat(WireFormatPublicMessage, ContentTypeCommit)},
		{"private_message", v.PrivateMessage, wireNewMLSMessage, wireWantFormat(WireFormatPrivateMessage, 0)},
	}
}

func wireNewMLSMessage() wireValue { return new(MLSMessage) }

// wireWantFormat checks an MLSMessage's wire format and, when ct is not zero,
// the content type of its PublicMessage.
func wireWantFormat(wf WireFormat, ct ContentType) func(wireValue) error {
	return func(v wireValue) error {
		m := v.(*MLSMessage)
		if m.WireFormat != wf {
			return fmt.Errorf("wire format %v, want %v", m.WireFormat, wf)
		}
		if ct != 0 && m.PublicMessage.Content.ContentType != ct {
			return fmt.Errorf("content type %v, want %v", m.PublicMessage.Content.ContentType, ct)
		}
		return nil
	}
}

// testVectorsMessages decodes every structure of messages.json with its type,
// checks that it re-encodes to the same bytes, and checks the extension
// bodies of known types found inside.
func testVectorsMessages(t *testing.T) {
	var vectors []messagesVector
	testvectors.Load(t, "messages", &vectors)
	if len(vectors) == 0 {
		t.Fatal("messages.json: no cases")
	}
	structures := 0
	for i := range vectors {
		for _, f := range vectors[i].fields() {
			if f.data == nil {
				t.Errorf("case %d: %s: missing", i, f.name)
				continue
			}
			v := f.value()
			n, err := wireRoundTrip(f.data, v)
			if err == nil && f.check != nil {
				err = f.check(v)
			}
			if err != nil {
				t.Errorf("case %d: %s: %v", i, f.name, err)
				continue
			}
			structures += n
		}
	}
	t.Logf("messages: %d cases ran (suite-independent), %d structures decoded and re-encoded", len(vectors), structures)
}
