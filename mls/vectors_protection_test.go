package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

type messageProtectionCase struct {
	CipherSuite             uint16 `json:"cipher_suite"`
	GroupID                 tv.Hex `json:"group_id"`
	Epoch                   uint64 `json:"epoch"`
	TreeHash                tv.Hex `json:"tree_hash"`
	ConfirmedTranscriptHash tv.Hex `json:"confirmed_transcript_hash"`
	SignaturePriv           tv.Hex `json:"signature_priv"`
	SignaturePub            tv.Hex `json:"signature_pub"`
	EncryptionSecret        tv.Hex `json:"encryption_secret"`
	SenderDataSecret        tv.Hex `json:"sender_data_secret"`
	MembershipKey           tv.Hex `json:"membership_key"`
	Proposal                tv.Hex `json:"proposal"`
	ProposalPub             tv.Hex `json:"proposal_pub"`
	ProposalPriv            tv.Hex `json:"proposal_priv"`
	Commit                  tv.Hex `json:"commit"`
	CommitPub               tv.Hex `json:"commit_pub"`
	CommitPriv              tv.Hex `json:"commit_priv"`
	Application             tv.Hex `json:"application"`
	ApplicationPriv         tv.Hex `json:"application_priv"`
}

// testVectorsMessageProtection follows FORMAT.md's "Message Protection":
// for the proposal, the commit and the application message, the vector's
// PublicMessage (not for application) verifies and yields the raw content,
// our own PublicMessage verifies (and fails for application), the vector's
// PrivateMessage unprotects, and our own PrivateMessage unprotects.
func testVectorsMessageProtection(t *testing.T) {
	var cases []messageProtectionCase
	tv.Load(t, "message-protection", &cases)
	tv.ForEachCase(t, "message-protection", len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
		c := &cases[i]
		checkMessageProtection(t, c)
	})
}

