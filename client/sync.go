package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

var b64url = base64.RawURLEncoding

// syncEvent is an event in client format.
type syncEvent struct {
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	Origin   string          `json:"origin"`
	TS       int64           `json:"origin_server_ts"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
	Unsigned map[string]any  `json:"unsigned"`
	Sender   string          `json:"sender"`
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			State    struct{ Events []json.RawMessage } `json:"state"`
			Timeline struct {
				Events    []json.RawMessage `json:"events"`
				Limited   bool              `json:"limited"`
				PrevBatch string            `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
		Invite map[string]struct {
			InviteState struct{ Events []syncEvent } `json:"invite_state"`
		} `json:"invite"`
		Leave map[string]json.RawMessage `json:"leave"`
	} `json:"rooms"`
	ToDevice struct {
		Events []struct {
			Type    string          `json:"type"`
			Sender  string          `json:"sender"`
			Content json.RawMessage `json:"content"`
		} `json:"events"`
	} `json:"to_device"`
	OTKCounts      map[string]int `json:"device_one_time_keys_count"`
	UnusedFallback []string       `json:"device_unused_fallback_key_types"`
}

// Sync runs one /sync (long-polling up to timeout) and processes it:
// invites and Welcomes, commits (this client's staged ones merged only
// now, others processed; a different winner within security.window rolls
// the room back), messages (decrypted, or listed as undecryptable with
// the reason), key package replenishment, and redoing adds lost to a fork.
// The long-poll itself does not hold the client's lock: other calls run
// meanwhile, and an answer that another call's sync has overtaken is
// dropped.
func (c *Client) Sync(ctx context.Context, timeout time.Duration) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncUnlocked(ctx, int(timeout/time.Millisecond))
}

func (c *Client) syncLocked(ctx context.Context, timeoutMS int) error {
	res, err := c.fetchSync(ctx, c.acct.Since, timeoutMS)
	if err != nil {
		return err
	}
	return c.processSync(ctx, res)
}

// syncUnlocked is syncLocked that lets go of the client's lock during
// the long-poll; an answer overtaken by another sync meanwhile is
// dropped. The caller holds the lock.
func (c *Client) syncUnlocked(ctx context.Context, timeoutMS int) error {
	since := c.acct.Since
	c.mu.Unlock()
	res, err := c.fetchSync(ctx, since, timeoutMS)
	c.mu.Lock()
	if err != nil {
		return err
	}
	if c.acct.Since != since {
		return nil // another call's sync went on meanwhile: this answer is stale
	}
	return c.processSync(ctx, res)
}

func (c *Client) fetchSync(ctx context.Context, since string, timeoutMS int) (*syncResponse, error) {
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d", timeoutMS)
	if since != "" {
		path += "&since=" + url.QueryEscape(since)
	}
	var res syncResponse
	if err := c.call(ctx, "GET", path, nil, &res); err != nil {
		return nil, fmt.Errorf("syncing: %w", err)
	}
	return &res, nil
}

