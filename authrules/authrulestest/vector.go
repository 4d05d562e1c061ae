package authrulestest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
)

// Vector is the language-neutral JSON form of a Case, as stored in
// testdata/authrules (the format is described in testdata/README.md).
type Vector struct {
	Name        string `json:"name"`
	About       string `json:"about"`
	Description string `json:"description"`
	RoomVersion string `json:"room_version"`
	// Servers are the servers of the room with their public signing keys;
	// every event is signed by its origin.
	Servers []VectorServer `json:"servers"`
	// Event is the event to check. EventID is empty when the event is not
	// a valid event of the room version.
	Event VectorEvent `json:"event"`
	// AuthEvents are the events of the event's auth_events, in that order;
	// null for one the server never received.
	AuthEvents []*VectorEvent `json:"auth_events"`
	// RejectedAuthEvents are the IDs of auth events the server rejected.
	RejectedAuthEvents []string `json:"rejected_auth_events"`
	// State is the state before the event: the create event and the
	// commit (null: none yet) whose mainline the chain rule uses.
	State VectorState `json:"state"`
	// CurrentCommit is the room's current commit when the event arrives
	// (null: none yet), for soft-fail.
	CurrentCommit *string `json:"current_commit"`
	// RoomEvents are the events the room holds, in the order of receipt.
	RoomEvents []VectorEvent `json:"room_events"`
	// Expected is the verdict.
	Expected VectorExpected `json:"expected"`
}

// VectorServer is a server and its ed25519 public key (standard unpadded
// base64).
type VectorServer struct {
	Name      string `json:"name"`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
}

// VectorEvent is an event in federation format (PDU) with its event ID.
type VectorEvent struct {
	EventID string          `json:"event_id,omitempty"`
	PDU     json.RawMessage `json:"pdu"`
}

// VectorState names the state's create event and commit.
type VectorState struct {
	Create string  `json:"create"`
	Commit *string `json:"commit"`
}

// VectorExpected is the verdict: Allowed, or the Rule that rejects; for an
// allowed event SoftFail is "a", "b", "c" or false. Stage says where a
// rejection happens ("parse": the room version's event format already
// refuses the event; "auth_events": against its auth events; "state":
// against the state before it, the chain rule).
type VectorExpected struct {
	Allowed  bool            `json:"allowed"`
	Rule     string          `json:"rule,omitempty"`
	Stage    string          `json:"stage,omitempty"`
	SoftFail json.RawMessage `json:"soft_fail"`
}

// idOf returns the event's ID or null.
func idOf(e *roomversion.Event) *string {
	if e == nil {
		return nil
	}
	id := e.EventID()
	return &id
}

// Stage is where the case's event is rejected: "parse", "auth_events",
// "state" (the chain rule), or "" when it is allowed.
func (c *Case) Stage() string {
	switch {
	case c.Rule == "":
		return ""
	case c.Event == nil:
		return "parse"
	case c.Rule == "chain":
		return "state"
	}
	return "auth_events"
}

