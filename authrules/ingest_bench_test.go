package authrules_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// The ingest benchmarks measure what a server does with one message event
// that arrives over federation, up to accepting it: parse the untrusted
// JSON with every check (content hash included), verify the origin's
// signature with a key it already holds, and run the auth rules against the
// event's auth events, which it already holds and has parsed.
//
//   - impl=ours: an m.mls.1 m.room.encrypted event from b.example carrying
//     a real MLS PrivateMessage (mls.EpochKeys.ProtectPrivate) of 1024
//     bytes, in the epoch after the room's epoch-0 commit: roomversion.Parse,
//     roomversion.VerifySignature over an in-memory KeyFetcher, and
//     authrules.CheckAuthEvents against [create, commit].
//   - impl=gmsl: gomatrixserverlib with a room version 11 m.room.message
//     from @bob:b.example whose JSON is the same size (the body is padded):
//     NewEventFromUntrustedJSON (a content hash mismatch shows as
//     Redacted()), VerifyEventSignatures over a KeyRing whose key database
//     answers from memory, and Allowed against an AuthEvents provider
//     holding create, power levels, join rules and bob's join (as Dendrite's
//     roomserver does on input, minus loading the auth events).
//
// Neither side's loop loads or parses the auth events: both are set up
// once. BenchmarkAuthCheckOnly is the third step alone, on the parsed
// events.

const (
	ingestRoom    = "!ingest:a.example"
	ingestCreator = "a.example" // creates the room (ours) and hosts @alice (gmsl)
	ingestOrigin  = "b.example" // sends the benchmarked event; @bob (gmsl)
	ingestKeyID   = "ed25519:bench"
	ingestMLSSize = 1024 // bytes of the MLSMessage an m.room.encrypted event carries
)

var ingestTime = time.UnixMilli(1_760_000_000_000)

func ingestKey(server string) ed25519.PrivateKey {
	b := byte(1)
	if server == ingestOrigin {
		b = 2
	}
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// ingestFixture holds both sides' events, built once per process.
type ingestFixture struct {
	// ours
	in         []byte                 // the m.room.encrypted event's JSON
	ev         *roomversion.Event     // in, parsed
	authEvents []*roomversion.Event   // [create, commit], parsed
	keys       roomversion.KeyFetcher // b.example's key

	// gmsl
	gIn     []byte // the m.room.message event's JSON
	gVer    gomatrixserverlib.IRoomVersion
	gEv     gomatrixserverlib.PDU
	gAuth   *gomatrixserverlib.AuthEvents
	gRing   gomatrixserverlib.KeyRing
	gUserID spec.UserIDForSender
}

var ingest = sync.OnceValues(newIngestFixture)

func ingestSetup(b *testing.B) *ingestFixture {
	b.Helper()
	f, err := ingest()
	if err != nil {
		b.Fatal(err)
	}
	return f
}

func newIngestFixture() (*ingestFixture, error) {
	f := &ingestFixture{}
	if err := f.buildOurs(); err != nil {
		return nil, fmt.Errorf("ours: %w", err)
	}
	if err := f.buildGMSL(); err != nil {
		return nil, fmt.Errorf("gmsl: %w", err)
	}
	for name, in := range map[string][]byte{"ours": f.in, "gmsl": f.gIn} {
		if c, err := gomatrixserverlib.CanonicalJSON(in); err != nil || !bytes.Equal(c, in) {
			return nil, fmt.Errorf("%s: the event JSON is not canonical JSON (%v)", name, err)
		}
	}
	if d := len(f.gIn) - len(f.in); d*100 > len(f.in) || -d*100 > len(f.in) {
		return nil, fmt.Errorf("JSON sizes differ by more than 1%%: ours %d bytes, gmsl %d", len(f.in), len(f.gIn))
	}
	return f, nil
}

// mlsMessage returns an MLSMessage holding a real PrivateMessage: a commit
// (with ad as authenticated data) or an application message whose encoding
// is exactly size bytes, sent by leaf in epoch of the room's group.
func mlsMessage(cs mls.CipherSuite, epoch uint64, leaf uint32, ct mls.ContentType, ad []byte, size int) ([]byte, error) {
	gc := &mls.GroupContext{Version: mls.MLS10, CipherSuite: cs, GroupID: []byte(ingestRoom), Epoch: epoch,
		TreeHash: bytes.Repeat([]byte{1}, 32), ConfirmedTranscriptHash: bytes.Repeat([]byte{2}, 32)}
	keys, err := mls.NewEpochKeys(gc, 4, bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32), bytes.Repeat([]byte{5}, 32), nil)
	if err != nil {
		return nil, err
	}
	signer, err := mls.NewSigner(cs, bytes.Repeat([]byte{byte(10 + leaf)}, 32))
	if err != nil {
		return nil, err
	}
	protect := func(n int) ([]byte, error) {
		fc := &mls.FramedContent{GroupID: gc.GroupID, Epoch: epoch, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: leaf},
			AuthenticatedData: ad, ContentType: ct}
		var tag []byte
		if ct == mls.ContentTypeCommit {
			fc.Commit = &mls.Commit{}
			tag = bytes.Repeat([]byte{6}, 32)
		} else {
			body, err := json.Marshal(strings.Repeat("x", n))
			if err != nil {
				return nil, err
			}
			fc.Application = []byte(`{"content":{"body":` + string(body) + `,"msgtype":"m.text"},"type":"m.room.message"}`)
		}
		pm, err := keys.ProtectPrivate(fc, signer, tag)
		if err != nil {
			return nil, err
		}
		return (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
	}
	if size <= 0 {
		return protect(0)
	}
	m, err := protect(0)
	if err != nil {
		return nil, err
	}
	n := size - len(m)
	for range 4 { // the length prefixes grow at 64 and 16384 bytes
		if m, err = protect(n); err != nil {
			return nil, err
		}
		if len(m) == size {
			return m, nil
		}
		n -= len(m) - size
	}
	return nil, fmt.Errorf("cannot make an MLS message of %d bytes", size)
}