// processSync applies one /sync answer. The joined rooms' new states and
// the next sync position are written in one store write, so a crash never
// leaves events processed but due again (or the reverse).
func (c *Client) processSync(ctx context.Context, res *syncResponse) error {
	for _, td := range res.ToDevice.Events {
		if td.Type == "m.mls.welcome" {
			c.receiveWelcome(ctx, td.Sender, td.Content)
		}
	}
	for roomID, inv := range res.Rooms.Invite {
		r := c.roomOf(roomID)
		if r.Membership == "" || r.Membership == "leave" {
			r.Membership = "invite"
		}
		for _, ev := range inv.InviteState.Events {
			if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == c.acct.UserID {
				r.Inviter = ev.Sender
			}
		}
		if err := c.saveRoom(ctx, r, nil); err != nil {
			return err
		}
	}
	entries := map[string][]byte{}
	for roomID, jr := range res.Rooms.Join {
		r := c.roomOf(roomID)
		if r.group == nil {
			// Joined on the server (this device joined, or another device
			// of the user did) but not in the group: Join takes it from
			// the Welcome.
			if r.Membership == "" || r.Membership == "invite" {
				r.Membership = "join"
				if err := roomEntry(r, entries); err != nil {
					return err
				}
			}
			continue
		}
		events := jr.Timeline.Events
		stop := r.LastEvent
		if stop == "" {
			stop = r.CommitID // just joined: what follows the Welcome's commit
		}
		if jr.Timeline.Limited && jr.Timeline.PrevBatch != "" && stop != "" {
			gap, err := c.fillGap(ctx, roomID, jr.Timeline.PrevBatch, stop)
			if err != nil {
				return err
			}
			events = append(gap, events...)
		}
		for _, raw := range events {
			if err := c.handleEvent(ctx, r, raw); err != nil {
				return err
			}
		}
		if err := roomEntry(r, entries); err != nil {
			return err
		}
	}
	c.acct.Since = res.NextBatch
	acct, err := json.Marshal(c.acct)
	if err != nil {
		return err
	}
	entries[keyAccount] = acct
	if err := c.store.Put(ctx, entries); err != nil {
		return err
	}
	for _, r := range c.rooms {
		if r.Membership == "join" && r.NeedsWelcome != "" && r.Welcome != nil {
			if err := c.joinFromWelcome(ctx, r); err != nil {
				c.log.Warn("rejoining from a new Welcome failed", "room", r.ID, "err", err)
			}
		}
	}
	if err := c.replenish(ctx, res.OTKCounts, res.UnusedFallback, res.OTKCounts != nil); err != nil {
		return err
	}
	if !c.redoing {
		c.redoing = true
		defer func() { c.redoing = false }()
		for _, r := range c.rooms {
			if err := c.redoLostAdds(ctx, r); err != nil {
				c.log.Warn("re-adding members lost to a fork failed", "room", r.ID, "err", err)
			}
			if err := c.commitProposals(ctx, r); err != nil {
				c.log.Warn("committing members' proposals failed", "room", r.ID, "err", err)
			}
		}
	}
	return nil
}

func (c *Client) receiveWelcome(ctx context.Context, sender string, content json.RawMessage) {
	var w struct {
		Algorithm string `json:"algorithm"`
		RoomID    string `json:"room_id"`
		Welcome   string `json:"welcome"`
		CommitID  string `json:"de.bwi.mls.commit_id"`
	}
	if err := json.Unmarshal(content, &w); err != nil || w.RoomID == "" || w.Algorithm != c.alg {
		c.log.Warn("ignoring a malformed Welcome", "sender", sender, "err", err)
		return
	}
	raw, err := b64.DecodeString(w.Welcome)
	if err != nil {
		c.log.Warn("ignoring a Welcome that is not base64", "sender", sender, "room", w.RoomID)
		return
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(raw); err != nil || m.Welcome == nil {
		c.log.Warn("ignoring a Welcome that is not an MLS Welcome", "sender", sender, "room", w.RoomID, "err", err)
		return
	}
	r := c.roomOf(w.RoomID)
	r.Welcome, r.WelcomeCommitID = raw, w.CommitID
	if err := c.saveRoom(ctx, r, nil); err != nil {
		c.log.Warn("storing a Welcome failed", "room", w.RoomID, "err", err)
	}
}

// Join joins a room the client was invited to, from the Welcome it
// received (syncing until both are there or ctx ends).
func (c *Client) Join(ctx context.Context, roomID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		r := c.rooms[roomID]
		if r != nil && r.Welcome != nil && (r.Membership == "invite" || r.Membership == "join") {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for the invite and Welcome of %s: %w", roomID, err)
		}
		if err := c.syncLocked(ctx, 1000); err != nil {
			return err
		}
	}
	r := c.rooms[roomID]
	joined := r.Membership == "join" // on the server already (another device)
	if !joined && r.WelcomeCommitID == "" {
		// The commit must be looked up in the room's history, which the
		// server shows to members only.
		if err := c.call(ctx, "POST", roomPath(roomID, "/join"), map[string]any{}, nil); err != nil {
			return fmt.Errorf("joining %s: %w", roomID, err)
		}
		joined = true
	}
	if err := c.joinFromWelcome(ctx, r); err != nil {
		return err
	}
	if !joined {
		if err := c.call(ctx, "POST", roomPath(roomID, "/join"), map[string]any{}, nil); err != nil {
			return fmt.Errorf("joining %s: %w", roomID, err)
		}
	}
	r.Membership = "join"
	if r.AuthData == nil {
		fm, err := c.fetchFedMap(ctx, roomID)
		if err != nil {
			return fmt.Errorf("reading the federation map of %s: %w", roomID, err)
		}
		r.AuthData = fm
	}
	return c.saveRoom(ctx, r, nil)
}

