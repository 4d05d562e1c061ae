package mls

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/secrettree"
)

// testGroup is a fixed epoch of a group of three members in a tree of four
// leaves, enough to exercise
// message protection without the group machinery.
type testGroup struct {
	cs      CipherSuite
	ctx     *GroupContext
	signers []*Signer
	secrets [3][]byte // encryption, sender data, membership
}

func newTestGroup(t testing.TB, cs CipherSuite) *testGroup {
	t.Helper()
	s, err := cs.impl()
	if err != nil {
		t.Fatal(err)
	}
	g := &testGroup{cs: cs, ctx: &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("!room:a.example"), Epoch: 7,
		TreeHash: bytes.Repeat([]byte{1}, s.HashSize()), ConfirmedTranscriptHash: bytes.Repeat([]byte{2}, s.HashSize())}}
	for i := range g.secrets {
		g.secrets[i] = bytes.Repeat([]byte{byte(10 + i)}, s.HashSize())
	}
	for range 3 {
		sg, err := GenerateSigner(cs)
		if err != nil {
			t.Fatal(err)
		}
		g.signers = append(g.signers, sg)
	}
	return g
}

func (g *testGroup) keys(t testing.TB, cfg *EpochKeysConfig) *EpochKeys {
	t.Helper()
	k, err := NewEpochKeys(g.ctx, 4, g.secrets[0], g.secrets[1], g.secrets[2], cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (g *testGroup) lookup(s Sender) ([]byte, error) {
	if s.SenderType != SenderTypeMember || int(s.LeafIndex) >= len(g.signers) {
		return nil, fmt.Errorf("no member at %+v", s)
	}
	return g.signers[s.LeafIndex].PublicKey(), nil
}

func (g *testGroup) app(leaf uint32, msg string, ad []byte) *FramedContent {
	return &FramedContent{GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: Sender{SenderType: SenderTypeMember, LeafIndex: leaf},
		AuthenticatedData: ad, ContentType: ContentTypeApplication, Application: []byte(msg)}
}

func (g *testGroup) commit(leaf uint32) *FramedContent {
	return &FramedContent{GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: Sender{SenderType: SenderTypeMember, LeafIndex: leaf},
		AuthenticatedData: []byte{0xa1}, ContentType: ContentTypeCommit,
		Commit: &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefTypeProposal, Proposal: &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: 2}}}}}}
}

func TestProtectRoundTripEverySuite(t *testing.T) {
	for _, cs := range SupportedCipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			g := newTestGroup(t, cs)
			s, _ := cs.impl()
			tag := bytes.Repeat([]byte{3}, s.HashSize())
			send, recv := g.keys(t, nil), g.keys(t, nil)
			for leaf := range uint32(3) {
				pm, err := send.ProtectPrivate(g.app(leaf, fmt.Sprintf("hello from %d", leaf), []byte("ad")), g.signers[leaf], nil)
				if err != nil {
					t.Fatal(err)
				}
				ac, err := recv.UnprotectPrivate(pm, g.lookup)
				if err != nil || string(ac.Content.Application) != fmt.Sprintf("hello from %d", leaf) || ac.Content.Sender.LeafIndex != leaf {
					t.Fatalf("leaf %d: %+v, %v", leaf, ac, err)
				}
			}
			c := g.commit(1)
			pm, err := send.ProtectPrivate(c, g.signers[1], tag)
			if err != nil {
				t.Fatal(err)
			}
			ac, err := recv.UnprotectPrivate(pm, g.lookup)
			if err != nil || !bytes.Equal(ac.Auth.ConfirmationTag, tag) || ac.Content.Commit.Proposals[0].Proposal.Remove.Removed != 2 {
				t.Fatalf("private commit: %+v, %v", ac, err)
			}
			pub, err := send.ProtectPublic(c, g.signers[1], tag)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := recv.UnprotectPublic(pub, g.lookup); err != nil {
				t.Fatalf("public commit: %v", err)
			}
		})
	}
}

