package roomversion

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/mls"
)

// Builder holds the fields of a new event. Build checks, hashes, signs and
// parses it.
type Builder struct {
	// Version is the room version; required.
	Version Version
	// RoomID is the room's ID ("!opaque:server").
	RoomID string
	// Type is one of the four event types of Version.
	Type string
	// StateKey is "" for create and commit events; nil for the others.
	StateKey *string
	// Content is the content as JSON. For MLS events use
	// Version.MLSContent; for the create event Version.CreateContentJSON.
	Content []byte
	// AuthEvents and PrevEvents are event IDs. nil means none.
	AuthEvents []string
	PrevEvents []string
	// Origin is the sending server, which signs the event.
	Origin string
	// Timestamp is origin_server_ts; the zero Time means time.Now().
	Timestamp time.Time
}

// Build makes the event: it canonicalises the content, computes the content
// hash (SHA-256 of the canonical JSON without unsigned, signatures and
// hashes), signs the redacted event with privateKey under signingKeyID
// ("ed25519:<version>") as Origin, and parses the result with every check of
// Parse, which computes the event ID (the reference hash). ctx is not used
// yet; building does no I/O.
func (b *Builder) Build(ctx context.Context, signingKeyID string, privateKey ed25519.PrivateKey) (*Event, error) {
	const op = "building event"
	fail := func(field, format string, args ...any) error {
		return &Error{Op: op, Kind: KindBuild, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !b.Version.Known() {
		return nil, &Error{Op: op, Kind: KindUnsupportedVersion, Reason: fmt.Sprintf("%q is not an MLS room version", string(b.Version))}
	}
	if err := validKeyID(signingKeyID); err != nil {
		return nil, fail("", "signing key ID: %v", err)
	}
	if len(privateKey) != ed25519.PrivateKeySize {
		return nil, fail("", "ed25519 private key of %d bytes, want %d", len(privateKey), ed25519.PrivateKeySize)
	}
	content, err := canonicalJSON(b.Content)
	if err != nil {
		return nil, &Error{Op: op, Kind: KindBadContent, Field: "content", Reason: "not canonical-compatible JSON", Err: err}
	}
	ts := b.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	if ts.UnixMilli() < 0 {
		return nil, fail("origin_server_ts", "timestamp %v before 1970", ts)
	}
	members := map[string][]byte{
		"auth_events":      idList(b.AuthEvents),
		"content":          content,
		"origin":           appendString(nil, b.Origin),
		"origin_server_ts": strconv.AppendInt(nil, ts.UnixMilli(), 10),
		"prev_events":      idList(b.PrevEvents),
		"room_id":          appendString(nil, b.RoomID),
		"type":             appendString(nil, b.Type),
	}
	if b.StateKey != nil {
		members["state_key"] = appendString(nil, *b.StateKey)
	}
	sum := sha256.Sum256(assemble(members))
	members["hashes"] = appendString([]byte(`{"sha256":`), base64.RawStdEncoding.EncodeToString(sum[:]))
	members["hashes"] = append(members["hashes"], '}')
	sig := ed25519.Sign(privateKey, assemble(members))
	members["signatures"] = encodeSignatures(map[string]map[string][]byte{b.Origin: {signingKeyID: sig}})
	return parseEvent(b.Version, assemble(members), op)
}

// idList writes event IDs as a canonical JSON array.
func idList(ids []string) []byte {
	out := []byte{'['}
	for i, id := range ids {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, id)
	}
	return append(out, ']')
}

// validKeyID checks "ed25519:" followed by a non-empty version of
// [a-zA-Z0-9_] (Matrix signing key identifiers).
func validKeyID(id string) error {
	ver, ok := strings.CutPrefix(id, "ed25519:")
	if !ok || ver == "" {
		return fmt.Errorf("%q is not ed25519:<version>", id)
	}
	for _, c := range []byte(ver) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%q: character %q not allowed in a key version", id, c)
		}
	}
	return nil
}

// MLSContent returns the content of an MLS event of type eventType (commit,
// pending commit or m.room.encrypted of v): {"algorithm", "ciphertext"} with
// cs's algorithm name and mlsMessage (a whole MLSMessage) in the base64
// variant the type uses.
func (v Version) MLSContent(eventType string, cs mls.CipherSuite, mlsMessage []byte) ([]byte, error) {
	alg, err := v.Algorithm(cs)
	if err != nil {
		return nil, err
	}
	var text string
	switch kind, _ := v.eventKind(eventType); kind {
	case EventCommit, EventPendingCommit:
		text = base64.RawURLEncoding.EncodeToString(mlsMessage)
	case EventEncrypted:
		text = base64.RawStdEncoding.EncodeToString(mlsMessage)
	default:
		return nil, &Error{Op: "building MLS content", Kind: KindEventType, Field: "type", Reason: fmt.Sprintf("%q is not an MLS event type of %s", eventType, v)}
	}
	out := append([]byte(`{"algorithm":`), appendString(nil, alg)...)
	out = append(out, `,"ciphertext":`...)
	out = appendString(out, text)
	return append(out, '}'), nil
}

// CreateContentJSON returns the content of a create event as this project's
// servers write it (SPEC-NOTES §4): room_version, algorithm and
// encryption_algorithm with the same value, and m.federate when federate is
// false.
func (v Version) CreateContentJSON(cs mls.CipherSuite, federate bool) ([]byte, error) {
	alg, err := v.Algorithm(cs)
	if err != nil {
		return nil, err
	}
	out := append([]byte(`{"algorithm":`), appendString(nil, alg)...)
	out = append(out, `,"encryption_algorithm":`...)
	out = appendString(out, alg)
	if !federate {
		out = append(out, `,"m.federate":false`...)
	}
	out = append(out, `,"room_version":`...)
	out = appendString(out, string(v))
	return append(out, '}'), nil
}
