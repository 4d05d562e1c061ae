package mls

// Comparative benchmarks of this package and github.com/thomas-vilte/mls-go
// (a test-only dependency), run side by side:
//
//	go test ./mls -run '^$' -bench VsMLSGo -benchtime 1x -benchmem
//
// Names line up in pairs, BenchmarkVsMLSGo/op=OP/members=N/impl=ours|mlsgo.
// Both groups are built the same way, by one commit of a lone creator
// adding N-1 members, with a Welcome only for the second member ("other"),
// suite 1; the groups are built once per implementation and size and
// shared by the operations. The operations:
//
//   - commit: the creator commits adding one member, with a path, as a
//     PrivateMessage, and builds the Welcome. Ours stages the commit (the
//     group is unchanged); mls-go's commit changes its group (it must merge
//     before it can build the Welcome), so its state is restored from a
//     snapshot after each iteration, outside the timer.
//   - join: the added member joins from that Welcome (verifying the tree).
//   - process: the other member processes that commit, framed as a
//     PublicMessage on both sides so that it can be processed repeatedly.
//     Ours stages it; mls-go merges it, so its state is restored after each
//     iteration, outside the timer.
//   - protect: the creator protects a 1 KiB application message, which
//     goes through the wire encoding and is unprotected by the other member.
//   - state: the creator's state encoded (MarshalState: ours binary,
//     mls-go JSON), reported as state-bytes, and the live heap of a group
//     loaded from it (live-heap-bytes, HeapAlloc after GC with and without
//     it); the timed operation is loading the state.
//
// At 10,000 members, mls-go's join operation takes about a minute (the time
// goes to treesync's VerifyAllParentHashes, which rehashes sibling
// subtrees without caching, and grows superlinearly), while the join of its
// second member at setup, one epoch earlier, takes about a second; run it
// with -benchtime 1x. The whole benchmark then takes about two minutes.

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	mlsgocs "github.com/thomas-vilte/mls-go/ciphersuite"
	mlsgocred "github.com/thomas-vilte/mls-go/credentials"
	mlsgoframing "github.com/thomas-vilte/mls-go/framing"
	mlsgogroup "github.com/thomas-vilte/mls-go/group"
	mlsgokp "github.com/thomas-vilte/mls-go/keypackages"
)

// mlsgoBenchGroup is mls-go's counterpart of benchGroup.
type mlsgoBenchGroup struct {
	creator, other *mlsgoPeer
}

var (
	vsOurs   = map[int]*benchGroup{}
	vsTheirs = map[int]*mlsgoBenchGroup{}
)

func vsOurGroup(b *testing.B, n int) *benchGroup {
	if bg, ok := vsOurs[n]; ok {
		return bg
	}
	start := time.Now()
	bg := newBenchGroup(b, n, false)
	b.Logf("ours: %d-member group built in %v", n, time.Since(start).Round(time.Millisecond))
	vsOurs[n] = bg
	return bg
}

func vsTheirGroup(b *testing.B, n int) *mlsgoBenchGroup {
	if bg, ok := vsTheirs[n]; ok {
		return bg
	}
	start := time.Now()
	cs := mlsgocs.MLS128DHKEMX25519
	creator := newMLSGoPeer(b, "creator", cs)
	if err := creator.CreateGroup([]byte("!bench:a.example")); err != nil {
		b.Fatal(err)
	}
	bg := &mlsgoBenchGroup{creator: creator}
	if n > 1 {
		bg.other = newMLSGoPeer(b, "m1", cs)
		if _, err := creator.G.AddMember(bg.other.KP); err != nil {
			b.Fatal(err)
		}
		for i := 2; i < n; i++ {
			cwk, _, err := mlsgocred.GenerateCredentialWithKeyForCS(fmt.Appendf(nil, "m%d", i), cs)
			if err != nil {
				b.Fatal(err)
			}
			kp, _, err := mlsgokp.Generate(cwk, cs)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := creator.G.AddMember(kp); err != nil {
				b.Fatal(err)
			}
		}
		built := time.Now()
		_, welcome, err := creator.commitPending(false, []*mlsgokp.KeyPackage{bg.other.KP})
		if err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		if err := bg.other.Join(welcome); err != nil {
			b.Fatal(err)
		}
		b.Logf("mlsgo: %d-member group: key packages and adds %v, commit %v, second member's join %v", n,
			built.Sub(start).Round(time.Millisecond), committed.Sub(built).Round(time.Millisecond), time.Since(committed).Round(time.Millisecond))
	}
	vsTheirs[n] = bg
	return bg
}

// mlsgoSnapshot and mlsgoRestore save and restore an mls-go group.
func mlsgoSnapshot(b *testing.B, g *mlsgogroup.Group) []byte {
	s, err := g.MarshalState()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func mlsgoRestore(b *testing.B, s []byte) *mlsgogroup.Group {
	g, err := mlsgogroup.UnmarshalGroupState(s)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// liveHeap returns the heap retained by what load returns.
func liveHeap(load func() any) (any, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := load()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return v, 0
	}
	return v, after.HeapAlloc - before.HeapAlloc
}

func BenchmarkVsMLSGo(b *testing.B) {
	impls := []struct {
		name string
		run  func(b *testing.B, op string, n int)
	}{{"ours", benchVsOurs}, {"mlsgo", benchVsMLSGo}}
	for _, op := range []string{"commit", "join", "process", "protect", "state"} {
		b.Run("op="+op, func(b *testing.B) {
			for _, n := range benchSizes {
				b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
					for _, impl := range impls {
						b.Run("impl="+impl.name, func(b *testing.B) { impl.run(b, op, n) })
					}
				})
			}
		})
	}
}

