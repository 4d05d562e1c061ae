package keyschedule

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

func TestVectors(t *testing.T) {
	t.Run("key-schedule", testKeySchedule)
	t.Run("psk_secret", testPSKSecret)
}

type keyScheduleCase struct {
	CipherSuite       uint16 `json:"cipher_suite"`
	GroupID           tv.Hex `json:"group_id"`
	InitialInitSecret tv.Hex `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                tv.Hex `json:"tree_hash"`
		CommitSecret            tv.Hex `json:"commit_secret"`
		PSKSecret               tv.Hex `json:"psk_secret"`
		ConfirmedTranscriptHash tv.Hex `json:"confirmed_transcript_hash"`
		GroupContext            tv.Hex `json:"group_context"`
		JoinerSecret            tv.Hex `json:"joiner_secret"`
		WelcomeSecret           tv.Hex `json:"welcome_secret"`
		InitSecret              tv.Hex `json:"init_secret"`
		SenderDataSecret        tv.Hex `json:"sender_data_secret"`
		EncryptionSecret        tv.Hex `json:"encryption_secret"`
		ExporterSecret          tv.Hex `json:"exporter_secret"`
		EpochAuthenticator      tv.Hex `json:"epoch_authenticator"`
		ExternalSecret          tv.Hex `json:"external_secret"`
		ConfirmationKey         tv.Hex `json:"confirmation_key"`
		MembershipKey           tv.Hex `json:"membership_key"`
		ResumptionPSK           tv.Hex `json:"resumption_psk"`
		ExternalPub             tv.Hex `json:"external_pub"`
		Exporter                struct {
			Label   string
			Context tv.Hex
			Length  uint16
			Secret  tv.Hex
		}
	}
}

// groupContext encodes a GroupContext with empty extensions; the test keeps
// its own encoder so that this package's tests do not depend on package mls.
func groupContext(suiteID uint16, groupID []byte, epoch uint64, treeHash, cth []byte) []byte {
	b, err := codec.Marshal(func(w *codec.Writer) {
		w.Uint16(1)
		w.Uint16(suiteID)
		w.Opaque(groupID)
		w.Uint64(epoch)
		w.Opaque(treeHash)
		w.Opaque(cth)
		w.Opaque(nil)
	})
	if err != nil {
		panic(err)
	}
	return b
}

func testKeySchedule(t *testing.T) {
	var cases []keyScheduleCase
	tv.Load(t, "key-schedule", &cases)
	supported := func(s uint16) bool { _, err := suite.Lookup(suite.ID(s)); return err == nil }
	tv.ForEachCase(t, "key-schedule", len(cases), func(i int) uint16 { return cases[i].CipherSuite }, supported, func(t *testing.T, i int) {
		c := &cases[i]
		s, _ := suite.Lookup(suite.ID(c.CipherSuite))
		initSecret := []byte(c.InitialInitSecret)
		for n, ep := range c.Epochs {
			gc := groupContext(c.CipherSuite, c.GroupID, uint64(n), ep.TreeHash, ep.ConfirmedTranscriptHash)
			if !bytes.Equal(gc, ep.GroupContext) {
				t.Fatalf("epoch %d: group context %x, want %x", n, gc, ep.GroupContext)
			}
			e, err := New(s, initSecret, ep.CommitSecret, ep.PSKSecret, gc)
			if err != nil {
				t.Fatalf("epoch %d: %v", n, err)
			}
			for _, f := range []struct {
				name      string
				got, want []byte
			}{
				{"joiner_secret", e.JoinerSecret, ep.JoinerSecret},
				{"welcome_secret", e.WelcomeSecret, ep.WelcomeSecret},
				{"init_secret", e.InitSecret, ep.InitSecret},
				{"sender_data_secret", e.SenderDataSecret, ep.SenderDataSecret},
				{"encryption_secret", e.EncryptionSecret, ep.EncryptionSecret},
				{"exporter_secret", e.ExporterSecret, ep.ExporterSecret},
				{"epoch_authenticator", e.EpochAuthenticator, ep.EpochAuthenticator},
				{"external_secret", e.ExternalSecret, ep.ExternalSecret},
				{"confirmation_key", e.ConfirmationKey, ep.ConfirmationKey},
				{"membership_key", e.MembershipKey, ep.MembershipKey},
				{"resumption_psk", e.ResumptionPSK, ep.ResumptionPSK},
			} {
				if !bytes.Equal(f.got, f.want) {
					t.Errorf("epoch %d: %s = %x, want %x", n, f.name, f.got, f.want)
				}
			}
			ws, err := WelcomeSecret(s, e.JoinerSecret, ep.PSKSecret)
			if err != nil || !bytes.Equal(ws, ep.WelcomeSecret) {
				t.Errorf("epoch %d: WelcomeSecret = %x, %v", n, ws, err)
			}
			if _, pub, err := e.ExternalKeyPair(); err != nil || !bytes.Equal(pub, ep.ExternalPub) {
				t.Errorf("epoch %d: external_pub = %x, %v; want %x", n, pub, err, ep.ExternalPub)
			}
			x := ep.Exporter
			if got, err := e.Export(x.Label, x.Context, x.Length); err != nil || !bytes.Equal(got, x.Secret) {
				t.Errorf("epoch %d: exporter = %x, %v; want %x", n, got, err, x.Secret)
			}
			initSecret = e.InitSecret
		}
	})
}

func testPSKSecret(t *testing.T) {
	var cases []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		PSKs        []struct {
			PSKID    tv.Hex `json:"psk_id"`
			PSK      tv.Hex `json:"psk"`
			PSKNonce tv.Hex `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret tv.Hex `json:"psk_secret"`
	}
	tv.Load(t, "psk_secret", &cases)
	count := tv.NewCounter(t, "psk_secret")
	for i, c := range cases {
		s, err := suite.Lookup(suite.ID(c.CipherSuite))
		if errors.Is(err, suite.ErrUnsupported) {
			count.Unsupported(c.CipherSuite)
			continue
		}
		var psks []PSK
		for _, p := range c.PSKs {
			id, err := codec.Marshal(func(w *codec.Writer) {
				w.Uint8(1) // external
				w.Opaque(p.PSKID)
				w.Opaque(p.PSKNonce)
			})
			if err != nil {
				t.Fatal(err)
			}
			psks = append(psks, PSK{ID: id, Secret: p.PSK})
		}
		got, err := PSKSecret(s, psks)
		if err != nil || !bytes.Equal(got, c.PSKSecret) {
			t.Errorf("case %d (suite %d, %d PSKs): psk_secret = %x, %v; want %x", i, c.CipherSuite, len(psks), got, err, c.PSKSecret)
		}
		count.Ran(c.CipherSuite)
	}
}
