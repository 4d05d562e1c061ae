package mls

// Interoperability with github.com/thomas-vilte/mls-go (an independent Go
// implementation of RFC 9420), a test-only dependency. Every message
// crosses between the implementations as MLSMessage bytes.

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	mlsgocs "github.com/thomas-vilte/mls-go/ciphersuite"
	mlsgocred "github.com/thomas-vilte/mls-go/credentials"
	mlsgoframing "github.com/thomas-vilte/mls-go/framing"
	mlsgogroup "github.com/thomas-vilte/mls-go/group"
	mlsgokp "github.com/thomas-vilte/mls-go/keypackages"
	mlsgotree "github.com/thomas-vilte/mls-go/treesync"
)

// mlsgoSuites pairs our cipher suites with mls-go's.
var mlsgoSuites = []struct {
	ours   CipherSuite
	theirs mlsgocs.CipherSuite
}{
	{X25519AES128GCMSHA256Ed25519, mlsgocs.MLS128DHKEMX25519},
	{P256AES128GCMSHA256P256, mlsgocs.MLS128DHKEMP256},
	{X25519ChaCha20Poly1305SHA256Ed25519, mlsgocs.MLS128DHKEMX25519ChaCha20},
}

// mlsgoPeer drives one mls-go client through its low-level group API.
type mlsgoPeer struct {
	Name    string
	CS      mlsgocs.CipherSuite
	Cred    *mlsgocred.CredentialWithKey
	Sig     *mlsgocs.SignaturePrivateKey
	KP      *mlsgokp.KeyPackage
	KPPriv  *mlsgokp.KeyPackagePrivateKeys
	G       *mlsgogroup.Group
	Removed bool
}

func newMLSGoPeer(tb testing.TB, name string, cs mlsgocs.CipherSuite) *mlsgoPeer {
	tb.Helper()
	cwk, sig, err := mlsgocred.GenerateCredentialWithKeyForCS([]byte(name), cs)
	if err != nil {
		tb.Fatalf("mls-go credential: %v", err)
	}
	kp, priv, err := mlsgokp.Generate(cwk, cs)
	if err != nil {
		tb.Fatalf("mls-go key package: %v", err)
	}
	return &mlsgoPeer{Name: name, CS: cs, Cred: cwk, Sig: sig, KP: kp, KPPriv: priv}
}

// KeyPackageMessage is the peer's KeyPackage as MLSMessage bytes.
func (p *mlsgoPeer) KeyPackageMessage() []byte {
	return (&mlsgoframing.MLSMessage{KeyPackage: p.KP.Marshal()}).Marshal()
}

func (p *mlsgoPeer) CreateGroup(id []byte) (err error) {
	p.G, err = mlsgogroup.NewGroup(mlsgogroup.NewGroupID(id), p.CS, p.KP, p.KPPriv)
	return err
}

func (p *mlsgoPeer) Join(welcomeMsg []byte) error {
	m, err := mlsgoframing.UnmarshalMLSMessage(welcomeMsg)
	if err != nil {
		return err
	}
	w, err := mlsgogroup.UnmarshalWelcome(m.Welcome)
	if err != nil {
		return err
	}
	p.G, err = mlsgogroup.JoinFromWelcome(w, p.KP, p.KPPriv, nil)
	return err
}

// Commit commits the pending proposals plus adds of the given KeyPackages,
// returning the commit as MLSMessage(PublicMessage or PrivateMessage) bytes
// and, when members are added, MLSMessage(Welcome) bytes for all of them.
func (p *mlsgoPeer) Commit(adds []*mlsgokp.KeyPackage, private bool) (commitMsg, welcomeMsg []byte, err error) {
	for _, kp := range adds {
		if _, err := p.G.AddMember(kp); err != nil {
			return nil, nil, err
		}
	}
	return p.commitPending(private, nil)
}

// commitPending commits the pending proposals. welcomeFor, when not nil,
// restricts the Welcome to those KeyPackages.
func (p *mlsgoPeer) commitPending(private bool, welcomeFor []*mlsgokp.KeyPackage) (commitMsg, welcomeMsg []byte, err error) {
	wf := mlsgoframing.WireFormatPublicMessage
	if private {
		wf = mlsgoframing.WireFormatPrivateMessage
	}
	st, err := p.G.CommitWithFormat(p.Sig, p.Sig.PublicKey(), nil, wf)
	if err != nil {
		return nil, nil, err
	}
	ac := st.AuthenticatedContent()
	if private { // encrypted with the old epoch's secrets, before MergeCommit
		pm, err := mlsgoframing.Encrypt(mlsgoframing.EncryptParams{AuthContent: ac, SenderLeafIndex: uint32(p.G.OwnLeafIndex()),
			CipherSuite: p.CS, PaddingSize: p.G.PaddingSize(),
			SenderDataSecret: p.G.EpochSecrets().SenderDataSecret, SecretTree: p.G.SecretTree()})
		if err != nil {
			_ = p.G.DiscardPendingCommit()
			return nil, nil, err
		}
		commitMsg = mlsgoframing.NewMLSMessagePrivate(pm).Marshal()
	} else {
		commitMsg = mlsgoframing.NewMLSMessagePublic(&mlsgoframing.PublicMessage{Content: ac.Content, Auth: ac.Auth,
			MembershipTag: st.MembershipTag()}).Marshal()
	}
	newKPs := welcomeFor
	if newKPs == nil {
		for _, pr := range st.Proposals() {
			if pr.Type == mlsgogroup.ProposalTypeAdd {
				newKPs = append(newKPs, pr.Add.KeyPackage)
			}
		}
	}
	joiner := st.JoinerSecret()
	if err := p.G.MergeCommit(st); err != nil {
		return nil, nil, err
	}
	if len(newKPs) > 0 {
		w, err := p.G.CreateWelcomeWithOpts(newKPs, p.Sig, mlsgogroup.WithJoinerSecret(joiner), mlsgogroup.WithStagedCommit(st),
			mlsgogroup.WithPSKIDs(st.PskIDs()), mlsgogroup.WithPSKSecret(st.RawPskSecret()))
		if err != nil {
			return nil, nil, err
		}
		welcomeMsg = (&mlsgoframing.MLSMessage{Welcome: w.Marshal()}).Marshal()
	}
	return commitMsg, welcomeMsg, nil
}

