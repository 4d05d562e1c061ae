package mls

// These tests check the to-be-signed, to-be-MACed and transcript encoders of
// this package against the official vectors, using the standard library's
// primitives directly (package mls does no cryptography of its own here):
// a wrong byte in an encoder makes a hash, MAC or signature mismatch.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// wireSuiteHash returns the hash of an RFC 9420 cipher suite.
func wireSuiteHash(cs uint16) func() hash.Hash {
	switch cs {
	case 1, 2, 3:
		return sha256.New
	case 4, 5, 6:
		return sha512.New
	case 7:
		return sha512.New384
	}
	return nil
}

func wireHash(h func() hash.Hash, parts ...[]byte) []byte {
	d := h()
	for _, p := range parts {
		d.Write(p)
	}
	return d.Sum(nil)
}

func wireMAC(h func() hash.Hash, key, data []byte) []byte {
	m := hmac.New(h, key)
	m.Write(data)
	return m.Sum(nil)
}

// wireVerifyWithLabel checks an RFC 9420 SignWithLabel signature for the
// suites whose signature scheme the standard library has; ok is false for
// the others (Ed448).
func wireVerifyWithLabel(t *testing.T, cs uint16, pub []byte, label string, content, sig []byte) (valid, ok bool) {
	t.Helper()
	signContent, err := codec.Marshal(func(w *codec.Writer) {
		w.Opaque([]byte("MLS 1.0 " + label))
		w.Opaque(content)
	})
	if err != nil {
		t.Fatal(err)
	}
	var curve elliptic.Curve
	var h func() hash.Hash
	switch cs {
	case 1, 3:
		return ed25519.Verify(pub, signContent, sig), true
	case 2:
		curve, h = elliptic.P256(), sha256.New
	case 5:
		curve, h = elliptic.P521(), sha512.New
	case 7:
		curve, h = elliptic.P384(), sha512.New384
	default:
		return false, false
	}
	key, err := ecdsa.ParseUncompressedPublicKey(curve, pub)
	if err != nil {
		t.Fatalf("suite %d: signature key: %v", cs, err)
	}
	return ecdsa.VerifyASN1(key, wireHash(h, signContent), sig), true
}

// TestWireTranscriptHashVectors checks ConfirmedTranscriptHashInput and
// InterimTranscriptHashInput with transcript-hashes.json.
func TestWireTranscriptHashVectors(t *testing.T) {
	var vectors []struct {
		CipherSuite     uint16          `json:"cipher_suite"`
		ConfirmationKey testvectors.Hex `json:"confirmation_key"`
		Content         testvectors.Hex `json:"authenticated_content"`
		InterimBefore   testvectors.Hex `json:"interim_transcript_hash_before"`
		ConfirmedAfter  testvectors.Hex `json:"confirmed_transcript_hash_after"`
		InterimAfter    testvectors.Hex `json:"interim_transcript_hash_after"`
	}
	testvectors.Load(t, "transcript-hashes", &vectors)
	for i, v := range vectors {
		h := wireSuiteHash(v.CipherSuite)
		var ac AuthenticatedContent
		if err := ac.UnmarshalMLS(v.Content); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		in, err := ConfirmedTranscriptHashInput(ac.WireFormat, &ac.Content, ac.Auth.Signature)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		confirmed := wireHash(h, v.InterimBefore, in)
		if !bytes.Equal(confirmed, v.ConfirmedAfter) {
			t.Errorf("case %d (suite %d): confirmed transcript hash mismatch", i, v.CipherSuite)
		}
		if tag := wireMAC(h, v.ConfirmationKey, v.ConfirmedAfter); !bytes.Equal(tag, ac.Auth.ConfirmationTag) {
			t.Errorf("case %d (suite %d): confirmation tag mismatch", i, v.CipherSuite)
		}
		in, err = InterimTranscriptHashInput(ac.Auth.ConfirmationTag)
		if err != nil {
			t.Fatal(err)
		}
		if interim := wireHash(h, v.ConfirmedAfter, in); !bytes.Equal(interim, v.InterimAfter) {
			t.Errorf("case %d (suite %d): interim transcript hash mismatch", i, v.CipherSuite)
		}
	}
}