func TestUnprotectPrivateRejects(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	send := g.keys(t, nil)
	protect := func(msg string) *PrivateMessage {
		pm, err := send.ProtectPrivate(g.app(0, msg, []byte("federation")), g.signers[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		return pm
	}
	recv := g.keys(t, nil)

	genuine := protect("genuine")
	forged := *genuine
	forged.Ciphertext = append([]byte(nil), genuine.Ciphertext...)
	forged.Ciphertext[len(forged.Ciphertext)-1] ^= 1
	// The sender data key depends on the ciphertext sample, which the flip
	// at the end leaves alone: sender data decrypts, the content does not.
	if _, err := recv.UnprotectPrivate(&forged, g.lookup); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered ciphertext: %v, want ErrDecrypt", err)
	}
	// The forged message did not burn the genuine message's key.
	if ac, err := recv.UnprotectPrivate(genuine, g.lookup); err != nil || string(ac.Content.Application) != "genuine" {
		t.Fatalf("genuine message after a forged one: %v", err)
	}
	// A replay finds its key used.
	if _, err := recv.UnprotectPrivate(genuine, g.lookup); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Fatalf("replay: %v, want ErrGenerationUsed", err)
	}

	// The authenticated data (MSC4256's federation map) is bound to the
	// content: changing it breaks decryption.
	m := protect("with ad")
	m.AuthenticatedData = []byte("federation, altered")
	if _, err := recv.UnprotectPrivate(m, g.lookup); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("altered authenticated data: %v, want ErrDecrypt", err)
	}

	m = protect("sender data")
	m.EncryptedSenderData = append([]byte(nil), m.EncryptedSenderData...)
	m.EncryptedSenderData[0] ^= 1
	if _, err := recv.UnprotectPrivate(m, g.lookup); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered sender data: %v, want ErrDecrypt", err)
	}

	m = protect("epoch")
	m.Epoch++
	if _, err := recv.UnprotectPrivate(m, g.lookup); !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("other epoch: %v, want ErrWrongGroup", err)
	}
	m = protect("group")
	m.GroupID = []byte("!other:a.example")
	if _, err := recv.UnprotectPrivate(m, g.lookup); !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("other group: %v, want ErrWrongGroup", err)
	}

	// Signed by leaf 0's key, but the group knows another key for leaf 0.
	m = protect("signature")
	wrongKey := func(s Sender) ([]byte, error) { return g.signers[2].PublicKey(), nil }
	if _, err := recv.UnprotectPrivate(m, wrongKey); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("wrong signer: %v, want ErrInvalidSignature", err)
	}
	// A sender the group does not know.
	m = protect("unknown")
	noMember := func(Sender) ([]byte, error) { return nil, errors.New("no such member") }
	if _, err := recv.UnprotectPrivate(m, noMember); err == nil {
		t.Fatal("unknown sender accepted")
	}
}

func TestOutOfOrderWindow(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	send := g.keys(t, nil)
	var msgs []*PrivateMessage
	for i := range 6 {
		pm, err := send.ProtectPrivate(g.app(1, fmt.Sprint(i), nil), g.signers[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, pm)
	}
	recv := g.keys(t, &EpochKeysConfig{OutOfOrder: 2})
	for _, i := range []int{5, 4, 3} {
		if ac, err := recv.UnprotectPrivate(msgs[i], g.lookup); err != nil || string(ac.Content.Application) != fmt.Sprint(i) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := recv.UnprotectPrivate(msgs[2], g.lookup); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Fatalf("message 2, outside a window of 2: %v", err)
	}
	strict := g.keys(t, &EpochKeysConfig{OutOfOrder: -1})
	if _, err := strict.UnprotectPrivate(msgs[1], g.lookup); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.UnprotectPrivate(msgs[0], g.lookup); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Fatalf("late message with no window: %v", err)
	}
}

func TestProtectRejects(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	k := g.keys(t, nil)
	tag := bytes.Repeat([]byte{3}, 32)
	if _, err := k.ProtectPublic(g.app(0, "x", nil), g.signers[0], nil); !errors.Is(err, ErrContent) {
		t.Errorf("application as PublicMessage: %v", err)
	}
	if _, err := k.ProtectPrivate(g.commit(0), g.signers[0], nil); !errors.Is(err, ErrContent) {
		t.Errorf("commit without confirmation tag: %v", err)
	}
	if _, err := k.ProtectPrivate(g.app(0, "x", nil), g.signers[0], tag); !errors.Is(err, ErrContent) {
		t.Errorf("application with confirmation tag: %v", err)
	}
	ext := g.app(0, "x", nil)
	ext.ContentType, ext.Application = ContentTypeProposal, nil
	ext.Proposal = &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: 1}}
	ext.Sender = Sender{SenderType: SenderTypeExternal}
	if _, err := k.ProtectPrivate(ext, g.signers[0], nil); !errors.Is(err, ErrContent) {
		t.Errorf("external sender in a PrivateMessage: %v", err)
	}
	if _, err := k.ProtectPrivate(g.app(4, "x", nil), g.signers[0], nil); err == nil {
		t.Error("sender leaf outside the tree accepted")
	}
	other := g.app(0, "x", nil)
	other.Epoch = 8
	if _, err := k.ProtectPrivate(other, g.signers[0], nil); !errors.Is(err, ErrWrongGroup) {
		t.Errorf("content for another epoch: %v", err)
	}
	p256, _ := GenerateSigner(P256AES128GCMSHA256P256)
	if _, err := k.ProtectPrivate(g.app(0, "x", nil), p256, nil); err == nil {
		t.Error("signer of another suite accepted")
	}
}

