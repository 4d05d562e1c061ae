package roomversion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/sjson"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

func TestBuildParseRoundTrip(t *testing.T) {
	for _, v := range Versions() {
		for _, k := range []EventKind{EventCreate, EventCommit, EventPendingCommit, EventEncrypted} {
			t.Run(fmt.Sprintf("%s/%s", v, k), func(t *testing.T) {
				b := builder(t, v, k)
				ev := build(t, b)
				back, err := Parse(context.Background(), v, ev.JSON())
				if err != nil {
					t.Fatal(err)
				}
				if back.EventID() != ev.EventID() || !bytes.Equal(back.JSON(), ev.JSON()) {
					t.Fatalf("round trip changed the event:\n%s\n%s", ev.JSON(), back.JSON())
				}
				if !strings.HasPrefix(ev.EventID(), "$") || len(ev.EventID()) != 44 || validEventID(ev.EventID()) != nil {
					t.Fatalf("event ID %q", ev.EventID())
				}
				if err := VerifySignature(context.Background(), back, testKeys()); err != nil {
					t.Fatal(err)
				}
				// Accessors.
				if back.Kind() != k || back.Type() != b.Type || back.Origin() != testOrigin || back.RoomID().String() != testRoom ||
					back.OriginServerTS() != spec.AsTimestamp(testTime) || back.RoomVersion() != v || back.Version() != gomatrixserverlib.RoomVersion(v) {
					t.Fatalf("accessors: %v %q %q %q %d", back.Kind(), back.Type(), back.Origin(), back.RoomID().String(), back.OriginServerTS())
				}
				if !reflect.DeepEqual(back.AuthEventIDs(), nonNil(b.AuthEvents)) || !reflect.DeepEqual(back.PrevEventIDs(), nonNil(b.PrevEvents)) {
					t.Fatalf("auth %v prev %v", back.AuthEventIDs(), back.PrevEventIDs())
				}
				if (back.StateKey() == nil) != (b.StateKey == nil) || (b.StateKey != nil && !back.StateKeyEquals("")) || back.StateKeyEquals("x") {
					t.Fatalf("state key %v", back.StateKey())
				}
				if back.SenderID() != "" || back.Depth() != 0 || back.Redacted() || back.Redacts() != "" || back.Unsigned() != nil {
					t.Fatal("sender, depth, redaction or unsigned")
				}
				if back.CipherSuite() != mls.X25519AES128GCMSHA256Ed25519 {
					t.Fatalf("suite %v", back.CipherSuite())
				}
				if !bytes.Equal(back.Content(), mustCanon(t, b.Content)) {
					t.Fatalf("content %s", back.Content())
				}
				switch k {
				case EventCreate:
					c, err := back.Create()
					if err != nil || c.RoomVersion != v || c.Algorithm != c.EncryptionAlgorithm || !c.Federate || c.CipherSuite != 1 {
						t.Fatalf("create content %+v %v", c, err)
					}
					if _, err := back.MLSHeader(); err == nil || back.Ciphertext() != nil || back.Algorithm() != "" || back.CiphertextString() != "" {
						t.Fatal("create event has an MLS message")
					}
					if _, err := back.FederationMap(); err == nil {
						t.Fatal("create event has a federation map")
					}
				default:
					h, err := back.MLSHeader()
					if err != nil || string(h.GroupID) != testRoom || h.WireFormat != mls.WireFormatPrivateMessage || h.Epoch != back.Epoch() {
						t.Fatalf("header %+v %v", h, err)
					}
					if back.Algorithm() != v.AlgorithmPrefix()+"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" {
						t.Fatal(back.Algorithm())
					}
					if !strings.Contains(string(back.Content()), back.CiphertextString()) {
						t.Fatal("CiphertextString is not the content's text")
					}
					if _, err := back.Create(); err == nil {
						t.Fatal("MLS event has create content")
					}
					fm, err := back.FederationMap()
					if k == EventEncrypted {
						if err == nil || h.ContentType != mls.ContentTypeApplication {
							t.Fatalf("encrypted: %v %v", fm, err)
						}
					} else if err != nil || fm.Federation.Powers[0] != testOrigin || h.ContentType != mls.ContentTypeCommit || back.Epoch() != 1 {
						t.Fatalf("federation map %+v %v", fm, err)
					}
				}
			})
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mustCanon(t testing.TB, b []byte) []byte {
	t.Helper()
	c, err := canonicalJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRealPrivateMessages carries genuinely protected MLS messages
// (mls.EpochKeys) in events and reads their headers back.
func TestRealPrivateMessages(t *testing.T) {
	for _, cs := range Suites() {
		t.Run(cs.String(), func(t *testing.T) {
			hashLen := 32
			if cs == mls.XWingAES256GCMSHA512Ed25519 {
				hashLen = 64
			}
			ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: cs, GroupID: []byte(testRoom), Epoch: 5,
				TreeHash: bytes.Repeat([]byte{1}, hashLen), ConfirmedTranscriptHash: bytes.Repeat([]byte{2}, hashLen)}
			keys, err := mls.NewEpochKeys(ctx, 4, bytes.Repeat([]byte{3}, hashLen), bytes.Repeat([]byte{4}, hashLen), bytes.Repeat([]byte{5}, hashLen), nil)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := mls.GenerateSigner(cs)
			if err != nil {
				t.Fatal(err)
			}
			ad := fedAD(t, []string{testOrigin, "b.example"}, []string{testOrigin, "b.example", "c.example:8448"})
			commit := &mls.FramedContent{GroupID: ctx.GroupID, Epoch: 5, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: 1},
				AuthenticatedData: ad, ContentType: mls.ContentTypeCommit, Commit: &mls.Commit{}}
			pm, err := keys.ProtectPrivate(commit, signer, bytes.Repeat([]byte{6}, hashLen))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
			if err != nil {
				t.Fatal(err)
			}
			b := builder(t, V1, EventCommit)
			if b.Content, err = V1.MLSContent(b.Type, cs, msg); err != nil {
				t.Fatal(err)
			}
			ev := build(t, b)
			if ev.CipherSuite() != cs || ev.Epoch() != 5 || !bytes.Equal(ev.Ciphertext(), msg) {
				t.Fatalf("suite %v epoch %d", ev.CipherSuite(), ev.Epoch())
			}
			fm, err := ev.FederationMap()
			if err != nil || !reflect.DeepEqual(fm.Federation.Servers, []string{testOrigin, "b.example", "c.example:8448"}) {
				t.Fatalf("%+v %v", fm, err)
			}

			app := &mls.FramedContent{GroupID: ctx.GroupID, Epoch: 5, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: 0},
				ContentType: mls.ContentTypeApplication, Application: []byte(`{"type":"m.room.message","content":{"body":"hi"}}`)}
			pm, err = keys.ProtectPrivate(app, signer, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ = (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
			b = builder(t, V1, EventEncrypted)
			b.Content, _ = V1.MLSContent(b.Type, cs, msg)
			ev = build(t, b)
			if h, _ := ev.MLSHeader(); h.ContentType != mls.ContentTypeApplication || h.Epoch != 5 {
				t.Fatalf("%+v", h)
			}
			// The message decrypts from what the event carries.
			recv, _ := mls.NewEpochKeys(ctx, 4, bytes.Repeat([]byte{3}, hashLen), bytes.Repeat([]byte{4}, hashLen), bytes.Repeat([]byte{5}, hashLen), nil)
			var back mls.MLSMessage
			if err := back.UnmarshalMLS(ev.Ciphertext()); err != nil {
				t.Fatal(err)
			}
			lookup := func(mls.Sender) ([]byte, error) { return signer.PublicKey(), nil }
			if ac, err := recv.UnprotectPrivate(back.PrivateMessage, lookup); err != nil || !bytes.Equal(ac.Content.Application, app.Application) {
				t.Fatalf("decrypting: %v", err)
			}
		})
	}
}

func TestEventIDStable(t *testing.T) {
	ev := build(t, builder(t, V1, EventEncrypted))
	again := build(t, builder(t, V1, EventEncrypted))
	if ev.EventID() != again.EventID() {
		t.Fatal("same event, different IDs")
	}
	// A golden ID: any change to the event format, canonical JSON, hashing
	// or signing shows up here. Cross-checked outside Go with Python's
	// json.dumps(ensure_ascii=False, separators=(",", ":"), sort_keys=True),
	// the spec's definition of canonical JSON.
	const golden = "$IGdFAiSDVMT_83d9kMs5tydPpXgm3VNBfxYjqiPBsEY"
	if ev.EventID() != golden {
		t.Errorf("event ID %s, want %s\n%s", ev.EventID(), golden, ev.JSON())
	}

	// The ID binds the ciphertext: one changed byte, another ID.
	b := builder(t, V1, EventEncrypted)
	msg := privMsg(t, testRoom, 2, mls.ContentTypeApplication, nil, 0)
	msg[len(msg)-1] ^= 1
	b.Content, _ = V1.MLSContent(b.Type, 1, msg)
	if changed := build(t, b); changed.EventID() == ev.EventID() {
		t.Fatal("changing the ciphertext kept the event ID")
	}
	// So do the other fields.
	b = builder(t, V1, EventEncrypted)
	b.Timestamp = b.Timestamp.Add(time.Millisecond)
	if build(t, b).EventID() == ev.EventID() {
		t.Fatal("changing the timestamp kept the event ID")
	}
	// The same event in the other room version differs (type and
	// algorithm names).
	if build(t, builder(t, V1Unstable, EventEncrypted)).EventID() == ev.EventID() {
		t.Fatal("versions share an event ID")
	}

	// Unsigned and extra signatures do not change the ID.
	withU, err := ev.SetUnsigned(map[string]any{"age": 5, "transaction_id": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if withU.EventID() != ev.EventID() || string(withU.Unsigned()) != `{"age":5,"transaction_id":"x"}` {
		t.Fatalf("unsigned: %s %s", withU.EventID(), withU.Unsigned())
	}
	signed := ev.Sign("notary.example", "ed25519:n", otherKey())
	if signed.EventID() != ev.EventID() {
		t.Fatal("a second signature changed the event ID")
	}
}

// TestEventIDIndependently recomputes the event ID and content hash with
// gomatrixserverlib's canonical JSON and our general redaction, to catch
// any disagreement between the fast path of Parse and the definitions.
func TestEventIDIndependently(t *testing.T) {
	for _, v := range Versions() {
		for _, k := range []EventKind{EventCreate, EventCommit, EventPendingCommit, EventEncrypted} {
			ev := build(t, builder(t, v, k))
			withU, err := ev.SetUnsigned(map[string]any{"age": 1})
			if err != nil {
				t.Fatal(err)
			}
			full := withU.JSON()
			redacted, err := RedactJSON(full)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(redacted, ev.RedactedJSON()) {
				t.Fatalf("%s %s: RedactJSON\n%s\nRedactedJSON\n%s", v, k, redacted, ev.RedactedJSON())
			}
			noSig, _ := sjson.DeleteBytes(redacted, "signatures")
			canon, err := gomatrixserverlib.CanonicalJSON(noSig)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(canon)
			if want := "$" + base64.RawURLEncoding.EncodeToString(sum[:]); want != ev.EventID() {
				t.Fatalf("%s %s: event ID %s, recomputed %s", v, k, ev.EventID(), want)
			}
			hashable := full
			for _, key := range []string{"signatures", "unsigned", "hashes"} {
				hashable, _ = sjson.DeleteBytes(hashable, key)
			}
			canon, _ = gomatrixserverlib.CanonicalJSON(hashable)
			sum = sha256.Sum256(canon)
			if !bytes.Equal(sum[:], ev.hash) {
				t.Fatalf("%s %s: content hash differs from gomatrixserverlib's canonical JSON", v, k)
			}
			if c, _ := gomatrixserverlib.CanonicalJSON(full); !bytes.Equal(c, full) {
				t.Fatalf("%s %s: our canonical JSON is not gomatrixserverlib's:\n%s\n%s", v, k, full, c)
			}
		}
	}
}

// gmslKeyDB is a static gomatrixserverlib key database for one key.
type gmslKeyDB struct {
	res map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult
}

func newGMSLKeyDB(server, keyID string, pub ed25519.PublicKey) gmslKeyDB {
	return gmslKeyDB{map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{
		{ServerName: spec.ServerName(server), KeyID: gomatrixserverlib.KeyID(keyID)}: {
			VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(pub)},
			ExpiredTS:    gomatrixserverlib.PublicKeyNotExpired,
			ValidUntilTS: spec.AsTimestamp(time.Now().Add(24 * time.Hour)),
		},
	}}
}

func (d gmslKeyDB) FetchKeys(context.Context, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	return d.res, nil
}
func (d gmslKeyDB) FetcherName() string { return "static" }
func (d gmslKeyDB) StoreKeys(context.Context, map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	return nil
}

// TestGMSLVerifiesOurSignatures checks events we build and sign with
// gomatrixserverlib's own signature verification: VerifyJSON, and its
// KeyRing over the redaction it gets from our registered room version.
func TestGMSLVerifiesOurSignatures(t *testing.T) {
	Register()
	pub := testKey().Public().(ed25519.PublicKey)
	ring := gomatrixserverlib.KeyRing{KeyDatabase: newGMSLKeyDB(testOrigin, testKeyID, pub)}
	for _, v := range Versions() {
		for _, k := range []EventKind{EventCreate, EventCommit, EventPendingCommit, EventEncrypted} {
			ev := build(t, builder(t, v, k))
			withU, _ := ev.SetUnsigned(map[string]any{"age": 7})
			for name, msg := range map[string][]byte{"redacted": ev.RedactedJSON(), "full": ev.JSON(), "with unsigned": withU.JSON()} {
				if err := gomatrixserverlib.VerifyJSON(testOrigin, testKeyID, pub, msg); err != nil {
					t.Fatalf("%s %s %s: gomatrixserverlib.VerifyJSON: %v", v, k, name, err)
				}
			}
			redacted, err := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(v)).RedactEventJSON(withU.JSON())
			if err != nil {
				t.Fatal(err)
			}
			res, err := ring.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{
				ServerName: testOrigin, AtTS: ev.OriginServerTS(), Message: redacted, ValidityCheckingFunc: v.SignatureValidityCheck,
			}})
			if err != nil || res[0].Error != nil {
				t.Fatalf("%s %s: KeyRing.VerifyJSONs: %v %v", v, k, err, res[0].Error)
			}
			// And it notices tampering.
			tampered, _ := sjson.SetBytes(ev.RedactedJSON(), "origin_server_ts", 1)
			if gomatrixserverlib.VerifyJSON(testOrigin, testKeyID, pub, tampered) == nil {
				t.Fatal("gomatrixserverlib verified a tampered event")
			}
		}
	}
	// Sign's extra signatures verify too.
	ev := build(t, builder(t, V1, EventEncrypted))
	signed := ev.Sign("notary.example", "ed25519:n", otherKey())
	if err := gomatrixserverlib.VerifyJSON("notary.example", "ed25519:n", otherKey().Public().(ed25519.PublicKey), signed.JSON()); err != nil {
		t.Fatal(err)
	}
}

func TestVerifySignature(t *testing.T) {
	ev := build(t, builder(t, V1, EventEncrypted))
	ctx := context.Background()
	if err := VerifySignature(ctx, ev, testKeys()); err != nil {
		t.Fatal(err)
	}
	wrongKey := staticKeys{testOrigin + " " + testKeyID: otherKey().Public().(ed25519.PublicKey)}
	shortKey := staticKeys{testOrigin + " " + testKeyID: make([]byte, 31)}
	second := ev.Sign(testOrigin, "ed25519:k2", otherKey()).(*Event)
	onlySecond := staticKeys{testOrigin + " ed25519:k2": otherKey().Public().(ed25519.PublicKey)}
	notary := build(t, builder(t, V1, EventEncrypted))
	notary, _ = notary.withMember(fSignatures, encodeSignatures(map[string]map[string][]byte{"b.example": {testKeyID: ed25519.Sign(testKey(), notary.referenceJSON())}}), "test")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name    string
		ctx     context.Context
		ev      *Event
		fetcher KeyFetcher
		want    string
	}{
		{"wrong key", ctx, ev, wrongKey, "key ed25519:k1: bad signature"},
		{"short key", ctx, ev, shortKey, "31 bytes"},
		{"unknown key", ctx, ev, staticKeys{}, "fetching key ed25519:k1"},
		{"signed by another server only", ctx, notary, testKeys(), "no ed25519 signature by the origin a.example"},
		{"cancelled", cancelled, ev, testKeys(), "cancelled"},
		{"fetcher error", ctx, ev, KeyFetcherFunc(func(context.Context, string, string, time.Time) (ed25519.PublicKey, error) {
			return nil, errors.New("network down")
		}), "network down"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifySignature(c.ctx, c.ev, c.fetcher)
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindSignature || !strings.Contains(err.Error(), c.want) || e.Field != "signatures."+testOrigin {
				t.Fatalf("got %v, want a signature error containing %q", err, c.want)
			}
		})
	}
	// Two keys: the first that verifies is enough.
	if err := VerifySignature(ctx, second, onlySecond); err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(ctx, second, testKeys()); err != nil {
		t.Fatal(err)
	}
	// The fetcher is asked for the key at the event's timestamp.
	var asked time.Time
	_ = VerifySignature(ctx, ev, KeyFetcherFunc(func(_ context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error) {
		asked = at
		return testKeys().PublicKey(ctx, server, keyID, at)
	}))
	if !asked.Equal(testTime) {
		t.Fatalf("key asked for at %v, want %v", asked, testTime)
	}
}

