package roomversion

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/mls"
)

// The ingest benchmarks compare what a server does with an event that
// arrives over federation: parse the untrusted JSON with every check, check
// the content hash, and verify the origin's signature with a key it already
// holds. BenchmarkIngestEncrypted does it for an m.mls.1 m.room.encrypted
// event carrying a 1 KiB MLSMessage; BenchmarkIngestGMSLv11 has
// gomatrixserverlib do it for a room version 11 m.room.message event whose
// JSON is the same size, with NewEventFromUntrustedJSON and
// VerifyEventSignatures over a KeyRing whose key database answers from
// memory (no fetchers, nothing stored), which is gomatrixserverlib's
// fastest path.

// ingestEvent returns the m.mls.1 event of the benchmark.
func ingestEvent(b *testing.B) *Event {
	bl := builder(b, V1, EventEncrypted)
	var err error
	bl.Content, err = V1.MLSContent(EventTypeEncrypted, mls.X25519AES128GCMSHA256Ed25519, privMsg(b, testRoom, 2, mls.ContentTypeApplication, nil, 1024))
	if err != nil {
		b.Fatal(err)
	}
	return build(b, bl)
}

func BenchmarkIngestEncrypted(b *testing.B) {
	ev := ingestEvent(b)
	in := ev.JSON()
	keys := testKeys()
	ctx := context.Background()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := Parse(ctx, V1, in)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifySignature(ctx, got, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestEncryptedVerifyJSON is BenchmarkIngestEncrypted with the
// signature checked by gomatrixserverlib.VerifyJSON on the redacted event
// instead of VerifySignature, to show what that costs.
func BenchmarkIngestEncryptedVerifyJSON(b *testing.B) {
	ev := ingestEvent(b)
	in := ev.JSON()
	pub := testKey().Public().(ed25519.PublicKey)
	ctx := context.Background()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := Parse(ctx, V1, in)
		if err != nil {
			b.Fatal(err)
		}
		if err := gomatrixserverlib.VerifyJSON(got.Origin(), testKeyID, pub, got.RedactedJSON()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIngestGMSLv11(b *testing.B) {
	size := len(ingestEvent(b).JSON())
	verImpl := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11)
	key := testKey()
	mk := func(body int) gomatrixserverlib.PDU {
		eb := verImpl.NewEventBuilder()
		eb.SenderID = "@alice:" + testOrigin
		eb.RoomID = testRoom
		eb.Type = "m.room.message"
		eb.Depth = 12
		eb.PrevEvents = []string{eventID("prev")}
		eb.AuthEvents = []string{eventID("create"), eventID("power_levels"), eventID("member")}
		if err := eb.SetContent(map[string]string{"msgtype": "m.text", "body": strings.Repeat("x", body)}); err != nil {
			b.Fatal(err)
		}
		ev, err := eb.Build(testTime, testOrigin, testKeyID, key)
		if err != nil {
			b.Fatal(err)
		}
		return ev
	}
	body := size
	ev := mk(body)
	for range 3 {
		body -= len(ev.JSON()) - size
		ev = mk(body)
	}
	in := ev.JSON()
	if len(in) != size {
		b.Fatalf("gomatrixserverlib event of %d bytes, want %d", len(in), size)
	}
	ring := gomatrixserverlib.KeyRing{KeyDatabase: newGMSLKeyDB(testOrigin, testKeyID, key.Public().(ed25519.PublicKey))}
	userIDForSender := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	ctx := context.Background()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		pdu, err := verImpl.NewEventFromUntrustedJSON(in)
		if err != nil {
			b.Fatal(err)
		}
		if pdu.Redacted() {
			b.Fatal("content hash mismatch")
		}
		if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, ring, userIDForSender); err != nil {
			b.Fatal(err)
		}
	}
}