// Protect encrypts an application message as MLSMessage(PrivateMessage).
func (p *mlsgoPeer) Protect(pt, aad []byte) ([]byte, error) {
	pm, err := p.G.SendMessage(pt, p.Sig, mlsgogroup.WithAAD(aad))
	if err != nil {
		return nil, err
	}
	return mlsgoframing.NewMLSMessagePrivate(pm).Marshal(), nil
}

// mlsgoIncoming is what an mls-go peer made of a message.
type mlsgoIncoming struct {
	Kind           string // application, proposal, commit or removed
	Plaintext, AAD []byte
	Sender         uint32
}

// Handle processes a group message (and merges a commit).
func (p *mlsgoPeer) Handle(b []byte) (*mlsgoIncoming, error) {
	m, err := mlsgoframing.UnmarshalMLSMessage(b)
	if err != nil {
		return nil, err
	}
	if pub, ok := m.AsPublic(); ok {
		in := &mlsgoIncoming{Kind: "commit", AAD: pub.Content.AuthenticatedData, Sender: pub.Content.Sender.LeafIndex}
		if pub.Content.ContentType() == mlsgoframing.ContentTypeProposal {
			in.Kind = "proposal"
			return in, p.G.ProcessPublicMessage(pub)
		}
		return p.removalCheck(in, &pub.Content, p.G.ProcessPublicMessage(pub))
	}
	priv, ok := m.AsPrivate()
	if !ok {
		return nil, fmt.Errorf("mls-go: wire format %v is not a group message", m.WireFormat())
	}
	switch priv.ContentType {
	case mlsgoframing.ContentTypeApplication:
		pt, aad, s, err := p.G.ReceiveApplicationMessage(priv)
		return &mlsgoIncoming{Kind: "application", Plaintext: pt, AAD: aad, Sender: uint32(s)}, err
	case mlsgoframing.ContentTypeProposal:
		return &mlsgoIncoming{Kind: "proposal", AAD: priv.AuthenticatedData}, p.G.ProcessPrivateMessage(priv)
	}
	ac, err := mlsgoframing.Decrypt(priv, mlsgoframing.DecryptParams{CipherSuite: p.CS, SenderDataSecret: p.G.EpochSecrets().SenderDataSecret,
		SecretTree: p.G.SecretTree(), GroupContext: p.G.GroupContext().Marshal()})
	if err != nil {
		return nil, err
	}
	ac.WireFormat = mlsgoframing.WireFormatPrivateMessage
	in := &mlsgoIncoming{Kind: "commit", AAD: ac.Content.AuthenticatedData, Sender: ac.Content.Sender.LeafIndex}
	err = p.G.ProcessReceivedCommit(ac, mlsgotree.LeafIndex(in.Sender), p.G.MyLeafEncryptionKey())
	return p.removalCheck(in, &ac.Content, err)
}

// removalCheck turns mls-go's ErrOwnLeafNotFound, which is how it reports a
// commit removing this client (its state is then unchanged), into Kind
// "removed" when the commit does remove us.
func (p *mlsgoPeer) removalCheck(in *mlsgoIncoming, fc *mlsgoframing.FramedContent, err error) (*mlsgoIncoming, error) {
	if !errors.Is(err, mlsgogroup.ErrOwnLeafNotFound) {
		return in, err
	}
	body, _ := fc.CommitData()
	c, perr := mlsgogroup.UnmarshalCommit(body)
	if perr != nil {
		return in, err
	}
	for _, por := range c.Proposals {
		pr := por.Proposal
		for _, sp := range p.G.StoredProposals() {
			if pr == nil && bytes.Equal(sp.Ref, por.ProposalRef) {
				pr = sp.Proposal
			}
		}
		if pr != nil && pr.Type == mlsgogroup.ProposalTypeRemove && uint32(pr.Remove.Removed) == uint32(p.G.OwnLeafIndex()) {
			p.Removed, in.Kind = true, "removed"
			return in, nil
		}
	}
	return in, err
}

// ---------------------------------------------------------------------------
// A mixed group: our members and mls-go peers.

type interopOurs struct {
	name   string
	signer *Signer
	g      *Group
	kp     *KeyPackage // until joined
	sec    *KeyPackageSecrets
}

type interopWorld struct {
	t      *testing.T
	cs     CipherSuite
	gcs    mlsgocs.CipherSuite
	ours   []*interopOurs
	theirs []*mlsgoPeer
	n      int
}