func TestPDUMethods(t *testing.T) {
	ev := build(t, builder(t, V1, EventCommit))
	if _, err := ev.JoinRule(); !errors.Is(err, ErrNotApplicable) {
		t.Fatal(err)
	}
	if _, err := ev.HistoryVisibility(); !errors.Is(err, ErrNotApplicable) {
		t.Fatal(err)
	}
	if _, err := ev.Membership(); !errors.Is(err, ErrNotApplicable) {
		t.Fatal(err)
	}
	if _, err := ev.PowerLevels(); !errors.Is(err, ErrNotApplicable) {
		t.Fatal(err)
	}
	ev.Redact()
	if ev.Redacted() {
		t.Fatal("redacted")
	}
	if b, err := ev.MarshalJSON(); err != nil || !bytes.Equal(b, ev.JSON()) {
		t.Fatal("MarshalJSON")
	}
	sk := ev.StateKey()
	*sk = "changed"
	if !ev.StateKeyEquals("") {
		t.Fatal("StateKey exposes the event's state")
	}
	id := ev.EventID()
	if err := ev.SetUnsignedField("age", 42); err != nil {
		t.Fatal(err)
	}
	if err := ev.SetUnsignedField("de\\.bwi\\.mls\\.soft_failed.case", "c"); err != nil {
		t.Fatal(err)
	}
	if string(ev.Unsigned()) != `{"age":42,"de.bwi.mls.soft_failed":{"case":"c"}}` || ev.EventID() != id {
		t.Fatalf("unsigned %s, id %s", ev.Unsigned(), ev.EventID())
	}
	cleared, err := ev.SetUnsigned(nil)
	if err != nil || cleared.Unsigned() != nil || cleared.EventID() != id {
		t.Fatal(cleared, err)
	}
	var e *Error
	if _, err := ev.SetUnsigned([]int{1}); !errors.As(err, &e) || e.Field != "unsigned" {
		t.Fatalf("unsigned array: %v", err)
	}
	if _, err := ev.SetUnsigned(map[string]float64{"x": 1.5}); !errors.As(err, &e) || e.Kind != KindBadField {
		t.Fatalf("unsigned float: %v", err)
	}
	if _, err := ev.SetUnsigned(map[string]string{"pad": strings.Repeat("x", MaxCommitEventSize)}); !errors.As(err, &e) || e.Kind != KindTooLarge {
		t.Fatalf("unsigned too large: %v", err)
	}
	h, err := ev.ToHeaderedJSON()
	if err != nil || !bytes.HasPrefix(h, []byte(`{"_event_id":"`+id+`","_room_version":"m.mls.1","auth_events":`)) {
		t.Fatalf("headered %s", h)
	}
	if _, err := ev.signed(testOrigin, "ed25519:x", ed25519.PrivateKey{1}); err == nil {
		t.Fatal("signed with a short key")
	}
	if EventPendingCommit.String() != "pending commit" || EventKind(9).String() != "EventKind(9)" {
		t.Fatal("EventKind.String")
	}
}

