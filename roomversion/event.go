package roomversion

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/sjson"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// EventKind classifies the four event types MLS rooms allow.
type EventKind uint8

// Event kinds.
const (
	// EventCreate is m.room.create (state, empty state key).
	EventCreate EventKind = iota + 1
	// EventCommit is the commit state event (m.mls.commit).
	EventCommit
	// EventPendingCommit is the pending commit message event
	// (m.mls.pending_commit).
	EventPendingCommit
	// EventEncrypted is m.room.encrypted (MLS application or proposal
	// message).
	EventEncrypted
)

// String returns a short name of the kind.
func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventCommit:
		return "commit"
	case EventPendingCommit:
		return "pending commit"
	case EventEncrypted:
		return "encrypted"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Top-level keys of an MLS event, in canonical (sorted) order. An event has
// no other keys: sender and depth are forbidden and unknown keys rejected.
const (
	fAuthEvents = iota
	fContent
	fHashes
	fOrigin
	fOriginServerTS
	fPrevEvents
	fRoomID
	fSignatures
	fStateKey
	fType
	fUnsigned
	nFields
)

var fieldNames = [nFields]string{
	"auth_events", "content", "hashes", "origin", "origin_server_ts",
	"prev_events", "room_id", "signatures", "state_key", "type", "unsigned",
}

// span is the position of one `"key":value` member in the canonical JSON.
type span struct{ start, end int }

// Event is a parsed, checked event of an MLS room version (SPEC-NOTES §2).
// It implements gomatrixserverlib.PDU. Events are immutable once parsed,
// except through SetUnsignedField, and safe for concurrent reads.
//
// MLS events have neither sender nor depth: the proposal removes sender so
// that servers learn no more than the origin server, and depth because the
// MLS epoch orders commits with cryptographic backing. SenderID and Depth
// therefore return zero values.
type Event struct {
	version  Version
	kind     EventKind
	eventID  string
	roomID   spec.RoomID
	typ      string
	stateKey *string
	origin   string
	ts       int64
	prev     []string
	auth     []string
	hash     []byte // content hash, sha256
	// signatures[server][keyID] is a decoded signature.
	signatures map[string]map[string][]byte

	// json is the canonical JSON of the whole event; spans locate each
	// top-level member in it (end 0 for an absent one).
	json  []byte
	spans [nFields]span

	// MLS events.
	algorithm  string
	suite      mls.CipherSuite
	ciphertext []byte // the decoded MLSMessage
	header     mls.Header
	fedMap     *fedmap.Map
	fedErr     error

	// Create events.
	create *CreateContent
}

var _ gomatrixserverlib.PDU = (*Event)(nil)

// CreateContent is the content of a create event (SPEC-NOTES §4).
type CreateContent struct {
	// RoomVersion is content.room_version; it equals the room's version.
	RoomVersion Version
	// Algorithm is content.algorithm, and CipherSuite the suite it names.
	Algorithm   string
	CipherSuite mls.CipherSuite
	// EncryptionAlgorithm is content.encryption_algorithm, "" when absent;
	// when present it equals Algorithm.
	EncryptionAlgorithm string
	// Federate is content["m.federate"], true when absent (auth rule 5).
	Federate bool
}

// variant returns the canonical JSON of the event without the given
// top-level keys.
func (e *Event) variant(without ...int) []byte {
	out := make([]byte, 0, len(e.json))
	out = append(out, '{')
	first := true
	for f := range nFields {
		sp := e.spans[f]
		if sp.end == 0 || slices.Contains(without, f) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, e.json[sp.start:sp.end]...)
	}
	return append(out, '}')
}

// memberValue returns the canonical JSON value of a top-level key, or nil.
func (e *Event) memberValue(f int) []byte {
	sp := e.spans[f]
	if sp.end == 0 {
		return nil
	}
	// Skip `"key":`.
	return e.json[sp.start+len(fieldNames[f])+3 : sp.end]
}

// referenceJSON is what the event ID hashes and the origin signs: the
// redacted event (SPEC-NOTES §2) without signatures and unsigned. Redaction
// keeps every key a parsed event can have except unsigned, and the whole
// content of every event type (create keeps all; MLS contents are exactly
// algorithm and ciphertext), so this is the event without signatures and
// unsigned.
func (e *Event) referenceJSON() []byte { return e.variant(fSignatures, fUnsigned) }

