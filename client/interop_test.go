package client_test

import (
	"testing"

	"github.com/mlsmode/mlsmode/internal/testclient"
)

// TestJoinFromWelcomeWithoutCommitID: a Welcome from a client that does
// not name its commit (de.bwi.mls.commit_id) still joins; the client finds
// the accepted commit of the Welcome's epoch in the room's history.
func TestJoinFromWelcomeWithoutCommitID(t *testing.T) {
	srv := newServer(t, "a.test")
	ctx := ctxT(t)
	other := testclient.New(t, srv, nil, "other")
	other.UploadKeys(1, true)
	other.Sync(0)
	bob := register(t, srv, "bob", nil)
	if err := bob.Sync(ctx, 0); err != nil {
		t.Fatal(err)
	}
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test"}, nil)
	roomID := other.CreateRoom(fm)
	welcome := other.Add(roomID, fm, other.ClaimKeyPackage(bob.UserID(), bob.DeviceID()))
	other.Invite(roomID, bob.UserID(), bob.DeviceID(), welcome)
	if err := bob.Join(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	st, err := bob.Status(roomID)
	if err != nil || st.CommitID != other.CommitID || len(st.Members) != 2 {
		t.Fatalf("bob joined at %+v (%v), want commit %s", st, err, other.CommitID)
	}
	other.SendMessage(roomID, "hello from another client").Must(t, 200, "message")
	syncUntil(t, bob, "reading the other client", func() bool {
		for _, m := range bob.Messages(roomID) {
			if m.Body() == "hello from another client" {
				return true
			}
		}
		return false
	})
	if _, err := bob.Send(ctx, roomID, "hi"); err != nil {
		t.Fatal(err)
	}
}