func TestFederationMapErrors(t *testing.T) {
	b := builder(t, V1, EventCommit)
	b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, testRoom, 1, mls.ContentTypeCommit, []byte{0xa1, 0x61, 0x78, 0x01}, 0))
	ev := build(t, b) // parsing does not fail for a bad map
	_, err := ev.FederationMap()
	var e *Error
	var de *fedmap.DecodeError
	if !errors.As(err, &e) || e.Kind != KindBadContent || !errors.As(err, &de) || de.Field != "federation" {
		t.Fatalf("bad map: %v", err)
	}
	b = builder(t, V1, EventPendingCommit)
	b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, testRoom, 1, mls.ContentTypeCommit, nil, 0))
	if _, err := build(t, b).FederationMap(); !errors.As(err, &de) {
		t.Fatalf("empty authenticated data: %v", err)
	}
}

func TestCreateContent(t *testing.T) {
	b := builder(t, V1Unstable, EventCreate)
	b.Content, _ = V1Unstable.CreateContentJSON(mls.XWingAES256GCMSHA512Ed25519, false)
	c, err := build(t, b).Create()
	if err != nil || c.Federate || c.CipherSuite != mls.XWingAES256GCMSHA512Ed25519 || c.Algorithm != "de.bwi.mls.v1.MLS_256_XWING_AES256GCM_SHA512_Ed25519" {
		t.Fatalf("%+v %v", c, err)
	}
	b.Content = []byte(`{"room_version":"de.bwi.mls.v1","algorithm":"de.bwi.mls.v1.MLS_128_DHKEMP256_AES128GCM_SHA256_P256","m.federate":true,"type":"custom"}`)
	c, err = build(t, b).Create()
	if err != nil || !c.Federate || c.EncryptionAlgorithm != "" || c.CipherSuite != 2 {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := V1.CreateContentJSON(5, true); err == nil {
		t.Fatal("suite 5 named")
	}
	if _, err := V1.MLSContent(EventTypeCreate, 1, nil); err == nil {
		t.Fatal("MLS content for a create event")
	}
}

func TestBuildRejects(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		edit  func(*Builder)
		keyID string
		key   ed25519.PrivateKey
		kind  ErrorKind
	}{
		{"unknown version", func(b *Builder) { b.Version = "11" }, testKeyID, testKey(), KindUnsupportedVersion},
		{"key ID without algorithm", func(*Builder) {}, "k1", testKey(), KindBuild},
		{"key ID of another algorithm", func(*Builder) {}, "curve25519:k1", testKey(), KindBuild},
		{"key ID with a bad character", func(*Builder) {}, "ed25519:k-1", testKey(), KindBuild},
		{"empty key version", func(*Builder) {}, "ed25519:", testKey(), KindBuild},
		{"short private key", func(*Builder) {}, testKeyID, testKey()[:32], KindBuild},
		{"content not JSON", func(b *Builder) { b.Content = []byte("{") }, testKeyID, testKey(), KindBadContent},
		{"timestamp before 1970", func(b *Builder) { b.Timestamp = time.UnixMilli(-5) }, testKeyID, testKey(), KindBuild},
		{"bad type", func(b *Builder) { b.Type = "m.room.message" }, testKeyID, testKey(), KindEventType},
		{"bad origin", func(b *Builder) { b.Origin = "a b" }, testKeyID, testKey(), KindBadField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := builder(t, V1, EventEncrypted)
			c.edit(b)
			_, err := b.Build(ctx, c.keyID, c.key)
			var e *Error
			if !errors.As(err, &e) || e.Kind != c.kind || !strings.Contains(err.Error(), "building event") {
				t.Fatalf("got %v, want kind %s", err, c.kind)
			}
		})
	}
	// The zero timestamp means now.
	b := builder(t, V1, EventEncrypted)
	b.Timestamp = time.Time{}
	before := time.Now()
	ev := build(t, b)
	if got := ev.OriginServerTS().Time(); got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("timestamp %v", got)
	}
}