// RedactedJSON returns the redacted event with its signatures, the message
// gomatrixserverlib.VerifyJSON checks the origin's signature on.
func (e *Event) RedactedJSON() []byte { return e.variant(fUnsigned) }

// RoomVersion returns the event's room version.
func (e *Event) RoomVersion() Version { return e.version }

// Kind returns which of the four event types the event is.
func (e *Event) Kind() EventKind { return e.kind }

// EventID returns the event ID, the reference hash "$" + URL-safe unpadded
// base64 of SHA-256 of the redacted canonical JSON without signatures and
// unsigned.
func (e *Event) EventID() string { return e.eventID }

// StateKey returns the state key: "" for create and commit events (unless a
// parsed event carries another, which auth rule 1 rejects), nil otherwise.
func (e *Event) StateKey() *string {
	if e.stateKey == nil {
		return nil
	}
	s := *e.stateKey
	return &s
}

// StateKeyEquals reports whether the event has state key s.
func (e *Event) StateKeyEquals(s string) bool { return e.stateKey != nil && *e.stateKey == s }

// Type returns the event type.
func (e *Event) Type() string { return e.typ }

// Content returns the canonical JSON of the content.
func (e *Event) Content() []byte { return e.memberValue(fContent) }

// JoinRule fails with ErrNotApplicable: MLS rooms have no join rules.
func (e *Event) JoinRule() (string, error) { return "", ErrNotApplicable }

// HistoryVisibility fails with ErrNotApplicable: MLS rooms have no history
// visibility events.
func (e *Event) HistoryVisibility() (gomatrixserverlib.HistoryVisibility, error) {
	return "", ErrNotApplicable
}

// Membership fails with ErrNotApplicable: MLS rooms have no membership
// events.
func (e *Event) Membership() (string, error) { return "", ErrNotApplicable }

// PowerLevels fails with ErrNotApplicable: MLS rooms have no power levels.
func (e *Event) PowerLevels() (*gomatrixserverlib.PowerLevelContent, error) {
	return nil, ErrNotApplicable
}

// Version returns the room version identifier.
func (e *Event) Version() gomatrixserverlib.RoomVersion {
	return gomatrixserverlib.RoomVersion(e.version)
}

// RoomID returns the room ID.
func (e *Event) RoomID() spec.RoomID { return e.roomID }

// Redacts returns "": MLS rooms have no redaction events.
func (e *Event) Redacts() string { return "" }

// Redacted returns false: MLS rooms do not support redaction, and an event
// whose content hash does not match is rejected rather than redacted.
func (e *Event) Redacted() bool { return false }

// PrevEventIDs returns the prev_events.
func (e *Event) PrevEventIDs() []string { return slices.Clone(e.prev) }

// AuthEventIDs returns the auth_events.
func (e *Event) AuthEventIDs() []string { return slices.Clone(e.auth) }

// OriginServerTS returns origin_server_ts.
func (e *Event) OriginServerTS() spec.Timestamp { return spec.Timestamp(e.ts) }

// Origin returns the origin server, which signed the event.
func (e *Event) Origin() string { return e.origin }

// Redact does nothing: MLS rooms do not support redaction (SPEC-NOTES §2),
// so Redacted stays false.
func (e *Event) Redact() {}

// SenderID returns "": MLS events have no sender (SPEC-NOTES §2). The sender
// of an MLS message is known only to the group, inside the ciphertext.
func (e *Event) SenderID() spec.SenderID { return "" }

// Depth returns 0: MLS events have no depth; the MLS epoch (Epoch) orders
// commits instead.
func (e *Event) Depth() int64 { return 0 }

// Unsigned returns the canonical JSON of unsigned, or nil when absent.
func (e *Event) Unsigned() []byte { return e.memberValue(fUnsigned) }

// JSON returns the canonical JSON of the whole event (the federation
// format).
func (e *Event) JSON() []byte { return e.json }

// MarshalJSON returns JSON.
func (e *Event) MarshalJSON() ([]byte, error) { return e.json, nil }

