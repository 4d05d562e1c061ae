package roomversion

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// Size limits (SPEC-NOTES §2), on the canonical JSON of the whole event in
// federation format (with signatures and unsigned).
const (
	// MaxEventSize is the limit for create and m.room.encrypted events.
	MaxEventSize = 64 << 10
	// MaxCommitEventSize is the limit for commits and pending commits.
	MaxCommitEventSize = 2 << 20
	// MaxInputSize bounds the JSON Parse reads before canonicalising it
	// (input may carry insignificant whitespace).
	MaxInputSize = 2 * MaxCommitEventSize
)

// Other bounds of the event format.
const (
	maxPrevEvents = 20  // as Synapse and the Matrix spec's room versions
	maxAuthEvents = 10  // as Synapse; MLS events use 1 or 2
	maxIDLength   = 255 // room IDs, state keys
)

// Parse parses untrusted event JSON of room version v and checks everything
// that does not need other events or keys (SPEC-NOTES §1, §2, §4):
//
//   - JSON: valid, at most MaxInputSize bytes, an object; keys in any order
//     and whitespace allowed, but values must be canonical JSON values
//     (integers within ±(2^53-1), no fractions or exponents, no -0, valid
//     UTF-8, no lone surrogates, no duplicate keys).
//   - Fields: exactly room_id, type, state_key (create and commit only),
//     content, origin, origin_server_ts, prev_events, auth_events, hashes,
//     signatures and optionally unsigned, each of its type; sender or depth
//     present is KindForbiddenField, any other key KindUnknownField.
//   - Type: create, commit, pending commit or m.room.encrypted.
//   - Size of the canonical JSON: MaxEventSize, or MaxCommitEventSize for
//     commits and pending commits.
//   - Content hash: SHA-256 of the canonical JSON without unsigned,
//     signatures and hashes must match hashes.sha256 (no redaction).
//   - MLS content: exactly {"algorithm", "ciphertext"}; the algorithm one of
//     v; the ciphertext URL-safe (commit, pending commit) or standard
//     (m.room.encrypted) unpadded base64 of an MLSMessage, version mls10,
//     wire format mls_private_message, content type commit for commits and
//     pending commits and application or proposal for m.room.encrypted,
//     group_id the UTF-8 room ID.
//   - Create content: room_version = v, algorithm required and one of v,
//     encryption_algorithm optional and equal to algorithm, m.federate
//     optional boolean.
//
// It does not verify signatures (VerifySignature does) nor decide whether a
// commit's federation map is valid (FederationMap; auth rules 9 and 10).
// Every error is an *Error with a Kind and, where one is to blame, the
// field. ctx is not used yet; parsing does no I/O.
func Parse(ctx context.Context, v Version, eventJSON []byte) (*Event, error) {
	return parseEvent(v, eventJSON, "parsing event")
}

// parser carries the error context of one parse.
type parser struct {
	op string
}

