package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// MaxWindow is the longest security.window a client honours (MSC4256:
// clients clamp larger values to 7 days).
const MaxWindow = 7 * 24 * time.Hour

// Reasons a message could not be decrypted.
const (
	// ReasonLostFork: the message was sent on a fork that lost state
	// resolution (the server marked it de.bwi.mls.lost_fork).
	ReasonLostFork = "lost_fork"
	// ReasonEpochGone: the message's epoch is older than the keys the
	// client keeps.
	ReasonEpochGone = "epoch_gone"
	// ReasonNotMember: the client was not in the group when the message
	// was sent (removed, or waiting for a new Welcome).
	ReasonNotMember = "not_member"
	// ReasonMalformed: the event is not a well-formed MLS message of the
	// room.
	ReasonMalformed = "malformed"
)

// Undecryptable is a message the client could not read.
type Undecryptable struct {
	EventID string `json:"event_id"`
	Origin  string `json:"origin"`
	Epoch   uint64 `json:"epoch"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

// Message is a decrypted room message.
type Message struct {
	EventID  string          `json:"event_id"`
	Sender   string          `json:"sender"`
	Device   string          `json:"device"`
	Type     string          `json:"type"`
	Content  json.RawMessage `json:"content"`
	TS       int64           `json:"origin_server_ts"`
	Epoch    uint64          `json:"epoch"`
	LostFork bool            `json:"lost_fork,omitempty"`
}

// Body is the body of an m.room.message ("" for other events).
func (m Message) Body() string {
	var c struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal(m.Content, &c)
	return c.Body
}

// Broken describes an accepted commit the client could not process: the
// room cannot be followed any more; StartSuccessor makes a new one.
type Broken struct {
	EventID string `json:"event_id"`
	Origin  string `json:"origin"`
	Reason  string `json:"reason"`
}

// RoomOptions are the settings of a new room.
type RoomOptions struct {
	// Powers, Servers and CanPropose are the federation map; nil Powers
	// and Servers mean this client's server alone.
	Powers, Servers, CanPropose []string
	// Window is security.window (clamped to MaxWindow).
	Window time.Duration
	// RequiredVerification is security.required_verification ("" means
	// m.cross).
	RequiredVerification string
	// Name and Topic go into the encrypted room state.
	Name, Topic string
}

// room is a room as the client keeps it (store key "room/<room ID>").
type room struct {
	ID         string `json:"room_id"`
	Membership string `json:"membership"`
	Inviter    string `json:"inviter,omitempty"`
	State      []byte `json:"mls_state,omitempty"`
	CommitID   string `json:"commit_id,omitempty"`
	AuthData   []byte `json:"federation_map,omitempty"`
	// Chain lists the commits merged, oldest first (the last MaxChain).
	Chain []chainLink `json:"chain,omitempty"`
	// Kept are past states kept for security.window.
	Kept []keptState `json:"kept,omitempty"`
	// Own is this client's commit waiting to come back in /sync.
	Own *ownCommit `json:"own,omitempty"`
	// Welcome is a Welcome received for the room and not used yet.
	Welcome []byte `json:"welcome,omitempty"`
	// LastWelcome is the Welcome of this client's last accepted commit.
	LastWelcome     []byte            `json:"last_welcome,omitempty"`
	WelcomeCommitID string            `json:"welcome_commit_id,omitempty"`
	NeedsWelcome    string            `json:"needs_welcome,omitempty"`
	Broken          *Broken           `json:"broken,omitempty"`
	Undecryptable   []Undecryptable   `json:"undecryptable,omitempty"`
	Deferred        []json.RawMessage `json:"deferred,omitempty"`
	// Messages are the room's decrypted messages, oldest first (the last
	// MaxMessages). Each is its own store entry, "msg/<room>/<seq>", so a
	// sync writes only the new ones, not the whole history.
	Messages []Message `json:"-"`
	// MsgSeq is the sequence number of the newest message.
	MsgSeq int `json:"msg_seq,omitempty"`
	// msgWrites are message entries to write (nil: delete) with the room.
	msgWrites map[string][]byte
	// MyAdds are the members each of this client's accepted commits
	// added, by commit ID, so that a commit lost to a fork can be redone.
	MyAdds   map[string][]Invitee `json:"my_adds,omitempty"`
	LostAdds []Invitee            `json:"lost_adds,omitempty"`
	// LastEvent is the last timeline event processed (where a gap in a
	// limited /sync timeline starts).
	LastEvent string `json:"last_event,omitempty"`
	// Rollbacks counts the times the client rolled back to a kept state.
	Rollbacks int `json:"rollbacks,omitempty"`
	// LostCommits are this client's commits that never became accepted.
	LostCommits []string `json:"lost_commits,omitempty"`

	group *mls.Group
}

// Invitee is one device added to a room.
type Invitee struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

type chainLink struct {
	CommitID string `json:"commit_id"`
	Epoch    uint64 `json:"epoch"`
}

type keptState struct {
	CommitID string    `json:"commit_id"`
	Epoch    uint64    `json:"epoch"`
	State    []byte    `json:"state"`
	At       time.Time `json:"at"`
}

type ownCommit struct {
	Wire     []byte    `json:"wire"`
	Post     []byte    `json:"post_state"`
	AuthData []byte    `json:"federation_map"`
	Welcome  []byte    `json:"welcome,omitempty"`
	Adds     []Invitee `json:"adds,omitempty"`
	Pending  bool      `json:"pending,omitempty"`
	EventID  string    `json:"event_id,omitempty"`
	SentAt   time.Time `json:"sent_at"`
	Expires  time.Time `json:"expires"`
	// Outcome is "", "accepted", "lost" (another commit won) or
	// "expired" (given up; still recognised if it comes back).
	Outcome string `json:"outcome,omitempty"`
}

// Limits of what a room keeps.
const (
	MaxChain    = 256
	MaxMessages = 10000
	MaxDeferred = 1000
	// MaxKept bounds the past states kept for security.window (each is a
	// whole group state): a fork deeper than this many commits needs a new
	// Welcome even within the window.
	MaxKept = 32
)

const prefixRoom = "room/"

func (c *Client) saveRoom(ctx context.Context, r *room, extra map[string][]byte) error {
	if extra == nil {
		extra = map[string][]byte{}
	}
	if err := roomEntry(r, extra); err != nil {
		return err
	}
	return c.store.Put(ctx, extra)
}

// msgPrefix is the store prefix of a room's messages.
func msgPrefix(roomID string) string { return "msg/" + url.PathEscape(roomID) + "/" }

// addMessage appends a message, to be written with the room, and drops
// the oldest beyond MaxMessages.
func (r *room) addMessage(m Message) {
	if r.msgWrites == nil {
		r.msgWrites = map[string][]byte{}
	}
	r.MsgSeq++
	r.Messages = append(r.Messages, m)
	b, _ := json.Marshal(m)
	r.msgWrites[fmt.Sprintf("%s%012d", msgPrefix(r.ID), r.MsgSeq)] = b
	if drop := len(r.Messages) - MaxMessages; drop > 0 {
		first := r.MsgSeq - len(r.Messages) + 1
		for seq := first; seq < first+drop; seq++ {
			r.msgWrites[fmt.Sprintf("%s%012d", msgPrefix(r.ID), seq)] = nil
		}
		r.Messages = slices.Clone(r.Messages[drop:])
	}
}

// roomEntry adds the room's store entry (its MLS state serialised) and
// its new messages to entries.
func roomEntry(r *room, entries map[string][]byte) error {
	for k, v := range r.msgWrites {
		entries[k] = v
	}
	r.msgWrites = nil
	if r.group != nil {
		st, err := r.group.MarshalState()
		if err != nil {
			return fmt.Errorf("serialising the MLS state of %s: %w", r.ID, err)
		}
		r.State = st
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	entries[prefixRoom+r.ID] = b
	return nil
}

func (c *Client) loadRooms(ctx context.Context) error {
	all, err := c.store.List(ctx, prefixRoom)
	if err != nil {
		return err
	}
	for key, raw := range all {
		var r room
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("reading stored room %s: %w", key, err)
		}
		if r.State != nil {
			if r.group, err = mls.LoadGroup(r.State, c.groupConfig()); err != nil {
				return fmt.Errorf("reading the MLS state of %s: %w", r.ID, err)
			}
		}
		msgs, err := c.store.List(ctx, msgPrefix(r.ID))
		if err != nil {
			return err
		}
		keys := slices.Sorted(maps.Keys(msgs))
		for _, k := range keys {
			var m Message
			if err := json.Unmarshal(msgs[k], &m); err != nil {
				return fmt.Errorf("reading stored message %s: %w", k, err)
			}
			r.Messages = append(r.Messages, m)
		}
		c.rooms[r.ID] = &r
	}
	return nil
}

func (c *Client) groupConfig() mls.GroupConfig {
	return mls.GroupConfig{Now: c.cfg.Now, EpochHistory: c.cfg.EpochHistory}
}

func (c *Client) roomOf(roomID string) *room {
	r := c.rooms[roomID]
	if r == nil {
		r = &room{ID: roomID}
		c.rooms[roomID] = r
	}
	return r
}

func (r *room) fedMap() (*fedmap.Map, error) {
	if r.AuthData == nil {
		return nil, fmt.Errorf("room %s has no federation map yet", r.ID)
	}
	return fedmap.Decode(r.AuthData)
}

// window is the room's security.window, clamped.
func (r *room) window() time.Duration {
	fm, err := r.fedMap()
	if err != nil {
		return 0
	}
	w := time.Duration(min(fm.Window(), uint64(MaxWindow/time.Second))) * time.Second
	return w
}

// CreateRoom creates an MLS room with the options and sends its epoch-0
// commit; it returns once the commit is back in /sync.
func (c *Client) CreateRoom(ctx context.Context, opts RoomOptions) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fm, err := c.optionsMap(opts)
	if err != nil {
		return "", err
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := c.call(ctx, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"room_version": string(c.cfg.Version), "creation_content": map[string]any{"algorithm": c.alg}}, &out); err != nil {
		return "", fmt.Errorf("creating a room: %w", err)
	}
	rc, err := RequiredCapabilities()
	if err != nil {
		return "", err
	}
	exts := mls.Extensions{rc}
	if opts.Name != "" || opts.Topic != "" {
		st := RoomState{}
		if opts.Name != "" {
			if err := st.Set("m.room.name", "", map[string]string{"name": opts.Name}); err != nil {
				return "", err
			}
		}
		if opts.Topic != "" {
			if err := st.Set("m.room.topic", "", map[string]string{"topic": opts.Topic}); err != nil {
				return "", err
			}
		}
		if exts, err = WithRoomState(exts, st); err != nil {
			return "", err
		}
	}
	cred, err := c.credential()
	if err != nil {
		return "", err
	}
	g, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte(out.RoomID), Signer: c.sign, Credential: cred,
		Capabilities: Capabilities(), Extensions: exts, Config: c.groupConfig()})
	if err != nil {
		return "", fmt.Errorf("creating the MLS group: %w", err)
	}
	r := c.roomOf(out.RoomID)
	r.Membership, r.group = "join", g
	if err := c.commitAndWait(ctx, r, fixed(nil, fm), nil); err != nil {
		return "", fmt.Errorf("sending the epoch-0 commit of %s: %w", out.RoomID, err)
	}
	return out.RoomID, nil
}

func (c *Client) optionsMap(opts RoomOptions) (*fedmap.Map, error) {
	own := c.ServerName()
	fm := &fedmap.Map{Federation: fedmap.Federation{Powers: opts.Powers, Servers: opts.Servers, CanPropose: opts.CanPropose}}
	if fm.Federation.Powers == nil {
		fm.Federation.Powers = []string{own}
	}
	if fm.Federation.Servers == nil {
		fm.Federation.Servers = append([]string(nil), fm.Federation.Powers...)
	}
	w := min(opts.Window, MaxWindow)
	if w < 0 {
		return nil, errors.New("security.window cannot be negative")
	}
	if opts.RequiredVerification != "" && !fedmap.ValidVerification(opts.RequiredVerification) {
		return nil, fmt.Errorf("security.required_verification %q is not one of m.direct, m.cross, m.tofu, m.none", opts.RequiredVerification)
	}
	if w > 0 || opts.RequiredVerification != "" {
		fm.Security = &fedmap.Security{Window: uint64(w / time.Second), RequiredVerification: opts.RequiredVerification}
	}
	if _, err := fm.Encode(); err != nil {
		return nil, fmt.Errorf("federation map: %w", err)
	}
	return fm, nil
}

// ErrCommitLost is returned when another commit won over this client's
// commit and retrying did not help.
var ErrCommitLost = errors.New("client: another commit was accepted instead")

// ErrCommitInFlight is returned for a change to a room while this
// client's previous commit there waits to be accepted.
var ErrCommitInFlight = errors.New("client: a commit of this client is still waiting to be accepted in this room")

// ErrPendingCommitExpired is returned when a pending commit was not
// applied within len(powers) x 5 minutes.
var ErrPendingCommitExpired = errors.New("client: the pending commit was not applied in any power's window")

// proposalBuilder makes a commit's proposals and federation map (nil:
// the room's current one) from the room's current state.
type proposalBuilder func(r *room) ([]*mls.Proposal, *fedmap.Map, error)

// fixed is a proposalBuilder of proposals that do not depend on the state.
func fixed(proposals []*mls.Proposal, fm *fedmap.Map) proposalBuilder {
	return func(*room) ([]*mls.Proposal, *fedmap.Map, error) { return proposals, fm, nil }
}

// commitAndWait stages a commit of the proposals build makes, sends it as
// a commit or pending commit depending on this server's place in powers,
// and syncs until it comes back (merging it) or another commit wins; a
// lost race (409 or another commit accepted) is retried on the new state,
// with the proposals built again, up to three times.
func (c *Client) commitAndWait(ctx context.Context, r *room, build proposalBuilder, adds []Invitee) error {
	var lastErr error
	if o := r.Own; o != nil && o.Outcome == "" && o.EventID != "" && (!o.Pending || !c.cfg.Now().After(o.Expires)) {
		return ErrCommitInFlight
	}
	for attempt := 0; attempt < 4; attempt++ {
		if r.Broken != nil {
			return fmt.Errorf("room %s is broken: %s", r.ID, r.Broken.Reason)
		}
		if r.NeedsWelcome != "" {
			return fmt.Errorf("room %s: this client needs a new Welcome: %s", r.ID, r.NeedsWelcome)
		}
		proposals, m, err := build(r)
		if err != nil {
			return err
		}
		if m == nil {
			if m, err = r.fedMap(); err != nil {
				return err
			}
		}
		own, err := c.stage(r, proposals, m, adds)
		if err != nil {
			return err
		}
		r.Own = own
		if err := c.saveRoom(ctx, r, nil); err != nil {
			return err
		}
		eventID, err := c.sendCommit(ctx, r, own, m)
		if IsErrcode(err, ErrcodeWrongEpoch) {
			c.log.Info("commit raced another; catching up", "room", r.ID, "attempt", attempt)
			r.Own, lastErr = nil, ErrCommitLost
			if err := c.syncLocked(ctx, 0); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			r.Own = nil
			_ = c.saveRoom(ctx, r, nil)
			return err
		}
		own.EventID = eventID
		if err := c.saveRoom(ctx, r, nil); err != nil {
			return err
		}
		for own.Outcome == "" {
			if err := ctx.Err(); err != nil {
				return err
			}
			if own.Pending && c.cfg.Now().After(own.Expires) {
				// Given up, but kept: should a power still apply it, the
				// client recognises its own commit (Status.Pending shows
				// it, past Expires, until another commit replaces it).
				own.Outcome = "expired"
				r.LostCommits = append(r.LostCommits, own.EventID)
				_ = c.saveRoom(ctx, r, nil)
				return ErrPendingCommitExpired
			}
			// The wait lets go of the client between syncs: messages can
			// be sent and other rooms used while a pending commit waits
			// for a power's window (minutes).
			if err := c.syncUnlocked(ctx, 1000); err != nil {
				return err
			}
			if r.Membership != "join" || r.group == nil {
				return fmt.Errorf("room %s was left while its commit was waiting", r.ID)
			}
			if r.Broken != nil || r.NeedsWelcome != "" {
				break
			}
		}
		switch own.Outcome {
		case "accepted":
			return nil
		case "lost":
			lastErr = ErrCommitLost
			continue
		}
	}
	if lastErr == nil {
		lastErr = ErrCommitLost
	}
	return lastErr
}

// stage makes the commit and the state after it, leaving the group as it
// was (apart from the handshake key the commit used).
func (c *Client) stage(r *room, proposals []*mls.Proposal, fm *fedmap.Map, adds []Invitee) (*ownCommit, error) {
	ad, err := fm.Encode()
	if err != nil {
		return nil, err
	}
	sc, err := r.group.Commit(mls.CommitOptions{Proposals: proposals, AuthenticatedData: ad})
	if err != nil {
		return nil, fmt.Errorf("making the commit: %w", err)
	}
	pre, err := r.group.MarshalState()
	if err != nil {
		return nil, err
	}
	if err := r.group.Merge(sc); err != nil {
		return nil, fmt.Errorf("merging the commit: %w", err)
	}
	post, err := r.group.MarshalState()
	if err != nil {
		return nil, err
	}
	if r.group, err = mls.LoadGroup(pre, c.groupConfig()); err != nil {
		return nil, err
	}
	wire, err := sc.Message.MarshalMLS()
	if err != nil {
		return nil, err
	}
	own := &ownCommit{Wire: wire, Post: post, AuthData: ad, Adds: adds, SentAt: c.cfg.Now()}
	if sc.Welcome != nil {
		if own.Welcome, err = sc.Welcome.MarshalMLS(); err != nil {
			return nil, err
		}
	}
	return own, nil
}

// sendCommit sends own as m.mls.commit (this server is powers[0], or the
// epoch-0 commit) or as a pending commit.
func (c *Client) sendCommit(ctx context.Context, r *room, own *ownCommit, fm *fedmap.Map) (string, error) {
	cur := fm
	if r.AuthData != nil {
		if m, err := r.fedMap(); err == nil {
			cur = m
		}
	}
	direct := r.CommitID == "" || (len(cur.Federation.Powers) > 0 && cur.Federation.Powers[0] == c.ServerName())
	content := map[string]string{"algorithm": c.alg, "ciphertext": b64url.EncodeToString(own.Wire)}
	var out struct {
		EventID string `json:"event_id"`
	}
	var path string
	if direct {
		path = roomPath(r.ID, "/state/"+c.cfg.Version.CommitType()+"/")
	} else {
		own.Pending = true
		own.Expires = own.SentAt.Add(time.Duration(len(cur.Federation.Powers))*5*time.Minute + time.Minute)
		path = roomPath(r.ID, "/send/"+c.cfg.Version.PendingCommitType()+"/"+c.nextTxn())
	}
	if err := c.call(ctx, "PUT", withCommitID(path, r.CommitID), content, &out); err != nil {
		return "", fmt.Errorf("sending the commit to %s: %w", r.ID, err)
	}
	return out.EventID, nil
}

func withCommitID(path, commitID string) string {
	if commitID == "" {
		return path
	}
	return path + "?de.bwi.mls.commit_id=" + url.QueryEscape(commitID)
}

// Invite adds every device of each user to the room in one commit, after
// checking each device against the room's security.required_verification
// (a failure is a *VerificationError naming the device and nothing is
// committed); once the commit is accepted it sends the Welcome to each
// device and invites each user, in the proposal's order.
func (c *Client) Invite(ctx context.Context, roomID string, userIDs ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.invite(ctx, roomID, userIDs, nil, true)
}

// invite adds the users' devices (only those listed in only, if non-nil).
func (c *Client) invite(ctx context.Context, roomID string, userIDs []string, only []Invitee, sendInvite bool) error {
	if len(userIDs) == 0 {
		return errors.New("no user to invite")
	}
	r, err := c.joinedRoom(roomID)
	if err != nil {
		return err
	}
	fm, err := r.fedMap()
	if err != nil {
		return err
	}
	q, err := c.queryKeys(ctx, userIDs...)
	if err != nil {
		return err
	}
	var devices []DeviceInfo
	for _, u := range userIDs {
		n := 0
		for _, d := range c.devicesOf(q, u) {
			if only == nil || slices.Contains(only, Invitee{d.UserID, d.DeviceID}) {
				devices = append(devices, d)
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("%s has no device with keys to add", u)
		}
	}
	pins := map[string][]byte{}
	for _, d := range devices {
		if err := c.checkDevice(ctx, q, d, fm.RequiredVerification(), pins); err != nil {
			return err
		}
	}
	kps, err := c.claimKeyPackages(ctx, devices)
	if err != nil {
		return err
	}
	var proposals []*mls.Proposal
	var adds []Invitee
	for _, d := range devices {
		kp := kps[d.UserID+"|"+d.DeviceID]
		id, err := kp.LeafNode.MatrixIdentity()
		if err != nil || id.UserID != d.UserID || id.DeviceID != d.DeviceID || string(id.SignatureKey) != string(d.Identity.SignatureKey) {
			return &VerificationError{UserID: d.UserID, DeviceID: d.DeviceID, Required: fm.RequiredVerification(),
				Reason: "its key package's credential is not the one in its device keys"}
		}
		proposals = append(proposals, &mls.Proposal{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}})
		adds = append(adds, Invitee{d.UserID, d.DeviceID})
	}
	build := func(r *room) ([]*mls.Proposal, *fedmap.Map, error) {
		cur, err := r.fedMap()
		if err != nil {
			return nil, nil, err
		}
		next := *cur
		for _, u := range userIDs {
			if dom := domainOf(u); !slices.Contains(next.Federation.Servers, dom) {
				next.Federation.Servers = append(slices.Clone(next.Federation.Servers), dom)
			}
		}
		return proposals, &next, nil
	}
	if err := c.commitAndWait(ctx, r, build, adds); err != nil {
		return err
	}
	extra := map[string][]byte{}
	for user, pin := range pins {
		extra["tofu/"+user] = pin
	}
	if len(extra) > 0 {
		if err := c.store.Put(ctx, extra); err != nil {
			return err
		}
	}
	accepted := r.Chain[len(r.Chain)-1].CommitID
	if err := c.sendWelcome(ctx, r.ID, accepted, r.LastWelcome, adds); err != nil {
		return err
	}
	if sendInvite {
		for _, u := range userIDs {
			if err := c.call(ctx, "POST", roomPath(r.ID, "/invite"), map[string]string{"user_id": u}, nil); err != nil {
				return fmt.Errorf("inviting %s to %s: %w", u, r.ID, err)
			}
		}
	}
	return nil
}

// sendWelcome sends the Welcome of the accepted commit commitID to each
// added device (SPEC-NOTES §9), naming the commit in
// de.bwi.mls.commit_id so that the joiner knows what its state is at.
func (c *Client) sendWelcome(ctx context.Context, roomID, commitID string, welcome []byte, adds []Invitee) error {
	if welcome == nil {
		return errors.New("the accepted commit has no Welcome")
	}
	msgs := map[string]map[string]any{}
	for _, a := range adds {
		if msgs[a.UserID] == nil {
			msgs[a.UserID] = map[string]any{}
		}
		msgs[a.UserID][a.DeviceID] = map[string]string{"algorithm": c.alg, "room_id": roomID,
			"welcome": b64.EncodeToString(welcome), "de.bwi.mls.commit_id": commitID}
	}
	if err := c.call(ctx, "PUT", "/_matrix/client/v3/sendToDevice/m.mls.welcome/"+c.nextTxn(), map[string]any{"messages": msgs}, nil); err != nil {
		return fmt.Errorf("sending the Welcome: %w", err)
	}
	return nil
}

func domainOf(userID string) string {
	if i := strings.IndexByte(userID, ':'); i >= 0 {
		return userID[i+1:]
	}
	return ""
}

func (c *Client) joinedRoom(roomID string) (*room, error) {
	r := c.rooms[roomID]
	if r == nil || r.Membership != "join" || r.group == nil {
		return nil, fmt.Errorf("this client is not in room %s", roomID)
	}
	return r, nil
}

// commitIn commits the proposals build makes in a joined room, under the
// client's lock (commitAndWait).
func (c *Client) commitIn(ctx context.Context, roomID string, build proposalBuilder) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.joinedRoom(roomID)
	if err != nil {
		return err
	}
	return c.commitAndWait(ctx, r, build, nil)
}

// Remove removes every device of userID from the room's group.
func (c *Client) Remove(ctx context.Context, roomID, userID string) error {
	return c.commitIn(ctx, roomID, func(r *room) ([]*mls.Proposal, *fedmap.Map, error) {
		var proposals []*mls.Proposal
		for _, m := range r.group.Members() {
			id, err := m.LeafNode.MatrixIdentity()
			if err == nil && id.UserID == userID {
				proposals = append(proposals, &mls.Proposal{ProposalType: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: m.LeafIndex}})
			}
		}
		if len(proposals) == 0 {
			return nil, nil, fmt.Errorf("%s is not a member of %s", userID, roomID)
		}
		return proposals, nil, nil
	})
}

// Leave proposes the device's own removal to the group (an MLS Remove
// proposal in an m.room.encrypted event: RFC 9420 forbids committing
// one's own removal, so a remaining member commits it, see
// commitProposals), then leaves the room on the server (delivery stops)
// and forgets the room's MLS state.
func (c *Client) Leave(ctx context.Context, roomID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[roomID]
	if r == nil {
		return fmt.Errorf("this client does not know room %s", roomID)
	}
	if r.Membership == "join" && r.group != nil && r.NeedsWelcome == "" && r.Broken == nil && len(r.group.Members()) > 1 {
		if err := c.proposeSelfRemove(ctx, r); err != nil {
			return err
		}
	}
	if err := c.call(ctx, "POST", roomPath(roomID, "/leave"), map[string]any{}, nil); err != nil {
		return fmt.Errorf("leaving %s: %w", roomID, err)
	}
	r.Membership, r.group, r.State, r.Kept, r.Own = "leave", nil, nil, nil, nil
	return c.saveRoom(ctx, r, nil)
}

// proposeSelfRemove sends a Remove proposal for this device's leaf.
func (c *Client) proposeSelfRemove(ctx context.Context, r *room) error {
	_, err := c.sendEncrypted(ctx, r.ID, func(r *room) (*mls.MLSMessage, error) {
		m, err := r.group.ProposeRemove(r.group.LeafIndex(), nil)
		if err != nil {
			return nil, fmt.Errorf("proposing to leave the group: %w", err)
		}
		return m, nil
	})
	return err
}

// commitProposals commits the proposals other members sent (members
// leaving) when this device is the one to do it: the member with the
// lowest leaf among those not being removed, preferring devices of users
// on powers[0] (who commit directly). Any later commit includes them too.
func (c *Client) commitProposals(ctx context.Context, r *room) error {
	if r.Membership != "join" || r.group == nil || r.NeedsWelcome != "" || r.Broken != nil || len(r.group.PendingProposals()) == 0 {
		return nil
	}
	removed := map[uint32]bool{}
	for _, p := range r.group.PendingProposals() {
		if p.ProposalType == mls.ProposalTypeRemove && p.Remove != nil {
			removed[p.Remove.Removed] = true
		}
	}
	fm, err := r.fedMap()
	if err != nil {
		return err
	}
	chosen, chosenOnFirst := uint32(0), false
	found := false
	for _, m := range r.group.Members() {
		if removed[m.LeafIndex] {
			continue
		}
		id, err := m.LeafNode.MatrixIdentity()
		if err != nil {
			continue
		}
		onFirst := len(fm.Federation.Powers) > 0 && domainOf(id.UserID) == fm.Federation.Powers[0]
		if !found || (onFirst && !chosenOnFirst) {
			chosen, chosenOnFirst, found = m.LeafIndex, onFirst, true
		}
	}
	if !found || chosen != r.group.LeafIndex() {
		return nil
	}
	c.log.Info("committing members' proposals", "room", r.ID, "proposals", len(r.group.PendingProposals()))
	return c.commitAndWait(ctx, r, fixed(nil, nil), nil)
}

// UpdateKeys commits no proposals, only a fresh path: this device's leaf
// and the secrets above it get new keys (post-compromise security), and
// the room moves to a new epoch.
func (c *Client) UpdateKeys(ctx context.Context, roomID string) error {
	return c.commitIn(ctx, roomID, fixed(nil, nil))
}

// SetFederation commits a new federation map for the room (powers,
// servers, can_propose), keeping its security settings. The servers must
// include every power and every proposer (the auth rules refuse it
// otherwise, and the server's answer is returned).
func (c *Client) SetFederation(ctx context.Context, roomID string, powers, servers, canPropose []string) error {
	return c.commitIn(ctx, roomID, func(r *room) ([]*mls.Proposal, *fedmap.Map, error) {
		cur, err := r.fedMap()
		if err != nil {
			return nil, nil, err
		}
		next := *cur
		next.Federation = fedmap.Federation{Powers: slices.Clone(powers), Servers: slices.Clone(servers), CanPropose: slices.Clone(canPropose)}
		if _, err := next.Encode(); err != nil {
			return nil, nil, fmt.Errorf("federation map: %w", err)
		}
		return nil, &next, nil
	})
}

// CheckStateKey checks an encrypted state event's type and state key:
// type 1-255 bytes, key at most 255 bytes, both valid UTF-8 without
// control characters.
func CheckStateKey(eventType, stateKey string) error {
	check := func(what, s string, minLen int) error {
		if len(s) < minLen || len(s) > 255 {
			return fmt.Errorf("%s must be %d to 255 bytes, not %d", what, minLen, len(s))
		}
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s is not valid UTF-8", what)
		}
		for _, r := range s {
			if unicode.IsControl(r) {
				return fmt.Errorf("%s contains the control character %U", what, r)
			}
		}
		return nil
	}
	if err := check("event type", eventType, 1); err != nil {
		return err
	}
	return check("state key", stateKey, 0)
}

// SetState sets (content non-nil) or deletes (nil) an encrypted state
// event of the room with a GroupContextExtensions commit.
func (c *Client) SetState(ctx context.Context, roomID, eventType, stateKey string, content any) error {
	if err := CheckStateKey(eventType, stateKey); err != nil {
		return err
	}
	return c.commitIn(ctx, roomID, func(r *room) ([]*mls.Proposal, *fedmap.Map, error) {
		st, err := ParseRoomState(r.group.Extensions())
		if err != nil {
			return nil, nil, err
		}
		if content == nil {
			st.Delete(eventType, stateKey)
		} else if err := st.Set(eventType, stateKey, content); err != nil {
			return nil, nil, err
		}
		p, err := RoomStateProposal(r.group.Extensions(), st)
		if err != nil {
			return nil, nil, err
		}
		return []*mls.Proposal{p}, nil, nil
	})
}

// State returns the room's encrypted state.
func (c *Client) State(roomID string) (RoomState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.joinedRoom(roomID)
	if err != nil {
		return nil, err
	}
	return ParseRoomState(r.group.Extensions())
}

// Send encrypts an m.room.message with body text and sends it.
func (c *Client) Send(ctx context.Context, roomID, text string) (string, error) {
	return c.SendEvent(ctx, roomID, "m.room.message", map[string]string{"msgtype": "m.text", "body": text})
}

// SendEvent encrypts an event of type typ and sends it as
// m.room.encrypted, naming the commit the client's state is at; on 409 it
// catches up and encrypts again (up to three times). The ratchet step is
// stored before the send, so no key is ever used twice.
func (c *Client) SendEvent(ctx context.Context, roomID, typ string, content any) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt, err := json.Marshal(map[string]any{"type": typ, "content": content})
	if err != nil {
		return "", err
	}
	id, err := c.sendEncrypted(ctx, roomID, func(r *room) (*mls.MLSMessage, error) {
		m, err := r.group.Encrypt(pt, nil)
		if err != nil {
			return nil, fmt.Errorf("encrypting: %w", err)
		}
		return m, nil
	})
	if err != nil {
		return "", err
	}
	r := c.rooms[roomID]
	cb, _ := json.Marshal(content)
	r.addMessage(Message{EventID: id, Sender: c.acct.UserID, Device: c.acct.DeviceID,
		Type: typ, Content: cb, TS: c.cfg.Now().UnixMilli(), Epoch: r.group.Epoch()})
	return id, c.saveRoom(ctx, r, nil)
}

// sendEncrypted sends the MLS message build makes from the room's current
// group as m.room.encrypted, naming the commit the group is at. The group
// state is stored before the send, so no key is ever used twice; on 409
// it catches up and builds again (up to three times).
func (c *Client) sendEncrypted(ctx context.Context, roomID string, build func(*room) (*mls.MLSMessage, error)) (string, error) {
	for attempt := 0; ; attempt++ {
		r, err := c.joinedRoom(roomID)
		if err != nil {
			return "", err
		}
		if r.NeedsWelcome != "" {
			return "", fmt.Errorf("room %s: this client needs a new Welcome: %s", roomID, r.NeedsWelcome)
		}
		if r.Broken != nil {
			return "", fmt.Errorf("room %s is broken: %s", roomID, r.Broken.Reason)
		}
		m, err := build(r)
		if err != nil {
			return "", err
		}
		wire, err := m.MarshalMLS()
		if err != nil {
			return "", err
		}
		if err := c.saveRoom(ctx, r, nil); err != nil {
			return "", err
		}
		var out struct {
			EventID string `json:"event_id"`
		}
		err = c.call(ctx, "PUT", withCommitID(roomPath(roomID, "/send/m.room.encrypted/"+c.nextTxn()), r.CommitID),
			map[string]string{"algorithm": c.alg, "ciphertext": b64.EncodeToString(wire)}, &out)
		if IsErrcode(err, ErrcodeWrongEpoch) && attempt < 3 {
			if err := c.syncLocked(ctx, 0); err != nil {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("sending to %s: %w", roomID, err)
		}
		return out.EventID, nil
	}
}