// ToHeaderedJSON returns the JSON with "_event_id" and "_room_version"
// added, as gomatrixserverlib.NewEventFromHeaderedJSON reads it.
func (e *Event) ToHeaderedJSON() ([]byte, error) {
	out := make([]byte, 0, len(e.json)+len(e.eventID)+len(e.version)+40)
	out = append(out, `{"_event_id":`...)
	out = appendString(out, e.eventID)
	out = append(out, `,"_room_version":`...)
	out = appendString(out, string(e.version))
	if len(e.json) > 2 {
		out = append(out, ',')
	}
	return append(out, e.json[1:]...), nil
}

// withMember returns a copy of e whose top-level key f has the canonical
// value val (nil removes it), parsed again in full.
func (e *Event) withMember(f int, val []byte, op string) (*Event, error) {
	members := make(map[string][]byte, nFields)
	for i := range nFields {
		if v := e.memberValue(i); v != nil {
			members[fieldNames[i]] = v
		}
	}
	if val == nil {
		delete(members, fieldNames[f])
	} else {
		members[fieldNames[f]] = val
	}
	return parseEvent(e.version, assemble(members), op)
}

// SetUnsigned returns a copy of the event with unsigned set to the JSON
// encoding of unsigned (nil removes it). The event ID does not change. It
// fails if unsigned is not an object of canonical JSON or the event grows
// past its size limit.
func (e *Event) SetUnsigned(unsigned any) (gomatrixserverlib.PDU, error) {
	const op = "setting unsigned"
	if unsigned == nil {
		return e.withMember(fUnsigned, nil, op)
	}
	raw, err := json.Marshal(unsigned)
	if err != nil {
		return nil, &Error{Op: op, Kind: KindBadField, Field: "unsigned", Reason: "cannot encode", Err: err}
	}
	canon, err := canonicalJSON(raw)
	if err != nil {
		return nil, &Error{Op: op, Kind: KindBadField, Field: "unsigned", Reason: "not canonical JSON", Err: err}
	}
	out, err := e.withMember(fUnsigned, canon, op)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetUnsignedField sets the value at path (a gjson/sjson path, as in
// gomatrixserverlib) inside unsigned, creating unsigned if absent. It
// changes e in place and is not safe for concurrent use with other methods.
func (e *Event) SetUnsignedField(path string, value any) error {
	const op = "setting unsigned field"
	cur := e.Unsigned()
	if cur == nil {
		cur = []byte("{}")
	}
	next, err := sjson.SetBytes(slices.Clone(cur), path, value)
	if err != nil {
		return &Error{Op: op, Kind: KindBadField, Field: "unsigned." + path, Reason: "cannot set", Err: err}
	}
	canon, err := canonicalJSON(next)
	if err != nil {
		return &Error{Op: op, Kind: KindBadField, Field: "unsigned." + path, Reason: "not canonical JSON", Err: err}
	}
	out, err := e.withMember(fUnsigned, canon, op)
	if err != nil {
		return err
	}
	*e = *out
	return nil
}

// Sign returns a copy of the event with an additional ed25519 signature by
// signingName under keyID over the redacted event. Like
// gomatrixserverlib's, it panics if signing fails, which cannot happen for
// a parsed event and a valid key unless the signature pushes the event past
// its size limit.
func (e *Event) Sign(signingName string, keyID gomatrixserverlib.KeyID, privateKey ed25519.PrivateKey) gomatrixserverlib.PDU {
	out, err := e.signed(signingName, string(keyID), privateKey)
	if err != nil {
		panic(err)
	}
	return out
}

// signed adds a signature.
func (e *Event) signed(signingName, keyID string, privateKey ed25519.PrivateKey) (*Event, error) {
	const op = "signing event"
	if len(privateKey) != ed25519.PrivateKeySize {
		return nil, &Error{Op: op, Kind: KindBuild, Reason: fmt.Sprintf("ed25519 private key of %d bytes, want %d", len(privateKey), ed25519.PrivateKeySize)}
	}
	sig := ed25519.Sign(privateKey, e.referenceJSON())
	sigs := make(map[string]map[string][]byte, len(e.signatures)+1)
	for srv, keys := range e.signatures {
		sigs[srv] = make(map[string][]byte, len(keys)+1)
		for k, v := range keys {
			sigs[srv][k] = v
		}
	}
	if sigs[signingName] == nil {
		sigs[signingName] = map[string][]byte{}
	}
	sigs[signingName][keyID] = sig
	return e.withMember(fSignatures, encodeSignatures(sigs), op)
}

// encodeSignatures writes signatures as canonical JSON.
func encodeSignatures(sigs map[string]map[string][]byte) []byte {
	out := []byte{'{'}
	servers := make([]string, 0, len(sigs))
	for s := range sigs {
		servers = append(servers, s)
	}
	slices.Sort(servers)
	for i, s := range servers {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, s)
		out = append(out, ':', '{')
		keys := make([]string, 0, len(sigs[s]))
		for k := range sigs[s] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for j, k := range keys {
			if j > 0 {
				out = append(out, ',')
			}
			out = appendString(out, k)
			out = append(out, ':')
			out = appendString(out, base64.RawStdEncoding.EncodeToString(sigs[s][k]))
		}
		out = append(out, '}')
	}
	return append(out, '}')
}

// assemble writes an object from canonical member values, keys sorted.
func assemble(members map[string][]byte) []byte {
	keys := make([]string, 0, len(members))
	n := 2
	for k, v := range members {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, k)
		out = append(out, ':')
		out = append(out, members[k]...)
	}
	return append(out, '}')
}