func checkMessageProtection(t *testing.T, c *messageProtectionCase) {
	cs := CipherSuite(c.CipherSuite)
	ctx := &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: c.GroupID, Epoch: c.Epoch,
		TreeHash: c.TreeHash, ConfirmedTranscriptHash: c.ConfirmedTranscriptHash}
	newKeys := func() *EpochKeys {
		k, err := NewEpochKeys(ctx, 2, c.EncryptionSecret, c.SenderDataSecret, c.MembershipKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	signer, err := NewSigner(cs, c.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(s Sender) ([]byte, error) {
		if s.SenderType != SenderTypeMember || s.LeafIndex != 1 {
			return nil, fmt.Errorf("unexpected sender %+v", s)
		}
		return c.SignaturePub, nil
	}
	body := func(ac *AuthenticatedContent) []byte {
		t.Helper()
		var b []byte
		var err error
		switch ac.Content.ContentType {
		case ContentTypeProposal:
			b, err = ac.Content.Proposal.MarshalMLS()
		case ContentTypeCommit:
			b, err = ac.Content.Commit.MarshalMLS()
		default:
			b = ac.Content.Application
		}
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	decode := func(b []byte) *MLSMessage {
		t.Helper()
		var m MLSMessage
		if err := m.UnmarshalMLS(b); err != nil {
			t.Fatal(err)
		}
		return &m
	}

	for _, x := range []struct {
		name      string
		raw       []byte
		pub, priv []byte
	}{
		{"proposal", c.Proposal, c.ProposalPub, c.ProposalPriv},
		{"commit", c.Commit, c.CommitPub, c.CommitPriv},
		{"application", c.Application, nil, c.ApplicationPriv},
	} {
		content := FramedContent{GroupID: c.GroupID, Epoch: c.Epoch, Sender: Sender{SenderType: SenderTypeMember, LeafIndex: 1}}
		var tag []byte
		switch x.name {
		case "proposal":
			content.ContentType = ContentTypeProposal
			content.Proposal = new(Proposal)
			if err := content.Proposal.UnmarshalMLS(x.raw); err != nil {
				t.Fatal(err)
			}
		case "commit":
			content.ContentType = ContentTypeCommit
			content.Commit = new(Commit)
			if err := content.Commit.UnmarshalMLS(x.raw); err != nil {
				t.Fatal(err)
			}
			// Any confirmation tag of the right size: unprotecting does not
			// check it (that is commit processing's job).
			tag = decode(x.pub).PublicMessage.Auth.ConfirmationTag
		default:
			content.ContentType = ContentTypeApplication
			content.Application = x.raw
		}

		if x.pub != nil {
			ac, err := newKeys().UnprotectPublic(decode(x.pub).PublicMessage, lookup)
			if err != nil {
				t.Fatalf("%s: vector PublicMessage: %v", x.name, err)
			}
			if !bytes.Equal(body(ac), x.raw) {
				t.Errorf("%s: vector PublicMessage content = %x, want %x", x.name, body(ac), x.raw)
			}
		}
		pm, err := newKeys().ProtectPublic(&content, signer, tag)
		if x.name == "application" {
			if !errors.Is(err, ErrContent) {
				t.Errorf("application as PublicMessage: %v, want ErrContent", err)
			}
		} else {
			if err != nil {
				t.Fatalf("%s: ProtectPublic: %v", x.name, err)
			}
			ac, err := newKeys().UnprotectPublic(pm, lookup)
			if err != nil || !bytes.Equal(body(ac), x.raw) {
				t.Errorf("%s: own PublicMessage: %v", x.name, err)
			}
		}

		ac, err := newKeys().UnprotectPrivate(decode(x.priv).PrivateMessage, lookup)
		if err != nil {
			t.Fatalf("%s: vector PrivateMessage: %v", x.name, err)
		}
		if !bytes.Equal(body(ac), x.raw) {
			t.Errorf("%s: vector PrivateMessage content = %x, want %x", x.name, body(ac), x.raw)
		}
		priv, err := newKeys().ProtectPrivate(&content, signer, tag)
		if err != nil {
			t.Fatalf("%s: ProtectPrivate: %v", x.name, err)
		}
		ac, err = newKeys().UnprotectPrivate(priv, lookup)
		if err != nil || !bytes.Equal(body(ac), x.raw) {
			t.Errorf("%s: own PrivateMessage: %v", x.name, err)
		}
	}
}

// testVectorsTranscriptHashes follows FORMAT.md's "Transcript Hashes".
func testVectorsTranscriptHashes(t *testing.T) {
	var cases []struct {
		CipherSuite                  uint16 `json:"cipher_suite"`
		ConfirmationKey              tv.Hex `json:"confirmation_key"`
		AuthenticatedContent         tv.Hex `json:"authenticated_content"`
		InterimTranscriptHashBefore  tv.Hex `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter tv.Hex `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   tv.Hex `json:"interim_transcript_hash_after"`
	}
	tv.Load(t, "transcript-hashes", &cases)
	count := tv.NewCounter(t, "transcript-hashes")
	for i, c := range cases {
		cs := CipherSuite(c.CipherSuite)
		if !cs.Supported() {
			count.Unsupported(c.CipherSuite)
			continue
		}
		var ac AuthenticatedContent
		if err := ac.UnmarshalMLS(c.AuthenticatedContent); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if ac.Content.ContentType != ContentTypeCommit {
			t.Fatalf("case %d: content type %v, want commit", i, ac.Content.ContentType)
		}
		if !VerifyConfirmationTag(cs, c.ConfirmationKey, c.ConfirmedTranscriptHashAfter, ac.Auth.ConfirmationTag) {
			t.Errorf("case %d: confirmation tag does not verify", i)
		}
		confirmed, err := ConfirmedTranscriptHash(cs, c.InterimTranscriptHashBefore, &ac)
		if err != nil || !bytes.Equal(confirmed, c.ConfirmedTranscriptHashAfter) {
			t.Errorf("case %d: confirmed transcript hash = %x, %v; want %x", i, confirmed, err, c.ConfirmedTranscriptHashAfter)
		}
		interim, err := InterimTranscriptHash(cs, confirmed, ac.Auth.ConfirmationTag)
		if err != nil || !bytes.Equal(interim, c.InterimTranscriptHashAfter) {
			t.Errorf("case %d: interim transcript hash = %x, %v; want %x", i, interim, err, c.InterimTranscriptHashAfter)
		}
		count.Ran(c.CipherSuite)
	}
}