// joinFromWelcome makes the room's group from its stored Welcome; the
// key package it used is deleted in the same write (never used twice).
func (c *Client) joinFromWelcome(ctx context.Context, r *room) error {
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(r.Welcome); err != nil || m.Welcome == nil {
		return fmt.Errorf("reading the Welcome of %s: %v", r.ID, err)
	}
	used, kp, sec, err := c.keyPackageFor(ctx, m.Welcome)
	if err != nil {
		return fmt.Errorf("joining %s: %w", r.ID, err)
	}
	g, err := mls.JoinFromWelcome(m.Welcome, mls.JoinParams{KeyPackage: kp, Secrets: sec, Signer: c.sign, Config: c.groupConfig()})
	if err != nil {
		return fmt.Errorf("joining the group of %s from the Welcome: %w", r.ID, err)
	}
	if string(g.GroupID()) != r.ID {
		return fmt.Errorf("the Welcome for %s is for group %q", r.ID, g.GroupID())
	}
	commitID := r.WelcomeCommitID
	if commitID == "" {
		// A Welcome from a client that does not name the commit: find the
		// accepted commit that started the Welcome's epoch.
		if commitID, err = c.findCommit(ctx, r.ID, g.Epoch()-1); err != nil {
			return fmt.Errorf("the Welcome for %s does not name its commit: %w", r.ID, err)
		}
	}
	r.group, r.CommitID, r.Welcome, r.WelcomeCommitID = g, commitID, nil, ""
	r.NeedsWelcome, r.Kept, r.Own, r.Deferred = "", nil, nil, nil
	r.Chain = []chainLink{{CommitID: commitID, Epoch: g.Epoch() - 1}}
	r.AuthData = nil
	if fm, err := c.fetchFedMap(ctx, r.ID); err == nil {
		r.AuthData = fm
	}
	extra := map[string][]byte{}
	if used != "" {
		extra[used] = nil
	}
	return c.saveRoom(ctx, r, extra)
}

