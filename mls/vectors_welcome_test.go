package mls

import (
	"bytes"
	"testing"

	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

func decodeMessage(t *testing.T, b []byte) *MLSMessage {
	t.Helper()
	var m MLSMessage
	if err := m.UnmarshalMLS(b); err != nil {
		t.Fatal(err)
	}
	return &m
}

// testVectorsWelcome follows FORMAT.md's "Welcome": decrypt the group
// secrets and group info, verify the group info's signature and its
// confirmation tag.
func testVectorsWelcome(t *testing.T) {
	var cases []struct {
		CipherSuite suiteNum `json:"cipher_suite"`
		InitPriv    tv.Hex   `json:"init_priv"`
		SignerPub   tv.Hex   `json:"signer_pub"`
		KeyPackage  tv.Hex   `json:"key_package"`
		Welcome     tv.Hex   `json:"welcome"`
	}
	tv.Load(t, "welcome", &cases)
	tv.ForEachCase(t, "welcome", len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
		c := &cases[i]
		cs := CipherSuite(c.CipherSuite)
		kp := decodeMessage(t, c.KeyPackage).KeyPackage
		w := decodeMessage(t, c.Welcome).Welcome
		gs, gi, psk, err := decryptWelcome(w, kp, c.InitPriv, nil)
		if err != nil {
			t.Fatal(err)
		}
		tbs, _ := gi.TBS()
		if err := VerifyWithLabel(cs, c.SignerPub, labelGroupInfo, tbs, gi.Signature); err != nil {
			t.Errorf("group info signature: %v", err)
		}
		e, err := KeyScheduleFromJoiner(&gi.GroupContext, gs.JoinerSecret, psk)
		if err != nil {
			t.Fatal(err)
		}
		if !VerifyConfirmationTag(cs, e.ConfirmationKey, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag) {
			t.Error("confirmation tag does not verify")
		}
	})
}

type passiveCase struct {
	CipherSuite  suiteNum `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID tv.Hex `json:"psk_id"`
		PSK   tv.Hex `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                tv.Hex `json:"key_package"`
	SignaturePriv             tv.Hex `json:"signature_priv"`
	EncryptionPriv            tv.Hex `json:"encryption_priv"`
	InitPriv                  tv.Hex `json:"init_priv"`
	Welcome                   tv.Hex `json:"welcome"`
	RatchetTree               tv.Hex `json:"ratchet_tree"`
	InitialEpochAuthenticator tv.Hex `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []tv.Hex `json:"proposals"`
		Commit             tv.Hex   `json:"commit"`
		EpochAuthenticator tv.Hex   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// testVectorsPassive follows FORMAT.md's "Passive Client Scenarios" for one
// file: join from the Welcome, then follow every epoch's proposals and
// commit, comparing epoch authenticators.
func testVectorsPassive(file string) func(*testing.T) {
	return func(t *testing.T) {
		var cases []passiveCase
		tv.Load(t, file, &cases)
		tv.ForEachCase(t, file, len(cases), func(i int) uint16 { return uint16(cases[i].CipherSuite) }, supportedSuite, func(t *testing.T, i int) {
			c := &cases[i]
			checkPassive(t, c)
		})
	}
}

func checkPassive(t *testing.T, c *passiveCase) {
	cs := CipherSuite(c.CipherSuite)
	signer, err := NewSigner(cs, c.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	psks := map[string][]byte{}
	for _, p := range c.ExternalPSKs {
		psks[string(p.PSKID)] = p.PSK
	}
	cfg := GroupConfig{ExternalPSK: func(id []byte) ([]byte, bool) { s, ok := psks[string(id)]; return s, ok }}
	var tree RatchetTree
	if c.RatchetTree != nil {
		if err := tree.UnmarshalMLS(c.RatchetTree); err != nil {
			t.Fatal(err)
		}
	}
	kp := decodeMessage(t, c.KeyPackage).KeyPackage
	g, err := JoinFromWelcome(decodeMessage(t, c.Welcome).Welcome, JoinParams{KeyPackage: kp,
		Secrets: &KeyPackageSecrets{InitKey: c.InitPriv, EncryptionKey: c.EncryptionPriv}, Signer: signer,
		RatchetTree: tree, Config: cfg})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), c.InitialEpochAuthenticator) {
		t.Fatalf("initial epoch authenticator %x, want %x", g.EpochAuthenticator(), c.InitialEpochAuthenticator)
	}
	for n, ep := range c.Epochs {
		for k, p := range ep.Proposals {
			if _, err := g.Process(decodeMessage(t, p)); err != nil {
				t.Fatalf("epoch %d, proposal %d: %v", n, k, err)
			}
		}
		r, err := g.Process(decodeMessage(t, ep.Commit))
		if err != nil {
			t.Fatalf("epoch %d (group epoch %d, leaf %d of %d): commit: %v", n, g.Epoch(), g.LeafIndex(), g.st.tree.leafCount(), err)
		}
		if err := g.Merge(r.Commit); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			t.Fatalf("epoch %d: authenticator %x, want %x", n, g.EpochAuthenticator(), ep.EpochAuthenticator)
		}
	}
}