func (p *parser) fail(kind ErrorKind, field, format string, args ...any) *Error {
	return &Error{Op: p.op, Kind: kind, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) wrap(kind ErrorKind, field, reason string, err error) *Error {
	return &Error{Op: p.op, Kind: kind, Field: field, Reason: reason, Err: err}
}

// parseEvent is Parse with the operation named for errors.
func parseEvent(v Version, input []byte, op string) (*Event, error) {
	p := &parser{op: op}
	if !v.Known() {
		return nil, p.fail(KindUnsupportedVersion, "", "%q is not an MLS room version", string(v))
	}
	if len(input) > MaxInputSize {
		return nil, p.fail(KindTooLarge, "", "input of %d bytes, at most %d read", len(input), MaxInputSize)
	}
	root, err := parseJSON(input)
	if err != nil {
		return nil, p.wrap(KindBadJSON, "", "not canonical-compatible JSON", err)
	}
	if root.kind != jsonObject {
		return nil, p.fail(KindBadJSON, "", "event is a JSON %s, want an object", root.kind)
	}

	// Sort the members into the known fields.
	var fields [nFields]*jsonValue
	for i := range root.obj {
		m := &root.obj[i]
		f := fieldIndex(m.key)
		switch {
		case m.key == "sender" || m.key == "depth":
			return nil, p.fail(KindForbiddenField, m.key, "MLS events have no %s", m.key)
		case f < 0:
			return nil, p.fail(KindUnknownField, m.key, "not a field of MLS events")
		}
		fields[f] = &m.val
	}
	for f, name := range fieldNames {
		if fields[f] == nil && f != fStateKey && f != fUnsigned {
			return nil, p.fail(KindMissingField, name, "missing")
		}
	}

	e := &Event{version: v}

	// type and state_key.
	if e.typ, err = p.str(fields[fType], "type"); err != nil {
		return nil, err
	}
	kind, ok := v.eventKind(e.typ)
	if !ok {
		return nil, p.fail(KindEventType, "type", "event type %q is not allowed in room version %s (allowed: %s, %s, %s, %s)",
			e.typ, v, EventTypeCreate, v.CommitType(), v.PendingCommitType(), EventTypeEncrypted)
	}
	e.kind = kind
	isState := kind == EventCreate || kind == EventCommit
	if sk := fields[fStateKey]; sk != nil {
		if !isState {
			return nil, p.fail(KindStateKey, "state_key", "a %s event must not have a state key", e.typ)
		}
		s, err := p.str(sk, "state_key")
		if err != nil {
			return nil, err
		}
		if len(s) > maxIDLength {
			return nil, p.fail(KindStateKey, "state_key", "%d bytes, at most %d allowed", len(s), maxIDLength)
		}
		e.stateKey = &s
	} else if isState {
		return nil, p.fail(KindStateKey, "state_key", "a %s event must have a state key", e.typ)
	}

	// room_id, origin, origin_server_ts.
	roomID, err := p.str(fields[fRoomID], "room_id")
	if err != nil {
		return nil, err
	}
	if err := validRoomID(roomID); err != nil {
		return nil, p.wrap(KindBadField, "room_id", "invalid room ID", err)
	}
	rid, err := spec.NewRoomID(roomID)
	if err != nil {
		return nil, p.wrap(KindBadField, "room_id", "invalid room ID", err)
	}
	e.roomID = *rid
	if e.origin, err = p.str(fields[fOrigin], "origin"); err != nil {
		return nil, err
	}
	if err := fedmap.ValidServerName(e.origin); err != nil {
		return nil, p.wrap(KindBadField, "origin", "invalid server name", err)
	}
	ts := fields[fOriginServerTS]
	if ts.kind != jsonNumber || ts.num < 0 {
		return nil, p.fail(KindBadField, "origin_server_ts", "want a non-negative integer, got %s", describe(ts))
	}
	e.ts = ts.num

	// prev_events, auth_events.
	if e.prev, err = p.eventIDs(fields[fPrevEvents], "prev_events", maxPrevEvents); err != nil {
		return nil, err
	}
	if e.auth, err = p.eventIDs(fields[fAuthEvents], "auth_events", maxAuthEvents); err != nil {
		return nil, err
	}

	// hashes, signatures, unsigned, content: types.
	if e.hash, err = p.hashes(fields[fHashes]); err != nil {
		return nil, err
	}
	if e.signatures, err = p.signatures(fields[fSignatures]); err != nil {
		return nil, err
	}
	if u := fields[fUnsigned]; u != nil && u.kind != jsonObject {
		return nil, p.fail(KindBadField, "unsigned", "want an object, got %s", describe(u))
	}
	content := fields[fContent]
	if content.kind != jsonObject {
		return nil, p.fail(KindBadContent, "content", "want an object, got %s", describe(content))
	}

	// Canonical JSON, size, content hash, event ID.
	e.json = make([]byte, 0, len(input))
	e.json = append(e.json, '{')
	for f := range nFields {
		if fields[f] == nil {
			continue
		}
		if len(e.json) > 1 {
			e.json = append(e.json, ',')
		}
		start := len(e.json)
		e.json = appendString(e.json, fieldNames[f])
		e.json = append(e.json, ':')
		e.json = appendCanonical(e.json, fields[f])
		e.spans[f] = span{start, len(e.json)}
	}
	e.json = append(e.json, '}')
	limit := MaxEventSize
	if kind == EventCommit || kind == EventPendingCommit {
		limit = MaxCommitEventSize
	}
	if len(e.json) > limit {
		return nil, p.fail(KindTooLarge, "", "canonical JSON of %d bytes, a %s event may have at most %d", len(e.json), e.typ, limit)
	}
	if sum := sha256.Sum256(e.variant(fSignatures, fUnsigned, fHashes)); !bytes.Equal(sum[:], e.hash) {
		return nil, p.fail(KindContentHash, "hashes.sha256", "content hash does not match the event (redaction is not supported in MLS rooms)")
	}
	ref := sha256.Sum256(e.referenceJSON())
	e.eventID = "$" + base64.RawURLEncoding.EncodeToString(ref[:])

	// Content.
	if kind == EventCreate {
		if e.create, err = p.createContent(v, content); err != nil {
			return nil, err
		}
		e.suite = e.create.CipherSuite
		return e, nil
	}
	if err := p.mlsContent(e, content, roomID); err != nil {
		return nil, err
	}
	return e, nil
}

// fieldIndex returns the index of a top-level key, or -1.
func fieldIndex(key string) int {
	for i, n := range fieldNames {
		if n == key {
			return i
		}
	}
	return -1
}

// describe names a JSON value's type for errors.
func describe(v *jsonValue) string {
	if v.kind == jsonNumber {
		return fmt.Sprintf("the number %d", v.num)
	}
	return "a " + v.kind.String()
}

func (p *parser) str(v *jsonValue, field string) (string, error) {
	if v.kind != jsonString {
		return "", p.fail(KindBadField, field, "want a string, got %s", describe(v))
	}
	return v.str, nil
}

// validRoomID checks "!" opaque ":" server_name, at most 255 bytes, with a
// non-empty opaque part and the server name valid.
func validRoomID(s string) error {
	if len(s) > maxIDLength {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), maxIDLength)
	}
	rest, ok := strings.CutPrefix(s, "!")
	if !ok {
		return fmt.Errorf("%q does not start with '!'", s)
	}
	opaque, server, ok := strings.Cut(rest, ":")
	if !ok || opaque == "" {
		return fmt.Errorf("%q is not !opaque_id:server_name", s)
	}
	if err := fedmap.ValidServerName(server); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

