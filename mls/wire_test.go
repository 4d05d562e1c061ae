package mls

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// Fixtures: small valid structures built with the encoder. The byte offsets
// the mutation tests use depend on the lengths chosen here (all below 64, so
// every length prefix is one byte).

var (
	wireTestGroupID = []byte("group")
	wireTestAD      = []byte("ad")
)

func wireTestLeafNode(src LeafNodeSource) *LeafNode {
	ln := &LeafNode{
		EncryptionKey: bytes.Repeat([]byte{0xe1}, 32),
		SignatureKey:  bytes.Repeat([]byte{0x51}, 32),
		Credential:    Credential{CredentialType: CredentialTypeBasic, Identity: []byte("alice")},
		Capabilities: Capabilities{
			Versions:     []ProtocolVersion{MLS10, 0x0A0A},
			CipherSuites: []CipherSuite{1, 0x1A1A},
			Extensions:   []ExtensionType{ExtensionTypeLastResort, 0x2A2A},
			Proposals:    []ProposalType{0x3A3A},
			Credentials:  []CredentialType{CredentialTypeBasic, CredentialTypeX509, 0x4A4A},
		},
		LeafNodeSource: src,
		Extensions: Extensions{
			{Type: ExtensionTypeApplicationID, Data: []byte{3, 'a', 'p', 'p'}},
			{Type: 0x2A2A, Data: []byte("grease")},
		},
		Signature: bytes.Repeat([]byte{0x5e}, 16),
	}
	switch src {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime = &Lifetime{NotBefore: 1, NotAfter: 1 << 40}
	case LeafNodeSourceCommit:
		ln.ParentHash = bytes.Repeat([]byte{0x9a}, 32)
	}
	return ln
}

func wireTestKeyPackage() *KeyPackage {
	return &KeyPackage{
		Version:     MLS10,
		CipherSuite: 1,
		InitKey:     bytes.Repeat([]byte{0x11}, 32),
		LeafNode:    *wireTestLeafNode(LeafNodeSourceKeyPackage),
		Extensions:  Extensions{{Type: ExtensionTypeLastResort, Data: []byte{}}},
		Signature:   bytes.Repeat([]byte{0x5f}, 16),
	}
}

func wireTestGroupContext() *GroupContext {
	return &GroupContext{
		Version:                 MLS10,
		CipherSuite:             1,
		GroupID:                 wireTestGroupID,
		Epoch:                   7,
		TreeHash:                bytes.Repeat([]byte{0x7e}, 32),
		ConfirmedTranscriptHash: bytes.Repeat([]byte{0xc7}, 32),
		Extensions: Extensions{
			{Type: ExtensionTypeRequiredCapabilities, Data: []byte{0, 0, 2, 0, 1}},
		},
	}
}

// wireTestProposals returns one proposal of each type.
func wireTestProposals() []*Proposal {
	nonce := bytes.Repeat([]byte{0x0e}, 32)
	return []*Proposal{
		{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *wireTestKeyPackage()}},
		{ProposalType: ProposalTypeUpdate, Update: &Update{LeafNode: *wireTestLeafNode(LeafNodeSourceUpdate)}},
		{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: 3}},
		{ProposalType: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: []byte("psk"), PSKNonce: nonce}}},
		{ProposalType: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageBranch, PSKGroupID: []byte("old"), PSKEpoch: 9, PSKNonce: nonce}}},
		{ProposalType: ProposalTypeReInit, ReInit: &ReInit{GroupID: []byte("new"), Version: MLS10, CipherSuite: 3, Extensions: Extensions{{Type: 0xF000, Data: []byte{1}}}}},
		{ProposalType: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: bytes.Repeat([]byte{0x4b}, 32)}},
		{ProposalType: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: wireTestGroupContext().Extensions}},
	}
}

func wireTestCommit(withPath bool) *Commit {
	c := &Commit{Proposals: []ProposalOrRef{
		{Type: ProposalOrRefTypeReference, Reference: bytes.Repeat([]byte{0x4e}, 32)},
		{Type: ProposalOrRefTypeProposal, Proposal: wireTestProposals()[2]},
	}}
	if withPath {
		c.Path = &UpdatePath{
			LeafNode: *wireTestLeafNode(LeafNodeSourceCommit),
			Nodes: []UpdatePathNode{
				{EncryptionKey: bytes.Repeat([]byte{0xe2}, 32), EncryptedPathSecret: []HPKECiphertext{{KEMOutput: []byte("kem"), Ciphertext: []byte("ct")}}},
				{EncryptionKey: bytes.Repeat([]byte{0xe3}, 32)},
			},
		}
	}
	return c
}

