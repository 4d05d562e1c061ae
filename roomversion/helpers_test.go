package roomversion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

const (
	testRoom   = "!room:a.example"
	testOrigin = "a.example"
	testKeyID  = "ed25519:k1"
)

// testTime is a fixed origin_server_ts for reproducible event IDs.
var testTime = time.UnixMilli(1_760_000_000_000)

func testKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)) }

func otherKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)) }

// staticKeys is a KeyFetcher over a fixed set of keys, "server keyID" → key.
type staticKeys map[string]ed25519.PublicKey

func (s staticKeys) PublicKey(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
	k, ok := s[server+" "+keyID]
	if !ok {
		return nil, fmt.Errorf("no key %s for %s", keyID, server)
	}
	return k, nil
}

func testKeys() staticKeys {
	return staticKeys{testOrigin + " " + testKeyID: testKey().Public().(ed25519.PublicKey)}
}

// eventID makes a syntactically valid event ID from a label.
func eventID(label string) string {
	sum := sha256.Sum256([]byte(label))
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// fedAD encodes a federation map for a commit's authenticated data.
func fedAD(t testing.TB, powers, servers []string) []byte {
	t.Helper()
	m := &fedmap.Map{Federation: fedmap.Federation{Powers: powers, Servers: servers}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// privMsg builds an MLSMessage holding a PrivateMessage (not really
// encrypted: servers only read the header) whose encoding is exactly size
// bytes when size > 0, or has a 64-byte ciphertext otherwise.
func privMsg(t testing.TB, groupID string, epoch uint64, ct mls.ContentType, ad []byte, size int) []byte {
	t.Helper()
	mk := func(n int) []byte {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i*7 + 3)
		}
		m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
			GroupID: []byte(groupID), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
			EncryptedSenderData: bytes.Repeat([]byte{0xab}, 28), Ciphertext: body,
		}}
		b, err := m.MarshalMLS()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if size <= 0 {
		return mk(64)
	}
	n := size - len(mk(0))
	for range 4 { // the length prefix grows at 64 and 16384 bytes
		b := mk(n)
		if len(b) == size {
			return b
		}
		n -= len(b) - size
	}
	t.Fatalf("cannot make an MLS message of %d bytes", size)
	return nil
}

func sp(s string) *string { return &s }

// builder returns a Builder for an event of kind k in v with sensible
// defaults (epoch 1, a fresh federation map for commits).
func builder(t testing.TB, v Version, k EventKind) *Builder {
	t.Helper()
	b := &Builder{Version: v, RoomID: testRoom, Origin: testOrigin, Timestamp: testTime,
		AuthEvents: []string{eventID("create"), eventID("commit")}, PrevEvents: []string{eventID("prev")}}
	var err error
	cs := mls.X25519AES128GCMSHA256Ed25519
	switch k {
	case EventCreate:
		b.Type, b.StateKey = EventTypeCreate, sp("")
		b.AuthEvents, b.PrevEvents = nil, nil
		b.Content, err = v.CreateContentJSON(cs, true)
	case EventCommit:
		b.Type, b.StateKey = v.CommitType(), sp("")
		b.Content, err = v.MLSContent(b.Type, cs, privMsg(t, testRoom, 1, mls.ContentTypeCommit, fedAD(t, []string{testOrigin}, []string{testOrigin, "b.example"}), 0))
	case EventPendingCommit:
		b.Type = v.PendingCommitType()
		b.Content, err = v.MLSContent(b.Type, cs, privMsg(t, testRoom, 1, mls.ContentTypeCommit, fedAD(t, []string{testOrigin}, []string{testOrigin, "b.example"}), 0))
	case EventEncrypted:
		b.Type = EventTypeEncrypted
		b.Content, err = v.MLSContent(b.Type, cs, privMsg(t, testRoom, 2, mls.ContentTypeApplication, nil, 0))
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func build(t testing.TB, b *Builder) *Event {
	t.Helper()
	ev, err := b.Build(context.Background(), testKeyID, testKey())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// omitted, as a member value for forge, keeps forge from adding the member
// (hashes, signatures).
type omitted struct{}

// forge writes an event from members (any JSON-encodable values), adding a
// correct content hash and origin signature unless the members have
// "hashes" or "signatures" already; it does not check anything, so tests
// can make every kind of bad event.
func forge(t testing.TB, members map[string]any) []byte {
	t.Helper()
	raw := map[string][]byte{}
	skip := map[string]bool{}
	for k, v := range members {
		if _, ok := v.(omitted); ok {
			skip[k] = true
			continue
		}
		var b []byte
		if r, ok := v.(json.RawMessage); ok {
			b = r
		} else {
			var err error
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
			if b, err = canonicalJSON(b); err != nil {
				t.Fatal(err)
			}
		}
		raw[k] = b
	}
	if _, ok := raw["hashes"]; !ok && !skip["hashes"] {
		h := map[string][]byte{}
		for k, v := range raw {
			if k != "signatures" && k != "unsigned" {
				h[k] = v
			}
		}
		sum := sha256.Sum256(assemble(h))
		raw["hashes"] = []byte(`{"sha256":"` + base64.RawStdEncoding.EncodeToString(sum[:]) + `"}`)
	}
	if _, ok := raw["signatures"]; !ok && !skip["signatures"] {
		s := map[string][]byte{}
		for k, v := range raw {
			if k != "unsigned" {
				s[k] = v
			}
		}
		sig := ed25519.Sign(testKey(), assemble(s))
		raw["signatures"] = encodeSignatures(map[string]map[string][]byte{testOrigin: {testKeyID: sig}})
	}
	return assemble(raw)
}

// members returns the members of an event's JSON as a map for forge, with
// hashes and signatures removed so that forge recomputes them.
func members(t testing.TB, ev *Event) map[string]any {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for k, v := range m {
		if k != "hashes" && k != "signatures" {
			out[k] = v
		}
	}
	return out
}
