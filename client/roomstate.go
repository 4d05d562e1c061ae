package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/mlsmode/mlsmode/mls"
)

// RoomStateExtension is the GroupContext extension type that carries a
// room's encrypted state (SPEC-NOTES §10).
const RoomStateExtension mls.ExtensionType = 0xF6D0

// RoomState is a room's state as the group keeps it: event type, then
// state key, then the event content. The server never sees it.
type RoomState map[string]map[string]json.RawMessage

// ErrRoomState wraps every malformed room-state extension.
var ErrRoomState = errors.New("client: malformed room state")

// ParseRoomState reads the room state from a group's context extensions;
// without the extension the state is empty. The extension must be canonical
// JSON of the shape {type: {state_key: content object}}.
func ParseRoomState(exts mls.Extensions) (RoomState, error) {
	e, ok := exts.Find(RoomStateExtension)
	if !ok {
		return RoomState{}, nil
	}
	canon, err := gomatrixserverlib.CanonicalJSON(e.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRoomState, err)
	}
	if string(canon) != string(e.Data) {
		return nil, fmt.Errorf("%w: not canonical JSON", ErrRoomState)
	}
	if err := checkIntegers(e.Data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRoomState, err)
	}
	var s RoomState
	if err := json.Unmarshal(e.Data, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRoomState, err)
	}
	if s == nil {
		return nil, fmt.Errorf("%w: not an object", ErrRoomState)
	}
	for typ, byKey := range s {
		if byKey == nil {
			return nil, fmt.Errorf("%w: %q is not an object of state keys", ErrRoomState, typ)
		}
		for key, content := range byKey {
			if len(content) == 0 || content[0] != '{' {
				return nil, fmt.Errorf("%w: content of %q/%q is not an object", ErrRoomState, typ, key)
			}
		}
	}
	return s, nil
}

// checkIntegers enforces canonical JSON's numbers: integers within
// ±(2^53-1), no fractions or exponents.
func checkIntegers(data []byte) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n, ok := tok.(json.Number); ok {
			i, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil || i > 1<<53-1 || i < -(1<<53-1) {
				return fmt.Errorf("number %s is not an integer within ±(2^53-1)", n)
			}
		}
	}
}

// Get returns the content of one state event.
func (s RoomState) Get(eventType, stateKey string) (json.RawMessage, bool) {
	c, ok := s[eventType][stateKey]
	return c, ok
}

// Set stores content (any JSON object) as the state event (eventType,
// stateKey).
func (s RoomState) Set(eventType, stateKey string, content any) error {
	b, err := json.Marshal(content)
	if err != nil {
		return err
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("client: state content of %q/%q must be a JSON object", eventType, stateKey)
	}
	if err := checkIntegers(b); err != nil {
		return fmt.Errorf("client: state content of %q/%q: %w", eventType, stateKey, err)
	}
	if s[eventType] == nil {
		s[eventType] = map[string]json.RawMessage{}
	}
	s[eventType][stateKey] = b
	return nil
}

// Delete removes one state event.
func (s RoomState) Delete(eventType, stateKey string) {
	delete(s[eventType], stateKey)
	if len(s[eventType]) == 0 {
		delete(s, eventType)
	}
}

// Extension encodes the state as the 0xF6D0 extension (canonical JSON).
func (s RoomState) Extension() (mls.Extension, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return mls.Extension{}, err
	}
	canon, err := gomatrixserverlib.CanonicalJSON(b)
	if err != nil {
		return mls.Extension{}, err
	}
	return mls.Extension{Type: RoomStateExtension, Data: canon}, nil
}

// WithRoomState returns exts with the room-state extension set to s, every
// other extension kept in place.
func WithRoomState(exts mls.Extensions, s RoomState) (mls.Extensions, error) {
	e, err := s.Extension()
	if err != nil {
		return nil, err
	}
	out := slices.Clone(exts)
	if i := slices.IndexFunc(out, func(x mls.Extension) bool { return x.Type == RoomStateExtension }); i >= 0 {
		out[i] = e
		return out, nil
	}
	return append(out, e), nil
}

// RoomStateProposal returns the GroupContextExtensions proposal that sets
// the group's room state to s, keeping its other extensions (a
// GroupContextExtensions proposal replaces the whole list).
func RoomStateProposal(current mls.Extensions, s RoomState) (*mls.Proposal, error) {
	exts, err := WithRoomState(current, s)
	if err != nil {
		return nil, err
	}
	return &mls.Proposal{ProposalType: mls.ProposalTypeGroupContextExtensions,
		GroupContextExtensions: &mls.GroupContextExtensions{Extensions: exts}}, nil
}

// Capabilities returns leaf capabilities that announce support for the
// room-state extension, as MLS-mode clients must (SPEC-NOTES §9).
func Capabilities() *mls.Capabilities {
	return &mls.Capabilities{Extensions: []mls.ExtensionType{RoomStateExtension}}
}

// RequiredCapabilities returns the required_capabilities group extension
// listing the room-state extension, so that no member without it can be
// added.
func RequiredCapabilities() (mls.Extension, error) {
	b, err := (&mls.RequiredCapabilities{ExtensionTypes: []mls.ExtensionType{RoomStateExtension}}).MarshalMLS()
	if err != nil {
		return mls.Extension{}, err
	}
	return mls.Extension{Type: mls.ExtensionTypeRequiredCapabilities, Data: b}, nil
}