// buildOurs makes the m.mls.1 room: create (a.example), the epoch-0 commit
// (a.example; powers [a.example], servers [a.example, b.example]) and
// b.example's message in epoch 1.
func (f *ingestFixture) buildOurs() error {
	ctx := context.Background()
	v, cs := roomversion.V1, mls.X25519AES128GCMSHA256Ed25519
	build := func(bl *roomversion.Builder) (*roomversion.Event, error) {
		bl.Version, bl.RoomID, bl.Timestamp = v, ingestRoom, ingestTime
		return bl.Build(ctx, ingestKeyID, ingestKey(bl.Origin))
	}
	empty := ""

	cc, err := v.CreateContentJSON(cs, true)
	if err != nil {
		return err
	}
	create, err := build(&roomversion.Builder{Type: roomversion.EventTypeCreate, StateKey: &empty, Content: cc, Origin: ingestCreator})
	if err != nil {
		return err
	}

	ad, err := (&fedmap.Map{Federation: fedmap.Federation{Powers: []string{ingestCreator}, Servers: []string{ingestCreator, ingestOrigin}}}).Encode()
	if err != nil {
		return err
	}
	msg, err := mlsMessage(cs, 0, 0, mls.ContentTypeCommit, ad, 0)
	if err != nil {
		return err
	}
	content, err := v.MLSContent(v.CommitType(), cs, msg)
	if err != nil {
		return err
	}
	commit, err := build(&roomversion.Builder{Type: v.CommitType(), StateKey: &empty, Content: content, Origin: ingestCreator,
		AuthEvents: []string{create.EventID()}, PrevEvents: []string{create.EventID()}})
	if err != nil {
		return err
	}

	if msg, err = mlsMessage(cs, 1, 1, mls.ContentTypeApplication, nil, ingestMLSSize); err != nil {
		return err
	}
	if content, err = v.MLSContent(roomversion.EventTypeEncrypted, cs, msg); err != nil {
		return err
	}
	ev, err := build(&roomversion.Builder{Type: roomversion.EventTypeEncrypted, Content: content, Origin: ingestOrigin,
		AuthEvents: []string{create.EventID(), commit.EventID()}, PrevEvents: []string{commit.EventID()}})
	if err != nil {
		return err
	}

	// What the server holds: the auth events as it parsed them on receipt.
	for _, a := range []*roomversion.Event{create, commit} {
		p, err := roomversion.Parse(ctx, v, a.JSON())
		if err != nil {
			return err
		}
		f.authEvents = append(f.authEvents, p)
	}
	f.in = ev.JSON()
	if f.ev, err = roomversion.Parse(ctx, v, f.in); err != nil {
		return err
	}
	pub := ingestKey(ingestOrigin).Public().(ed25519.PublicKey)
	f.keys = roomversion.KeyFetcherFunc(func(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
		if server != ingestOrigin || keyID != ingestKeyID {
			return nil, fmt.Errorf("no key %s for %s", keyID, server)
		}
		return pub, nil
	})
	return nil
}