// validEventID checks a reference-hash event ID: "$" and 43 characters of
// URL-safe unpadded base64 of 32 bytes.
func validEventID(s string) error {
	rest, ok := strings.CutPrefix(s, "$")
	if !ok || len(rest) != 43 {
		return fmt.Errorf("%q is not a reference-hash event ID ($ and 43 characters)", s)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(rest); err != nil || strings.ContainsAny(rest, "\r\n") {
		return fmt.Errorf("%q is not URL-safe unpadded base64 of a SHA-256 hash", s)
	}
	return nil
}

func (p *parser) eventIDs(v *jsonValue, field string, max int) ([]string, error) {
	if v.kind != jsonArray {
		return nil, p.fail(KindBadField, field, "want an array of event IDs, got %s", describe(v))
	}
	if len(v.arr) > max {
		return nil, p.fail(KindBadField, field, "%d event IDs, at most %d allowed", len(v.arr), max)
	}
	out := make([]string, len(v.arr))
	for i := range v.arr {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := p.str(&v.arr[i], f)
		if err != nil {
			return nil, err
		}
		if err := validEventID(s); err != nil {
			return nil, p.wrap(KindBadField, f, "invalid event ID", err)
		}
		for j := range i {
			if out[j] == s {
				return nil, p.fail(KindBadField, f, "duplicate of %s[%d]", field, j)
			}
		}
		out[i] = s
	}
	return out, nil
}

// hashes checks {"sha256": <unpadded base64 of 32 bytes>} and nothing else.
func (p *parser) hashes(v *jsonValue) ([]byte, error) {
	if v.kind != jsonObject {
		return nil, p.fail(KindBadField, "hashes", "want an object, got %s", describe(v))
	}
	for _, m := range v.obj {
		if m.key != "sha256" {
			return nil, p.fail(KindBadField, "hashes."+m.key, "only sha256 is allowed")
		}
	}
	h := v.member("sha256")
	if h == nil {
		return nil, p.fail(KindMissingField, "hashes.sha256", "missing")
	}
	if h.kind != jsonString {
		return nil, p.fail(KindBadField, "hashes.sha256", "want a string, got %s", describe(h))
	}
	sum, err := decodeStd(h.str)
	if err != nil || len(sum) != sha256.Size {
		return nil, p.fail(KindBadField, "hashes.sha256", "want unpadded base64 of %d bytes", sha256.Size)
	}
	return sum, nil
}

// signatures checks {server: {key ID: unpadded base64}}.
func (p *parser) signatures(v *jsonValue) (map[string]map[string][]byte, error) {
	if v.kind != jsonObject {
		return nil, p.fail(KindBadField, "signatures", "want an object, got %s", describe(v))
	}
	out := make(map[string]map[string][]byte, len(v.obj))
	for _, srv := range v.obj {
		f := "signatures." + srv.key
		if srv.val.kind != jsonObject {
			return nil, p.fail(KindBadField, f, "want an object, got %s", describe(&srv.val))
		}
		keys := make(map[string][]byte, len(srv.val.obj))
		for _, k := range srv.val.obj {
			kf := f + "." + k.key
			if k.val.kind != jsonString {
				return nil, p.fail(KindBadField, kf, "want a string, got %s", describe(&k.val))
			}
			sig, err := decodeStd(k.val.str)
			if err != nil {
				return nil, p.wrap(KindBadField, kf, "not unpadded base64", err)
			}
			keys[k.key] = sig
		}
		out[srv.key] = keys
	}
	return out, nil
}

// decodeStd decodes standard unpadded base64 strictly (no padding, no line
// breaks, zero trailing bits).
func decodeStd(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("line break in base64")
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// decodeURL decodes URL-safe unpadded base64 strictly.
func decodeURL(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("line break in base64")
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// mlsContent checks the content of an MLS event and fills e's MLS fields.
func (p *parser) mlsContent(e *Event, content *jsonValue, roomID string) error {
	for _, m := range content.obj {
		if m.key != "algorithm" && m.key != "ciphertext" {
			return p.fail(KindBadContent, "content."+m.key, "MLS event content has only algorithm and ciphertext")
		}
	}
	alg := content.member("algorithm")
	if alg == nil {
		return p.fail(KindBadContent, "content.algorithm", "missing")
	}
	if alg.kind != jsonString {
		return p.fail(KindBadContent, "content.algorithm", "want a string, got %s", describe(alg))
	}
	cs, err := e.version.ParseAlgorithm(alg.str)
	if err != nil {
		return p.wrap(KindAlgorithm, "content.algorithm", "unknown algorithm", err)
	}
	e.algorithm, e.suite = alg.str, cs
	ct := content.member("ciphertext")
	if ct == nil {
		return p.fail(KindBadContent, "content.ciphertext", "missing")
	}
	if ct.kind != jsonString {
		return p.fail(KindBadContent, "content.ciphertext", "want a string, got %s", describe(ct))
	}
	if e.kind == EventEncrypted {
		e.ciphertext, err = decodeStd(ct.str)
		if err != nil {
			return p.wrap(KindCiphertext, "content.ciphertext", "not standard unpadded base64", err)
		}
	} else {
		e.ciphertext, err = decodeURL(ct.str)
		if err != nil {
			return p.wrap(KindCiphertext, "content.ciphertext", "not URL-safe unpadded base64", err)
		}
	}
	if err := e.header.Parse(e.ciphertext); err != nil {
		return p.wrap(KindMLSMessage, "content.ciphertext", "not an MLSMessage", err)
	}
	h := &e.header
	if h.Version != mls.MLS10 {
		return p.fail(KindMLSMessage, "content.ciphertext", "MLS version %v, want mls10", h.Version)
	}
	if h.WireFormat != mls.WireFormatPrivateMessage {
		return p.fail(KindMLSMessage, "content.ciphertext", "wire format %v, want mls_private_message", h.WireFormat)
	}
	switch e.kind {
	case EventEncrypted:
		if h.ContentType != mls.ContentTypeApplication && h.ContentType != mls.ContentTypeProposal {
			return p.fail(KindMLSContentType, "content.ciphertext", "an m.room.encrypted event carries %v, want application or proposal", h.ContentType)
		}
	default:
		if h.ContentType != mls.ContentTypeCommit {
			return p.fail(KindMLSContentType, "content.ciphertext", "a %s event carries %v, want commit", e.typ, h.ContentType)
		}
	}
	if string(h.GroupID) != roomID {
		return p.fail(KindGroupID, "content.ciphertext", "MLS group_id %q is not the room ID %q", h.GroupID, roomID)
	}
	if e.kind == EventCommit || e.kind == EventPendingCommit {
		e.fedMap, e.fedErr = fedmap.Decode(h.AuthenticatedData)
	}
	return nil
}

// createContent checks a create event's content (SPEC-NOTES §4).
func (p *parser) createContent(v Version, content *jsonValue) (*CreateContent, error) {
	c := &CreateContent{Federate: true}
	rv := content.member("room_version")
	switch {
	case rv == nil:
		return nil, p.fail(KindCreateContent, "content.room_version", "missing")
	case rv.kind != jsonString:
		return nil, p.fail(KindCreateContent, "content.room_version", "want a string, got %s", describe(rv))
	case rv.str != string(v):
		return nil, p.fail(KindCreateContent, "content.room_version", "%q, but the room's version is %s", rv.str, v)
	}
	c.RoomVersion = v
	alg := content.member("algorithm")
	switch {
	case alg == nil:
		return nil, p.fail(KindCreateContent, "content.algorithm", "missing")
	case alg.kind != jsonString:
		return nil, p.fail(KindCreateContent, "content.algorithm", "want a string, got %s", describe(alg))
	}
	cs, err := v.ParseAlgorithm(alg.str)
	if err != nil {
		return nil, p.wrap(KindCreateContent, "content.algorithm", "unknown algorithm", err)
	}
	c.Algorithm, c.CipherSuite = alg.str, cs
	if ea := content.member("encryption_algorithm"); ea != nil {
		if ea.kind != jsonString {
			return nil, p.fail(KindCreateContent, "content.encryption_algorithm", "want a string, got %s", describe(ea))
		}
		if ea.str != alg.str {
			return nil, p.fail(KindCreateContent, "content.encryption_algorithm", "%q differs from algorithm %q", ea.str, alg.str)
		}
		c.EncryptionAlgorithm = ea.str
	}
	if fed := content.member("m.federate"); fed != nil {
		if fed.kind != jsonBool {
			return nil, p.fail(KindCreateContent, "content.m.federate", "want a boolean, got %s", describe(fed))
		}
		c.Federate = fed.boolean
	}
	return c, nil
}
