package mls

import (
	"bytes"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
)

func TestPSKSecretWithResumptionPSKs(t *testing.T) {
	cs := X25519AES128GCMSHA256Ed25519
	nonce := bytes.Repeat([]byte{5}, 32)
	ext := PSK{ID: PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: []byte("ext"), PSKNonce: nonce}, Secret: []byte("k1")}
	res := PSK{ID: PreSharedKeyID{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageApplication,
		PSKGroupID: []byte("!room:a.example"), PSKEpoch: 3, PSKNonce: nonce}, Secret: bytes.Repeat([]byte{9}, 32)}

	zero, err := PSKSecret(cs, nil)
	if err != nil || !bytes.Equal(zero, make([]byte, 32)) {
		t.Fatalf("no PSKs: %x, %v", zero, err)
	}
	both, err := PSKSecret(cs, []PSK{ext, res})
	if err != nil {
		t.Fatal(err)
	}
	// The same chain computed from hand-encoded PreSharedKeyIDs (RFC 9420
	// §8.4): psktype 2, usage 1, psk_group_id<V>, psk_epoch, psk_nonce<V>.
	resID := append([]byte{2, 1, 15}, "!room:a.example"...)
	resID = append(resID, 0, 0, 0, 0, 0, 0, 0, 3, 32)
	resID = append(resID, nonce...)
	extID := append(append([]byte{1, 3}, "ext"...), 32)
	extID = append(extID, nonce...)
	s, _ := suite.Lookup(suite.ID(cs))
	want, _ := keyschedule.PSKSecret(s, []keyschedule.PSK{{ID: extID, Secret: ext.Secret}, {ID: resID, Secret: res.Secret}})
	if !bytes.Equal(both, want) {
		t.Fatalf("psk_secret %x, want %x", both, want)
	}
	// Order matters, and each PSK changes the result.
	swapped, _ := PSKSecret(cs, []PSK{res, ext})
	only, _ := PSKSecret(cs, []PSK{res})
	if bytes.Equal(swapped, both) || bytes.Equal(only, both) || bytes.Equal(only, zero) {
		t.Fatal("PSK secret ignores order or content")
	}
	bad := res
	bad.ID.Usage = 9
	if _, err := PSKSecret(cs, []PSK{bad}); err == nil {
		t.Fatal("PSK with an invalid usage accepted")
	}
}

func TestKeyScheduleAgreesWithJoiner(t *testing.T) {
	cs := X25519AES128GCMSHA256Ed25519
	ctx := &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("g"), Epoch: 1, TreeHash: []byte{1}, ConfirmedTranscriptHash: []byte{2}}
	e, err := KeySchedule(ctx, bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := KeyScheduleFromJoiner(ctx, e.JoinerSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.EpochAuthenticator, j.EpochAuthenticator) || !bytes.Equal(e.InitSecret, j.InitSecret) {
		t.Fatal("a joiner derives another epoch than a member")
	}
	x1, err := e.Export("matrix", []byte("ctx"), 32)
	if err != nil || len(x1) != 32 {
		t.Fatalf("exporter: %v", err)
	}
	// Members of the epoch protect messages for each other.
	a, err := e.EpochKeys(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := j.EpochKeys(ctx, 2, nil)
	signer, _ := GenerateSigner(cs)
	pm, err := a.ProtectPrivate(&FramedContent{GroupID: []byte("g"), Epoch: 1, Sender: Sender{SenderType: SenderTypeMember, LeafIndex: 1},
		ContentType: ContentTypeApplication, Application: []byte("hi")}, signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UnprotectPrivate(pm, func(Sender) ([]byte, error) { return signer.PublicKey(), nil }); err != nil {
		t.Fatal(err)
	}
	other := *ctx
	other.CipherSuite = P256AES128GCMSHA256P256
	if _, err := e.EpochKeys(&other, 2, nil); err == nil {
		t.Fatal("epoch keys for another suite")
	}
}
