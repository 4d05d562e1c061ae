package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Member is a device in a room's MLS group.
type Member struct {
	LeafIndex uint32
	UserID    string
	DeviceID  string
}

// PendingCommit describes this client's commit waiting to be accepted.
type PendingCommit struct {
	EventID string
	// Pending is true for an m.mls.pending_commit (applied by a power in
	// its window), false for a commit sent directly.
	Pending bool
	SentAt  time.Time
	// Expires is when the client gives a pending commit up.
	Expires time.Time
}

// RoomStatus is what the client knows of a room.
type RoomStatus struct {
	RoomID     string
	Membership string // "invite", "join" or "leave"
	// InGroup says whether this device has the room's MLS group: false for
	// a room its account joined from another device until Join.
	InGroup    bool
	Inviter    string
	Epoch      uint64
	CommitID   string
	Powers     []string
	Servers    []string
	CanPropose []string
	// Window is security.window as the client applies it (clamped).
	Window               time.Duration
	RequiredVerification string
	// FederationMap is the CBOR authenticated data of the current commit.
	FederationMap []byte
	Members       []Member
	Name, Topic   string
	Pending       *PendingCommit
	// NeedsWelcome says why the client is out of the group and needs a
	// new Welcome ("" when it is in).
	NeedsWelcome string
	Broken       *Broken
	// Rollbacks counts the times the client returned to a kept state to
	// apply a winning commit.
	Rollbacks     int
	Undecryptable []Undecryptable
	// Waiting counts messages for epochs the client has not reached yet.
	Waiting int
	// LostCommits are this client's commits that were never accepted.
	LostCommits []string
	// KeptStates counts the past states kept for security.window.
	KeptStates int
}

// Rooms lists the rooms the client knows, sorted.
func (c *Client) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id := range c.rooms {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Status returns what the client knows of a room.
func (c *Client) Status(roomID string) (RoomStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[roomID]
	if r == nil {
		return RoomStatus{}, fmt.Errorf("this client does not know room %s", roomID)
	}
	s := RoomStatus{RoomID: r.ID, Membership: r.Membership, Inviter: r.Inviter, CommitID: r.CommitID,
		NeedsWelcome: r.NeedsWelcome, Broken: r.Broken, Rollbacks: r.Rollbacks, Waiting: len(r.Deferred),
		Undecryptable: slices.Clone(r.Undecryptable), LostCommits: slices.Clone(r.LostCommits), KeptStates: len(r.Kept)}
	if fm, err := r.fedMap(); err == nil {
		s.Powers, s.Servers, s.CanPropose = fm.Federation.Powers, fm.Federation.Servers, fm.Federation.CanPropose
		s.Window, s.RequiredVerification = r.window(), fm.RequiredVerification()
		s.FederationMap = slices.Clone(r.AuthData)
	}
	if r.group != nil {
		s.InGroup = true
		s.Epoch = r.group.Epoch()
		for _, m := range r.group.Members() {
			mem := Member{LeafIndex: m.LeafIndex}
			if id, err := m.LeafNode.MatrixIdentity(); err == nil {
				mem.UserID, mem.DeviceID = id.UserID, id.DeviceID
			}
			s.Members = append(s.Members, mem)
		}
		if st, err := ParseRoomState(r.group.Extensions()); err == nil {
			s.Name = stringField(st, "m.room.name", "name")
			s.Topic = stringField(st, "m.room.topic", "topic")
		}
	}
	if o := r.Own; o != nil {
		s.Pending = &PendingCommit{EventID: o.EventID, Pending: o.Pending, SentAt: o.SentAt, Expires: o.Expires}
	}
	return s, nil
}

func stringField(st RoomState, typ, field string) string {
	raw, ok := st.Get(typ, "")
	if !ok {
		return ""
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return ""
	}
	s, _ := m[field].(string)
	return s
}

// Messages returns the room's decrypted messages, oldest first.
func (c *Client) Messages(roomID string) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rooms[roomID]; r != nil {
		return slices.Clone(r.Messages)
	}
	return nil
}

// StartSuccessor makes a new room for the members of a broken (or any)
// room: the same federation settings as the old room's last commit
// (unless opts sets them), then each other user of the old group invited
// (each invite checked as Invite does). It returns the new room's ID and
// the users it could not invite, with why.
func (c *Client) StartSuccessor(ctx context.Context, roomID string, opts RoomOptions) (string, map[string]error, error) {
	c.mu.Lock()
	r := c.rooms[roomID]
	if r == nil || r.group == nil {
		c.mu.Unlock()
		return "", nil, fmt.Errorf("this client has no state of room %s", roomID)
	}
	if fm, err := r.fedMap(); err == nil && opts.Powers == nil {
		opts.Powers, opts.Servers, opts.CanPropose = fm.Federation.Powers, fm.Federation.Servers, fm.Federation.CanPropose
		opts.Window = time.Duration(fm.Window()) * time.Second
		opts.RequiredVerification = fm.RequiredVerification()
	}
	var users []string
	for _, m := range r.group.Members() {
		if id, err := m.LeafNode.MatrixIdentity(); err == nil && id.UserID != c.acct.UserID && !slices.Contains(users, id.UserID) {
			users = append(users, id.UserID)
		}
	}
	c.mu.Unlock()
	newID, err := c.CreateRoom(ctx, opts)
	if err != nil {
		return "", nil, err
	}
	failed := map[string]error{}
	for _, u := range users {
		if err := c.Invite(ctx, newID, u); err != nil {
			failed[u] = err
		}
	}
	return newID, failed, nil
}