// findCommit pages back through the room's history for the accepted
// commit sent in epoch.
func (c *Client) findCommit(ctx context.Context, roomID string, epoch uint64) (string, error) {
	var found string
	err := c.pageBack(ctx, roomID, "", func(raw json.RawMessage) bool {
		var ev syncEvent
		if json.Unmarshal(raw, &ev) != nil || ev.Type != c.cfg.Version.CommitType() {
			return false
		}
		if _, m, err := mlsOf(&ev); err == nil && m.PrivateMessage.Epoch == epoch {
			found = ev.EventID
			return true
		}
		return false
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("no accepted commit of epoch %d in the room's history", epoch)
	}
	return found, nil
}

// fetchFedMap reads the federation map of the room's current commit:
// /state gives its content, whose MLS framing carries the map in the
// clear.
func (c *Client) fetchFedMap(ctx context.Context, roomID string) ([]byte, error) {
	var content struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := c.call(ctx, "GET", roomPath(roomID, "/state/"+c.cfg.Version.CommitType()+"/"), nil, &content); err != nil {
		return nil, err
	}
	raw, err := b64url.DecodeString(content.Ciphertext)
	if err != nil {
		return nil, err
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(raw); err != nil || m.PrivateMessage == nil {
		return nil, fmt.Errorf("the current commit is not an MLS PrivateMessage: %v", err)
	}
	return m.PrivateMessage.AuthenticatedData, nil
}

// MaxGapPages bounds how many /messages pages one look back reads.
const MaxGapPages = 100

// pageBack reads the room's events newest first with /messages, from
// the token from ("": the newest), until visit returns true, the history
// ends or MaxGapPages pages were read.
func (c *Client) pageBack(ctx context.Context, roomID, from string, visit func(json.RawMessage) bool) error {
	for range MaxGapPages {
		path := roomPath(roomID, "/messages?dir=b&limit=100")
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		var page struct {
			Chunk []json.RawMessage `json:"chunk"`
			End   string            `json:"end"`
		}
		if err := c.call(ctx, "GET", path, nil, &page); err != nil {
			return fmt.Errorf("reading the history of %s: %w", roomID, err)
		}
		for _, raw := range page.Chunk {
			if visit(raw) {
				return nil
			}
		}
		if page.End == "" || len(page.Chunk) == 0 {
			return nil
		}
		from = page.End
	}
	return nil
}

// fillGap pages /messages back from prevBatch until the event last (the
// last one the client processed) and returns the events in between,
// oldest first: a limited /sync timeline must not make the client miss
// commits.
func (c *Client) fillGap(ctx context.Context, roomID, prevBatch, last string) ([]json.RawMessage, error) {
	var back []json.RawMessage
	err := c.pageBack(ctx, roomID, prevBatch, func(raw json.RawMessage) bool {
		var ev struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(raw, &ev) == nil && ev.EventID == last {
			return true
		}
		back = append(back, raw)
		return false
	})
	slices.Reverse(back)
	return back, err
}

// handleEvent processes one timeline event of a joined room.
func (c *Client) handleEvent(ctx context.Context, r *room, raw json.RawMessage) error {
	var ev syncEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil
	}
	if ev.EventID != "" {
		r.LastEvent = ev.EventID
	}
	switch ev.Type {
	case c.cfg.Version.CommitType():
		return c.handleCommit(ctx, r, &ev)
	case roomversion.EventTypeEncrypted:
		c.handleMessage(r, &ev, raw, false)
	}
	return nil
}

// mlsOf decodes the MLS message in an event's content.
func mlsOf(ev *syncEvent) ([]byte, *mls.MLSMessage, error) {
	var content struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := json.Unmarshal(ev.Content, &content); err != nil {
		return nil, nil, fmt.Errorf("content: %w", err)
	}
	enc := b64url
	if ev.Type == roomversion.EventTypeEncrypted {
		enc = b64
	}
	wire, err := enc.DecodeString(content.Ciphertext)
	if err != nil {
		return nil, nil, fmt.Errorf("ciphertext is not base64: %w", err)
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(wire); err != nil {
		return nil, nil, err
	}
	if m.PrivateMessage == nil {
		return nil, nil, errors.New("not an MLS PrivateMessage")
	}
	return wire, &m, nil
}

func (r *room) inChain(id string) bool {
	for _, l := range r.Chain {
		if l.CommitID == id {
			return true
		}
	}
	return false
}

// keepCurrent keeps the state before a merge for security.window and
// forgets the kept states that are older than the window.
func (c *Client) keepCurrent(r *room) error {
	w := r.window()
	now := c.cfg.Now()
	r.Kept = slices.DeleteFunc(r.Kept, func(k keptState) bool { return now.Sub(k.At) > w })
	if w <= 0 {
		r.Kept = nil
		return nil
	}
	st, err := r.group.MarshalState()
	if err != nil {
		return err
	}
	r.Kept = append(r.Kept, keptState{CommitID: r.CommitID, Epoch: r.group.Epoch(), State: st, At: now})
	if len(r.Kept) > MaxKept {
		r.Kept = r.Kept[len(r.Kept)-MaxKept:]
	}
	return nil
}

func (r *room) linked(id string, epoch uint64) {
	r.Chain = append(r.Chain, chainLink{CommitID: id, Epoch: epoch})
	if len(r.Chain) > MaxChain {
		r.Chain = r.Chain[len(r.Chain)-MaxChain:]
	}
}

// handleCommit follows one accepted commit.
func (c *Client) handleCommit(ctx context.Context, r *room, ev *syncEvent) error {
	if r.inChain(ev.EventID) || r.Broken != nil {
		return nil
	}
	wire, m, err := mlsOf(ev)
	if err != nil {
		c.markBroken(r, ev, fmt.Sprintf("the accepted commit is malformed: %v", err))
		return nil
	}
	if r.NeedsWelcome != "" {
		return nil
	}
	epoch := m.PrivateMessage.Epoch
	if own := r.Own; own != nil && bytes.Equal(wire, own.Wire) {
		if err := c.keepCurrent(r); err != nil {
			return err
		}
		g, err := mls.LoadGroup(own.Post, c.groupConfig())
		if err != nil {
			return err
		}
		r.group, r.CommitID, r.AuthData, r.LastWelcome = g, ev.EventID, own.AuthData, own.Welcome
		r.linked(ev.EventID, epoch)
		if len(own.Adds) > 0 {
			if r.MyAdds == nil {
				r.MyAdds = map[string][]Invitee{}
			}
			r.MyAdds[ev.EventID] = own.Adds
		}
		if own.Outcome == "expired" {
			r.LostCommits = slices.DeleteFunc(r.LostCommits, func(id string) bool { return id == own.EventID })
		}
		own.Outcome, r.Own = "accepted", nil
		c.retryDeferred(r)
		return nil
	}
	switch {
	case epoch == r.group.Epoch():
		if err := c.applyCommit(r, ev, m); err != nil {
			c.markBroken(r, ev, err.Error())
		}
	case epoch < r.group.Epoch():
		c.rollBack(r, ev, m, epoch)
	default:
		r.NeedsWelcome = fmt.Sprintf("commit %s is for epoch %d but this client is at epoch %d: it missed commits", ev.EventID, epoch, r.group.Epoch())
	}
	c.retryDeferred(r)
	return nil
}

// applyCommit processes and merges another member's commit at the current
// epoch; this client's own commit in flight, if any, has lost.
func (c *Client) applyCommit(r *room, ev *syncEvent, m *mls.MLSMessage) error {
	rec, err := r.group.Process(m)
	if err != nil {
		return fmt.Errorf("the accepted commit cannot be processed: %v", err)
	}
	if rec.Commit == nil {
		return errors.New("the accepted m.mls.commit does not hold an MLS commit")
	}
	if err := c.keepCurrent(r); err != nil {
		return err
	}
	if err := r.group.Merge(rec.Commit); err != nil {
		return fmt.Errorf("merging the accepted commit: %v", err)
	}
	r.CommitID, r.AuthData = ev.EventID, rec.AuthenticatedData
	r.linked(ev.EventID, rec.Epoch)
	if r.Own != nil {
		if r.Own.Outcome == "" {
			r.LostCommits = append(r.LostCommits, r.Own.EventID)
		}
		r.Own.Outcome = "lost"
		r.Own = nil
	}
	if r.group.Removed() {
		r.NeedsWelcome = fmt.Sprintf("commit %s from %s removed this device from the group", ev.EventID, ev.Origin)
	}
	return nil
}

// rollBack handles an accepted commit for an epoch the client has already
// left: another branch won state resolution. Within security.window the
// client returns to the state it kept at that epoch and applies the
// winner; commits of its own on the dropped branch that added members are
// remembered so the members can be added again. Otherwise the client
// needs a new Welcome.
func (c *Client) rollBack(r *room, ev *syncEvent, m *mls.MLSMessage, epoch uint64) {
	now := c.cfg.Now()
	w := r.window()
	idx := -1
	for i, k := range r.Kept {
		if k.Epoch == epoch && now.Sub(k.At) <= w {
			idx = i
		}
	}
	if idx < 0 {
		r.NeedsWelcome = fmt.Sprintf("commit %s from %s won at epoch %d over this client's branch (now at epoch %d), and the state to apply it was not kept (security.window %s)",
			ev.EventID, ev.Origin, epoch, r.group.Epoch(), w)
		return
	}
	k := r.Kept[idx]
	g, err := mls.LoadGroup(k.State, c.groupConfig())
	if err != nil {
		r.NeedsWelcome = fmt.Sprintf("the state kept at epoch %d cannot be read: %v", epoch, err)
		return
	}
	var dropped []chainLink
	keep := r.Chain[:0:0]
	for _, l := range r.Chain {
		if l.Epoch >= epoch {
			dropped = append(dropped, l)
		} else {
			keep = append(keep, l)
		}
	}
	saved := *r
	r.group, r.CommitID, r.Chain, r.Kept = g, k.CommitID, keep, r.Kept[:idx]
	if err := c.applyCommit(r, ev, m); err != nil {
		*r = saved
		c.markBroken(r, ev, "after rolling back: "+err.Error())
		return
	}
	r.Rollbacks++
	for _, l := range dropped {
		if adds, ok := r.MyAdds[l.CommitID]; ok {
			r.LostAdds = append(r.LostAdds, adds...)
			delete(r.MyAdds, l.CommitID)
		}
	}
	c.log.Info("rolled back to a kept state and applied the winning commit", "room", r.ID, "epoch", epoch, "commit", ev.EventID, "dropped", len(dropped))
}

func (c *Client) markBroken(r *room, ev *syncEvent, reason string) {
	r.Broken = &Broken{EventID: ev.EventID, Origin: ev.Origin, Reason: reason}
	c.log.Warn("room broken by an accepted commit", "room", r.ID, "commit", ev.EventID, "origin", ev.Origin, "reason", reason)
}

// handleMessage decrypts one m.room.encrypted event or records why it
// cannot; a message for an epoch the client has not reached is deferred
// and tried again after each commit.
func (c *Client) handleMessage(r *room, ev *syncEvent, raw json.RawMessage, retry bool) {
	if _, own := ev.Unsigned["transaction_id"]; own {
		return // this device's own message, recorded when it was sent
	}
	lost, _ := ev.Unsigned["de.bwi.mls.lost_fork"].(bool)
	_, m, err := mlsOf(ev)
	if err != nil {
		r.undecryptable(ev, 0, ReasonMalformed, err.Error())
		return
	}
	epoch := m.PrivateMessage.Epoch
	if r.NeedsWelcome != "" || r.group == nil {
		r.undecryptable(ev, epoch, ReasonNotMember, "this client is out of the group: "+r.NeedsWelcome)
		return
	}
	rec, err := r.group.Process(m)
	if err == nil && rec.Application != nil {
		msg := Message{EventID: ev.EventID, TS: ev.TS, Epoch: epoch, LostFork: lost}
		var pt struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(rec.Application, &pt) == nil {
			msg.Type, msg.Content = pt.Type, pt.Content
		}
		for _, mem := range r.group.Members() {
			if mem.LeafIndex == rec.Sender.LeafIndex {
				if id, err := mem.LeafNode.MatrixIdentity(); err == nil {
					msg.Sender, msg.Device = id.UserID, id.DeviceID
				}
			}
		}
		r.addMessage(msg)
		return
	}
	if err == nil && rec.Proposal != nil {
		return // cached by the group; committed by commitProposals
	}
	detail := "not an application message"
	if err != nil {
		detail = err.Error()
	}
	switch {
	case lost:
		r.undecryptable(ev, epoch, ReasonLostFork, "sent on a fork that lost state resolution: "+detail)
	case epoch < r.group.Epoch():
		r.undecryptable(ev, epoch, ReasonEpochGone, fmt.Sprintf("epoch %d is older than the keys kept (now at %d): %s", epoch, r.group.Epoch(), detail))
	case !retry && len(r.Deferred) < MaxDeferred:
		r.Deferred = append(r.Deferred, raw)
	default:
		r.undecryptable(ev, epoch, ReasonNotMember, fmt.Sprintf("this client's group at epoch %d cannot read it: %s", r.group.Epoch(), detail))
	}
}

// retryDeferred tries the deferred messages again after a commit: those
// still beyond the group's epoch stay deferred.
func (c *Client) retryDeferred(r *room) {
	if len(r.Deferred) == 0 || r.group == nil {
		return
	}
	pending := r.Deferred
	r.Deferred = nil
	for _, raw := range pending {
		var ev syncEvent
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		if _, m, err := mlsOf(&ev); err == nil && m.PrivateMessage.Epoch > r.group.Epoch() {
			r.Deferred = append(r.Deferred, raw)
			continue
		}
		c.handleMessage(r, &ev, raw, true)
	}
}

func (r *room) undecryptable(ev *syncEvent, epoch uint64, reason, detail string) {
	for _, u := range r.Undecryptable {
		if u.EventID == ev.EventID {
			return
		}
	}
	r.Undecryptable = append(r.Undecryptable, Undecryptable{EventID: ev.EventID, Origin: ev.Origin, Epoch: epoch, Reason: reason, Detail: detail})
}

// redoLostAdds adds again, with new Welcomes, the members this client
// added by commits that lost to a fork.
func (c *Client) redoLostAdds(ctx context.Context, r *room) error {
	if len(r.LostAdds) == 0 || r.Membership != "join" || r.NeedsWelcome != "" || r.Broken != nil {
		return nil
	}
	byUser := map[string][]Invitee{}
	var users []string
	present := map[Invitee]bool{}
	for _, m := range r.group.Members() {
		if id, err := m.LeafNode.MatrixIdentity(); err == nil {
			present[Invitee{id.UserID, id.DeviceID}] = true
		}
	}
	for _, a := range r.LostAdds {
		if present[a] {
			continue
		}
		if byUser[a.UserID] == nil {
			users = append(users, a.UserID)
		}
		byUser[a.UserID] = append(byUser[a.UserID], a)
	}
	r.LostAdds = nil
	if err := c.saveRoom(ctx, r, nil); err != nil {
		return err
	}
	slices.Sort(users)
	for _, u := range users {
		if err := c.invite(ctx, r.ID, []string{u}, byUser[u], false); err != nil {
			r.LostAdds = append(r.LostAdds, byUser[u]...)
			_ = c.saveRoom(ctx, r, nil)
			return fmt.Errorf("adding %s again: %w", u, err)
		}
		c.log.Info("added again a member lost to a fork", "room", r.ID, "user", u)
	}
	return nil
}