func newInteropWorld(t *testing.T, cs CipherSuite, gcs mlsgocs.CipherSuite) *interopWorld {
	return &interopWorld{t: t, cs: cs, gcs: gcs}
}

// newOurs makes one of our clients with a fresh KeyPackage.
func (w *interopWorld) newOurs() *interopOurs {
	w.t.Helper()
	w.n++
	name := fmt.Sprintf("ours%d", w.n)
	s, err := GenerateSigner(w.cs)
	if err != nil {
		w.t.Fatal(err)
	}
	kp, sec, err := NewKeyPackage(KeyPackageParams{Signer: s, Credential: testCredential(w.t, name, s)})
	if err != nil {
		w.t.Fatal(err)
	}
	return &interopOurs{name: name, signer: s, kp: kp, sec: sec}
}

func (w *interopWorld) newTheirs() *mlsgoPeer {
	w.n++
	return newMLSGoPeer(w.t, fmt.Sprintf("mlsgo%d", w.n), w.gcs)
}

// ourKPFor parses an mls-go peer's KeyPackage from its MLSMessage bytes.
func ourKPFor(t *testing.T, p *mlsgoPeer) *KeyPackage {
	t.Helper()
	var m MLSMessage
	if err := m.UnmarshalMLS(p.KeyPackageMessage()); err != nil {
		t.Fatalf("parsing %s's KeyPackage: %v", p.Name, err)
	}
	if m.WireFormat != WireFormatKeyPackage || m.KeyPackage == nil {
		t.Fatalf("%s's KeyPackage message has wire format %v", p.Name, m.WireFormat)
	}
	return m.KeyPackage
}

// theirKPFor parses one of our KeyPackages with mls-go, from MLSMessage bytes.
func theirKPFor(t *testing.T, o *interopOurs) *mlsgokp.KeyPackage {
	t.Helper()
	b, err := (&MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: o.kp}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	m, err := mlsgoframing.UnmarshalMLSMessage(b)
	if err != nil {
		t.Fatalf("mls-go parses %s's KeyPackage message: %v", o.name, err)
	}
	kp, err := mlsgokp.UnmarshalKeyPackage(m.KeyPackage)
	if err != nil {
		t.Fatalf("mls-go parses %s's KeyPackage: %v", o.name, err)
	}
	if err := kp.Verify(kp.CipherSuite); err != nil {
		t.Fatalf("mls-go verifies %s's KeyPackage: %v", o.name, err)
	}
	return kp
}

func mustMarshal(t *testing.T, m *MLSMessage) []byte {
	t.Helper()
	b, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, b []byte) *MLSMessage {
	t.Helper()
	var m MLSMessage
	if err := m.UnmarshalMLS(b); err != nil {
		t.Fatalf("parsing an mls-go message: %v", err)
	}
	return &m
}

// joinOurs has o join from Welcome bytes.
func (w *interopWorld) joinOurs(o *interopOurs, welcome []byte, cfg GroupConfig) {
	w.t.Helper()
	m := mustParse(w.t, welcome)
	if m.WireFormat != WireFormatWelcome {
		w.t.Fatalf("expected a Welcome, got %v", m.WireFormat)
	}
	g, err := JoinFromWelcome(m.Welcome, JoinParams{KeyPackage: o.kp, Secrets: o.sec, Signer: o.signer, Config: cfg})
	if err != nil {
		w.t.Fatalf("%s joins: %v", o.name, err)
	}
	o.g = g
	w.ours = append(w.ours, o)
}

func (w *interopWorld) joinTheirs(p *mlsgoPeer, welcome []byte) {
	w.t.Helper()
	if err := p.Join(welcome); err != nil {
		w.t.Fatalf("%s (mls-go) joins: %v", p.Name, err)
	}
	w.theirs = append(w.theirs, p)
}

// ourCommit has c commit with opts; every other member processes it (our
// members Process and Merge, mls-go peers Handle), c merges, and the new
// members join from the Welcome. It returns the kind each mls-go peer saw.
func (w *interopWorld) ourCommit(c *interopOurs, opts CommitOptions, joinOurs []*interopOurs, joinTheirs []*mlsgoPeer) map[*mlsgoPeer]string {
	w.t.Helper()
	sc, err := c.g.Commit(opts)
	if err != nil {
		w.t.Fatalf("%s commits: %v", c.name, err)
	}
	wantWF := WireFormatPrivateMessage
	if c.g.cfg.PublicHandshake {
		wantWF = WireFormatPublicMessage
	}
	if sc.Message.WireFormat != wantWF {
		w.t.Fatalf("%s's commit is a %v, want %v", c.name, sc.Message.WireFormat, wantWF)
	}
	msg := mustMarshal(w.t, sc.Message)
	var stay []*interopOurs
	for _, o := range w.ours {
		if o == c {
			stay = append(stay, o)
			continue
		}
		r, err := o.g.Process(mustParse(w.t, msg))
		if err != nil {
			w.t.Fatalf("%s processes %s's commit: %v", o.name, c.name, err)
		}
		if !bytes.Equal(r.AuthenticatedData, opts.AuthenticatedData) {
			w.t.Fatalf("%s reads the commit's authenticated data %q, want %q", o.name, r.AuthenticatedData, opts.AuthenticatedData)
		}
		if err := o.g.Merge(r.Commit); err != nil {
			w.t.Fatal(err)
		}
		if !o.g.Removed() {
			stay = append(stay, o)
		}
	}
	seen := map[*mlsgoPeer]string{}
	var stayTheirs []*mlsgoPeer
	for _, p := range w.theirs {
		in, err := p.Handle(msg)
		if err != nil {
			w.t.Fatalf("%s (mls-go) processes %s's %v commit: %v", p.Name, c.name, sc.Message.WireFormat, err)
		}
		if in.Kind != "commit" && in.Kind != "removed" {
			w.t.Fatalf("%s (mls-go) sees a %s, want a commit", p.Name, in.Kind)
		}
		if !bytes.Equal(in.AAD, opts.AuthenticatedData) || in.Sender != c.g.LeafIndex() {
			w.t.Fatalf("%s (mls-go) reads the commit's authenticated data %q from leaf %d, want %q from %d",
				p.Name, in.AAD, in.Sender, opts.AuthenticatedData, c.g.LeafIndex())
		}
		seen[p] = in.Kind
		if in.Kind != "removed" {
			stayTheirs = append(stayTheirs, p)
		}
	}
	if err := c.g.Merge(sc); err != nil {
		w.t.Fatal(err)
	}
	w.ours, w.theirs = stay, stayTheirs
	if len(joinOurs)+len(joinTheirs) > 0 {
		if sc.Welcome == nil {
			w.t.Fatal("no Welcome for the added members")
		}
		wb := mustMarshal(w.t, sc.Welcome)
		for _, o := range joinOurs {
			w.joinOurs(o, wb, GroupConfig{})
		}
		for _, p := range joinTheirs {
			w.joinTheirs(p, wb)
		}
	}
	w.check()
	return seen
}

