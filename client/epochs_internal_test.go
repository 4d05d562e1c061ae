package client

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// TestLateMessageAndEpochHistory: alice sends a message, then commits six times; bob
// follows the commits and only then gets the message (as after a
// partition). With Config.EpochHistory 8 he reads it; with the default
// (4 past epochs) it is listed as epoch_gone.
func TestLateMessageAndEpochHistory(t *testing.T) {
	for _, tc := range []struct {
		history int
		read    bool
	}{{0, false}, {8, true}} {
		t.Run(fmt.Sprintf("history=%d", tc.history), func(t *testing.T) {
			ctx := context.Background()
			_, ar := localMember(t, "@alice:a.test", 0)
			fm := &fedmap.Map{Federation: fedmap.Federation{Powers: []string{"a.test"}, Servers: []string{"a.test"}}}
			ad, _ := fm.Encode()
			kp, sec, bobSigner := keyPackageOf(t, "@bob:a.test")
			sc, err := ar.group.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}}, AuthenticatedData: ad})
			if err != nil {
				t.Fatal(err)
			}
			if err := ar.group.Merge(sc); err != nil {
				t.Fatal(err)
			}
			bob, br := localMember(t, "@bob:a.test", tc.history)
			if br.group, err = mls.JoinFromWelcome(sc.Welcome.Welcome, mls.JoinParams{KeyPackage: kp, Secrets: sec, Signer: bobSigner, Config: bob.groupConfig()}); err != nil {
				t.Fatal(err)
			}
			br.AuthData = ad
			m, err := ar.group.Encrypt([]byte(`{"type":"m.room.message","content":{"body":"late"}}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			late := event(t, "$late", roomversion.EventTypeEncrypted, m)
			for i := range 6 {
				sc, err := ar.group.Commit(mls.CommitOptions{AuthenticatedData: ad})
				if err != nil {
					t.Fatal(err)
				}
				if err := ar.group.Merge(sc); err != nil {
					t.Fatal(err)
				}
				if err := bob.handleEvent(ctx, br, event(t, fmt.Sprintf("$c%d", i), "m.mls.commit", sc.Message)); err != nil {
					t.Fatal(err)
				}
			}
			if br.Broken != nil || br.group.Epoch() != ar.group.Epoch() {
				t.Fatalf("bob did not follow: broken %v, epoch %d vs %d", br.Broken, br.group.Epoch(), ar.group.Epoch())
			}
			if err := bob.handleEvent(ctx, br, late); err != nil {
				t.Fatal(err)
			}
			read := len(br.Messages) == 1 && br.Messages[0].Body() == "late"
			if read != tc.read {
				t.Fatalf("read the late message: %v, want %v (undecryptable %+v)", read, tc.read, br.Undecryptable)
			}
			if !tc.read && (len(br.Undecryptable) != 1 || br.Undecryptable[0].Reason != ReasonEpochGone) {
				t.Fatalf("undecryptable: %+v, want the late message as epoch_gone", br.Undecryptable)
			}
		})
	}
}

// localMember is a client (no server) with a joined room whose group it
// created.
func localMember(t testing.TB, userID string, history int) (*Client, *room) {
	t.Helper()
	c := newClient(Config{EpochHistory: history})
	var err error
	if c.sign, err = mls.GenerateSigner(c.cfg.Suite); err != nil {
		t.Fatal(err)
	}
	c.acct = account{UserID: userID, DeviceID: "D"}
	if c.alg, err = c.cfg.Version.Algorithm(c.cfg.Suite); err != nil {
		t.Fatal(err)
	}
	cred, err := c.credential()
	if err != nil {
		t.Fatal(err)
	}
	g, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte("!r:a.test"), Signer: c.sign, Credential: cred, Capabilities: Capabilities(), Config: c.groupConfig()})
	if err != nil {
		t.Fatal(err)
	}
	r := c.roomOf("!r:a.test")
	r.Membership, r.group, r.CommitID = "join", g, "$c0"
	return c, r
}

func keyPackageOf(t *testing.T, userID string) (*mls.KeyPackage, *mls.KeyPackageSecrets, *mls.Signer) {
	t.Helper()
	s, err := mls.GenerateSigner(mls.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: userID, DeviceID: "D", SignatureKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: s, Credential: cred, Capabilities: Capabilities()})
	if err != nil {
		t.Fatal(err)
	}
	return kp, sec, s
}

// event is a timeline event of type typ carrying m.
func event(t *testing.T, id, typ string, m *mls.MLSMessage) json.RawMessage {
	t.Helper()
	wire, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	enc := b64url
	if typ == roomversion.EventTypeEncrypted {
		enc = b64
	}
	b, _ := json.Marshal(map[string]any{"event_id": id, "type": typ, "origin": "a.test",
		"content": map[string]string{"ciphertext": enc.EncodeToString(wire)}})
	return b
}

// addMessage keeps the last MaxMessages and deletes the store entries of
// those it drops.
func TestAddMessageTrims(t *testing.T) {
	r := &room{ID: "!r:a.test"}
	for i := range MaxMessages + 5 {
		r.addMessage(Message{EventID: fmt.Sprintf("$%d", i)})
	}
	if len(r.Messages) != MaxMessages || r.Messages[0].EventID != "$5" || r.MsgSeq != MaxMessages+5 {
		t.Fatalf("kept %d messages from %s, seq %d", len(r.Messages), r.Messages[0].EventID, r.MsgSeq)
	}
	for seq := 1; seq <= 5; seq++ {
		if v, ok := r.msgWrites[fmt.Sprintf("%s%012d", msgPrefix(r.ID), seq)]; !ok || v != nil {
			t.Fatalf("message %d's entry is not deleted", seq)
		}
	}
	if v := r.msgWrites[fmt.Sprintf("%s%012d", msgPrefix(r.ID), 6)]; v == nil {
		t.Fatal("message 6's entry is not written")
	}
}