// MarshalVector returns the case as an indented Vector with a final
// newline; p gives the servers' keys.
func MarshalVector(c *Case, p Params) ([]byte, error) {
	v := Vector{Name: c.Name, About: c.About, Description: c.Description, RoomVersion: string(c.Version),
		Event:              VectorEvent{PDU: c.JSON},
		RejectedAuthEvents: c.RejectedAuthEvents,
		State:              VectorState{Create: c.Create.EventID(), Commit: idOf(c.State)},
		CurrentCommit:      idOf(c.Current),
		Expected:           VectorExpected{Allowed: c.Rule == "", Rule: c.Rule, Stage: c.Stage(), SoftFail: json.RawMessage("false")},
	}
	if v.RejectedAuthEvents == nil {
		v.RejectedAuthEvents = []string{}
	}
	if c.SoftFail != "" {
		v.Expected.SoftFail = raw(c.SoftFail)
	}
	for _, s := range p.Servers() {
		v.Servers = append(v.Servers, VectorServer{Name: s.Name, KeyID: s.KeyID, PublicKey: base64.RawStdEncoding.EncodeToString(s.PublicKey())})
	}
	if c.Event != nil {
		v.Event.EventID = c.Event.EventID()
	}
	v.AuthEvents = []*VectorEvent{}
	for _, a := range c.AuthEvents {
		if a == nil {
			v.AuthEvents = append(v.AuthEvents, nil)
			continue
		}
		v.AuthEvents = append(v.AuthEvents, &VectorEvent{EventID: a.EventID(), PDU: a.JSON()})
	}
	v.RoomEvents = []VectorEvent{}
	room := c.Room
	if len(room) == 0 {
		room = []*roomversion.Event{c.Create}
	}
	for _, e := range room {
		v.RoomEvents = append(v.RoomEvents, VectorEvent{EventID: e.EventID(), PDU: e.JSON()})
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ReadVector reads a Vector back into a Case (the inverse of
// MarshalVector) and the Vector itself. Every event but the one to check
// must parse, and its event ID must be the one the file gives.
func ReadVector(b []byte) (*Case, *Vector, error) {
	var v Vector
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, nil, fmt.Errorf("decoding vector: %w", err)
	}
	ver, err := roomversion.Lookup(v.RoomVersion)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]*roomversion.Event{}
	parse := func(ve *VectorEvent) (*roomversion.Event, error) {
		var c bytes.Buffer
		if err := json.Compact(&c, ve.PDU); err != nil {
			return nil, err
		}
		e, err := roomversion.Parse(context.Background(), ver, c.Bytes())
		if err != nil {
			return nil, err
		}
		if e.EventID() != ve.EventID {
			return nil, fmt.Errorf("event %s has ID %s", ve.EventID, e.EventID())
		}
		byID[e.EventID()] = e
		return e, nil
	}
	c := &Case{Name: v.Name, About: v.About, Description: v.Description, Rule: v.Expected.Rule, Version: ver,
		RejectedAuthEvents: v.RejectedAuthEvents}
	if c.Rule == "" != v.Expected.Allowed {
		return nil, nil, errors.New("expected: allowed and rule disagree")
	}
	if !bytes.Equal(v.Expected.SoftFail, []byte("false")) {
		if err := json.Unmarshal(v.Expected.SoftFail, &c.SoftFail); err != nil || c.SoftFail == "" {
			return nil, nil, fmt.Errorf("expected.soft_fail %s: want false, \"a\", \"b\" or \"c\"", v.Expected.SoftFail)
		}
	}
	for i := range v.RoomEvents {
		e, err := parse(&v.RoomEvents[i])
		if err != nil {
			return nil, nil, fmt.Errorf("room_events[%d]: %w", i, err)
		}
		c.Room = append(c.Room, e)
	}
	for i, ve := range v.AuthEvents {
		if ve == nil {
			c.AuthEvents = append(c.AuthEvents, nil)
			continue
		}
		e, err := parse(ve)
		if err != nil {
			return nil, nil, fmt.Errorf("auth_events[%d]: %w", i, err)
		}
		c.AuthEvents = append(c.AuthEvents, e)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, v.Event.PDU); err != nil {
		return nil, nil, fmt.Errorf("event: %w", err)
	}
	c.JSON = compact.Bytes()
	if v.Event.EventID != "" {
		if c.Event, err = parse(&v.Event); err != nil {
			return nil, nil, fmt.Errorf("event: %w", err)
		}
	}
	lookup := func(what string, id *string) (*roomversion.Event, error) {
		if id == nil {
			return nil, nil
		}
		e := byID[*id]
		if e == nil {
			return nil, fmt.Errorf("%s %s is not among the vector's events", what, *id)
		}
		return e, nil
	}
	if c.Create, err = lookup("state.create", &v.State.Create); err != nil {
		return nil, nil, err
	}
	if c.State, err = lookup("state.commit", v.State.Commit); err != nil {
		return nil, nil, err
	}
	if c.Current, err = lookup("current_commit", v.CurrentCommit); err != nil {
		return nil, nil, err
	}
	return c, &v, nil
}
