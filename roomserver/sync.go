package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// SyncRequest is GET /sync.
type SyncRequest struct {
	UserID, DeviceID string
	// Since is the previous response's NextBatch, "" for an initial sync.
	Since string
	// Timeout is how long to wait for something new when there is
	// nothing.
	Timeout time.Duration
	// FullState returns every room's state, not only changes.
	FullState bool
	// TimelineLimit caps each room's timeline (default 20); a filter's
	// room.timeline.limit overrides it.
	TimelineLimit int
	// Filter is a filter ID of the user's or an inline filter (JSON).
	Filter string
}

// SyncResponse is what /sync returns, before client-API formatting.
type SyncResponse struct {
	NextBatch string
	Join      map[string]*JoinedRoom
	Invite    map[string]*InvitedRoom
	Leave     map[string]*LeftRoom
	// ToDevice are the device's to-device messages since the last sync.
	ToDevice []storage.ToDeviceMessage
	// OneTimeKeyCounts counts the device's one-time key packages per
	// algorithm; UnusedFallbackTypes lists its unused fallback algorithms.
	OneTimeKeyCounts    map[string]int
	UnusedFallbackTypes []string
	// DeviceListsChanged lists users whose device keys changed.
	DeviceListsChanged []string
}

// JoinedRoom is one room in rooms.join.
type JoinedRoom struct {
	// State is create + current commit for an initial or full-state sync
	// and a newly joined room; otherwise empty (commits come in the
	// timeline).
	State     []ClientEvent
	Timeline  []ClientEvent
	Limited   bool
	PrevBatch string
}

// InvitedRoom is one room in rooms.invite (SPEC-NOTES §11).
type InvitedRoom struct {
	Create  ClientEvent
	Inviter string
	// Invitee is the syncing user.
	Invitee string
}

// LeftRoom is one room in rooms.leave.
type LeftRoom struct{}

// syncToken is the position in each stream.
type syncToken = storage.StreamPositions

func (s *Server) formatSyncToken(t syncToken) string {
	return fmt.Sprintf("s%d_%d_%d_%d", t.Events, t.ToDevice, t.Memberships, t.DeviceKeys)
}

func parseSyncToken(tok string) (syncToken, error) {
	rest, ok := strings.CutPrefix(tok, "s")
	parts := strings.Split(rest, "_")
	if !ok || len(parts) != 4 {
		return syncToken{}, fmt.Errorf("malformed token %q", tok)
	}
	var n [4]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return syncToken{}, fmt.Errorf("malformed token %q", tok)
		}
		n[i] = v
	}
	return syncToken{Events: n[0], ToDevice: n[1], Memberships: n[2], DeviceKeys: n[3]}, nil
}

// maxToDevicePerSync caps the to-device messages of one response.
const maxToDevicePerSync = 100

// Sync answers /sync: everything new for the device since the token, or,
// when there is nothing, waits up to Timeout for something (woken by the
// store's change notifications, across processes).
func (s *Server) Sync(ctx context.Context, req SyncRequest) (*SyncResponse, error) {
	var since syncToken
	initial := req.Since == ""
	if !initial {
		t, err := parseSyncToken(req.Since)
		if err != nil {
			return nil, matrixerr.InvalidParam("since: %v", err)
		}
		since = t
	}
	if req.Filter != "" {
		limit, err := s.timelineLimit(ctx, req.UserID, req.Filter)
		if err != nil {
			return nil, err
		}
		if limit > 0 {
			req.TimelineLimit = limit
		}
	}
	if req.TimelineLimit <= 0 {
		req.TimelineLimit = 20
	}
	req.TimelineLimit = min(req.TimelineLimit, maxMessagesLimit)
	deadline := time.NewTimer(req.Timeout)
	defer deadline.Stop()
	for {
		// Register before reading, so a write between the read and the
		// wait still wakes this poll.
		rooms, err := s.JoinedRooms(ctx, req.UserID)
		if err != nil {
			return nil, err
		}
		keys := append(rooms, req.UserID)
		w := s.hub.wait(keys...)
		resp, empty, err := s.syncOnce(ctx, req, since, initial, rooms)
		if err != nil || !empty || req.Timeout <= 0 || initial || req.FullState {
			s.hub.release(w)
			return resp, err
		}
		for {
			select {
			case <-w.ch:
			case <-deadline.C:
				s.hub.release(w)
				return resp, nil
			case <-ctx.Done():
				s.hub.release(w)
				return nil, ctx.Err()
			}
			// Keep listening while this wake is handled.
			next := s.hub.wait(keys...)
			fired := s.hub.release(w)
			w = next
			if fired["*"] || fired[req.UserID] {
				// Memberships, to-device messages or keys changed:
				// everything is read again.
				s.hub.release(w)
				break
			}
			// Only room events: the rest of the empty answer stands.
			full, found, err := s.syncEvents(ctx, req, since, resp, rooms)
			if err != nil || found {
				s.hub.release(w)
				return full, err
			}
		}
	}
}