// TestVerifySignatureAgreesWithGMSL checks, on good and bad signatures,
// that VerifySignature accepts exactly what gomatrixserverlib.VerifyJSON
// accepts on the redacted event.
func TestVerifySignatureAgreesWithGMSL(t *testing.T) {
	pub := testKey().Public().(ed25519.PublicKey)
	base := members(t, build(t, builder(t, V1, EventCommit)))
	sigOver := func(key ed25519.PrivateKey, msg []byte) string {
		return base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg))
	}
	good := build(t, builder(t, V1, EventCommit))
	cases := map[string][]byte{
		"good":                   good.JSON(),
		"good with unsigned":     forge(t, with(base, "unsigned", map[string]any{"age": 1})),
		"signed by another key":  forge(t, with(base, "signatures", map[string]any{testOrigin: map[string]any{testKeyID: sigOver(otherKey(), good.referenceJSON())}})),
		"signature over another": forge(t, with(base, "signatures", map[string]any{testOrigin: map[string]any{testKeyID: sigOver(testKey(), []byte("{}"))}})),
		"short signature":        forge(t, with(base, "signatures", map[string]any{testOrigin: map[string]any{testKeyID: "AAAA"}})),
		"other key ID only":      forge(t, with(base, "signatures", map[string]any{testOrigin: map[string]any{"ed25519:zz": sigOver(testKey(), good.referenceJSON())}})),
		"other server only":      forge(t, with(base, "signatures", map[string]any{"b.example": map[string]any{testKeyID: sigOver(testKey(), good.referenceJSON())}})),
		"signature over content hash input": forge(t, with(base, "signatures", map[string]any{testOrigin: map[string]any{
			testKeyID: sigOver(testKey(), bytes.Replace(good.referenceJSON(), []byte(`"hashes":`), []byte(`"x":`), 1))}})),
	}
	for name, in := range cases {
		ev, err := Parse(context.Background(), V1, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ours := VerifySignature(context.Background(), ev, testKeys())
		theirs := gomatrixserverlib.VerifyJSON(testOrigin, testKeyID, pub, ev.RedactedJSON())
		if (ours == nil) != (theirs == nil) {
			t.Errorf("%s: VerifySignature %v, gomatrixserverlib.VerifyJSON %v", name, ours, theirs)
		}
		if (ours == nil) != (name == "good" || name == "good with unsigned") {
			t.Errorf("%s: VerifySignature %v", name, ours)
		}
	}
}