// theirCommit has mls-go peer c commit adding the given members; our
// members and the other mls-go peers process it, the new members join.
func (w *interopWorld) theirCommit(c *mlsgoPeer, private bool, addOurs []*interopOurs, addTheirs []*mlsgoPeer, ourCfg GroupConfig) {
	w.t.Helper()
	var kps []*mlsgokp.KeyPackage
	for _, o := range addOurs {
		kps = append(kps, theirKPFor(w.t, o))
	}
	for _, p := range addTheirs {
		kps = append(kps, p.KP)
	}
	msg, welcome, err := c.Commit(kps, private)
	if err != nil {
		w.t.Fatalf("%s (mls-go) commits: %v", c.Name, err)
	}
	w.deliverTheirs(c, msg, private)
	for _, o := range addOurs {
		w.joinOurs(o, welcome, ourCfg)
	}
	for _, p := range addTheirs {
		w.joinTheirs(p, welcome)
	}
	w.check()
}

// deliverTheirs has every member but c process mls-go peer c's commit.
func (w *interopWorld) deliverTheirs(c *mlsgoPeer, msg []byte, private bool) {
	w.t.Helper()
	wantWF := WireFormatPublicMessage
	if private {
		wantWF = WireFormatPrivateMessage
	}
	var stay []*interopOurs
	for _, o := range w.ours {
		m := mustParse(w.t, msg)
		if m.WireFormat != wantWF {
			w.t.Fatalf("mls-go's commit is a %v, want %v", m.WireFormat, wantWF)
		}
		r, err := o.g.Process(m)
		if err != nil {
			w.t.Fatalf("%s processes %s's (mls-go) %v commit: %v", o.name, c.Name, wantWF, err)
		}
		if r.ContentType != ContentTypeCommit || r.Sender.LeafIndex != uint32(c.G.OwnLeafIndex()) {
			w.t.Fatalf("%s reads a %v from leaf %d, want a commit from %d", o.name, r.ContentType, r.Sender.LeafIndex, c.G.OwnLeafIndex())
		}
		if err := o.g.Merge(r.Commit); err != nil {
			w.t.Fatal(err)
		}
		if !o.g.Removed() {
			stay = append(stay, o)
		}
	}
	w.ours = stay
	var stayTheirs []*mlsgoPeer
	for _, p := range w.theirs {
		if p == c {
			stayTheirs = append(stayTheirs, p)
			continue
		}
		in, err := p.Handle(msg)
		if err != nil {
			w.t.Fatalf("%s (mls-go) processes %s's commit: %v", p.Name, c.Name, err)
		}
		if in.Kind != "removed" {
			stayTheirs = append(stayTheirs, p)
		}
	}
	w.theirs = stayTheirs
}

