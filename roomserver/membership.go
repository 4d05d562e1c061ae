package roomserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

// Membership states (SPEC-NOTES §7).
const (
	Invite = "invite"
	Join   = "join"
	Leave  = "leave"
)

// CreateRoomRequest is POST /createRoom for an MLS room version, after the
// client API has refused the fields MLS rooms do not have (SPEC-NOTES §11).
type CreateRoomRequest struct {
	UserID  string
	Version roomversion.Version
	// Algorithm is creation_content.algorithm.
	Algorithm string
	// Federate is creation_content["m.federate"] (default true).
	Federate bool
}

// CreateRoom sends only the create event (the creator's client sends the
// epoch-0 commit) and joins the creator. It returns the room ID.
func (s *Server) CreateRoom(ctx context.Context, req CreateRoomRequest) (string, error) {
	v := req.Version
	if !v.Known() {
		return "", matrixerr.UnsupportedRoomVersion("room version %q is not an MLS room version this server supports", string(v))
	}
	if req.Algorithm == "" {
		return "", matrixerr.BadJSON("creation_content.algorithm is required for MLS rooms")
	}
	cs, err := v.ParseAlgorithm(req.Algorithm)
	if err != nil {
		return "", matrixerr.BadJSON("creation_content.algorithm: %v", err)
	}
	content, err := v.CreateContentJSON(cs, req.Federate)
	if err != nil {
		return "", fmt.Errorf("creating room: create content: %w", err)
	}
	var rnd [18]byte
	if _, err := s.cfg.Rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("creating room: random room ID: %w", err)
	}
	roomID := "!" + base64.RawURLEncoding.EncodeToString(rnd[:]) + ":" + s.cfg.ServerName
	empty := ""
	b := &roomversion.Builder{Version: v, RoomID: roomID, Type: roomversion.EventTypeCreate, StateKey: &empty,
		Content: content, Origin: s.cfg.ServerName, Timestamp: s.now()}
	ev, err := b.Build(ctx, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return "", fmt.Errorf("creating room: building the create event: %w", err)
	}
	if err := s.st.CreateRoom(ctx, storage.Room{RoomID: roomID, Version: v, Algorithm: req.Algorithm}); err != nil {
		return "", fmt.Errorf("creating room %s: %w", roomID, err)
	}
	if _, err := s.st.StoreEvent(ctx, ev, storage.StoreEventOptions{
		CurrentState: &storage.RoomState{CreateID: ev.EventID()}, ExpectCurrent: &storage.RoomState{},
	}); err != nil {
		return "", fmt.Errorf("creating room %s: storing the create event: %w", roomID, err)
	}
	if err := s.setMembership(ctx, roomID, req.UserID, Join, ""); err != nil {
		return "", err
	}
	return roomID, nil
}

// setMembership records a membership and wakes the user's /sync.
// A join records the events position it happened at: the user's
// timeline starts after it (SPEC-NOTES §11).
func (s *Server) setMembership(ctx context.Context, roomID, userID, state, inviter string) error {
	pos, err := s.st.MaxStreamPositions(ctx)
	if err != nil {
		return fmt.Errorf("recording %s of %s in %s: %w", state, userID, roomID, err)
	}
	if err := s.st.SetMembership(ctx, storage.Membership{RoomID: roomID, UserID: userID, State: state,
		Inviter: inviter, UpdatedTS: s.now().UnixMilli(), EventsPos: pos.Events}); err != nil {
		return fmt.Errorf("recording %s of %s in %s: %w", state, userID, roomID, err)
	}
	s.notify(ctx, userID)
	return nil
}

// membership returns a user's membership state of a room, "" if none.
func (s *Server) membership(ctx context.Context, roomID, userID string) (storage.Membership, error) {
	m, err := s.st.Membership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Membership{}, nil
	}
	if err != nil {
		return storage.Membership{}, fmt.Errorf("reading membership of %s in %s: %w", userID, roomID, err)
	}
	return m, nil
}

// requireJoined refuses users not joined to the room: 404 for a room the
// server does not know, 403 otherwise.
func (s *Server) requireJoined(ctx context.Context, roomID, userID string) error {
	m, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m.State == Join {
		return nil
	}
	if _, err := s.st.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return matrixerr.NotFound("unknown room %s", roomID)
	} else if err != nil {
		return fmt.Errorf("loading room %s: %w", roomID, err)
	}
	return matrixerr.Forbidden("%s is not joined to %s", userID, roomID)
}

