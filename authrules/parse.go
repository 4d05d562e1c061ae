package authrules

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"

	"github.com/mlsmode/mlsmode/roomversion"
)

// ParseEvent parses untrusted event JSON of room version v with
// roomversion.Parse. Some of Parse's checks are auth rules as well; when
// one of those refuses the event, ParseEvent returns an *Error naming the
// rule (the *roomversion.Error wrapped in it):
//
//   - a state key on an event other than create and commit: 2; a state key
//     longer than Parse allows on those: 1
//   - a create event without a state key: 3.1; a commit without one: 9.1
//   - create content: room_version not the room's, or an algorithm that is
//     not one of the room version's: 3.3; algorithm absent, not a string or
//     empty, or encryption_algorithm not equal to it: 3.5
//   - an MLS group_id that is not the event's room_id: 7
//   - an MLS event's algorithm not of the room version (so not the create
//     event's): 8
//   - a commit whose MLS content is not a commit: 9.4; a pending commit's:
//     10.2
//
// Every other failure (JSON, fields, hashes, sizes, MLS framing, base64,
// m.federate's type, an m.room.encrypted event carrying a commit) is about
// the event format of SPEC-NOTES §2 and comes back as Parse's
// *roomversion.Error: the event is not a PDU of the room version at all.
func ParseEvent(ctx context.Context, v roomversion.Version, eventJSON []byte) (*roomversion.Event, error) {
	ev, err := roomversion.Parse(ctx, v, eventJSON)
	if err == nil {
		return ev, nil
	}
	var re *roomversion.Error
	if !errors.As(err, &re) {
		return nil, err
	}
	if rule := parseRule(v, re, eventJSON); rule != "" {
		return nil, ruleError(rule, re, err)
	}
	return nil, err
}

// BuildEvent builds a new event with b.Build and, like ParseEvent, returns
// an *Error naming the auth rule when Build refuses the event for what is
// also an auth rule (a server building an event for a client refuses it
// with the rule's name); every other failure is Build's error.
func BuildEvent(ctx context.Context, b *roomversion.Builder, signingKeyID string, privateKey ed25519.PrivateKey) (*roomversion.Event, error) {
	ev, err := b.Build(ctx, signingKeyID, privateKey)
	if err == nil {
		return ev, nil
	}
	var re *roomversion.Error
	if !errors.As(err, &re) {
		return nil, err
	}
	// parseRule reads the type, the state key and the content.
	top := map[string]any{"type": b.Type}
	if b.StateKey != nil {
		top["state_key"] = *b.StateKey
	}
	if json.Valid(b.Content) {
		top["content"] = json.RawMessage(b.Content)
	}
	js, jerr := json.Marshal(top)
	if jerr != nil {
		return nil, err
	}
	if rule := parseRule(b.Version, re, js); rule != "" {
		return nil, ruleError(rule, re, err)
	}
	return nil, err
}

// ruleError turns a roomversion error into the *Error of rule.
func ruleError(rule string, re *roomversion.Error, err error) *Error {
	reason := re.Reason
	if re.Field != "" {
		reason = re.Field + ": " + reason
	}
	if re.Err != nil {
		reason += ": " + re.Err.Error()
	}
	return &Error{Rule: rule, Reason: reason, Err: err}
}

// parseRule returns the auth rule a Parse error is, or "".
func parseRule(v roomversion.Version, re *roomversion.Error, eventJSON []byte) string {
	var top map[string]json.RawMessage
	_ = json.Unmarshal(eventJSON, &top) // Parse got past the JSON for every kind below
	var typ string
	_ = json.Unmarshal(top["type"], &typ)
	isState := typ == roomversion.EventTypeCreate || typ == v.CommitType()
	switch re.Kind {
	case roomversion.KindStateKey:
		_, has := top["state_key"]
		switch {
		case has && isState:
			return "1" // too long, so not empty
		case has:
			return "2"
		case typ == roomversion.EventTypeCreate:
			return "3.1"
		case typ == v.CommitType():
			return "9.1"
		}
	case roomversion.KindCreateContent:
		switch re.Field {
		case "content.room_version":
			return "3.3"
		case "content.encryption_algorithm":
			return "3.5"
		case "content.algorithm":
			var content map[string]json.RawMessage
			_ = json.Unmarshal(top["content"], &content)
			var alg string
			if raw, ok := content["algorithm"]; !ok || json.Unmarshal(raw, &alg) != nil || alg == "" {
				return "3.5"
			}
			return "3.3"
		}
	case roomversion.KindGroupID:
		return "7"
	case roomversion.KindAlgorithm:
		return "8"
	case roomversion.KindMLSContentType:
		switch typ {
		case v.CommitType():
			return "9.4"
		case v.PendingCommitType():
			return "10.2"
		}
	}
	return ""
}