// LongPolls is the number of /sync requests of this process waiting for
// something new (for metrics, and for benchmarks that measure delivery to
// waiting polls).
func (s *Server) LongPolls() int { return s.hub.waiting() }

// syncEvents is the answer to a long-poll woken by room events only: the
// timelines of the joined rooms since the token, on top of empty (the
// answer found empty before the wait, whose other parts still hold: every
// change to them notifies the user). found is false when the rooms have
// nothing new.
func (s *Server) syncEvents(ctx context.Context, req SyncRequest, since syncToken, empty *SyncResponse, rooms []string) (*SyncResponse, bool, error) {
	pos, err := s.st.MaxStreamPositions(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("sync: stream positions: %w", err)
	}
	next, err := parseSyncToken(empty.NextBatch)
	if err != nil {
		return nil, false, err
	}
	next.Events = max(pos.Events, next.Events)
	out := *empty
	out.Join = map[string]*JoinedRoom{}
	for _, roomID := range rooms {
		jr, err := s.joinedRoom(ctx, req, roomID, since.Events, next.Events, false)
		if err != nil {
			return nil, false, err
		}
		if len(jr.Timeline) > 0 {
			out.Join[roomID] = jr
		}
	}
	out.NextBatch = s.formatSyncToken(next)
	return &out, len(out.Join) > 0, nil
}