// InviteUser records an invite (SPEC-NOTES §7, §12): the inviter must be
// joined, and the invitee's server must be in servers of the current
// commit (403 otherwise: commit a servers list that holds it first). A
// remote invitee goes through Remote; without federation it is refused.
func (s *Server) InviteUser(ctx context.Context, inviter, roomID, invitee string) error {
	if !validUserID(invitee) {
		return matrixerr.BadJSON("user_id: %q is not a Matrix user ID", invitee)
	}
	if err := s.requireJoined(ctx, roomID, inviter); err != nil {
		return err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	fed, err := r.federation()
	if err != nil {
		return err
	}
	srv := roomversion.Domain(invitee)
	if !slices.Contains(fed.Servers, srv) {
		return matrixerr.Forbidden("%s's server %s is not in servers of the room's current commit: commit a servers list that holds it first", invitee, srv)
	}
	if srv != s.cfg.ServerName {
		if s.cfg.Remote == nil {
			return matrixerr.Forbidden("%s is on another server (%s) and this server does not federate", invitee, srv)
		}
		return s.cfg.Remote.Invite(ctx, RemoteInvite{RoomVersion: r.info.Version, Inviter: inviter, Invitee: invitee,
			Create: r.mem.Create(), Commit: r.mem.Commit()})
	}
	m, err := s.membership(ctx, roomID, invitee)
	if err != nil {
		return err
	}
	if m.State == Join {
		return matrixerr.Forbidden("%s is already joined to %s", invitee, roomID)
	}
	return s.setMembership(ctx, roomID, invitee, Invite, inviter)
}

// JoinRoom joins a local user to a room they are invited to (or joined
// already). Room aliases do not exist for MLS rooms (404). Joining a room
// this server does not hold needs federation.
func (s *Server) JoinRoom(ctx context.Context, userID, roomIDOrAlias string) (string, error) {
	if strings.HasPrefix(roomIDOrAlias, "#") {
		return "", matrixerr.NotFound("unknown room alias %s (MLS rooms have no aliases)", roomIDOrAlias)
	}
	roomID := roomIDOrAlias
	if !strings.HasPrefix(roomID, "!") || !strings.Contains(roomID, ":") {
		return "", matrixerr.InvalidParam("%q is not a room ID", roomID)
	}
	m, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return "", err
	}
	switch m.State {
	case Join:
		return roomID, nil
	case Invite:
	default:
		if _, err := s.st.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
			return "", matrixerr.NotFound("unknown room %s", roomID)
		}
		return "", matrixerr.Forbidden("%s is not invited to %s", userID, roomID)
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		if me := matrixerr.As(err); me != nil && me.Code == matrixerr.CodeNotFound && s.cfg.Remote == nil {
			return "", matrixerr.Forbidden("room %s is on another server and this server does not federate", roomID)
		}
		return "", err
	}
	fed, err := r.federation()
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	if !slices.Contains(fed.Servers, s.cfg.ServerName) {
		return "", matrixerr.Forbidden("this server is no longer in servers of the room's current commit: the invite is stale")
	}
	if err := s.setMembership(ctx, roomID, userID, Join, ""); err != nil {
		return "", err
	}
	return roomID, nil
}

// LeaveRoom stops delivery of the room to the user (SPEC-NOTES §7); an
// invite is declined the same way.
func (s *Server) LeaveRoom(ctx context.Context, userID, roomID string) error {
	m, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m.State != Join && m.State != Invite {
		if _, err := s.st.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
			return matrixerr.NotFound("unknown room %s", roomID)
		}
		return matrixerr.Forbidden("%s is not in %s", userID, roomID)
	}
	return s.setMembership(ctx, roomID, userID, Leave, "")
}

// JoinedRooms lists the rooms a user is joined to.
func (s *Server) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	ms, err := s.st.Memberships(ctx, "", userID, Join)
	if err != nil {
		return nil, fmt.Errorf("listing rooms of %s: %w", userID, err)
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.RoomID)
	}
	return out, nil
}

// validUserID checks "@localpart:server" with a valid server name.
func validUserID(id string) bool {
	local, srv, ok := strings.Cut(id, ":")
	return ok && len(id) <= 255 && strings.HasPrefix(local, "@") && len(local) > 1 && fedmap.ValidServerName(srv) == nil
}
