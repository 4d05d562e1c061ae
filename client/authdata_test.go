package client

import (
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// TestFederationMapOnCommits sends a commit whose authenticated data is the
// federation map: the server's header view and the receiving member both
// read the same map.
func TestFederationMapOnCommits(t *testing.T) {
	s, c := newMember(t, "alice", nil)
	g, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte("!r:a.example"), Signer: s, Credential: c, Capabilities: Capabilities()})
	if err != nil {
		t.Fatal(err)
	}
	bs, bc := newMember(t, "bob", nil)
	kp, sec, _ := mls.NewKeyPackage(mls.KeyPackageParams{Signer: bs, Credential: bc, Capabilities: Capabilities()})
	sc, err := g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Merge(sc); err != nil {
		t.Fatal(err)
	}
	bob, err := mls.JoinFromWelcome(sc.Welcome.Welcome, mls.JoinParams{KeyPackage: kp, Secrets: sec, Signer: bs})
	if err != nil {
		t.Fatal(err)
	}
	m := &fedmap.Map{Federation: fedmap.Federation{Powers: []string{"a.example"}, Servers: []string{"a.example", "b.example"}}}
	opts, err := CommitOptions(m, mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err = g.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := sc.Message.MarshalMLS()
	h, err := mls.ParseHeader(wire)
	if err != nil || h.WireFormat != mls.WireFormatPrivateMessage || h.ContentType != mls.ContentTypeCommit {
		t.Fatalf("header: %+v, %v", h, err)
	}
	onServer, err := fedmap.Decode(h.AuthenticatedData)
	if err != nil || !slices.Equal(onServer.Federation.Servers, m.Federation.Servers) {
		t.Fatalf("server reads %+v, %v", onServer, err)
	}
	r, err := bob.Process(sc.Message)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FederationMap(r)
	if err != nil || !slices.Equal(got.Federation.Powers, []string{"a.example"}) {
		t.Fatalf("bob reads %+v, %v", got, err)
	}
}
