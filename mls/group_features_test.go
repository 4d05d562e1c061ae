package mls

import (
	"bytes"
	"errors"
	"testing"
)

func TestExternalJoin(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 2)
	sc, err := w.members[1].group.Commit(CommitOptions{ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(w.members[1], sc, nil)
	// A newcomer joins from the GroupInfo alone (the tree comes separately).
	s, _ := GenerateSigner(X25519AES128GCMSHA256Ed25519)
	g, msg, err := JoinExternal(ExternalJoinParams{GroupInfo: sc.GroupInfo, RatchetTree: w.members[1].group.RatchetTree(),
		Signer: s, Credential: testCredential(t, "outsider", s), AuthenticatedData: []byte("ext")})
	if err != nil {
		t.Fatal(err)
	}
	if msg.WireFormat != WireFormatPublicMessage || msg.PublicMessage.Content.Sender.SenderType != SenderTypeNewMemberCommit {
		t.Fatalf("external commit framed as %v by %v", msg.WireFormat, msg.PublicMessage.Content.Sender.SenderType)
	}
	newcomer := &member{name: "outsider", signer: s, group: g}
	for _, m := range w.members {
		r, err := m.group.Process(msg)
		if err != nil {
			t.Fatalf("%s processes the external commit: %v", m.name, err)
		}
		if !bytes.Equal(r.AuthenticatedData, []byte("ext")) {
			t.Fatal("authenticated data lost")
		}
		if err := m.group.Merge(r.Commit); err != nil {
			t.Fatal(err)
		}
	}
	w.members = append(w.members, newcomer)
	w.check()
	w.message(newcomer, "I joined from outside")
	w.commit(w.members[0], CommitOptions{}, nil)

	// A GroupInfo without external_pub cannot be used.
	if _, _, err := JoinExternal(ExternalJoinParams{GroupInfo: w.members[0].group.mustGroupInfo(t), RatchetTree: w.members[0].group.RatchetTree(), Signer: s, Credential: testCredential(t, "x", s)}); err == nil {
		t.Fatal("external join without external_pub")
	}
}

// mustGroupInfo makes a fresh GroupInfo without external_pub by staging an
// empty commit.
func (g *Group) mustGroupInfo(t *testing.T) *GroupInfo {
	sc, err := g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sc.GroupInfo
}

func TestPSKs(t *testing.T) {
	psks := map[string][]byte{"shared": bytes.Repeat([]byte{7}, 32)}
	cfg := GroupConfig{ExternalPSK: func(id []byte) ([]byte, bool) { s, ok := psks[string(id)]; return s, ok }}
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.members[0].group.cfg = cfg
	w.add(w.members[0], 1)
	w.members[1].group.cfg = cfg
	// An epoch both members have seen, for the resumption PSK.
	w.commit(w.members[1], CommitOptions{}, nil)
	ext, err := w.members[0].group.NewPSKProposal([]byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.members[0].group.NewResumptionPSKProposal(w.members[0].group.Epoch() - 1)
	if err != nil {
		t.Fatal(err)
	}
	w.commit(w.members[0], CommitOptions{Proposals: []*Proposal{ext, res}}, nil)
	if _, err := w.members[0].group.NewPSKProposal([]byte("unknown")); err == nil {
		t.Fatal("proposal for an unknown PSK")
	}
	// A member that does not know the PSK cannot follow the commit.
	ext2, _ := w.members[0].group.NewPSKProposal([]byte("shared"))
	sc, err := w.members[0].group.Commit(CommitOptions{Proposals: []*Proposal{ext2}})
	if err != nil {
		t.Fatal(err)
	}
	w.members[1].group.cfg.ExternalPSK = nil
	if _, err := w.members[1].group.Process(sc.Message); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("commit with an unknown PSK: %v", err)
	}
}

func TestUpdateProposalAndGroupContextExtensions(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 2)
	b := w.members[1]
	up, err := b.group.ProposeUpdate([]byte("upd"))
	if err != nil {
		t.Fatal(err)
	}
	exts := Extensions{{Type: 0xF6D0, Data: []byte(`{}`)}}
	gce, err := w.members[2].group.ProposeGroupContextExtensions(exts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range w.members {
		for _, p := range []*MLSMessage{up, gce} {
			if m.group.LeafIndex() == b.group.LeafIndex() && p == up || m.name == w.members[2].name && p == gce {
				continue
			}
			if _, err := m.group.Process(p); err != nil {
				t.Fatalf("%s processes a proposal: %v", m.name, err)
			}
		}
	}
	oldKey := bytes.Clone(b.group.st.tree.leaf(0).EncryptionKey)
	w.commit(w.members[0], CommitOptions{}, nil)
	if got := w.members[0].group.Extensions(); len(got) != 1 || got[0].Type != 0xF6D0 {
		t.Fatalf("extensions after commit: %v", got)
	}
	if bytes.Equal(oldKey, b.group.st.tree.leaf(0).EncryptionKey) {
		t.Fatal("leaf 0 unchanged")
	}
	w.message(b, "after my update")
	// The committer's own Update by value is refused.
	if _, err := w.members[0].group.Commit(CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeUpdate, Update: &Update{}}}}); err == nil {
		t.Fatal("own update by value")
	}
}

