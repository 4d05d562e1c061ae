package mls

import (
	"bytes"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 3)
	a := w.members[1]
	// State with a cached proposal, a pending own update and a past epoch.
	late, _ := w.members[2].group.Encrypt([]byte("late"), nil)
	w.commit(w.members[0], CommitOptions{}, nil)
	if _, err := a.group.ProposeUpdate(nil); err != nil {
		t.Fatal(err)
	}
	b, err := a.group.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadGroup(b, GroupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := g.MarshalState()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("state changes through a round trip (%v)", err)
	}
	clear(b) // the loaded group must not alias its input
	if !bytes.Equal(g.EpochAuthenticator(), a.group.EpochAuthenticator()) || g.LeafIndex() != a.group.LeafIndex() ||
		len(g.PendingProposals()) != 1 {
		t.Fatal("loaded group differs")
	}
	a.group = g
	if r, err := g.Process(late); err != nil || string(r.Application) != "late" {
		t.Fatalf("late message after loading: %v", err)
	}
	w.message(a, "from the loaded group")
	w.commit(a, CommitOptions{}, nil)
	w.message(w.members[2], "everyone follows")

	for _, bad := range [][]byte{nil, {0, 2}, b2[:len(b2)/2], append(bytes.Clone(b2), 0)} {
		if _, err := LoadGroup(bad, GroupConfig{}); err == nil {
			t.Fatalf("bad state %x... accepted", bad[:min(len(bad), 8)])
		}
	}
}

// TestSecurityWindowRollback is MSC4256's security window: a client keeps
// its state from before applying a commit, and when another commit of the
// same epoch wins, returns to that state and applies the winner instead.
func TestSecurityWindowRollback(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 2)
	a, b, c := w.members[0], w.members[1], w.members[2]
	saved, err := a.group.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	// a's commit is applied by a and c first ...
	lost, err := a.group.Commit(CommitOptions{AuthenticatedData: []byte("lost")})
	if err != nil {
		t.Fatal(err)
	}
	savedC, _ := c.group.MarshalState()
	r, err := c.group.Process(lost.Message)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.group.Merge(r.Commit); err != nil {
		t.Fatal(err)
	}
	if err := a.group.Merge(lost); err != nil {
		t.Fatal(err)
	}
	// ... but b's commit for the same epoch wins (state resolution).
	won, err := b.group.Commit(CommitOptions{AuthenticatedData: []byte("won")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.group.Merge(won); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		m     *member
		state []byte
	}{{a, saved}, {c, savedC}} {
		g, err := LoadGroup(x.state, GroupConfig{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := g.Process(won.Message)
		if err != nil {
			t.Fatalf("%s applies the winning commit after rolling back: %v", x.m.name, err)
		}
		if err := g.Merge(r.Commit); err != nil {
			t.Fatal(err)
		}
		x.m.group = g
	}
	w.check()
	w.message(c, "on the winning chain")
}