func TestUnprotectPublicRejects(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	k := g.keys(t, nil)
	tag := bytes.Repeat([]byte{3}, 32)
	pm, err := k.ProtectPublic(g.commit(2), g.signers[2], tag)
	if err != nil {
		t.Fatal(err)
	}
	bad := *pm
	bad.MembershipTag = append([]byte(nil), pm.MembershipTag...)
	bad.MembershipTag[0] ^= 1
	if _, err := k.UnprotectPublic(&bad, g.lookup); !errors.Is(err, ErrMembershipTag) {
		t.Errorf("tampered membership tag: %v", err)
	}
	bad = *pm
	bad.Content.AuthenticatedData = []byte{0xa2}
	if _, err := k.UnprotectPublic(&bad, g.lookup); !errors.Is(err, ErrMembershipTag) {
		t.Errorf("tampered authenticated data: %v", err)
	}
	bad = *pm
	bad.Auth.ConfirmationTag = tag[:16]
	if _, err := k.UnprotectPublic(&bad, g.lookup); err == nil {
		t.Error("changed confirmation tag accepted")
	}
	// Another member's key: the membership tag is fine, the signature is not.
	wrong := func(Sender) ([]byte, error) { return g.signers[0].PublicKey(), nil }
	if _, err := k.UnprotectPublic(pm, wrong); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("wrong signer: %v", err)
	}
	// A proposal from an external sender: no membership tag, signature only.
	ext := &FramedContent{GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: Sender{SenderType: SenderTypeExternal, SenderIndex: 0},
		ContentType: ContentTypeProposal, Proposal: &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: 1}}}
	extSigner, _ := GenerateSigner(X25519AES128GCMSHA256Ed25519)
	epm, err := k.ProtectPublic(ext, extSigner, nil)
	if err != nil || epm.MembershipTag != nil {
		t.Fatalf("external proposal: %v, tag %x", err, epm.MembershipTag)
	}
	extKey := func(s Sender) ([]byte, error) {
		if s.SenderType != SenderTypeExternal {
			return nil, errors.New("not external")
		}
		return extSigner.PublicKey(), nil
	}
	if _, err := k.UnprotectPublic(epm, extKey); err != nil {
		t.Errorf("external proposal: %v", err)
	}
}

