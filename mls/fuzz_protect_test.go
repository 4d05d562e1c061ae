package mls

import (
	"testing"
)

// FuzzMatrixIdentity parses arbitrary credential identities: no panic, and
// whatever parses re-encodes to the same bytes.
func FuzzMatrixIdentity(f *testing.F) {
	good, _ := (&MatrixIdentity{UserID: "@a:b.example", DeviceID: "D", SignatureKey: make([]byte, 32)}).Marshal()
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x40, 0x01, '@'})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseMatrixIdentity(b)
		if err != nil {
			return
		}
		again, err := id.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding %x gave %x, %v", b, again, err)
		}
	})
}

// FuzzKeyPackageValidate decodes and validates arbitrary KeyPackages, as a
// server does on key upload: no panic whatever the input.
func FuzzKeyPackageValidate(f *testing.F) {
	kp, _, _ := newTestKeyPackage(f, X25519AES128GCMSHA256Ed25519, nil)
	b, err := kp.MarshalMLS()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	kp2, _, _ := newTestKeyPackage(f, P256AES128GCMSHA256P256, nil)
	b2, _ := kp2.MarshalMLS()
	f.Add(b2)
	check := KeyPackageCheck{Now: testNow}
	f.Fuzz(func(t *testing.T, b []byte) {
		var kp KeyPackage
		if kp.UnmarshalMLS(b) != nil {
			return
		}
		_ = kp.Validate(check)
		_, _ = kp.Ref()
	})
}

// FuzzUnprotectPrivate feeds arbitrary PrivateMessage bodies to a member of
// a fixed epoch: no panic, and nothing but the genuine messages unprotects.
func FuzzUnprotectPrivate(f *testing.F) {
	g := newTestGroup(f, X25519AES128GCMSHA256Ed25519)
	send := g.keys(f, nil)
	for i, msg := range []string{"one", "two"} {
		pm, err := send.ProtectPrivate(g.app(uint32(i), msg, []byte("ad")), g.signers[i], nil)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := pm.MarshalMLS()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var pm PrivateMessage
		if pm.UnmarshalMLS(b) != nil {
			return
		}
		_, _ = g.keys(t, nil).UnprotectPrivate(&pm, g.lookup)
	})
}