// check asserts that every member has the same epoch, epoch authenticator,
// exporter value and ratchet tree.
func (w *interopWorld) check() {
	w.t.Helper()
	ctx := []byte("interop context")
	type view struct {
		who         string
		epoch       uint64
		auth, exp   []byte
		tree        []byte
		memberCount int
	}
	var views []view
	for _, o := range w.ours {
		exp, err := o.g.Export("interop", ctx, 32)
		if err != nil {
			w.t.Fatal(err)
		}
		tree, err := o.g.RatchetTree().MarshalMLS()
		if err != nil {
			w.t.Fatal(err)
		}
		views = append(views, view{o.name, o.g.Epoch(), o.g.EpochAuthenticator(), exp, tree, len(o.g.Members())})
	}
	for _, p := range w.theirs {
		exp, err := p.G.Export("interop", ctx, 32)
		if err != nil {
			w.t.Fatalf("%s (mls-go) exports: %v", p.Name, err)
		}
		views = append(views, view{p.Name + " (mls-go)", p.G.Epoch().AsUint64(), p.G.EpochAuthenticator(), exp,
			p.G.MarshalRatchetTreeRFC(), p.G.MemberCount()})
	}
	if len(views) < 2 {
		return
	}
	ref := views[0]
	for _, v := range views[1:] {
		switch {
		case v.epoch != ref.epoch:
			w.t.Fatalf("epoch: %s is at %d, %s at %d", ref.who, ref.epoch, v.who, v.epoch)
		case !bytes.Equal(v.auth, ref.auth):
			w.t.Fatalf("epoch %d authenticator: %s has %x, %s has %x", ref.epoch, ref.who, ref.auth, v.who, v.auth)
		case !bytes.Equal(v.exp, ref.exp):
			w.t.Fatalf("epoch %d exporter: %s has %x, %s has %x", ref.epoch, ref.who, ref.exp, v.who, v.exp)
		case !bytes.Equal(v.tree, ref.tree):
			w.t.Fatalf("epoch %d ratchet tree: %s has %x, %s has %x", ref.epoch, ref.who, ref.tree, v.who, v.tree)
		case v.memberCount != ref.memberCount:
			w.t.Fatalf("epoch %d: %s sees %d members, %s %d", ref.epoch, ref.who, ref.memberCount, v.who, v.memberCount)
		}
	}
	w.t.Logf("epoch %d: %d of ours and %d mls-go members agree on %d members, authenticator %x", ref.epoch, len(w.ours), len(w.theirs),
		ref.memberCount, ref.auth)
}

// ourMessage has o send an application message that everyone else reads.
func (w *interopWorld) ourMessage(o *interopOurs, text string) {
	w.t.Helper()
	ad := []byte("ad from " + o.name)
	m, err := o.g.Encrypt([]byte(text), ad)
	if err != nil {
		w.t.Fatal(err)
	}
	b := mustMarshal(w.t, m)
	for _, r := range w.ours {
		if r == o {
			continue
		}
		got, err := r.g.Process(mustParse(w.t, b))
		if err != nil {
			w.t.Fatalf("%s reads %s's message: %v", r.name, o.name, err)
		}
		if string(got.Application) != text || !bytes.Equal(got.AuthenticatedData, ad) || got.Sender.LeafIndex != o.g.LeafIndex() {
			w.t.Fatalf("%s reads %q (ad %q) from leaf %d, want %q (ad %q) from %d", r.name, got.Application, got.AuthenticatedData,
				got.Sender.LeafIndex, text, ad, o.g.LeafIndex())
		}
	}
	for _, p := range w.theirs {
		in, err := p.Handle(b)
		if err != nil {
			w.t.Fatalf("%s (mls-go) reads %s's message: %v", p.Name, o.name, err)
		}
		if in.Kind != "application" || string(in.Plaintext) != text || !bytes.Equal(in.AAD, ad) || in.Sender != o.g.LeafIndex() {
			w.t.Fatalf("%s (mls-go) reads %s %q (ad %q) from leaf %d, want application %q (ad %q) from %d", p.Name, in.Kind,
				in.Plaintext, in.AAD, in.Sender, text, ad, o.g.LeafIndex())
		}
	}
}

// theirMessage has mls-go peer p send an application message.
func (w *interopWorld) theirMessage(p *mlsgoPeer, text string) {
	w.t.Helper()
	ad := []byte("ad from " + p.Name)
	b, err := p.Protect([]byte(text), ad)
	if err != nil {
		w.t.Fatalf("%s (mls-go) protects: %v", p.Name, err)
	}
	leaf := uint32(p.G.OwnLeafIndex())
	for _, r := range w.ours {
		got, err := r.g.Process(mustParse(w.t, b))
		if err != nil {
			w.t.Fatalf("%s reads %s's (mls-go) message: %v", r.name, p.Name, err)
		}
		if got.ContentType != ContentTypeApplication || string(got.Application) != text || !bytes.Equal(got.AuthenticatedData, ad) || got.Sender.LeafIndex != leaf {
			w.t.Fatalf("%s reads %v %q (ad %q) from leaf %d, want application %q (ad %q) from %d", r.name, got.ContentType,
				got.Application, got.AuthenticatedData, got.Sender.LeafIndex, text, ad, leaf)
		}
	}
	for _, q := range w.theirs {
		if q == p {
			continue
		}
		in, err := q.Handle(b)
		if err != nil {
			w.t.Fatalf("%s (mls-go) reads %s's message: %v", q.Name, p.Name, err)
		}
		if in.Kind != "application" || string(in.Plaintext) != text || !bytes.Equal(in.AAD, ad) || in.Sender != leaf {
			w.t.Fatalf("%s (mls-go) reads %q from leaf %d, want %q from %d", q.Name, in.Plaintext, in.Sender, text, leaf)
		}
	}
}

// messages has every member send one application message.
func (w *interopWorld) messages(label string) {
	w.t.Helper()
	for _, o := range w.ours {
		w.ourMessage(o, label+" from "+o.name)
	}
	for _, p := range w.theirs {
		w.theirMessage(p, label+" from "+p.Name)
	}
}

func addProposal(kp *KeyPackage) *Proposal {
	return &Proposal{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}
}

func removeProposal(leaf uint32) *Proposal {
	return &Proposal{ProposalType: ProposalTypeRemove, Remove: &Remove{Removed: leaf}}
}