// syncOnce builds one response; empty tells whether it holds nothing new.
func (s *Server) syncOnce(ctx context.Context, req SyncRequest, since syncToken, initial bool, joined []string) (*SyncResponse, bool, error) {
	pos, err := s.st.MaxStreamPositions(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("sync: stream positions: %w", err)
	}
	resp := &SyncResponse{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{}}
	next := pos
	empty := true

	// Memberships: all of them on an initial sync, else the changes.
	var changed []storage.Membership
	if initial {
		// Joins and invites: an initial sync shows no left rooms.
		for _, state := range []string{Join, Invite} {
			ms, merr := s.st.Memberships(ctx, "", req.UserID, state)
			if merr != nil {
				err = merr
				break
			}
			changed = append(changed, ms...)
		}
	} else {
		changed, err = s.st.MembershipsSince(ctx, req.UserID, since.Memberships)
	}
	if err != nil {
		return nil, false, fmt.Errorf("sync: memberships: %w", err)
	}
	newlyJoined := map[string]storage.Membership{}
	for _, m := range changed {
		if m.Pos > next.Memberships {
			next.Memberships = m.Pos
		}
		switch m.State {
		case Join:
			newlyJoined[m.RoomID] = m
		case Invite:
			ir, err := s.invited(ctx, m)
			if err != nil {
				return nil, false, err
			}
			resp.Invite[m.RoomID] = ir
			empty = false
		case Leave:
			if !initial {
				resp.Leave[m.RoomID] = &LeftRoom{}
				empty = false
			}
		}
	}
	// Rooms joined after the caller listed them are in newlyJoined.
	for roomID := range newlyJoined {
		if !slices.Contains(joined, roomID) {
			joined = append(joined, roomID)
		}
	}
	for _, roomID := range joined {
		jm, isNew := newlyJoined[roomID]
		from := since.Events
		if initial || isNew {
			from = jm.EventsPos
		}
		jr, err := s.joinedRoom(ctx, req, roomID, from, pos.Events, initial || isNew || req.FullState)
		if err != nil {
			return nil, false, err
		}
		if len(jr.Timeline) > 0 || len(jr.State) > 0 {
			resp.Join[roomID] = jr
			empty = false
		}
	}

	// To-device messages: delivered ones (up to the since token) are
	// deleted; the next token is the last one returned.
	if since.ToDevice > 0 && s.needsDelete(req.UserID, req.DeviceID, since.ToDevice) {
		if err := s.st.DeleteToDevice(ctx, req.UserID, req.DeviceID, since.ToDevice); err != nil {
			return nil, false, fmt.Errorf("sync: deleting delivered to-device messages: %w", err)
		}
		s.deleted(req.UserID, req.DeviceID, since.ToDevice)
	}
	msgs, err := s.st.ToDeviceMessages(ctx, req.UserID, req.DeviceID, since.ToDevice, maxToDevicePerSync)
	if err != nil {
		return nil, false, fmt.Errorf("sync: to-device messages: %w", err)
	}
	resp.ToDevice = msgs
	if len(msgs) > 0 {
		empty = false
		last := msgs[len(msgs)-1].Pos
		if len(msgs) == maxToDevicePerSync || last > next.ToDevice {
			next.ToDevice = last
		}
	}
	if next.ToDevice < since.ToDevice {
		next.ToDevice = since.ToDevice
	}

	// Device lists: the user, local users joined to a room the user is
	// joined to, and remote users whose server is in `servers` of the
	// current commit of such a room (the server knows no MLS membership:
	// the servers of the room are what it can tell; docs/SPEC-DEVIATIONS.md).
	users, keysPos, err := s.st.DeviceKeyChangesSince(ctx, since.DeviceKeys)
	if err != nil {
		return nil, false, fmt.Errorf("sync: device list changes: %w", err)
	}
	next.DeviceKeys = max(pos.DeviceKeys, keysPos, since.DeviceKeys)
	if !initial && len(users) > 0 {
		shared, err := s.sharedUsers(ctx, req.UserID, joined)
		if err != nil {
			return nil, false, err
		}
		var servers map[string]bool // read only when a remote user changed
		for _, u := range users {
			if shared[u] {
				resp.DeviceListsChanged = append(resp.DeviceListsChanged, u)
				continue
			}
			srv := roomversion.Domain(u)
			if srv == "" || srv == s.cfg.ServerName {
				continue
			}
			if servers == nil {
				if servers, err = s.roomServers(ctx, joined); err != nil {
					return nil, false, fmt.Errorf("sync: %w", err)
				}
			}
			if servers[srv] {
				resp.DeviceListsChanged = append(resp.DeviceListsChanged, u)
			}
		}
		if len(resp.DeviceListsChanged) > 0 {
			empty = false
		}
	}

	if resp.OneTimeKeyCounts, err = s.st.CountOneTimeKeyPackages(ctx, req.UserID, req.DeviceID); err != nil {
		return nil, false, fmt.Errorf("sync: key package counts: %w", err)
	}
	if resp.UnusedFallbackTypes, err = s.st.UnusedFallbackAlgorithms(ctx, req.UserID, req.DeviceID); err != nil {
		return nil, false, fmt.Errorf("sync: fallback key packages: %w", err)
	}
	if !initial {
		next.Events = max(next.Events, since.Events)
		next.Memberships = max(next.Memberships, since.Memberships)
	}
	resp.NextBatch = s.formatSyncToken(next)
	return resp, empty, nil
}

