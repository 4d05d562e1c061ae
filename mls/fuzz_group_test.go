package mls

import (
	"testing"
)

// fuzzWorld is a fixed two-member group whose states the fuzz targets
// restore for every input.
func fuzzWorld(f *testing.F) (aState, bState []byte, seeds [][]byte, kp *KeyPackage, sec *KeyPackageSecrets, kpSigner *Signer) {
	w := newWorld(f, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 1)
	a, b := w.members[0], w.members[1]
	var err error
	if aState, err = a.group.MarshalState(); err != nil {
		f.Fatal(err)
	}
	if bState, err = b.group.MarshalState(); err != nil {
		f.Fatal(err)
	}
	m, kp, sec := w.newClient()
	for _, opts := range []CommitOptions{{AuthenticatedData: []byte("ad")},
		{Proposals: []*Proposal{{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}}}} {
		sc, err := b.group.Commit(opts)
		if err != nil {
			f.Fatal(err)
		}
		enc, _ := sc.Message.MarshalMLS()
		seeds = append(seeds, enc)
		if sc.Welcome != nil {
			wenc, _ := sc.Welcome.MarshalMLS()
			seeds = append(seeds, wenc)
		}
	}
	app, _ := b.group.Encrypt([]byte("hello"), []byte("ad"))
	enc, _ := app.MarshalMLS()
	prop, _ := b.group.ProposeRemove(0, nil)
	penc, _ := prop.MarshalMLS()
	return aState, bState, append(seeds, enc, penc), kp, sec, m.signer
}

// FuzzGroupProcess feeds arbitrary MLSMessages to a member: no panic, and
// the member's state stays loadable.
func FuzzGroupProcess(f *testing.F) {
	aState, _, seeds, _, _, _ := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m MLSMessage
		if m.UnmarshalMLS(b) != nil {
			return
		}
		g, err := LoadGroup(aState, GroupConfig{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := g.Process(&m)
		if err == nil && r.Commit != nil {
			_ = g.Merge(r.Commit)
		}
		if _, err := g.MarshalState(); err != nil {
			t.Fatalf("state after processing: %v", err)
		}
	})
}

// FuzzJoinFromWelcome feeds arbitrary Welcomes to a joiner: no panic.
func FuzzJoinFromWelcome(f *testing.F) {
	_, _, seeds, kp, sec, signer := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m MLSMessage
		if m.UnmarshalMLS(b) != nil || m.Welcome == nil {
			return
		}
		_, _ = JoinFromWelcome(m.Welcome, JoinParams{KeyPackage: kp, Secrets: sec, Signer: signer})
	})
}

// FuzzLoadGroup loads arbitrary group states: no panic, and a loaded state
// re-encodes to a fixed point (the encoding of a state that loaded, loaded
// again, encodes the same).
func FuzzLoadGroup(f *testing.F) {
	aState, bState, _, _, _, _ := fuzzWorld(f)
	f.Add(aState)
	f.Add(bState)
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := LoadGroup(b, GroupConfig{})
		if err != nil {
			return
		}
		once, err := g.MarshalState()
		if err != nil {
			t.Fatalf("encoding a loaded state: %v", err)
		}
		g2, err := LoadGroup(once, GroupConfig{})
		if err != nil {
			t.Fatalf("reloading an encoded state: %v", err)
		}
		twice, err := g2.MarshalState()
		if err != nil || string(twice) != string(once) {
			t.Fatalf("state encoding is not a fixed point (%v)", err)
		}
	})
}
