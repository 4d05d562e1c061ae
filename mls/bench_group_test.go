package mls

import (
	"fmt"
	"testing"
)

// benchSizes are the group sizes of the group benchmarks; the largest take
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

// BenchmarkCommitAddOne: a member of an n-member group commits adding one
// member, with a path (suite 1, PrivateMessage framing).
func BenchmarkCommitAddOne(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			bg := newBenchGroup(b, n, false)
			kp, _, _ := bg.newKeyPackage(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bg.creator.Commit(addOne(kp)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJoinFromWelcome: the added member joins from that commit's
// Welcome, validating the whole tree.
func BenchmarkJoinFromWelcome(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			bg := newBenchGroup(b, n, false)
			kp, sec, s := bg.newKeyPackage(b)
			sc, err := bg.creator.Commit(addOne(kp))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: kp, Secrets: sec, Signer: s}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProcessCommit: another member processes that commit (staged, not
// merged, so every iteration sees the same state). The commit is a
// PublicMessage so that processing it twice does not reuse a ratchet key.
func BenchmarkProcessCommit(b *testing.B) {
	for _, n := range benchSizes[:len(benchSizes)] {
		if n < 3 {
			continue // the other member needs a third to be the committer's peer
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			bg := newBenchGroup(b, n, true)
			kp, _, _ := bg.newKeyPackage(b)
			sc, err := bg.creator.Commit(addOne(kp))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bg.other.Process(sc.Message); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGroupProtectUnprotect: one application message (1 KiB) sent by
// one member and read by another.
func BenchmarkGroupProtectUnprotect(b *testing.B) {
	bg := newBenchGroup(b, 2, false)
	msg := make([]byte, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		m, err := bg.creator.Encrypt(msg, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bg.other.Process(m); err != nil {
			b.Fatal(err)
		}
	}
}