// Algorithm returns content.algorithm of an MLS event ("" for a create
// event; see Create for its algorithm).
func (e *Event) Algorithm() string { return e.algorithm }

// CipherSuite returns the MLS cipher suite the event's algorithm names (for
// a create event, its content's algorithm).
func (e *Event) CipherSuite() mls.CipherSuite { return e.suite }

// Ciphertext returns the decoded content.ciphertext, a whole MLSMessage, or
// nil for a create event. The slice is shared: do not modify it.
func (e *Event) Ciphertext() []byte { return e.ciphertext }

// CiphertextString returns content.ciphertext as it appears in the event
// (its base64 text), "" for a create event. SPEC-NOTES §4 calls two commits
// equivalent when these are byte-identical.
func (e *Event) CiphertextString() string {
	if e.ciphertext == nil {
		return ""
	}
	return e.encoding().EncodeToString(e.ciphertext)
}

// encoding returns the base64 variant of the event's ciphertext: URL-safe
// for commits and pending commits, standard for m.room.encrypted.
func (e *Event) encoding() *base64.Encoding {
	if e.kind == EventEncrypted {
		return base64.RawStdEncoding
	}
	return base64.RawURLEncoding
}

// MLSHeader returns the header of the event's MLS PrivateMessage (group ID,
// epoch, content type, authenticated data), or an *Error of kind KindNotMLS
// for a create event. Its slices alias the event: do not modify them.
func (e *Event) MLSHeader() (mls.Header, error) {
	if e.kind == EventCreate {
		return mls.Header{}, &Error{Op: "reading MLS header", Kind: KindNotMLS, Reason: "a create event has no MLS message"}
	}
	return e.header, nil
}

// Epoch returns the epoch of the event's PrivateMessage (0 for a create
// event). A commit sent in epoch N moves the group to N+1.
func (e *Event) Epoch() uint64 { return e.header.Epoch }

// FederationMap returns the decoded federation map in the authenticated data
// of a commit or pending commit. Parsing does not fail for a bad map (auth
// rules 9 and 10 reject it, naming the rule): its *fedmap.DecodeError comes
// back here, wrapped in an *Error of kind KindBadContent. For other events
// it returns an *Error of kind KindNotMLS. The map is shared: do not modify
// it.
func (e *Event) FederationMap() (*fedmap.Map, error) {
	if e.kind != EventCommit && e.kind != EventPendingCommit {
		return nil, &Error{Op: "reading federation map", Kind: KindNotMLS, Reason: fmt.Sprintf("a %s event has no federation map", e.kind)}
	}
	if e.fedErr != nil {
		return nil, &Error{Op: "reading federation map", Kind: KindBadContent, Field: "content.ciphertext", Reason: "authenticated data is not a valid federation map", Err: e.fedErr}
	}
	return e.fedMap, nil
}

// Create returns the content of a create event, checked as SPEC-NOTES §4
// asks, or an *Error of kind KindNotMLS for other events.
func (e *Event) Create() (*CreateContent, error) {
	if e.kind != EventCreate {
		return nil, &Error{Op: "reading create content", Kind: KindNotMLS, Reason: fmt.Sprintf("a %s event is not a create event", e.kind)}
	}
	c := *e.create
	return &c, nil
}
