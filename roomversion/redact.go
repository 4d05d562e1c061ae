package roomversion

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// redactionKeeps reports whether redaction keeps a top-level key
// (SPEC-NOTES §2): those of room version 11 (event_id, type, room_id,
// sender, state_key, content, hashes, signatures, depth, prev_events,
// auth_events, origin_server_ts) without sender and depth, plus origin.
func redactionKeeps(key string) bool {
	switch key {
	case "event_id", "type", "room_id", "state_key", "content", "hashes", "signatures",
		"prev_events", "auth_events", "origin_server_ts", "origin":
		return true
	}
	return false
}

// RedactJSON returns the redacted form of an event's JSON as canonical JSON
// (SPEC-NOTES §2): top-level keys other than those of room version 11 minus
// sender and depth, plus origin, are dropped (unsigned among them); the
// content of m.room.create is kept whole, and of every other type only
// algorithm and ciphertext are kept, so that an event ID binds its MLS
// ciphertext. It works on any JSON object, parsed or not, so that it can
// serve gomatrixserverlib.IRoomVersion.RedactEventJSON; the input must
// still be canonical-compatible JSON.
//
// MLS rooms do not support redaction events; this is used for the
// reference hash and for signing, which it leaves unchanged for every event
// Parse accepts.
func RedactJSON(eventJSON []byte) ([]byte, error) {
	v, err := parseJSON(eventJSON)
	if err != nil {
		return nil, &Error{Op: "redacting event", Kind: KindBadJSON, Reason: "invalid JSON", Err: err}
	}
	if v.kind != jsonObject {
		return nil, &Error{Op: "redacting event", Kind: KindBadJSON, Reason: fmt.Sprintf("event is a JSON %s, want an object", v.kind)}
	}
	typ := ""
	if t := v.member("type"); t != nil && t.kind == jsonString {
		typ = t.str
	}
	kept := v.obj[:0:0]
	for _, m := range v.obj {
		if !redactionKeeps(m.key) {
			continue
		}
		if m.key == "content" && typ != EventTypeCreate && m.val.kind == jsonObject {
			var c []jsonMember
			for _, cm := range m.val.obj {
				if cm.key == "algorithm" || cm.key == "ciphertext" {
					c = append(c, cm)
				}
			}
			m.val = jsonValue{kind: jsonObject, obj: c}
		}
		kept = append(kept, m)
	}
	v.obj = kept
	return appendCanonical(make([]byte, 0, len(eventJSON)), &v), nil
}

// ReferenceIDOf computes the event ID (reference hash, SPEC-NOTES §2: "$" +
// URL-safe unpadded base64 of SHA-256 of the redacted event without
// signatures and unsigned) of raw event JSON that may not parse as an
// event, to name it when refusing it; "" when it is not a JSON object.
func ReferenceIDOf(raw []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return ""
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	red, err := RedactJSON(b)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(red)
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Domain is the server name of a room or user ID: the part after the first
// ':' ("" when there is none). SPEC-NOTES §4's virtual genesis commit lists
// the room ID's domain; an event's and a user's server are compared by it.
func Domain(id string) string {
	_, d, _ := strings.Cut(id, ":")
	return d
}