// TestInteropMLSGoJoinsOurGroup: our group (a creator and a second member
// of ours) adds an mls-go member by Welcome; then application messages both
// ways, our commits processed by mls-go (PrivateMessage with and without a
// path, PublicMessage; all with authenticated data), and finally our removal
// of the mls-go member. Every epoch, all members must agree on the epoch
// authenticator, an exporter value and the ratchet tree.
func TestInteropMLSGoJoinsOurGroup(t *testing.T) {
	for _, s := range mlsgoSuites {
		t.Run(s.ours.String(), func(t *testing.T) {
			w := newInteropWorld(t, s.ours, s.theirs)
			a := w.newOurs()
			g, err := CreateGroup(CreateParams{GroupID: []byte("!interop:a.example"), Signer: a.signer, Credential: a.kp.LeafNode.Credential})
			if err != nil {
				t.Fatal(err)
			}
			a.g = g
			w.ours = append(w.ours, a)

			// Epoch 1: a adds b, one of ours, who frames its handshakes as
			// PublicMessages.
			b := w.newOurs()
			sc, err := a.g.Commit(CommitOptions{Proposals: []*Proposal{addProposal(b.kp)}})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.g.Merge(sc); err != nil {
				t.Fatal(err)
			}
			w.joinOurs(b, mustMarshal(t, sc.Welcome), GroupConfig{PublicHandshake: true})
			w.check()

			// Epoch 2: a adds the mls-go client (commit with a path,
			// PrivateMessage, authenticated data).
			m := w.newTheirs()
			w.ourCommit(a, CommitOptions{Proposals: []*Proposal{addProposal(ourKPFor(t, m))}, AuthenticatedData: []byte("add mls-go")},
				nil, []*mlsgoPeer{m})
			if len(w.theirs) != 1 || len(w.ours) != 2 {
				t.Fatalf("%d of ours and %d mls-go members", len(w.ours), len(w.theirs))
			}
			w.messages("epoch 2")

			// Epoch 3: b (PublicMessage) commits with a path adding c.
			c := w.newOurs()
			w.ourCommit(b, CommitOptions{Proposals: []*Proposal{addProposal(c.kp)}, AuthenticatedData: []byte("public commit")},
				[]*interopOurs{c}, nil)
			w.messages("epoch 3")

			// Epoch 4: a commits with a path and no proposals
			// (PrivateMessage, authenticated data).
			w.ourCommit(a, CommitOptions{AuthenticatedData: []byte("empty commit")}, nil, nil)
			w.messages("epoch 4")

			// Epoch 5: c commits without a path, adding d (PrivateMessage).
			d := w.newOurs()
			w.ourCommit(c, CommitOptions{Proposals: []*Proposal{addProposal(d.kp)}, NoPath: true, AuthenticatedData: []byte("no path")},
				[]*interopOurs{d}, nil)
			w.messages("epoch 5")

			// Epoch 6: a commits an Add with a path after messages of this
			// epoch were sent (its handshake ratchet is still at generation
			// 0 while mls-go's shared generation counter has moved on).
			w.messages("epoch 5 again")
			m2 := w.newTheirs()
			w.ourCommit(a, CommitOptions{Proposals: []*Proposal{addProposal(ourKPFor(t, m2))}, AuthenticatedData: []byte("second mls-go")},
				nil, []*mlsgoPeer{m2})
			w.messages("epoch 6")

			// Epoch 7: d removes the first mls-go member, which must see
			// its own removal.
			seen := w.ourCommit(d, CommitOptions{Proposals: []*Proposal{removeProposal(uint32(m.G.OwnLeafIndex()))}, AuthenticatedData: []byte("bye")},
				nil, nil)
			if seen[m] != "removed" || !m.Removed {
				t.Fatalf("the removed mls-go member saw %q", seen[m])
			}
			if seen[m2] != "commit" {
				t.Fatalf("the other mls-go member saw %q", seen[m2])
			}
			w.messages("epoch 7")
			if len(w.theirs) != 1 || len(w.ours) != 4 {
				t.Fatalf("%d of ours and %d mls-go members at the end", len(w.ours), len(w.theirs))
			}
		})
	}
}