func wireTestContent(st SenderType, ct ContentType) FramedContent {
	c := FramedContent{
		GroupID:           wireTestGroupID,
		Epoch:             7,
		Sender:            Sender{SenderType: st},
		AuthenticatedData: wireTestAD,
		ContentType:       ct,
	}
	switch st {
	case SenderTypeMember:
		c.Sender.LeafIndex = 1
	case SenderTypeExternal:
		c.Sender.SenderIndex = 2
	}
	switch ct {
	case ContentTypeApplication:
		c.Application = []byte("hello")
	case ContentTypeProposal:
		c.Proposal = wireTestProposals()[0]
	case ContentTypeCommit:
		c.Commit = wireTestCommit(true)
	}
	return c
}

func wireTestPublic(st SenderType, ct ContentType) *MLSMessage {
	pm := &PublicMessage{Content: wireTestContent(st, ct), Auth: FramedContentAuthData{Signature: []byte("sig")}}
	if ct == ContentTypeCommit {
		pm.Auth.ConfirmationTag = []byte("tag")
	}
	if st == SenderTypeMember {
		pm.MembershipTag = []byte("mtag")
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}
}

func wireTestPrivate(ct ContentType, size int) *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: &PrivateMessage{
		GroupID:             wireTestGroupID,
		Epoch:               7,
		ContentType:         ct,
		AuthenticatedData:   wireTestAD,
		EncryptedSenderData: bytes.Repeat([]byte{0xed}, 28),
		Ciphertext:          bytes.Repeat([]byte{0xc1}, size),
	}}
}

func wireTestWelcome() *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: &Welcome{
		CipherSuite: 1,
		Secrets: []EncryptedGroupSecrets{{
			NewMember:             bytes.Repeat([]byte{0x4e}, 32),
			EncryptedGroupSecrets: HPKECiphertext{KEMOutput: []byte("kem"), Ciphertext: []byte("ct")},
		}},
		EncryptedGroupInfo: []byte("egi"),
	}}
}

func wireTestGroupInfo() *MLSMessage {
	tree := RatchetTree{{NodeType: NodeTypeLeaf, Leaf: wireTestLeafNode(LeafNodeSourceCommit)}, {NodeType: NodeTypeParent, Parent: &ParentNode{EncryptionKey: []byte("pk"), UnmergedLeaves: []uint32{1}}}, nil, nil, {NodeType: NodeTypeLeaf, Leaf: wireTestLeafNode(LeafNodeSourceKeyPackage)}}
	treeBytes, err := tree.MarshalMLS()
	if err != nil {
		panic(err)
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: &GroupInfo{
		GroupContext:    *wireTestGroupContext(),
		Extensions:      Extensions{{Type: ExtensionTypeRatchetTree, Data: treeBytes}, {Type: ExtensionTypeExternalPub, Data: []byte{2, 0xaa, 0xbb}}},
		ConfirmationTag: []byte("tag"),
		Signer:          4,
		Signature:       []byte("sig"),
	}}
}

func wireTestKeyPackageMessage() *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: wireTestKeyPackage()}
}

// wireTestCase is an encoded valid structure and the type to decode it as.
type wireTestCase struct {
	name  string
	data  []byte
	value func() wireValue
}

func wireMustMarshal(t testing.TB, v interface{ MarshalMLS() ([]byte, error) }) []byte {
	t.Helper()
	b, err := v.MarshalMLS()
	if err != nil {
		t.Fatalf("encoding fixture: %v", err)
	}
	return b
}

// wireTestMessages returns a valid MLSMessage of every wire format, content
// type and sender type.
func wireTestMessages(t testing.TB) []wireTestCase {
	var cases []wireTestCase
	add := func(name string, m *MLSMessage) {
		cases = append(cases, wireTestCase{name, wireMustMarshal(t, m), wireNewMLSMessage})
	}
	for _, ct := range []ContentType{ContentTypeApplication, ContentTypeProposal, ContentTypeCommit} {
		add("public/member/"+ct.String(), wireTestPublic(SenderTypeMember, ct))
		add("private/"+ct.String(), wireTestPrivate(ct, 40))
	}
	add("public/external/proposal", wireTestPublic(SenderTypeExternal, ContentTypeProposal))
	add("public/new_member_proposal/proposal", wireTestPublic(SenderTypeNewMemberProposal, ContentTypeProposal))
	add("public/new_member_commit/commit", wireTestPublic(SenderTypeNewMemberCommit, ContentTypeCommit))
	for _, p := range wireTestProposals() {
		m := wireTestPublic(SenderTypeMember, ContentTypeProposal)
		m.PublicMessage.Content.Proposal = p
		add("public/member/proposal/"+p.ProposalType.String(), m)
	}
	add("welcome", wireTestWelcome())
	add("group_info", wireTestGroupInfo())
	add("key_package", wireTestKeyPackageMessage())
	return cases
}

