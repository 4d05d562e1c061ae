package roomversion

import "strings"

// ErrorKind says, machine-readably, what was wrong with an event.
type ErrorKind string

// Error kinds.
const (
	// KindUnsupportedVersion: the room version is not an MLS version.
	KindUnsupportedVersion ErrorKind = "unsupported_room_version"
	// KindTooLarge: the event is larger than its limit.
	KindTooLarge ErrorKind = "too_large"
	// KindBadJSON: the input is not JSON this room version accepts (invalid
	// syntax or UTF-8, duplicate keys, floats, integers out of range, not an
	// object).
	KindBadJSON ErrorKind = "bad_json"
	// KindForbiddenField: the event has sender or depth.
	KindForbiddenField ErrorKind = "forbidden_field"
	// KindUnknownField: the event has a top-level key that MLS events do not
	// have.
	KindUnknownField ErrorKind = "unknown_field"
	// KindMissingField: a required top-level key is absent.
	KindMissingField ErrorKind = "missing_field"
	// KindBadField: a top-level field has the wrong type or an invalid value
	// (room ID, origin, timestamp, event IDs, hashes, signatures).
	KindBadField ErrorKind = "bad_field"
	// KindEventType: the event type is not allowed in the room version.
	KindEventType ErrorKind = "event_type"
	// KindStateKey: a state key is present where it must not be, absent
	// where it must be, or too long.
	KindStateKey ErrorKind = "state_key"
	// KindContentHash: the content hash does not match (redaction is not
	// supported, so the event is rejected).
	KindContentHash ErrorKind = "content_hash"
	// KindBadContent: an MLS event's content is not exactly
	// {"algorithm", "ciphertext"} with string values.
	KindBadContent ErrorKind = "bad_content"
	// KindAlgorithm: the algorithm is not one of the room version.
	KindAlgorithm ErrorKind = "algorithm"
	// KindCiphertext: the ciphertext is not base64 of the required variant.
	KindCiphertext ErrorKind = "ciphertext"
	// KindMLSMessage: the ciphertext is not an MLSMessage (version mls10)
	// holding a PrivateMessage.
	KindMLSMessage ErrorKind = "mls_message"
	// KindMLSContentType: the PrivateMessage's content type does not fit the
	// event type.
	KindMLSContentType ErrorKind = "mls_content_type"
	// KindGroupID: the PrivateMessage's group_id is not the room ID.
	KindGroupID ErrorKind = "group_id"
	// KindCreateContent: the create event's content is invalid
	// (SPEC-NOTES §4).
	KindCreateContent ErrorKind = "create_content"
	// KindSignature: the origin's signature is missing or does not verify.
	KindSignature ErrorKind = "signature"
	// KindEventID: a stored event ID does not match the event.
	KindEventID ErrorKind = "event_id"
	// KindRedacted: a redacted event was asked for; MLS rooms do not support
	// redaction.
	KindRedacted ErrorKind = "redacted"
	// KindNotMLS: the event is not an MLS event (a create event has no MLS
	// message) or not a commit (only commits and pending commits carry a
	// federation map).
	KindNotMLS ErrorKind = "not_applicable"
	// KindBuild: a Builder's fields or signing key are invalid.
	KindBuild ErrorKind = "build"
)

// Error is the error of this package's parsing, building and verifying.
// Use errors.As to read Kind and Field.
type Error struct {
	// Op is what was being done ("parsing event", "verifying signature").
	Op string
	// Kind says what was wrong.
	Kind ErrorKind
	// Field is the JSON path of the offending field ("content.ciphertext",
	// "prev_events[2]"), or "" when the problem is the event as a whole.
	Field string
	// Reason says what was wrong, for people.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error returns "roomversion: <op>: <field>: <reason>: <cause> (<kind>)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("roomversion: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	b.WriteString(" (")
	b.WriteString(string(e.Kind))
	b.WriteString(")")
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