// buildGMSL makes the room version 11 room: @alice:a.example creates it,
// joins, sets power levels and public join rules; @bob:b.example joins and
// sends the message, whose JSON is padded to the size of ours.
func (f *ingestFixture) buildGMSL() error {
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11)
	f.gVer = ver
	f.gUserID = func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	alice, bob := "@alice:"+ingestCreator, "@bob:"+ingestOrigin
	auth, err := gomatrixserverlib.NewAuthEvents(nil)
	if err != nil {
		return err
	}
	depth := int64(0)
	var prev string
	mk := func(sender, typ string, stateKey *string, content any, authIDs []string) (gomatrixserverlib.PDU, error) {
		eb := ver.NewEventBuilder()
		eb.SenderID, eb.RoomID, eb.Type, eb.StateKey = sender, ingestRoom, typ, stateKey
		eb.Depth = depth + 1
		eb.PrevEvents, eb.AuthEvents = []string{}, append([]string{}, authIDs...)
		if prev != "" {
			eb.PrevEvents = []string{prev}
		}
		if err := eb.SetContent(content); err != nil {
			return nil, err
		}
		_, domain, _ := strings.Cut(sender, ":")
		return eb.Build(ingestTime, spec.ServerName(domain), ingestKeyID, ingestKey(domain))
	}
	// state adds a state event after checking it with Allowed against the
	// state so far.
	state := func(sender, typ, stateKey string, content any, authIDs ...string) (string, error) {
		ev, err := mk(sender, typ, &stateKey, content, authIDs)
		if err != nil {
			return "", err
		}
		if err := gomatrixserverlib.Allowed(ev, auth, f.gUserID); err != nil {
			return "", fmt.Errorf("%s %q: %w", typ, stateKey, err)
		}
		if err := auth.AddEvent(ev); err != nil {
			return "", err
		}
		depth, prev = ev.Depth(), ev.EventID()
		return ev.EventID(), nil
	}
	create, err := state(alice, spec.MRoomCreate, "", map[string]any{"room_version": "11"})
	if err != nil {
		return err
	}
	aliceJoin, err := state(alice, spec.MRoomMember, alice, map[string]any{"membership": "join", "displayname": "Alice"}, create)
	if err != nil {
		return err
	}
	pl, err := state(alice, spec.MRoomPowerLevels, "", map[string]any{
		"ban": 50, "events_default": 0, "invite": 0, "kick": 50, "redact": 50, "state_default": 50, "users_default": 0,
		"events": map[string]int{"m.room.avatar": 50, "m.room.canonical_alias": 50, "m.room.encryption": 100, "m.room.history_visibility": 100,
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.server_acl": 100, "m.room.tombstone": 100},
		"notifications": map[string]int{"room": 50},
		"users":         map[string]int{alice: 100},
	}, create, aliceJoin)
	if err != nil {
		return err
	}
	jr, err := state(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}, create, pl, aliceJoin)
	if err != nil {
		return err
	}
	bobJoin, err := state(bob, spec.MRoomMember, bob, map[string]any{"membership": "join", "displayname": "Bob"}, create, pl, jr)
	if err != nil {
		return err
	}
	// The provider holds create, power levels, join rules and bob's join
	// (alice's membership, there too, is not read for bob's message).
	if f.gAuth, err = gomatrixserverlib.NewAuthEvents(nil); err != nil {
		return err
	}
	for _, k := range []gomatrixserverlib.StateKeyTuple{
		{EventType: spec.MRoomCreate}, {EventType: spec.MRoomPowerLevels}, {EventType: spec.MRoomJoinRules},
		{EventType: spec.MRoomMember, StateKey: bob},
	} {
		var ev gomatrixserverlib.PDU
		switch k.EventType {
		case spec.MRoomCreate:
			ev, _ = auth.Create()
		case spec.MRoomPowerLevels:
			ev, _ = auth.PowerLevels()
		case spec.MRoomJoinRules:
			ev, _ = auth.JoinRules()
		case spec.MRoomMember:
			ev, _ = auth.Member(spec.SenderID(k.StateKey))
		}
		if ev == nil {
			return fmt.Errorf("no %v", k)
		}
		if err := f.gAuth.AddEvent(ev); err != nil {
			return err
		}
	}

	msg := func(body int) (gomatrixserverlib.PDU, error) {
		return mk(bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": strings.Repeat("x", body)}, []string{create, pl, bobJoin})
	}
	size := len(f.in)
	body := size
	ev, err := msg(body)
	if err != nil {
		return err
	}
	for range 3 {
		body -= len(ev.JSON()) - size
		if ev, err = msg(body); err != nil {
			return err
		}
	}
	f.gIn = ev.JSON()
	if f.gEv, err = ver.NewEventFromUntrustedJSON(f.gIn); err != nil {
		return err
	}
	f.gRing = gomatrixserverlib.KeyRing{KeyDatabase: ingestKeyDB{
		{ServerName: ingestOrigin, KeyID: ingestKeyID}: {
			VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(ingestKey(ingestOrigin).Public().(ed25519.PublicKey))},
			ExpiredTS:    gomatrixserverlib.PublicKeyNotExpired,
			ValidUntilTS: spec.AsTimestamp(time.Now().Add(24 * time.Hour)),
		},
	}}
	return nil
}