func TestPadding(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	send := g.keys(t, &EpochKeysConfig{PaddingBlock: 256})
	recv := g.keys(t, nil)
	var lens []int
	for _, msg := range []string{"a", "a somewhat longer message"} {
		pm, err := send.ProtectPrivate(g.app(0, msg, nil), g.signers[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, len(pm.Ciphertext))
		if ac, err := recv.UnprotectPrivate(pm, g.lookup); err != nil || string(ac.Content.Application) != msg {
			t.Fatalf("padded message: %v", err)
		}
	}
	// 256-byte plaintext blocks plus the 16-byte AEAD tag.
	if lens[0] != lens[1] || (lens[0]-16)%256 != 0 {
		t.Fatalf("padded ciphertext lengths %v", lens)
	}
	// A non-zero padding byte is rejected.
	body, _ := (&PrivateMessageContent{ContentType: ContentTypeApplication, Application: []byte("x"), Auth: FramedContentAuthData{Signature: []byte{1}}, Padding: 4}).MarshalMLS()
	body[len(body)-2] = 1
	if _, err := UnmarshalPrivateMessageContent(body, ContentTypeApplication); err == nil {
		t.Fatal("non-zero padding accepted")
	}
	if _, err := NewEpochKeys(g.ctx, 4, g.secrets[0], g.secrets[1], g.secrets[2], &EpochKeysConfig{PaddingBlock: -1}); err == nil {
		t.Fatal("negative padding block accepted")
	}
}

// TestHeaderOfProtectedMessage checks that the server's header view reads
// what the sender put in a PrivateMessage.
func TestHeaderOfProtectedMessage(t *testing.T) {
	g := newTestGroup(t, X25519AES128GCMSHA256Ed25519)
	pm, err := g.keys(t, nil).ProtectPrivate(g.commit(1), g.signers[1], bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&MLSMessage{Version: MLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.WireFormat != WireFormatPrivateMessage || string(h.GroupID) != "!room:a.example" || h.Epoch != 7 ||
		h.ContentType != ContentTypeCommit || !bytes.Equal(h.AuthenticatedData, []byte{0xa1}) {
		t.Fatalf("header %+v", h)
	}
}

func benchMessage(b *testing.B) (*testGroup, *FramedContent) {
	g := newTestGroup(b, X25519AES128GCMSHA256Ed25519)
	return g, g.app(0, string(bytes.Repeat([]byte{'m'}, 1024)), []byte("ad"))
}

// BenchmarkProtectPrivate1KiB signs and encrypts a 1 KiB application
// message (suite 1).
func BenchmarkProtectPrivate1KiB(b *testing.B) {
	g, c := benchMessage(b)
	k := g.keys(b, &EpochKeysConfig{MaxForward: 1 << 30})
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.ProtectPrivate(c, g.signers[0], nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnprotectPrivate1KiB decrypts and verifies a 1 KiB application
// message (suite 1). Messages are made before the timer starts.
func BenchmarkUnprotectPrivate1KiB(b *testing.B) {
	g, c := benchMessage(b)
	send := g.keys(b, nil)
	msgs := make([]*PrivateMessage, b.N)
	for i := range msgs {
		var err error
		if msgs[i], err = send.ProtectPrivate(c, g.signers[0], nil); err != nil {
			b.Fatal(err)
		}
	}
	recv := g.keys(b, nil)
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := recv.UnprotectPrivate(msgs[i], g.lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyPackageValidate validates a decoded suite-1 KeyPackage with a
// Matrix credential. Compare with BenchmarkTwoEd25519Verifications, the two
// signature checks validation cannot avoid.
func BenchmarkKeyPackageValidate(b *testing.B) {
	kp, _, _ := newTestKeyPackage(b, X25519AES128GCMSHA256Ed25519, nil)
	check := KeyPackageCheck{Now: testNow, CipherSuite: X25519AES128GCMSHA256Ed25519, RequiredExtensions: []ExtensionType{0xF6D0}}
	b.ReportAllocs()
	for b.Loop() {
		if err := kp.Validate(check); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTwoEd25519Verifications is the standard library floor under
// BenchmarkKeyPackageValidate: ed25519.Verify of the leaf node's and the
// KeyPackage's signed contents.
func BenchmarkTwoEd25519Verifications(b *testing.B) {
	kp, _, _ := newTestKeyPackage(b, X25519AES128GCMSHA256Ed25519, nil)
	leafTBS, _ := kp.LeafNode.TBS(nil, 0)
	kpTBS, _ := kp.TBS()
	leafMsg, kpMsg := signContentForTest(labelLeafNode, leafTBS), signContentForTest(labelKeyPackage, kpTBS)
	pub := ed25519.PublicKey(kp.LeafNode.SignatureKey)
	if !ed25519.Verify(pub, leafMsg, kp.LeafNode.Signature) || !ed25519.Verify(pub, kpMsg, kp.Signature) {
		b.Fatal("baseline signatures do not verify")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, leafMsg, kp.LeafNode.Signature) || !ed25519.Verify(pub, kpMsg, kp.Signature) {
			b.Fatal("verify failed")
		}
	}
}

// signContentForTest encodes SignContent {"MLS 1.0 " + label, content} for
// short inputs (one-byte length prefixes would not do; use two-byte ones
// where needed).
func signContentForTest(label string, content []byte) []byte {
	var out []byte
	for _, v := range [][]byte{[]byte("MLS 1.0 " + label), content} {
		switch n := len(v); {
		case n < 64:
			out = append(out, byte(n))
		case n < 1<<14:
			out = append(out, byte(n>>8)|0x40, byte(n))
		default:
			panic("content too long for the test encoder")
		}
		out = append(out, v...)
	}
	return out
}