func benchVsOurs(b *testing.B, op string, n int) {
	bg := vsOurGroup(b, n)
	b.ReportAllocs()
	switch op {
	case "commit":
		kp, _, _ := bg.newKeyPackage(b)
		for b.Loop() {
			if _, err := bg.creator.Commit(addOne(kp)); err != nil {
				b.Fatal(err)
			}
		}
	case "join":
		kp, sec, s := bg.newKeyPackage(b)
		sc, err := bg.creator.Commit(addOne(kp))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := JoinFromWelcome(sc.Welcome.Welcome, JoinParams{KeyPackage: kp, Secrets: sec, Signer: s}); err != nil {
				b.Fatal(err)
			}
		}
	case "process":
		// A copy of the creator that frames its handshakes as
		// PublicMessages.
		state, err := bg.creator.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		pub, err := LoadGroup(state, GroupConfig{PublicHandshake: true})
		if err != nil {
			b.Fatal(err)
		}
		kp, _, _ := bg.newKeyPackage(b)
		sc, err := pub.Commit(addOne(kp))
		if err != nil {
			b.Fatal(err)
		}
		if sc.Message.WireFormat != WireFormatPublicMessage {
			b.Fatalf("commit is a %v", sc.Message.WireFormat)
		}
		msg := sc.Message
		for b.Loop() {
			r, err := bg.other.Process(msg)
			if err != nil {
				b.Fatal(err)
			}
			if r.Commit == nil {
				b.Fatal("not a commit")
			}
		}
	case "protect":
		pt := make([]byte, 1024)
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			m, err := bg.creator.Encrypt(pt, nil)
			if err != nil {
				b.Fatal(err)
			}
			wire, err := m.MarshalMLS()
			if err != nil {
				b.Fatal(err)
			}
			var in MLSMessage
			if err := in.UnmarshalMLS(wire); err != nil {
				b.Fatal(err)
			}
			if _, err := bg.other.Process(&in); err != nil {
				b.Fatal(err)
			}
		}
	case "state":
		state, err := bg.creator.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		_, heap := liveHeap(func() any {
			g, err := LoadGroup(state, GroupConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return g
		})
		for b.Loop() {
			if _, err := LoadGroup(state, GroupConfig{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(state)), "state-bytes")
		b.ReportMetric(float64(heap), "live-heap-bytes")
	}
}

func benchVsMLSGo(b *testing.B, op string, n int) {
	bg := vsTheirGroup(b, n)
	creator := bg.creator
	b.ReportAllocs()
	switch op {
	case "commit":
		joiner := newMLSGoPeer(b, "joiner", creator.CS)
		snap := mlsgoSnapshot(b, creator.G)
		for b.Loop() {
			if _, err := creator.G.AddMember(joiner.KP); err != nil {
				b.Fatal(err)
			}
			if _, _, err := creator.commitPending(true, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			creator.G = mlsgoRestore(b, snap)
			b.StartTimer()
		}
	case "join":
		joiner := newMLSGoPeer(b, "joiner", creator.CS)
		snap := mlsgoSnapshot(b, creator.G)
		if _, err := creator.G.AddMember(joiner.KP); err != nil {
			b.Fatal(err)
		}
		_, wb, err := creator.commitPending(true, nil)
		if err != nil {
			b.Fatal(err)
		}
		creator.G = mlsgoRestore(b, snap)
		m, err := mlsgoframing.UnmarshalMLSMessage(wb)
		if err != nil {
			b.Fatal(err)
		}
		w, err := mlsgogroup.UnmarshalWelcome(m.Welcome)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for b.Loop() {
			if _, err := mlsgogroup.JoinFromWelcome(w, joiner.KP, joiner.KPPriv, nil); err != nil {
				b.Fatal(err)
			}
		}
		if d := time.Since(start); d > 10*time.Second {
			b.Logf("mlsgo: joining a %d-member group took %v per join", n+1, d/time.Duration(b.N))
		}
	case "process":
		other := bg.other
		joiner := newMLSGoPeer(b, "joiner", creator.CS)
		snap := mlsgoSnapshot(b, creator.G)
		if _, err := creator.G.AddMember(joiner.KP); err != nil {
			b.Fatal(err)
		}
		cb, _, err := creator.commitPending(false, nil)
		if err != nil {
			b.Fatal(err)
		}
		creator.G = mlsgoRestore(b, snap)
		m, err := mlsgoframing.UnmarshalMLSMessage(cb)
		if err != nil {
			b.Fatal(err)
		}
		pub, ok := m.AsPublic()
		if !ok {
			b.Fatal("commit is not a PublicMessage")
		}
		otherSnap := mlsgoSnapshot(b, other.G)
		for b.Loop() {
			if err := other.G.ProcessPublicMessage(pub); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			other.G = mlsgoRestore(b, otherSnap)
			b.StartTimer()
		}
	case "protect":
		other := bg.other
		pt := make([]byte, 1024)
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			pm, err := creator.G.SendMessage(pt, creator.Sig)
			if err != nil {
				b.Fatal(err)
			}
			wire := mlsgoframing.NewMLSMessagePrivate(pm).Marshal()
			in, err := mlsgoframing.UnmarshalMLSMessage(wire)
			if err != nil {
				b.Fatal(err)
			}
			priv, _ := in.AsPrivate()
			if _, _, _, err := other.G.ReceiveApplicationMessage(priv); err != nil {
				b.Fatal(err)
			}
		}
	case "state":
		state := mlsgoSnapshot(b, creator.G)
		_, heap := liveHeap(func() any { return mlsgoRestore(b, state) })
		for b.Loop() {
			mlsgoRestore(b, state)
		}
		b.ReportMetric(float64(len(state)), "state-bytes")
		b.ReportMetric(float64(heap), "live-heap-bytes")
	}
}
