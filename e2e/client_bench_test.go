//go:build e2e

package e2e

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
)

// fakeMembers makes n key packages of devices of users on server that
// have no accounts: leaves that fill a group (the server never sees
// membership; only the group's size matters to the measured client).
func fakeMembers(tb testing.TB, server string, n int) []*mls.Proposal {
	tb.Helper()
	var out []*mls.Proposal
	for i := range n {
		s, err := mls.GenerateSigner(testclient.Suite)
		if err != nil {
			tb.Fatal(err)
		}
		cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: fmt.Sprintf("@m%d:%s", i, server), DeviceID: "D" + strconv.Itoa(i), SignatureKey: s.PublicKey()})
		if err != nil {
			tb.Fatal(err)
		}
		kp, _, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: s, Credential: cred, Capabilities: client.Capabilities()})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, &mls.Proposal{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}})
	}
	return out
}

// BenchmarkInviteToFirstMessage measures, over three federating mlsserver
// processes, the time from alice (a.test) inviting a user on b.test to
// that user reading alice's first message: verification checks, key
// package claim over federation, the add commit and its acceptance, the
// Welcome by to-device over federation, the join and the message. The
// room has the given number of members (alice, the owner on a.test, and
// members on c.test). It reports the invitee client's heap growth for
// joining the room (client-bytes/room).
func BenchmarkInviteToFirstMessage(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchInvite(b, n) })
	}
}

func benchInvite(b *testing.B, members int) {
	h := newFedHarness(b, 1, "a.test", "b.test", "c.test")
	ctx := libCtx(b, 30*time.Minute)
	owner := h.User("a.test", "owner")
	alice := h.libUser(ctx, "a.test", "alice", nil)
	owner.Sync(0)
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test", "c.test"}, []string{"a.test"})
	roomID := owner.CreateRoom(fm)
	adds := append(fakeMembers(b, "c.test", members-2), &mls.Proposal{ProposalType: mls.ProposalTypeAdd,
		Add: &mls.Add{KeyPackage: *owner.ClaimKeyPackage(alice.UserID(), alice.DeviceID())}})
	sc := owner.Stage(fm, adds)
	id := owner.PutCommit(roomID, sc).Must(b, 200, "the add commit").Str("event_id")
	owner.AwaitCommit(roomID, id, sc)
	owner.Invite(roomID, alice.UserID(), alice.DeviceID(), sc.Welcome)
	if err := alice.Join(ctx, roomID); err != nil {
		b.Fatal(err)
	}
	if st, _ := alice.Status(roomID); len(st.Members) != members {
		b.Fatalf("alice's room has %d members, want %d", len(st.Members), members)
	}
	var heap uint64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		invitee := h.libUser(ctx, "b.test", fmt.Sprintf("bob%d", i), nil)
		verify(b, ctx, alice, invitee)
		text := fmt.Sprintf("first message %d", i)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		if err := alice.Invite(ctx, roomID, invitee.UserID()); err != nil {
			b.Fatal(err)
		}
		if err := invitee.Join(ctx, roomID); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.Send(ctx, roomID, text); err != nil {
			b.Fatal(err)
		}
		for read := false; !read; {
			if err := invitee.Sync(ctx, time.Second); err != nil {
				b.Fatal(err)
			}
			for _, m := range invitee.Messages(roomID) {
				read = read || m.Body() == text
			}
		}
		b.StopTimer()
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if after.HeapAlloc > before.HeapAlloc {
			heap += after.HeapAlloc - before.HeapAlloc
		}
		runtime.KeepAlive(invitee)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/float64(b.N), "client-bytes/room")
}
