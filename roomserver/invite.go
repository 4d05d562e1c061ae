package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// ReceivedInvite is a remote invite as it arrives over federation
// (SPEC-NOTES §12): the PDUs in federation format.
type ReceivedInvite struct {
	RoomID      string
	RoomVersion string
	Inviter     string
	Invitee     string
	Create      json.RawMessage
	Commit      json.RawMessage
}

// ReceiveInvite takes in an invite that origin sent for a local user
// (SPEC-NOTES §7, §12). The invitee must be local, origin must be the
// inviter's server and in servers of the commit, both PDUs must be valid
// events of the room signed by their origins, and this server must be in
// servers of the commit (403 otherwise: the inviter must first commit a
// servers list that holds it). The room's create event and commit chain
// are then fetched from origin and taken in like any received events, so
// the invitee sees the invite in /sync and can join.
func (s *Server) ReceiveInvite(ctx context.Context, origin string, inv ReceivedInvite) error {
	if s.cfg.Keys == nil {
		return errors.New("roomserver: receiving invites needs Config.Keys")
	}
	if !validUserID(inv.Invitee) || roomversion.Domain(inv.Invitee) != s.cfg.ServerName {
		return matrixerr.Forbidden("invitee %q is not a user of this server", inv.Invitee)
	}
	if !validUserID(inv.Inviter) || roomversion.Domain(inv.Inviter) != origin {
		return matrixerr.Forbidden("inviter %q is not a user of the sending server %s", inv.Inviter, origin)
	}
	v, err := roomversion.Lookup(inv.RoomVersion)
	if err != nil {
		return matrixerr.New(400, matrixerr.CodeUnsupportedRoomVersion, "room_version %q is not an MLS room version", inv.RoomVersion)
	}
	create, err := s.invitePDU(ctx, v, "create_event", inv.Create, inv.RoomID)
	if err != nil {
		return err
	}
	commit, err := s.invitePDU(ctx, v, "commit_event", inv.Commit, inv.RoomID)
	if err != nil {
		return err
	}
	if create.Kind() != roomversion.EventCreate || commit.Kind() != roomversion.EventCommit {
		return matrixerr.BadJSON("create_event must be the room's create event and commit_event a commit")
	}
	if !slices.Contains(commit.AuthEventIDs(), create.EventID()) {
		return matrixerr.BadJSON("commit_event does not name create_event among its auth events")
	}
	fm, err := commit.FederationMap()
	if err != nil {
		return matrixerr.BadJSON("commit_event: %v", err)
	}
	if !slices.Contains(fm.Federation.Servers, origin) {
		return matrixerr.Forbidden("the inviting server %s is not in servers of the commit", origin)
	}
	if !slices.Contains(fm.Federation.Servers, s.cfg.ServerName) {
		return matrixerr.Forbidden("this server (%s) is not in servers of the commit: the inviter must first commit a servers list that holds it", s.cfg.ServerName)
	}
	prev, err := s.membership(ctx, inv.RoomID, inv.Invitee)
	if err != nil {
		return err
	}
	if prev.State == Join {
		return matrixerr.Forbidden("%s is already joined to %s", inv.Invitee, inv.RoomID)
	}
	// The invite is what lets the room's events in (SPEC-NOTES §8); if
	// the room cannot be taken in, the invite is taken back.
	if err := s.setMembership(ctx, inv.RoomID, inv.Invitee, Invite, inv.Inviter); err != nil {
		return err
	}
	results, err := s.ReceivePDUs(ctx, origin, []json.RawMessage{inv.Create, inv.Commit})
	if err == nil {
		for _, r := range results {
			if r.Error != "" || r.Rejected || r.SoftFailed {
				err = matrixerr.Forbidden("the invite's %s could not be taken in: %s", r.EventID, r.Error)
				break
			}
		}
	}
	if err != nil {
		// Take the invite back: the previous membership, or a leave where
		// there was none (memberships are never deleted).
		restore := prev
		if restore.State == "" {
			restore = storage.Membership{RoomID: inv.RoomID, UserID: inv.Invitee, State: Leave, UpdatedTS: s.now().UnixMilli()}
		}
		if rerr := s.st.SetMembership(ctx, restore); rerr != nil {
			return fmt.Errorf("taking back the invite of %s after %v: %w", inv.Invitee, err, rerr)
		}
		return err
	}
	return nil
}

// invitePDU parses and verifies one PDU of an invite.
func (s *Server) invitePDU(ctx context.Context, v roomversion.Version, field string, raw json.RawMessage, roomID string) (*roomversion.Event, error) {
	if len(raw) == 0 {
		return nil, matrixerr.BadJSON("%s is required", field)
	}
	ev, err := authrules.ParseEvent(ctx, v, raw)
	if err != nil {
		return nil, matrixerr.BadJSON("%s: %v", field, err)
	}
	if ev.RoomID().String() != roomID {
		return nil, matrixerr.BadJSON("%s is an event of room %s, not %s", field, ev.RoomID().String(), roomID)
	}
	if err := roomversion.VerifySignature(ctx, ev, s.cfg.Keys); err != nil {
		return nil, matrixerr.Forbidden("%s: %v", field, err)
	}
	return ev, nil
}