// wireTestStructures returns the valid fixtures that are not MLSMessages and
// the structures of the first messages.json cases.
func wireTestStructures(t testing.TB) []wireTestCase {
	cases := []wireTestCase{
		{"commit/no-path", wireMustMarshal(t, wireTestCommit(false)), func() wireValue { return new(Commit) }},
		{"group_secrets", wireMustMarshal(t, &GroupSecrets{JoinerSecret: []byte("js"), PathSecret: []byte{}, PSKs: []PreSharedKeyID{wireTestProposals()[4].PreSharedKey.PSK}}), func() wireValue { return new(GroupSecrets) }},
		{"credential/x509", wireMustMarshal(t, &Credential{CredentialType: CredentialTypeX509, Certificates: [][]byte{[]byte("c1"), {}}}), func() wireValue { return new(Credential) }},
		{"external_senders", wireMustMarshal(t, ExternalSenders{{SignatureKey: []byte("k"), Credential: Credential{CredentialType: CredentialTypeBasic, Identity: []byte("ds")}}}), func() wireValue { return new(ExternalSenders) }},
		{"sender_data", wireMustMarshal(t, &SenderData{LeafIndex: 1, Generation: 2, ReuseGuard: [4]byte{1, 2, 3, 4}}), func() wireValue { return new(SenderData) }},
	}
	var vectors []messagesVector
	testvectors.Load(t, "messages", &vectors)
	for i := range vectors[:2] {
		for _, f := range vectors[i].fields() {
			cases = append(cases, wireTestCase{"messages.json/" + f.name, f.data, f.value})
		}
	}
	return cases
}

// wireWantError checks that err is a *codec.Error whose field contains field
// and whose text contains reason.
func wireWantError(t *testing.T, what string, err error, field, reason string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: decoded without error, want an error on %s", what, field)
		return
	}
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Errorf("%s: error %v (%T) is not a *codec.Error", what, err, err)
		return
	}
	if !strings.Contains(ce.Field, field) || !strings.Contains(err.Error(), reason) {
		t.Errorf("%s: error %q, want one naming %q and saying %q", what, err, field, reason)
	}
}

// wireDecode decodes b as a fresh value from newValue; for MLSMessages it also
// checks that ParseHeader agrees.
func wireDecode(t *testing.T, what string, b []byte, newValue func() wireValue) error {
	t.Helper()
	v := newValue()
	err := v.UnmarshalMLS(b)
	if _, ok := v.(*MLSMessage); ok {
		_, herr := ParseHeader(b)
		if (err == nil) != (herr == nil) || (err != nil && err.Error() != herr.Error()) {
			t.Errorf("%s: UnmarshalMLS error %v but ParseHeader error %v", what, err, herr)
		}
	}
	return err
}