// TestInteropMLSGoCreatesGroup: an mls-go client creates a group and adds
// one of our clients (our KeyPackage parsed by mls-go); we join from its
// Welcome, process its commits (PublicMessage or PrivateMessage, per
// subtest) and messages, commit back adding another of ours (path,
// authenticated data, PrivateMessage), which mls-go processes; mls-go then
// removes one of ours. All members agree at every epoch.
func TestInteropMLSGoCreatesGroup(t *testing.T) {
	for _, s := range mlsgoSuites {
		for _, private := range []bool{false, true} {
			name := s.ours.String() + "/public"
			if private {
				name = s.ours.String() + "/private"
			}
			t.Run(name, func(t *testing.T) {
				w := newInteropWorld(t, s.ours, s.theirs)
				x := w.newTheirs()
				if err := x.CreateGroup([]byte("!mlsgo:b.example")); err != nil {
					t.Fatalf("mls-go creates a group: %v", err)
				}
				w.theirs = append(w.theirs, x)

				// Epoch 1: x adds a, one of ours.
				a := w.newOurs()
				w.theirCommit(x, private, []*interopOurs{a}, nil, GroupConfig{})
				w.messages("epoch 1")

				// Epoch 2: x adds y, another mls-go client; a processes it.
				y := w.newTheirs()
				w.theirCommit(x, private, nil, []*mlsgoPeer{y}, GroupConfig{})
				w.messages("epoch 2")

				// Epoch 3: a commits back, adding b (path, authenticated
				// data, PrivateMessage).
				b := w.newOurs()
				w.ourCommit(a, CommitOptions{Proposals: []*Proposal{addProposal(b.kp)}, AuthenticatedData: []byte("from ours")},
					[]*interopOurs{b}, nil)
				w.messages("epoch 3")

				// Epoch 4: y commits with no proposals (a path only).
				msg, _, err := y.Commit(nil, private)
				if err != nil {
					t.Fatalf("mls-go commits: %v", err)
				}
				w.deliverTheirs(y, msg, private)
				w.check()
				w.messages("epoch 4")

				// Epoch 5: x removes b; b sees its removal.
				if _, err := x.G.RemoveMember(mlsgogroup.NewLeafNodeIndex(b.g.LeafIndex())); err != nil {
					t.Fatal(err)
				}
				msg, _, err = x.Commit(nil, private)
				if err != nil {
					t.Fatalf("mls-go commits a removal: %v", err)
				}
				w.deliverTheirs(x, msg, private)
				if !b.g.Removed() {
					t.Fatal("our removed member does not know it was removed")
				}
				if len(w.ours) != 1 || w.ours[0] != a || len(w.theirs) != 2 {
					t.Fatalf("%d of ours and %d mls-go members after the removal", len(w.ours), len(w.theirs))
				}
				w.check()
				w.messages("epoch 5")
			})
		}
	}
}

// ourProposal delivers o's proposal message to every other member.
func (w *interopWorld) ourProposal(o *interopOurs, m *MLSMessage) {
	w.t.Helper()
	b := mustMarshal(w.t, m)
	for _, r := range w.ours {
		if r == o {
			continue
		}
		got, err := r.g.Process(mustParse(w.t, b))
		if err != nil || got.ContentType != ContentTypeProposal {
			w.t.Fatalf("%s processes %s's proposal: %v", r.name, o.name, err)
		}
	}
	for _, p := range w.theirs {
		in, err := p.Handle(b)
		if err != nil {
			w.t.Fatalf("%s (mls-go) processes %s's %v proposal: %v", p.Name, o.name, m.WireFormat, err)
		}
		if in.Kind != "proposal" {
			w.t.Fatalf("%s (mls-go) sees a %s, want a proposal", p.Name, in.Kind)
		}
	}
}

// theirProposal delivers mls-go peer p's proposal (MLSMessage bytes).
func (w *interopWorld) theirProposal(p *mlsgoPeer, b []byte, want ProposalType) {
	w.t.Helper()
	for _, r := range w.ours {
		got, err := r.g.Process(mustParse(w.t, b))
		if err != nil {
			w.t.Fatalf("%s processes %s's (mls-go) proposal: %v", r.name, p.Name, err)
		}
		if got.ContentType != ContentTypeProposal || got.Proposal.ProposalType != want || got.Sender.LeafIndex != uint32(p.G.OwnLeafIndex()) {
			w.t.Fatalf("%s reads a %v from leaf %d, want a %v proposal from %d", r.name, got.ContentType, got.Sender.LeafIndex, want, p.G.OwnLeafIndex())
		}
	}
	for _, q := range w.theirs {
		if q == p {
			continue
		}
		if _, err := q.Handle(b); err != nil {
			w.t.Fatalf("%s (mls-go) processes %s's proposal: %v", q.Name, p.Name, err)
		}
	}
}

