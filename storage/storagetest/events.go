package storagetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

const (
	testOrigin = "a.example"
	testKeyID  = "ed25519:k1"
)

// Room makes the events of one test room: a create event, a commit and
// m.room.encrypted events with fake (unencrypted) MLS ciphertexts, which is
// all servers read.
type Room struct {
	tb     testing.TB
	ID     string
	key    ed25519.PrivateKey
	seq    uint64
	Create *roomversion.Event
	Commit *roomversion.Event
}

// NewRoom builds the create event and the first commit of room roomID.
func NewRoom(tb testing.TB, roomID string) *Room {
	tb.Helper()
	r := &Room{tb: tb, ID: roomID, key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))}
	v := roomversion.V1
	content, err := v.CreateContentJSON(mls.X25519AES128GCMSHA256Ed25519, true)
	if err != nil {
		tb.Fatal(err)
	}
	r.Create = r.build(&roomversion.Builder{Type: roomversion.EventTypeCreate, StateKey: new(string), Content: content})
	r.Commit = r.NewCommit(0, []string{r.Create.EventID()}, []string{r.Create.EventID()})
	return r
}

// build fills in the common fields and builds.
func (r *Room) build(b *roomversion.Builder) *roomversion.Event {
	r.tb.Helper()
	r.seq++
	b.Version, b.RoomID, b.Origin = roomversion.V1, r.ID, testOrigin
	b.Timestamp = time.UnixMilli(1_760_000_000_000 + int64(r.seq))
	ev, err := b.Build(context.Background(), testKeyID, r.key)
	if err != nil {
		r.tb.Fatalf("building test event: %v", err)
	}
	return ev
}

// message is a fake MLS PrivateMessage of the room; seq makes it unique.
func (r *Room) message(epoch uint64, ct mls.ContentType, ad []byte) []byte {
	r.tb.Helper()
	body := make([]byte, 64)
	binary.BigEndian.PutUint64(body, r.seq)
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(r.ID), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: bytes.Repeat([]byte{0xab}, 28), Ciphertext: body,
	}}
	out, err := m.MarshalMLS()
	if err != nil {
		r.tb.Fatal(err)
	}
	return out
}

// NewCommit builds a commit sent in epoch.
func (r *Room) NewCommit(epoch uint64, auth, prev []string) *roomversion.Event {
	r.tb.Helper()
	fm := &fedmap.Map{Federation: fedmap.Federation{Powers: []string{testOrigin}, Servers: []string{testOrigin, "b.example"}}}
	ad, err := fm.Encode()
	if err != nil {
		r.tb.Fatal(err)
	}
	v := roomversion.V1
	content, err := v.MLSContent(v.CommitType(), mls.X25519AES128GCMSHA256Ed25519, r.message(epoch, mls.ContentTypeCommit, ad))
	if err != nil {
		r.tb.Fatal(err)
	}
	return r.build(&roomversion.Builder{Type: v.CommitType(), StateKey: new(string), Content: content, AuthEvents: auth, PrevEvents: prev})
}

// NewMessage builds an m.room.encrypted event in epoch 1 with the room's
// create event and first commit as auth events.
func (r *Room) NewMessage(prev ...string) *roomversion.Event {
	r.tb.Helper()
	v := roomversion.V1
	content, err := v.MLSContent(roomversion.EventTypeEncrypted, mls.X25519AES128GCMSHA256Ed25519, r.message(1, mls.ContentTypeApplication, nil))
	if err != nil {
		r.tb.Fatal(err)
	}
	return r.build(&roomversion.Builder{Type: roomversion.EventTypeEncrypted, Content: content,
		AuthEvents: []string{r.Create.EventID(), r.Commit.EventID()}, PrevEvents: prev})
}

// State is the room state after the first commit.
func (r *Room) State() storage.RoomState {
	return storage.RoomState{CreateID: r.Create.EventID(), CommitID: r.Commit.EventID()}
}
