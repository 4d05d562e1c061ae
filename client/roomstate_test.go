package client

import (
	"errors"
	"testing"

	"github.com/mlsmode/mlsmode/mls"
)

func newMember(t *testing.T, name string, caps *mls.Capabilities) (*mls.Signer, mls.Credential) {
	t.Helper()
	s, err := mls.GenerateSigner(mls.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: "@" + name + ":a.example", DeviceID: "D", SignatureKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestRoomStateThroughTheGroup(t *testing.T) {
	rc, err := RequiredCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	s, c := newMember(t, "alice", nil)
	g, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte("!r:a.example"), Signer: s, Credential: c,
		Capabilities: Capabilities(), Extensions: mls.Extensions{rc}})
	if err != nil {
		t.Fatal(err)
	}
	// A client that does not list 0xF6D0 cannot be added.
	bs, bc := newMember(t, "bob", nil)
	bad, _, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: bs, Credential: bc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *bad}}}}); !errors.Is(err, mls.ErrInvalidCommit) {
		t.Fatalf("adding a client without the room-state capability: %v", err)
	}
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: bs, Credential: bc, Capabilities: Capabilities()})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := ParseRoomState(g.Extensions())
	if len(st) != 0 {
		t.Fatalf("state of a new room: %v", st)
	}
	if err := st.Set("m.room.name", "", map[string]string{"name": "Café <&>"}); err != nil {
		t.Fatal(err)
	}
	p, err := RoomStateProposal(g.Extensions(), st)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{p, {ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}}})
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
	got, err := ParseRoomState(bob.Extensions())
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := got.Get("m.room.name", ""); !ok || string(name) != `{"name":"Café <&>"}` {
		t.Fatalf("room name as bob sees it: %s", name)
	}
	// The required_capabilities extension survived the replacement.
	if _, ok := bob.Extensions().Find(mls.ExtensionTypeRequiredCapabilities); !ok {
		t.Fatal("required_capabilities lost")
	}
	got.Delete("m.room.name", "")
	if len(got) != 0 {
		t.Fatal("Delete left the type behind")
	}
}

func TestParseRoomStateRejects(t *testing.T) {
	for name, data := range map[string]string{
		"not JSON":        `{`,
		"not canonical":   `{ "a": {} }`,
		"not an object":   `[]`,
		"null type":       `{"a":null}`,
		"content not obj": `{"a":{"":1}}`,
		"float":           `{"a":{"":{"x":1.5}}}`,
		"too large":       `{"a":{"":{"x":9007199254740992}}}`,
	} {
		_, err := ParseRoomState(mls.Extensions{{Type: RoomStateExtension, Data: []byte(data)}})
		if !errors.Is(err, ErrRoomState) {
			t.Errorf("%s: %v, want ErrRoomState", name, err)
		}
	}
	if err := (RoomState{}).Set("t", "", "not an object"); err == nil {
		t.Error("Set accepted a non-object")
	}
	if err := (RoomState{}).Set("t", "", map[string]float64{"x": 0.5}); err == nil {
		t.Error("Set accepted a float")
	}
}