// ingestKeyDB is a static gomatrixserverlib key database: no fetchers,
// nothing stored.
type ingestKeyDB map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult

func (d ingestKeyDB) FetchKeys(context.Context, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	return d, nil
}
func (d ingestKeyDB) FetcherName() string { return "static" }
func (d ingestKeyDB) StoreKeys(context.Context, map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	return nil
}

// ingestOurs is one ingest of ours.
func (f *ingestFixture) ingestOurs(ctx context.Context) error {
	ev, err := roomversion.Parse(ctx, roomversion.V1, f.in)
	if err != nil {
		return err
	}
	if err := roomversion.VerifySignature(ctx, ev, f.keys); err != nil {
		return err
	}
	return authrules.CheckAuthEvents(ev, f.authEvents, nil)
}

// ingestGMSL is one ingest by gomatrixserverlib.
func (f *ingestFixture) ingestGMSL(ctx context.Context) error {
	pdu, err := f.gVer.NewEventFromUntrustedJSON(f.gIn)
	if err != nil {
		return err
	}
	if pdu.Redacted() {
		return fmt.Errorf("content hash mismatch")
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, f.gRing, f.gUserID); err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(pdu, f.gAuth, f.gUserID)
}

var logIngestSizes sync.Once

func BenchmarkIngest(b *testing.B) {
	f := ingestSetup(b)
	ctx := context.Background()
	b.Run("impl=ours", func(b *testing.B) {
		// Logged in a sub-benchmark: a parent's log shows only with -v.
		logIngestSizes.Do(func() {
			b.Logf("event JSON (canonical): ours %d bytes (m.mls.1 m.room.encrypted, %d-byte MLSMessage), gmsl %d bytes (v11 m.room.message)",
				len(f.in), len(f.ev.Ciphertext()), len(f.gIn))
		})
		if err := f.ingestOurs(ctx); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(f.in)))
		b.ReportAllocs()
		for b.Loop() {
			if err := f.ingestOurs(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=gmsl", func(b *testing.B) {
		if err := f.ingestGMSL(ctx); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(f.gIn)))
		b.ReportAllocs()
		for b.Loop() {
			if err := f.ingestGMSL(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAuthCheckOnly is the auth check of BenchmarkIngest alone, on the
// parsed events: authrules.CheckAuthEvents (rule 4 on [create, commit], then
// rules 1-12 and the chain rule) and gomatrixserverlib.Allowed.
func BenchmarkAuthCheckOnly(b *testing.B) {
	f := ingestSetup(b)
	b.Run("impl=ours", func(b *testing.B) {
		if err := authrules.CheckAuthEvents(f.ev, f.authEvents, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := authrules.CheckAuthEvents(f.ev, f.authEvents, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=gmsl", func(b *testing.B) {
		if err := gomatrixserverlib.Allowed(f.gEv, f.gAuth, f.gUserID); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := gomatrixserverlib.Allowed(f.gEv, f.gAuth, f.gUserID); err != nil {
				b.Fatal(err)
			}
		}
	})
}
