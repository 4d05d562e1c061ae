package roomversion

import (
	"context"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// This file makes Version a gomatrixserverlib.IRoomVersion. gomatrixserverlib's
// own RoomVersionImpl cannot be wrapped (its events keep the base version and
// always carry sender and depth), so the MLS versions implement the interface
// with their own Event type.

var _ gomatrixserverlib.IRoomVersion = V1

// errNotInMLS is returned by the parts of IRoomVersion about features MLS
// rooms do not have.
func errNotInMLS(what string) error {
	return fmt.Errorf("roomversion: %s: not supported in MLS rooms (MSC4256)", what)
}

// Version returns the room version identifier (gomatrixserverlib.IRoomVersion).
func (v Version) Version() gomatrixserverlib.RoomVersion { return gomatrixserverlib.RoomVersion(v) }

// Stable reports false for both versions: SPEC-NOTES §11 lists them as
// "unstable" in /capabilities while MSC4256 is not merged.
func (v Version) Stable() bool { return false }

// StateResAlgorithm returns gomatrixserverlib.StateResV2_1: MLS rooms use
// state resolution v2 with the v2.1 changes and the proposal's substitutions
// (SPEC-NOTES §5). gomatrixserverlib's implementation does not know those
// substitutions and must not be used for MLS rooms.
func (v Version) StateResAlgorithm() gomatrixserverlib.StateResAlgorithm {
	return gomatrixserverlib.StateResV2_1
}

// EventFormat returns gomatrixserverlib.EventFormatV2: prev_events and
// auth_events are lists of event IDs.
func (v Version) EventFormat() gomatrixserverlib.EventFormat {
	return gomatrixserverlib.EventFormatV2
}

// EventIDFormat returns gomatrixserverlib.EventIDFormatV3: event IDs are
// URL-safe unpadded base64 reference hashes.
func (v Version) EventIDFormat() gomatrixserverlib.EventIDFormat {
	return gomatrixserverlib.EventIDFormatV3
}

// RedactEventJSON returns the redacted form of eventJSON (SPEC-NOTES §2) as
// canonical JSON; see RedactJSON.
func (v Version) RedactEventJSON(eventJSON []byte) ([]byte, error) { return RedactJSON(eventJSON) }

// SignatureValidityCheck applies the signing-key validity rule of room
// versions 5 and later (gomatrixserverlib.StrictValiditySignatureCheck).
func (v Version) SignatureValidityCheck(atTS, validUntil spec.Timestamp) bool {
	return gomatrixserverlib.StrictValiditySignatureCheck(atTS, validUntil)
}

// NewEventFromTrustedJSON parses eventJSON with every check of Parse (they
// are cheap, and trusted storage can be wrong too). redacted must be false:
// MLS rooms do not support redaction.
func (v Version) NewEventFromTrustedJSON(eventJSON []byte, redacted bool) (gomatrixserverlib.PDU, error) {
	if redacted {
		return nil, &Error{Op: "parsing trusted event", Kind: KindRedacted, Reason: "MLS rooms do not support redaction"}
	}
	return v.parse(eventJSON, "parsing trusted event")
}

// NewEventFromTrustedJSONWithEventID is NewEventFromTrustedJSON that also
// checks that the event's reference hash is eventID.
func (v Version) NewEventFromTrustedJSONWithEventID(eventID string, eventJSON []byte, redacted bool) (gomatrixserverlib.PDU, error) {
	pdu, err := v.NewEventFromTrustedJSON(eventJSON, redacted)
	if err != nil {
		return nil, err
	}
	if got := pdu.EventID(); got != eventID {
		return nil, &Error{Op: "parsing trusted event", Kind: KindEventID, Field: "event_id", Reason: fmt.Sprintf("event hashes to %s, stored as %s", got, eventID)}
	}
	return pdu, nil
}

// NewEventFromUntrustedJSON is Parse without a context.
func (v Version) NewEventFromUntrustedJSON(eventJSON []byte) (gomatrixserverlib.PDU, error) {
	return v.parse(eventJSON, "parsing event")
}

// parse returns a *Event as a PDU, keeping a nil interface on error.
func (v Version) parse(eventJSON []byte, op string) (gomatrixserverlib.PDU, error) {
	ev, err := parseEvent(v, eventJSON, op)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// NewEventBuilder returns an empty gomatrixserverlib.EventBuilder, which
// cannot build MLS events: gomatrixserverlib's builder always writes sender
// and depth, and its Build fails because the builder has no room version.
// Use Builder.
func (v Version) NewEventBuilder() *gomatrixserverlib.EventBuilder {
	return &gomatrixserverlib.EventBuilder{}
}

// NewEventBuilderFromProtoEvent returns an empty builder, as NewEventBuilder
// does. Use Builder.
func (v Version) NewEventBuilderFromProtoEvent(*gomatrixserverlib.ProtoEvent) *gomatrixserverlib.EventBuilder {
	return v.NewEventBuilder()
}

// CheckRestrictedJoin fails: MLS rooms have no restricted joins.
func (v Version) CheckRestrictedJoin(context.Context, spec.ServerName, gomatrixserverlib.RestrictedRoomJoinQuerier, spec.RoomID, spec.SenderID) (string, error) {
	return "", errNotInMLS("restricted joins")
}

// RestrictedJoinServername returns no server: MLS rooms have no membership
// events that an authorising server would sign.
func (v Version) RestrictedJoinServername([]byte) (spec.ServerName, error) { return "", nil }

// CheckRestrictedJoinsAllowed fails: MLS rooms have no restricted joins.
func (v Version) CheckRestrictedJoinsAllowed() error { return errNotInMLS("restricted joins") }

// CheckKnockingAllowed fails: MLS rooms have no knocking.
func (v Version) CheckKnockingAllowed(string, string, string, string, string) error {
	return errNotInMLS("knocking")
}

// CheckPowerLevelEvent fails: MLS rooms have no power levels (the commit's
// powers list takes their place).
func (v Version) CheckPowerLevelEvent(string, gomatrixserverlib.PDU, gomatrixserverlib.PowerLevelContent, gomatrixserverlib.PowerLevelContent) error {
	return errNotInMLS("power levels")
}

// CheckCanonicalJSON checks that input is JSON this room version accepts:
// valid UTF-8, no duplicate object keys, no lone surrogates, integers within
// ±(2^53-1), no fractions or exponents, no -0, nesting at most 64 deep.
func (v Version) CheckCanonicalJSON(input []byte) error {
	if _, err := parseJSON(input); err != nil {
		return &Error{Op: "checking canonical JSON", Kind: KindBadJSON, Reason: err.Error()}
	}
	return nil
}

// ParsePowerLevels fails: MLS rooms have no power levels.
func (v Version) ParsePowerLevels([]byte, *gomatrixserverlib.PowerLevelContent) error {
	return errNotInMLS("power levels")
}

// CheckCreateEvent checks that event is a create event of this version as
// Parse does (content per SPEC-NOTES §4). sender and knownRoomVersion are
// unused: MLS events have no sender, and the room version must be v.
func (v Version) CheckCreateEvent(event gomatrixserverlib.PDU, _ spec.UserID, _ gomatrixserverlib.KnownRoomVersionFunc) error {
	ev, ok := event.(*Event)
	if !ok {
		return fmt.Errorf("roomversion: checking create event: %T is not an MLS event", event)
	}
	if ev.version != v {
		return fmt.Errorf("roomversion: checking create event: event of room version %s, want %s", ev.version, v)
	}
	if _, err := ev.Create(); err != nil {
		return err
	}
	return nil
}

// DomainlessRoomIDs reports false: MLS room IDs carry the creating server's
// name (auth rule 3.4 compares it with the create event's origin).
func (v Version) DomainlessRoomIDs() bool { return false }

// PrivilegedCreators reports false: MLS rooms have no power levels.
func (v Version) PrivilegedCreators() bool { return false }

// ErrNotApplicable is returned by the Event methods that gomatrixserverlib.PDU
// has for event types MLS rooms do not have (join rules, history visibility,
// membership, power levels).
var ErrNotApplicable = errors.New("roomversion: not applicable to MLS events")