func TestInvalidProposalLists(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 2)
	g := w.members[0].group
	me := g.LeafIndex()
	rm := func(l uint32) *Proposal {
		return &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: l}}
	}
	_, kp, _ := w.newClient()
	add := &Proposal{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}
	gce := &Proposal{ProposalType: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{}}
	reinit := &Proposal{ProposalType: ProposalTypeReInit, ReInit: &ReInit{GroupID: []byte("new"), Version: MLS10, CipherSuite: g.CipherSuite()}}
	for name, props := range map[string][]*Proposal{
		"remove self":        {rm(me)},
		"remove twice":       {rm(1), rm(1)},
		"remove blank":       {rm(9)},
		"add twice":          {add, add},
		"two GCE":            {gce, gce},
		"reinit with others": {reinit, rm(1)},
		"external init":      {{ProposalType: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: []byte{1}}}},
	} {
		if _, err := g.Commit(CommitOptions{Proposals: props}); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("%s: %v, want ErrInvalidCommit", name, err)
		}
	}
	if _, err := g.Commit(CommitOptions{Proposals: []*Proposal{rm(1)}, NoPath: true}); !errors.Is(err, ErrInvalidCommit) {
		t.Errorf("remove without a path: %v", err)
	}
	// An add without a path is fine.
	sc, err := g.Commit(CommitOptions{Proposals: []*Proposal{add}, NoPath: true})
	if err != nil || sc.Message.PrivateMessage == nil {
		t.Fatalf("add without a path: %v", err)
	}
}

func TestStagedCommitsAndLateMessages(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 2)
	a, b := w.members[0], w.members[1]
	late, err := b.group.Encrypt([]byte("sent before the commit"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// a stages a commit; nothing changes until it is accepted.
	epoch := a.group.Epoch()
	sc, err := a.group.Commit(CommitOptions{AuthenticatedData: []byte("fed")})
	if err != nil {
		t.Fatal(err)
	}
	if a.group.Epoch() != epoch {
		t.Fatal("creating a commit changed the epoch")
	}
	// Rejected by the server: a drops it and can still talk in the epoch.
	w.message(a, "still in the old epoch")
	// b's competing commit wins instead.
	sc2, err := b.group.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(b, sc2, nil)
	if err := a.group.Merge(sc); err == nil {
		t.Fatal("merged a commit staged in an earlier epoch")
	}
	// The message from the old epoch still decrypts.
	r, err := a.group.Process(late)
	if err != nil || string(r.Application) != "sent before the commit" || r.Epoch != epoch {
		t.Fatalf("late message: %v", err)
	}
	// Processing a commit stages it too.
	sc3, _ := w.members[2].group.Commit(CommitOptions{})
	r, err = a.group.Process(sc3.Message)
	if err != nil || r.Commit == nil || a.group.Epoch() != epoch+1 {
		t.Fatalf("processing staged nothing, or changed the group: %v", err)
	}
}

func TestEpochHistoryLimit(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 1)
	a, b := w.members[0], w.members[1]
	b.group.cfg.EpochHistory = 1
	old, _ := a.group.Encrypt([]byte("old"), nil)
	w.commit(a, CommitOptions{}, nil)
	w.commit(a, CommitOptions{}, nil)
	if _, err := b.group.Process(old); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("message two epochs back with a history of 1: %v", err)
	}
}

func TestPublicHandshakeAndOmittedTree(t *testing.T) {
	w := newWorld(t, P256AES128GCMSHA256P256)
	w.members[0].group.cfg.PublicHandshake = true
	m, kp, sec := w.newClient()
	sc, err := w.members[0].group.Commit(CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}},
		OmitRatchetTree: true, AuthenticatedData: []byte("pub")})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Message.WireFormat != WireFormatPublicMessage {
		t.Fatal("not a PublicMessage")
	}
	if _, err := JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: kp, Secrets: sec, Signer: m.signer}); err == nil {
		t.Fatal("joined without a tree")
	}
	if err := w.members[0].group.Merge(sc); err != nil {
		t.Fatal(err)
	}
	g, err := JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: kp, Secrets: sec, Signer: m.signer, RatchetTree: w.members[0].group.RatchetTree()})
	if err != nil {
		t.Fatal(err)
	}
	m.group = g
	w.members = append(w.members, m)
	w.check()
	w.message(m, "joined with the tree given separately")
}

func TestReInit(t *testing.T) {
	w := newWorld(t, X25519AES128GCMSHA256Ed25519)
	w.add(w.members[0], 1)
	ri := &ReInit{GroupID: []byte("!room2:a.example"), Version: MLS10, CipherSuite: X25519ChaCha20Poly1305SHA256Ed25519}
	w.commit(w.members[1], CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeReInit, ReInit: ri}}}, nil)
	for _, m := range w.members {
		if !m.group.Removed() || m.group.PendingReInit() == nil || !bytes.Equal(m.group.PendingReInit().GroupID, ri.GroupID) {
			t.Fatalf("%s: group not closed by the ReInit", m.name)
		}
		if _, err := m.group.Encrypt([]byte("x"), nil); !errors.Is(err, ErrRemoved) {
			t.Fatalf("%s sends after a ReInit: %v", m.name, err)
		}
	}
}
