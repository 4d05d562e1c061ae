package mls

import (
	"fmt"
	"testing"
)

// benchSizes are the group sizes of BenchmarkVsMLSGo; the largest take
// seconds per operation, so `go test -bench` runs them once each.
var benchSizes = []int{2, 10, 100, 1000, 10000}

// benchGroup is a group of n members built by one commit of the creator
// adding n-1 key packages, as a fresh room would be; other is a second
// member that joined from that Welcome.
type benchGroup struct {
	creator, other *Group
	cs             CipherSuite
}

func newBenchGroup(b *testing.B, n int, public bool) *benchGroup {
	b.Helper()
	cs := X25519AES128GCMSHA256Ed25519
	s, _ := GenerateSigner(cs)
	cfg := GroupConfig{PublicHandshake: public}
	g, err := CreateGroup(CreateParams{GroupID: []byte("!bench:a.example"), Signer: s, Credential: testCredential(b, "creator", s), Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	bg := &benchGroup{creator: g, cs: cs}
	if n == 1 {
		return bg
	}
	var props []*Proposal
	var first *KeyPackage
	var firstSec *KeyPackageSecrets
	var firstSigner *Signer
	for i := 1; i < n; i++ {
		ms, _ := GenerateSigner(cs)
		kp, sec, err := NewKeyPackage(KeyPackageParams{Signer: ms, Credential: testCredential(b, fmt.Sprintf("m%d", i), ms)})
		if err != nil {
			b.Fatal(err)
		}
		if i == 1 {
			first, firstSec, firstSigner = kp, sec, ms
		}
		props = append(props, &Proposal{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}})
	}
	sc, err := g.Commit(CommitOptions{Proposals: props})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Merge(sc); err != nil {
		b.Fatal(err)
	}
	if bg.other, err = JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: first, Secrets: firstSec, Signer: firstSigner, Config: cfg}); err != nil {
		b.Fatal(err)
	}
	return bg
}

func (bg *benchGroup) newKeyPackage(b *testing.B) (*KeyPackage, *KeyPackageSecrets, *Signer) {
	s, _ := GenerateSigner(bg.cs)
	kp, sec, err := NewKeyPackage(KeyPackageParams{Signer: s, Credential: testCredential(b, "joiner", s)})
	if err != nil {
		b.Fatal(err)
	}
	return kp, sec, s
}

func addOne(kp *KeyPackage) CommitOptions {
	return CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}}, AuthenticatedData: []byte("federation")}
}