// TestInteropMLSGoProposals: proposals sent by one implementation and
// committed by reference by the other: an mls-go Add committed by us, our
// (PrivateMessage) Remove committed by mls-go, an mls-go Update committed
// by us; then our commit removing the rightmost member and adding an
// mls-go client (the tree shrinks and grows) and the same framed as a
// PublicMessage proposal of ours committed by mls-go.
func TestInteropMLSGoProposals(t *testing.T) {
	for _, s := range mlsgoSuites {
		t.Run(s.ours.String(), func(t *testing.T) {
			w := newInteropWorld(t, s.ours, s.theirs)
			a := w.newOurs()
			g, err := CreateGroup(CreateParams{GroupID: []byte("!proposals:a.example"), Signer: a.signer, Credential: a.kp.LeafNode.Credential})
			if err != nil {
				t.Fatal(err)
			}
			a.g = g
			w.ours = append(w.ours, a)
			x, b := w.newTheirs(), w.newOurs()
			w.ourCommit(a, CommitOptions{Proposals: []*Proposal{addProposal(ourKPFor(t, x)), addProposal(b.kp)}},
				[]*interopOurs{b}, []*mlsgoPeer{x})

			// x proposes adding c, one of ours; b commits it by reference.
			c := w.newOurs()
			pr, err := x.G.AddMember(theirKPFor(t, c))
			if err != nil {
				t.Fatal(err)
			}
			pb, err := x.G.SignProposalAsPublicMessage(pr, x.Sig)
			if err != nil {
				t.Fatal(err)
			}
			w.theirProposal(x, pb, ProposalTypeAdd)
			w.ourCommit(b, CommitOptions{AuthenticatedData: []byte("x's add")}, []*interopOurs{c}, nil)
			w.messages("after x's add")

			// a proposes removing b (PrivateMessage); x commits it by
			// reference.
			pm, err := a.g.ProposeRemove(b.g.LeafIndex(), []byte("remove b"))
			if err != nil {
				t.Fatal(err)
			}
			w.ourProposal(a, pm)
			msg, _, err := x.Commit(nil, true)
			if err != nil {
				t.Fatalf("mls-go commits our proposal: %v", err)
			}
			w.deliverTheirs(x, msg, true)
			if !b.g.Removed() || len(w.ours) != 2 {
				t.Fatalf("b removed: %v; %d of ours left", b.g.Removed(), len(w.ours))
			}
			w.check()
			w.messages("after b's removal")

			// x proposes an Update; c commits it by reference.
			up, err := x.G.SelfUpdate(x.Sig)
			if err != nil {
				t.Fatal(err)
			}
			ub, err := x.G.SignProposalAsPublicMessage(up, x.Sig)
			if err != nil {
				t.Fatal(err)
			}
			w.theirProposal(x, ub, ProposalTypeUpdate)
			w.ourCommit(c, CommitOptions{AuthenticatedData: []byte("x's update")}, nil, nil)
			w.messages("after x's update")

			// a removes the rightmost member (c) and adds y (mls-go) in one
			// commit (with a path, which a Remove needs): the tree shrinks
			// and y takes the freed leaf.
			y := w.newTheirs()
			last := c.g.LeafIndex()
			w.ourCommit(a, CommitOptions{Proposals: []*Proposal{removeProposal(last), addProposal(ourKPFor(t, y))}, AuthenticatedData: []byte("swap")},
				nil, []*mlsgoPeer{y})
			w.messages("after the swap")

			// a, framing handshakes as PublicMessages from now on, proposes
			// adding d; y (mls-go) commits it.
			state, err := a.g.MarshalState()
			if err != nil {
				t.Fatal(err)
			}
			if a.g, err = LoadGroup(state, GroupConfig{PublicHandshake: true}); err != nil {
				t.Fatal(err)
			}
			d := w.newOurs()
			pm, err = a.g.ProposeAdd(d.kp, []byte("add d"))
			if err != nil {
				t.Fatal(err)
			}
			if pm.WireFormat != WireFormatPublicMessage {
				t.Fatalf("proposal is a %v", pm.WireFormat)
			}
			w.ourProposal(a, pm)
			msg, wb, err := y.commitPending(false, []*mlsgokp.KeyPackage{theirKPFor(t, d)})
			if err != nil {
				t.Fatalf("mls-go commits our Add: %v", err)
			}
			w.deliverTheirs(y, msg, false)
			w.joinOurs(d, wb, GroupConfig{})
			w.check()
			w.messages("at the end")
		})
	}
}

// TestInteropMLSGoSparseTree: mls-go in a larger tree with blank nodes and
// unmerged leaves. We build 12 members with path-less adds (leaving
// unmerged leaves), remove three in the middle (blank leaves and parents),
// and add an mls-go client without a path (it joins without a path secret);
// then mls-go commits with a path (encrypting to resolutions with blanks and
// unmerged leaves), one of ours commits with a path, and mls-go adds a
// member of ours into a blank leaf.
func TestInteropMLSGoSparseTree(t *testing.T) {
	for _, s := range mlsgoSuites {
		t.Run(s.ours.String(), func(t *testing.T) {
			w := newInteropWorld(t, s.ours, s.theirs)
			a := w.newOurs()
			g, err := CreateGroup(CreateParams{GroupID: []byte("!sparse:a.example"), Signer: a.signer, Credential: a.kp.LeafNode.Credential})
			if err != nil {
				t.Fatal(err)
			}
			a.g = g
			w.ours = append(w.ours, a)
			for range 3 {
				var props []*Proposal
				var joiners []*interopOurs
				for range 4 {
					o := w.newOurs()
					props = append(props, addProposal(o.kp))
					joiners = append(joiners, o)
				}
				w.ourCommit(w.ours[len(w.ours)-1], CommitOptions{Proposals: props, NoPath: len(w.ours) > 1}, joiners, nil)
			}
			var removes []*Proposal
			for _, o := range []*interopOurs{w.ours[3], w.ours[5], w.ours[6]} {
				removes = append(removes, removeProposal(o.g.LeafIndex()))
			}
			w.ourCommit(w.ours[9], CommitOptions{Proposals: removes}, nil, nil)
			x := w.newTheirs()
			w.ourCommit(w.ours[2], CommitOptions{Proposals: []*Proposal{addProposal(ourKPFor(t, x))}, NoPath: true, AuthenticatedData: []byte("x")},
				nil, []*mlsgoPeer{x})
			w.theirMessage(x, "x is in")

			for _, private := range []bool{true, false} {
				msg, _, err := x.Commit(nil, private)
				if err != nil {
					t.Fatalf("mls-go commits: %v", err)
				}
				w.deliverTheirs(x, msg, private)
				w.check()
				w.ourCommit(w.ours[len(w.ours)-1], CommitOptions{AuthenticatedData: []byte("path")}, nil, nil)
			}
			blank := uint32(0)
			for _, m := range a.g.Members() {
				if m.LeafIndex != blank {
					break
				}
				blank++
			}
			b := w.newOurs()
			w.theirCommit(x, true, []*interopOurs{b}, nil, GroupConfig{})
			if leaf := b.g.LeafIndex(); leaf != blank {
				t.Fatalf("the new member is at leaf %d, want the leftmost blank, %d", leaf, blank)
			}
			w.messages("sparse")
		})
	}
}