// TestWireMembershipTagVectors checks GroupContext, FramedContentTBS and
// AuthenticatedContentTBM with the PublicMessages of message-protection.json:
// their membership tags and (where the standard library has the scheme)
// signatures must verify.
func TestWireMembershipTagVectors(t *testing.T) {
	var vectors []struct {
		CipherSuite             uint16          `json:"cipher_suite"`
		GroupID                 testvectors.Hex `json:"group_id"`
		Epoch                   uint64          `json:"epoch"`
		TreeHash                testvectors.Hex `json:"tree_hash"`
		ConfirmedTranscriptHash testvectors.Hex `json:"confirmed_transcript_hash"`
		SignaturePub            testvectors.Hex `json:"signature_pub"`
		MembershipKey           testvectors.Hex `json:"membership_key"`
		ProposalPub             testvectors.Hex `json:"proposal_pub"`
		CommitPub               testvectors.Hex `json:"commit_pub"`
	}
	testvectors.Load(t, "message-protection", &vectors)
	signatures := 0
	for i, v := range vectors {
		ctx := &GroupContext{Version: MLS10, CipherSuite: CipherSuite(v.CipherSuite), GroupID: v.GroupID, Epoch: v.Epoch, TreeHash: v.TreeHash, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
		for _, b := range [][]byte{v.ProposalPub, v.CommitPub} {
			var m MLSMessage
			if err := m.UnmarshalMLS(b); err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			pm := m.PublicMessage
			tbm, err := AuthenticatedContentTBM(WireFormatPublicMessage, &pm.Content, &pm.Auth, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tag := wireMAC(wireSuiteHash(v.CipherSuite), v.MembershipKey, tbm); !bytes.Equal(tag, pm.MembershipTag) {
				t.Errorf("case %d (suite %d, %v): membership tag mismatch", i, v.CipherSuite, pm.Content.ContentType)
			}
			tbs, err := FramedContentTBS(WireFormatPublicMessage, &pm.Content, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if valid, ok := wireVerifyWithLabel(t, v.CipherSuite, v.SignaturePub, "FramedContentTBS", tbs, pm.Auth.Signature); ok {
				signatures++
				if !valid {
					t.Errorf("case %d (suite %d, %v): signature does not verify", i, v.CipherSuite, pm.Content.ContentType)
				}
			}
		}
	}
	if signatures == 0 {
		t.Error("no signature checked")
	}
}

// TestWirePSKLabelVectors checks EncodePSKLabel with psk_secret.json.
func TestWirePSKLabelVectors(t *testing.T) {
	var vectors []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		PSKs        []struct {
			ID    testvectors.Hex `json:"psk_id"`
			PSK   testvectors.Hex `json:"psk"`
			Nonce testvectors.Hex `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret testvectors.Hex `json:"psk_secret"`
	}
	testvectors.Load(t, "psk_secret", &vectors)
	for i, v := range vectors {
		h := wireSuiteHash(v.CipherSuite)
		nh := h().Size()
		secret := make([]byte, nh)
		for j, p := range v.PSKs {
			id := PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: p.ID, PSKNonce: p.Nonce}
			label, err := EncodePSKLabel(&id, uint16(j), uint16(len(v.PSKs)))
			if err != nil {
				t.Fatal(err)
			}
			extracted, _ := hkdf.Extract(h, p.PSK, make([]byte, nh))
			info, _ := codec.Marshal(func(w *codec.Writer) {
				w.Uint16(uint16(nh))
				w.Opaque([]byte("MLS 1.0 derived psk"))
				w.Opaque(label)
			})
			input, _ := hkdf.Expand(h, extracted, string(info), nh)
			secret, _ = hkdf.Extract(h, secret, input)
		}
		if !bytes.Equal(secret, v.PSKSecret) {
			t.Errorf("case %d (suite %d, %d PSKs): psk_secret mismatch", i, v.CipherSuite, len(v.PSKs))
		}
	}
}

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
		valid, ok := wireVerifyWithLabel(t, cs, pub, label, tbs, sig)
		if !ok {
			skipped++
			return
		}
		checked++
		if !valid {
			t.Errorf("%s (suite %d): %s signature does not verify", where, cs, label)
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
	t.Logf("%d signatures verified, %d skipped (Ed448)", checked, skipped)
	if checked == 0 {
		t.Error("no signature checked")
	}
}
