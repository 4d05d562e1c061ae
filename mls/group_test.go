package mls

import (
	"bytes"
	"fmt"
	"testing"
)

// member is one client in a test world.
type member struct {
	name   string
	signer *Signer
	group  *Group
}

// world holds the members of one group and checks they agree.
type world struct {
	t       testing.TB
	cs      CipherSuite
	members []*member
	n       int
}

func newWorld(t testing.TB, cs CipherSuite) *world {
	w := &world{t: t, cs: cs}
	s, err := GenerateSigner(cs)
	if err != nil {
		t.Fatal(err)
	}
	g, err := CreateGroup(CreateParams{GroupID: []byte("!room:a.example"), Signer: s, Credential: testCredential(t, "creator", s)})
	if err != nil {
		t.Fatal(err)
	}
	w.members = []*member{{name: "creator", signer: s, group: g}}
	return w
}

func testCredential(t testing.TB, name string, s *Signer) Credential {
	c, err := NewMatrixCredential(&MatrixIdentity{UserID: "@" + name + ":a.example", DeviceID: "D", SignatureKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newClient makes a key package for a new client.
func (w *world) newClient() (*member, *KeyPackage, *KeyPackageSecrets) {
	w.n++
	name := fmt.Sprintf("m%d", w.n)
	s, err := GenerateSigner(w.cs)
	if err != nil {
		w.t.Fatal(err)
	}
	kp, sec, err := NewKeyPackage(KeyPackageParams{Signer: s, Credential: testCredential(w.t, name, s)})
	if err != nil {
		w.t.Fatal(err)
	}
	return &member{name: name, signer: s}, kp, sec
}

// commit has member c commit with opts, every other member process and
// merge it, and new members join from the Welcome.
func (w *world) commit(c *member, opts CommitOptions, joiners map[string]joiner) {
	w.t.Helper()
	sc, err := c.group.Commit(opts)
	if err != nil {
		w.t.Fatalf("%s commits: %v", c.name, err)
	}
	w.deliver(c, sc, joiners)
}

type joiner struct {
	m   *member
	kp  *KeyPackage
	sec *KeyPackageSecrets
}

func (w *world) deliver(c *member, sc *StagedCommit, joiners map[string]joiner) {
	w.t.Helper()
	var stay []*member
	for _, m := range w.members {
		if m == c {
			continue
		}
		r, err := m.group.Process(sc.Message)
		if err != nil {
			w.t.Fatalf("%s processes %s's commit: %v", m.name, c.name, err)
		}
		if err := m.group.Merge(r.Commit); err != nil {
			w.t.Fatal(err)
		}
		if !m.group.Removed() {
			stay = append(stay, m)
		}
	}
	if err := c.group.Merge(sc); err != nil {
		w.t.Fatal(err)
	}
	w.members = append([]*member{c}, stay...)
	for _, j := range joiners {
		g, err := JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: j.kp, Secrets: j.sec, Signer: j.m.signer})
		if err != nil {
			w.t.Fatalf("%s joins: %v", j.m.name, err)
		}
		j.m.group = g
		w.members = append(w.members, j.m)
	}
	w.check()
}

// check asserts every member has the same epoch, authenticator and tree.
func (w *world) check() {
	w.t.Helper()
	ref := w.members[0].group
	tree, _ := ref.RatchetTree().MarshalMLS()
	for _, m := range w.members[1:] {
		if m.group.Epoch() != ref.Epoch() || !bytes.Equal(m.group.EpochAuthenticator(), ref.EpochAuthenticator()) {
			w.t.Fatalf("%s is at epoch %d, %s at %d, or their authenticators differ", m.name, m.group.Epoch(), w.members[0].name, ref.Epoch())
		}
		if t2, _ := m.group.RatchetTree().MarshalMLS(); !bytes.Equal(t2, tree) {
			w.t.Fatalf("%s's tree differs", m.name)
		}
	}
}

// message has member s send to everyone else.
func (w *world) message(s *member, text string) {
	w.t.Helper()
	m, err := s.group.Encrypt([]byte(text), []byte("ad"))
	if err != nil {
		w.t.Fatal(err)
	}
	for _, r := range w.members {
		if r == s {
			continue
		}
		got, err := r.group.Process(m)
		if err != nil || string(got.Application) != text || !bytes.Equal(got.AuthenticatedData, []byte("ad")) ||
			got.Sender.LeafIndex != s.group.LeafIndex() {
			w.t.Fatalf("%s reads %s's message: %v", r.name, s.name, err)
		}
	}
}

func (w *world) add(c *member, k int) {
	w.t.Helper()
	joiners := map[string]joiner{}
	var props []*Proposal
	for range k {
		m, kp, sec := w.newClient()
		joiners[m.name] = joiner{m, kp, sec}
		props = append(props, &Proposal{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}})
	}
	w.commit(c, CommitOptions{Proposals: props, AuthenticatedData: []byte("federation")}, joiners)
}

func TestGroupLifecycle(t *testing.T) {
	for _, cs := range SupportedCipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			w := newWorld(t, cs)
			w.add(w.members[0], 2)
			w.message(w.members[1], "hello")
			w.commit(w.members[2], CommitOptions{}, nil) // empty commit with path
			w.add(w.members[1], 1)
			w.message(w.members[3], "from the newest")
			victim := w.members[1].group.LeafIndex()
			w.commit(w.members[2], CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: victim}}}}, nil)
			if len(w.members) != 3 {
				t.Fatalf("%d members after a removal", len(w.members))
			}
			w.message(w.members[0], "after the removal")
		})
	}
}