func TestWireFixturesRoundTrip(t *testing.T) {
	for _, c := range append(wireTestMessages(t), wireTestStructures(t)...) {
		if _, err := wireRoundTrip(c.data, c.value()); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestWireTruncationAndTrailingBytes(t *testing.T) {
	for _, c := range append(wireTestMessages(t), wireTestStructures(t)...) {
		for n := 0; n < len(c.data); n++ {
			err := wireDecode(t, c.name, c.data[:n], c.value)
			if err == nil {
				t.Errorf("%s: the %d-byte prefix of %d decoded", c.name, n, len(c.data))
				break
			}
			var ce *codec.Error
			if !errors.As(err, &ce) {
				t.Errorf("%s: prefix %d: error %v is not a *codec.Error", c.name, n, err)
				break
			}
		}
		long := append(bytes.Clone(c.data), 0)
		err := wireDecode(t, c.name, long, c.value)
		wireWantError(t, c.name+" with a trailing byte", err, "", "1 trailing bytes")
	}
}

// wireSet returns a copy of b with the bytes at off replaced by v.
func wireSet(b []byte, off int, v ...byte) []byte {
	out := bytes.Clone(b)
	copy(out[off:], v)
	return out
}

// wireSplice returns a copy of b with b[off:off+n] replaced by v.
func wireSplice(b []byte, off, n int, v ...byte) []byte {
	out := append(bytes.Clone(b[:off]), v...)
	return append(out, b[off+n:]...)
}

func TestWireRejectsBadFields(t *testing.T) {
	msg := func(m *MLSMessage) []byte { return wireMustMarshal(t, m) }
	pubApp := msg(wireTestPublic(SenderTypeMember, ContentTypeApplication))
	pubProp := msg(wireTestPublic(SenderTypeMember, ContentTypeProposal))
	priv := msg(wireTestPrivate(ContentTypeApplication, 40))
	kp := msg(wireTestKeyPackageMessage())
	gi := msg(wireTestGroupInfo())
	welcome := msg(wireTestWelcome())

	// Layout of the public messages: version(2) wire_format(2)
	// group_id(1+5) epoch(8) sender_type(1) leaf_index(4)
	// authenticated_data(1+2) content_type(1) body.
	const (
		pubSenderType  = 18
		pubContentType = 26
		pubBody        = 27
		privCT         = 18
	)
	if pubApp[pubContentType] != byte(ContentTypeApplication) || pubApp[pubSenderType] != byte(SenderTypeMember) || priv[privCT] != byte(ContentTypeApplication) {
		t.Fatal("fixture layout changed; fix the offsets")
	}
	// Offset of the credential type in the key package message:
	// version, wire_format, version, cipher_suite, then three 32-byte keys.
	kpCredType := 8 + 3*33

	newMsg := wireNewMLSMessage
	cases := []struct {
		name          string
		data          []byte
		value         func() wireValue
		field, reason string
	}{
		{"version 2", wireSet(priv, 0, 0, 2), newMsg, "mls_message.version", "unsupported protocol version"},
		{"version 0", wireSet(welcome, 0, 0, 0), newMsg, "mls_message.version", "unsupported protocol version"},
		{"key package version 2", wireSet(kp, 4, 0, 2), newMsg, "key_package.version", "unsupported protocol version"},
		{"group context version 2", wireSet(gi, 4, 0, 2), newMsg, "group_context.version", "unsupported protocol version"},
		{"wire format 0", wireSet(priv, 2, 0, 0), newMsg, "mls_message.wire_format", "WireFormat(0x0000)"},
		{"wire format 6", wireSet(priv, 2, 0, 6), newMsg, "mls_message.wire_format", "WireFormat(0x0006)"},
		{"wire format 0xffff", wireSet(priv, 2, 0xff, 0xff), newMsg, "mls_message.wire_format", "WireFormat(0xffff)"},
		{"private content type 0", wireSet(priv, privCT, 0), newMsg, "private_message.content_type", "ContentType(0)"},
		{"private content type 4", wireSet(priv, privCT, 4), newMsg, "private_message.content_type", "ContentType(4)"},
		{"public content type 0", wireSet(pubApp, pubContentType, 0), newMsg, "framed_content.content_type", "ContentType(0)"},
		{"public content type 255", wireSet(pubApp, pubContentType, 255), newMsg, "framed_content.content_type", "ContentType(255)"},
		{"sender type 0", wireSet(pubApp, pubSenderType, 0), newMsg, "sender.sender_type", "SenderType(0)"},
		{"sender type 5", wireSet(pubApp, pubSenderType, 5), newMsg, "sender.sender_type", "SenderType(5)"},
		{"proposal type 0", wireSet(pubProp, pubBody, 0, 0), newMsg, "proposal.proposal_type", "unknown proposal type 0x0000"},
		{"proposal type 8", wireSet(pubProp, pubBody, 0, 8), newMsg, "proposal.proposal_type", "unknown proposal type 0x0008"},
		{"proposal type grease", wireSet(pubProp, pubBody, 0x0a, 0x0a), newMsg, "proposal.proposal_type", "unknown proposal type 0x0a0a"},
		{"credential type 0", wireSet(kp, kpCredType, 0, 0), newMsg, "credential.credential_type", "unsupported credential type 0x0000"},
		{"credential type 3", wireSet(kp, kpCredType, 0, 3), newMsg, "credential.credential_type", "unsupported credential type 0x0003"},
		{"non-minimal 2-byte varint", wireSplice(priv, 4, 1, 0x40, 5), newMsg, "private_message.group_id", "non-minimal 2-byte encoding of 5"},
		{"non-minimal 4-byte varint", wireSplice(priv, 4, 1, 0x80, 0, 0, 5), newMsg, "private_message.group_id", "non-minimal 4-byte encoding of 5"},
		{"reserved varint prefix", wireSplice(priv, 4, 1, 0xc0, 0, 0, 0, 0, 0, 0, 5), newMsg, "private_message.group_id", "reserved"},
		{"length beyond input", wireSet(priv, len(priv)-41, 41), newMsg, "private_message.ciphertext", "length 41 exceeds the 40 bytes left: truncated"},
		{"optional presence 2", []byte{0, 2}, func() wireValue { return new(Commit) }, "commit.path", "optional presence byte 2"},
		{"group secrets presence 2", []byte{0, 2, 0}, func() wireValue { return new(GroupSecrets) }, "group_secrets.path_secret", "optional presence byte 2"},
		{"ratchet tree presence 2", []byte{1, 2}, func() wireValue { return new(RatchetTree) }, "ratchet_tree.node", "optional presence byte 2"},
		{"proposal or ref type 0", []byte{1, 0, 0}, func() wireValue { return new(Commit) }, "commit.proposals.proposal_or_ref.type", "ProposalOrRefType(0)"},
		{"proposal or ref type 3", []byte{1, 3, 0}, func() wireValue { return new(Commit) }, "commit.proposals.proposal_or_ref.type", "ProposalOrRefType(3)"},
		{"psk type 0", []byte{0, 0}, func() wireValue { return new(PreSharedKey) }, "pre_shared_key_id.psktype", "PSKType(0)"},
		{"psk type 3", []byte{3, 0}, func() wireValue { return new(PreSharedKey) }, "pre_shared_key_id.psktype", "PSKType(3)"},
		{"resumption usage 0", []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, func() wireValue { return new(PreSharedKey) }, "pre_shared_key_id.usage", "ResumptionPSKUsage(0)"},
		{"resumption usage 4", []byte{2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, func() wireValue { return new(PreSharedKey) }, "pre_shared_key_id.usage", "ResumptionPSKUsage(4)"},
		{"node type 0", []byte{2, 1, 0}, func() wireValue { return new(RatchetTree) }, "ratchet_tree.node.node_type", "NodeType(0)"},
		{"node type 3", []byte{2, 1, 3}, func() wireValue { return new(RatchetTree) }, "ratchet_tree.node.node_type", "NodeType(3)"},
		{"empty ratchet tree", []byte{0}, func() wireValue { return new(RatchetTree) }, "ratchet_tree", "empty tree"},
		{"trailing blank node", []byte{1, 0}, func() wireValue { return new(RatchetTree) }, "ratchet_tree", "last node is blank"},
		{"parent at leaf index", []byte{5, 1, 2, 0, 0, 0}, func() wireValue { return new(RatchetTree) }, "ratchet_tree", "node 0 is a parent node, want leaf"},
		{"odd bytes inside vector", []byte{1, 0}, func() wireValue { return new(Extensions) }, "extensions.extension_type", "truncated"},
		{"duplicate extension", []byte{8, 0, 1, 1, 0xaa, 0, 1, 1, 0xbb}, func() wireValue { return new(Extensions) }, "extensions", "duplicate extension type application_id"},
		{"duplicate gce", []byte{6, 0xf0, 0, 0, 0xf0, 0, 0}, func() wireValue { return new(GroupContextExtensions) }, "group_context_extensions.extensions", "duplicate extension type"},
		{"bytes left in vector", []byte{3, 0, 0, 0, 0}, func() wireValue { return new(RequiredCapabilities) }, "required_capabilities.extension_types", "truncated"},
		{"last resort body", []byte{0}, func() wireValue { return new(LastResort) }, "last_resort", "1 trailing bytes"},
		{"authenticated content wire format 3", []byte{0, 3}, func() wireValue { return new(AuthenticatedContent) }, "authenticated_content.wire_format", "does not carry framed content"},
		{"leaf node source 0", wireLeafNodeWithSource(t, 0), func() wireValue { return new(LeafNode) }, "leaf_node.leaf_node_source", "LeafNodeSource(0)"},
		{"leaf node source 4", wireLeafNodeWithSource(t, 4), func() wireValue { return new(LeafNode) }, "leaf_node.leaf_node_source", "LeafNodeSource(4)"},
	}
	for _, c := range cases {
		err := wireDecode(t, c.name, c.data, c.value)
		wireWantError(t, c.name, err, c.field, c.reason)
	}
}

// wireLeafNodeWithSource returns an update LeafNode whose leaf_node_source
// byte is replaced by src.
func wireLeafNodeWithSource(t *testing.T, src uint8) []byte {
	ln := wireTestLeafNode(LeafNodeSourceUpdate)
	prefix, err := codec.Marshal(func(w *codec.Writer) {
		w.Opaque(ln.EncryptionKey)
		w.Opaque(ln.SignatureKey)
		ln.Credential.encode(w)
		ln.Capabilities.encode(w)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := wireMustMarshal(t, ln)
	if b[len(prefix)] != byte(LeafNodeSourceUpdate) {
		t.Fatal("leaf node layout changed")
	}
	return wireSet(b, len(prefix), src)
}

func TestWireEncodeErrors(t *testing.T) {
	dupExt := Extensions{{Type: 1}, {Type: 1}}
	noLifetime := wireTestKeyPackage()
	noLifetime.LeafNode.Lifetime = nil
	badContent := wireTestPublic(SenderTypeMember, ContentTypeApplication)
	badContent.PublicMessage.Content.ContentType = 9
	missingProposal := wireTestPublic(SenderTypeMember, ContentTypeProposal)
	missingProposal.PublicMessage.Content.Proposal = nil
	cases := []struct {
		name  string
		v     interface{ MarshalMLS() ([]byte, error) }
		field string
	}{
		{"version 2", &MLSMessage{Version: 2, WireFormat: WireFormatWelcome, Welcome: &Welcome{}}, "mls_message.version"},
		{"wire format 6", &MLSMessage{Version: MLS10, WireFormat: 6}, "mls_message.wire_format"},
		{"missing body", &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, Welcome: &Welcome{}}, "mls_message"},
		{"content type 9", badContent, "framed_content.content_type"},
		{"missing proposal", missingProposal, "framed_content.proposal"},
		{"proposal type 8", &Proposal{ProposalType: 8}, "proposal.proposal_type"},
		{"missing proposal body", &Proposal{ProposalType: ProposalTypeAdd, Remove: &Remove{}}, "proposal"},
		{"credential type 3", &Credential{CredentialType: 3}, "credential.credential_type"},
		{"no lifetime", noLifetime, "leaf_node.lifetime"},
		{"duplicate extensions", dupExt, "extensions"},
		{"duplicate group context extensions", &GroupContext{Version: MLS10, Extensions: dupExt}, "group_context.extensions"},
		{"group context version 0", &GroupContext{}, "group_context.version"},
		{"trailing blank", RatchetTree{{NodeType: NodeTypeLeaf, Leaf: wireTestLeafNode(LeafNodeSourceUpdate)}, nil}, "ratchet_tree"},
		{"missing leaf", RatchetTree{{NodeType: NodeTypeLeaf}}, "node.leaf_node"},
		{"psk type 0", &PreSharedKeyID{}, "pre_shared_key_id.psktype"},
		{"negative padding", &PrivateMessageContent{ContentType: ContentTypeApplication, Padding: -1}, "private_message_content.padding"},
		{"authenticated content wire format", &AuthenticatedContent{WireFormat: WireFormatWelcome}, "authenticated_content.wire_format"},
	}
	for _, c := range cases {
		_, err := c.v.MarshalMLS()
		var ee *EncodeError
		if !errors.As(err, &ee) || ee.Field != c.field {
			t.Errorf("%s: error %v, want an *EncodeError on %s", c.name, err, c.field)
		}
	}
}

func TestPrivateMessageContent(t *testing.T) {
	for _, ct := range []ContentType{ContentTypeApplication, ContentTypeProposal, ContentTypeCommit} {
		fc := wireTestContent(SenderTypeMember, ct)
		for _, padding := range []int{0, 1, 100} {
			c := &PrivateMessageContent{ContentType: ct, Application: fc.Application, Proposal: fc.Proposal, Commit: fc.Commit, Auth: FramedContentAuthData{Signature: []byte("sig")}, Padding: padding}
			if ct == ContentTypeCommit {
				c.Auth.ConfirmationTag = []byte("tag")
			}
			b, err := c.MarshalMLS()
			if err != nil {
				t.Fatalf("%v/%d: %v", ct, padding, err)
			}
			if !bytes.Equal(b[len(b)-padding:], make([]byte, padding)) {
				t.Errorf("%v/%d: padding is not zero bytes", ct, padding)
			}
			got, err := UnmarshalPrivateMessageContent(b, ct)
			if err != nil {
				t.Fatalf("%v/%d: %v", ct, padding, err)
			}
			if got.Padding != padding || got.ContentType != ct {
				t.Errorf("%v/%d: decoded padding %d, content type %v", ct, padding, got.Padding, got.ContentType)
			}
			b2, err := got.MarshalMLS()
			if err != nil || !bytes.Equal(b, b2) {
				t.Errorf("%v/%d: re-encoding differs (%v)", ct, padding, err)
			}
			if padding > 0 {
				bad := wireSet(b, len(b)-1, 1)
				_, err := UnmarshalPrivateMessageContent(bad, ct)
				wireWantError(t, "non-zero last padding byte", err, "private_message_content.padding", "non-zero byte 0x01")
			}
			for n := 0; n < len(b)-padding; n++ {
				if _, err := UnmarshalPrivateMessageContent(b[:n], ct); err == nil {
					t.Errorf("%v/%d: %d-byte prefix decoded", ct, padding, n)
				}
			}
		}
	}
	_, err := UnmarshalPrivateMessageContent([]byte{0, 0}, 0)
	wireWantError(t, "content type 0", err, "private_message_content.content_type", "ContentType(0)")
}

func TestWireAADEncodings(t *testing.T) {
	sd, _ := (&SenderDataAAD{GroupID: []byte{0xaa}, Epoch: 0x0102, ContentType: ContentTypeCommit}).MarshalMLS()
	if want := []byte{1, 0xaa, 0, 0, 0, 0, 0, 0, 1, 2, 3}; !bytes.Equal(sd, want) {
		t.Errorf("SenderDataAAD: %x, want %x", sd, want)
	}
	pc, _ := (&PrivateContentAAD{GroupID: []byte{0xaa}, Epoch: 1, ContentType: ContentTypeApplication, AuthenticatedData: []byte{0xbb, 0xcc}}).MarshalMLS()
	if want := []byte{1, 0xaa, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0xbb, 0xcc}; !bytes.Equal(pc, want) {
		t.Errorf("PrivateContentAAD: %x, want %x", pc, want)
	}
	s, _ := (&SenderData{LeafIndex: 1, Generation: 2, ReuseGuard: [4]byte{9, 8, 7, 6}}).MarshalMLS()
	if want := []byte{0, 0, 0, 1, 0, 0, 0, 2, 9, 8, 7, 6}; !bytes.Equal(s, want) {
		t.Errorf("SenderData: %x, want %x", s, want)
	}
	for _, v := range []wireValue{new(SenderDataAAD), new(PrivateContentAAD)} {
		b := sd
		if _, ok := v.(*PrivateContentAAD); ok {
			b = pc
		}
		if err := wireRoundTripOne(b, v); err != nil {
			t.Errorf("%T: %v", v, err)
		}
	}
}

func TestWireTBS(t *testing.T) {
	kp := wireTestKeyPackage()
	full := wireMustMarshal(t, kp)
	tbs, err := kp.TBS()
	sig := append([]byte{byte(len(kp.Signature))}, kp.Signature...)
	if err != nil || !bytes.Equal(append(tbs, sig...), full) {
		t.Errorf("KeyPackage.TBS is not the encoding without the signature (%v)", err)
	}

	gi := wireTestGroupInfo().GroupInfo
	full = wireMustMarshal(t, gi)
	tbs, err = gi.TBS()
	sig = append([]byte{byte(len(gi.Signature))}, gi.Signature...)
	if err != nil || !bytes.Equal(append(tbs, sig...), full) {
		t.Errorf("GroupInfo.TBS is not the encoding without the signature (%v)", err)
	}

	for _, src := range []LeafNodeSource{LeafNodeSourceKeyPackage, LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		ln := wireTestLeafNode(src)
		full := wireMustMarshal(t, ln)
		base := full[:len(full)-1-len(ln.Signature)]
		tbs, err := ln.TBS([]byte("g"), 0x01020304)
		want := base
		if src != LeafNodeSourceKeyPackage {
			want = append(bytes.Clone(base), 1, 'g', 1, 2, 3, 4)
		}
		if err != nil || !bytes.Equal(tbs, want) {
			t.Errorf("LeafNode.TBS(%v) = %x (%v), want %x", src, tbs, err, want)
		}
	}

	ctx := wireTestGroupContext()
	ctxBytes := wireMustMarshal(t, ctx)
	for _, st := range []SenderType{SenderTypeMember, SenderTypeExternal, SenderTypeNewMemberProposal, SenderTypeNewMemberCommit} {
		c := wireTestContent(st, ContentTypeProposal)
		cb := wireMustMarshal(t, &c)
		got, err := FramedContentTBS(WireFormatPrivateMessage, &c, ctx)
		want := append([]byte{0, 1, 0, 2}, cb...)
		if st == SenderTypeMember || st == SenderTypeNewMemberCommit {
			want = append(want, ctxBytes...)
			if _, err := FramedContentTBS(WireFormatPrivateMessage, &c, nil); err == nil {
				t.Errorf("FramedContentTBS(%v) without a group context succeeded", st)
			}
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("FramedContentTBS(%v) = %x (%v), want %x", st, got, err, want)
		}
		auth := &FramedContentAuthData{Signature: []byte("s"), ConfirmationTag: []byte("ignored")}
		tbm, err := AuthenticatedContentTBM(WireFormatPublicMessage, &c, auth, ctx)
		want[3] = 1
		want = append(want, 1, 's')
		if err != nil || !bytes.Equal(tbm, want) {
			t.Errorf("AuthenticatedContentTBM(%v) = %x (%v), want %x", st, tbm, err, want)
		}
	}

	commit := wireTestContent(SenderTypeMember, ContentTypeCommit)
	in, err := ConfirmedTranscriptHashInput(WireFormatPublicMessage, &commit, []byte("sig"))
	want := append(append([]byte{0, 1}, wireMustMarshal(t, &commit)...), 3, 's', 'i', 'g')
	if err != nil || !bytes.Equal(in, want) {
		t.Errorf("ConfirmedTranscriptHashInput = %x (%v), want %x", in, err, want)
	}
	app := wireTestContent(SenderTypeMember, ContentTypeApplication)
	if _, err := ConfirmedTranscriptHashInput(WireFormatPublicMessage, &app, nil); err == nil {
		t.Error("ConfirmedTranscriptHashInput accepted application content")
	}
	in, err = InterimTranscriptHashInput([]byte("tag"))
	if err != nil || !bytes.Equal(in, []byte{3, 't', 'a', 'g'}) {
		t.Errorf("InterimTranscriptHashInput = %x (%v)", in, err)
	}
}

func TestExtensionsFind(t *testing.T) {
	l := Extensions{{Type: 0x0A0A, Data: []byte{1}}, {Type: ExtensionTypeExternalPub, Data: []byte{2}}}
	if e, ok := l.Find(ExtensionTypeExternalPub); !ok || e.Data[0] != 2 {
		t.Errorf("Find(external_pub) = %v, %v", e, ok)
	}
	if _, ok := l.Find(ExtensionTypeRatchetTree); ok {
		t.Error("Find(ratchet_tree) found one")
	}
	many := make(Extensions, 40)
	for i := range many {
		many[i].Type = ExtensionType(i)
	}
	b := wireMustMarshal(t, many)
	if err := new(Extensions).UnmarshalMLS(b); err != nil {
		t.Errorf("40 distinct extensions: %v", err)
	}
	many[39].Type = 17
	if _, err := many.MarshalMLS(); err == nil {
		t.Error("40 extensions with a duplicate encoded")
	}
}

func TestEnumStrings(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{MLS10.String(), "mls10"},
		{ProtocolVersion(2).String(), "ProtocolVersion(0x0002)"},
		{CipherSuite(1).String(), "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"},
		{CipherSuite(0x0A0A).String(), "CipherSuite(0x0a0a)"},
		{WireFormatKeyPackage.String(), "mls_key_package"},
		{ContentTypeCommit.String(), "commit"},
		{SenderTypeNewMemberCommit.String(), "new_member_commit"},
		{ExtensionTypeLastResort.String(), "last_resort"},
		{ExtensionType(6).String(), "ExtensionType(0x0006)"},
		{ProposalTypeGroupContextExtensions.String(), "group_context_extensions"},
		{CredentialTypeX509.String(), "x509"},
		{LeafNodeSourceCommit.String(), "commit"},
		{PSKTypeResumption.String(), "resumption"},
		{ResumptionPSKUsageReinit.String(), "reinit"},
		{ProposalOrRefTypeReference.String(), "reference"},
		{NodeTypeParent.String(), "parent"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
}