// joinedRoom builds one room's timeline (events in (from, to]) and state.
func (s *Server) joinedRoom(ctx context.Context, req SyncRequest, roomID string, from, to int64, withState bool) (*JoinedRoom, error) {
	jr := &JoinedRoom{}
	if withState {
		st, err := s.State(ctx, req.UserID, roomID)
		if err != nil {
			return nil, err
		}
		jr.State = st
	}
	if to <= from {
		return jr, nil
	}
	// The newest events first, so a long gap gives the latest page.
	evs, err := s.st.RoomEvents(ctx, roomID, to+1, from, req.TimelineLimit+1, true)
	if err != nil {
		return nil, fmt.Errorf("sync: timeline of %s: %w", roomID, err)
	}
	if len(evs) > req.TimelineLimit {
		jr.Limited = true
		evs = evs[:req.TimelineLimit]
	}
	slices.Reverse(evs)
	if len(evs) > 0 {
		jr.PrevBatch = eventsToken(evs[0].NID - 1)
	}
	for _, se := range evs {
		if ok, _ := deliverable(se); !ok {
			continue
		}
		ce, err := s.clientEvent(ctx, se, req.UserID, req.DeviceID, true)
		if err != nil {
			return nil, err
		}
		jr.Timeline = append(jr.Timeline, ce)
	}
	return jr, nil
}

// invited builds the stripped invite state of one invite.
func (s *Server) invited(ctx context.Context, m storage.Membership) (*InvitedRoom, error) {
	cur, err := s.st.CurrentState(ctx, m.RoomID)
	if err != nil {
		return nil, fmt.Errorf("sync: invite to %s: %w", m.RoomID, err)
	}
	create, err := s.st.Event(ctx, cur.CreateID)
	if err != nil {
		return nil, fmt.Errorf("sync: invite to %s: create event: %w", m.RoomID, err)
	}
	return &InvitedRoom{Create: ClientEvent{Event: create.Event}, Inviter: m.Inviter, Invitee: m.UserID}, nil
}

// sharedUsers is the set of local users joined to one of rooms, and the
// user.
func (s *Server) sharedUsers(ctx context.Context, userID string, rooms []string) (map[string]bool, error) {
	out := map[string]bool{userID: true}
	for _, r := range rooms {
		ms, err := s.st.Memberships(ctx, r, "", Join)
		if err != nil {
			return nil, fmt.Errorf("sync: members of %s: %w", r, err)
		}
		for _, m := range ms {
			out[m.UserID] = true
		}
	}
	return out, nil
}

// timelineLimit reads room.timeline.limit of a filter ID or inline filter
// (0 when the filter sets none).
func (s *Server) timelineLimit(ctx context.Context, userID, filter string) (int, error) {
	raw := []byte(filter)
	if !strings.HasPrefix(filter, "{") {
		b, err := s.st.Filter(ctx, userID, filter)
		if errors.Is(err, storage.ErrNotFound) {
			return 0, matrixerr.NotFound("unknown filter %s", filter)
		}
		if err != nil {
			return 0, fmt.Errorf("sync: reading filter %s: %w", filter, err)
		}
		raw = b
	}
	var f struct {
		Room struct {
			Timeline struct {
				Limit *int `json:"limit"`
			} `json:"timeline"`
		} `json:"room"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, matrixerr.InvalidParam("filter: %v", err)
	}
	if l := f.Room.Timeline.Limit; l != nil {
		if *l < 1 {
			return 0, matrixerr.InvalidParam("filter: room.timeline.limit must be at least 1")
		}
		return *l, nil
	}
	return 0, nil
}

// needsDelete tells whether the device's inbox may still hold messages up
// to pos: not when this process deleted up to pos or beyond already (a
// /sync repeating its token deletes nothing new).
func (s *Server) needsDelete(userID, deviceID string, pos int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.toDeviceDeleted[userID+"|"+deviceID] < pos
}

// deleted records that the device's inbox was emptied up to pos.
func (s *Server) deleted(userID, deviceID string, pos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.toDeviceDeleted) >= maxDeletedEntries {
		clear(s.toDeviceDeleted)
	}
	s.toDeviceDeleted[userID+"|"+deviceID] = pos
}

// maxDeletedEntries bounds the to-device deletion cache.
const maxDeletedEntries = 100_000
