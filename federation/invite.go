package federation

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
)

// invitePath is the remote invite endpoint of SPEC-NOTES §12 (under
// /_matrix/federation).
const invitePath = "/unstable/de.bwi.mls/invite/{roomId}/{txnId}"

// inviteBody is PUT /_matrix/federation/unstable/de.bwi.mls/invite/{roomId}/{txnId}.
type inviteBody struct {
	RoomVersion string          `json:"room_version"`
	Inviter     string          `json:"inviter"`
	Invitee     string          `json:"invitee"`
	CreateEvent json.RawMessage `json:"create_event"`
	CommitEvent json.RawMessage `json:"commit_event"`
}

// invite handles a remote invite: the room logic checks it (SPEC-NOTES
// §12: the origin is the inviter's server and in servers of the commit,
// the invitee is local, both PDUs are valid, this server is in servers)
// and takes the room in. Retrying the same invite is harmless.
func (a *API) invite(rq *request) (any, error) {
	if a.cfg.Rooms == nil {
		return nil, matrixerr.New(http.StatusNotImplemented, matrixerr.CodeUnrecognized, "this server does not take invites")
	}
	var b inviteBody
	if err := rq.decode(&b); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"room_version": b.RoomVersion, "inviter": b.Inviter, "invitee": b.Invitee} {
		if v == "" {
			return nil, matrixerr.BadJSON("%s is required", name)
		}
	}
	err := a.cfg.Rooms.ReceiveInvite(rq.Context(), rq.origin, roomserver.ReceivedInvite{
		RoomID: rq.vars["roomId"], RoomVersion: b.RoomVersion, Inviter: b.Inviter, Invitee: b.Invitee,
		Create: b.CreateEvent, Commit: b.CommitEvent})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// Invite sends a remote invite to the invitee's server (the client side
// of SPEC-NOTES §12). The transaction ID is derived from the invite, so a
// retried invite is the same request.
func (c *Client) Invite(ctx context.Context, inv roomserver.RemoteInvite) error {
	if inv.Create == nil || inv.Commit == nil {
		return matrixerr.Forbidden("the room has no commit yet: the epoch-0 commit must name the invitee's server in servers first")
	}
	dest := roomversion.Domain(inv.Invitee)
	sum := sha256.Sum256([]byte(inv.Inviter + "\x00" + inv.Invitee + "\x00" + inv.Commit.EventID()))
	txnID := base64.RawURLEncoding.EncodeToString(sum[:16])
	body := inviteBody{RoomVersion: string(inv.RoomVersion), Inviter: inv.Inviter, Invitee: inv.Invitee,
		CreateEvent: inv.Create.JSON(), CommitEvent: inv.Commit.JSON()}
	path := "/_matrix/federation/unstable/de.bwi.mls/invite/" + url.PathEscape(inv.Create.RoomID().String()) + "/" + url.PathEscape(txnID)
	status, resp, err := c.Do(ctx, dest, http.MethodPut, path, body)
	if err != nil {
		return fmt.Errorf("sending the invite of %s to %s: %w", inv.Invitee, dest, err)
	}
	if status != http.StatusOK {
		// The invitee's server refused: tell the inviter why.
		var me struct {
			ErrCode string `json:"errcode"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(resp, &me)
		if me.ErrCode == "" {
			me.ErrCode = matrixerr.CodeForbidden
		}
		return &matrixerr.Error{Status: http.StatusForbidden, Code: me.ErrCode,
			Message: fmt.Sprintf("%s refused the invite (%d): %s", dest, status, me.Error)}
	}
	return nil
}

// EventQueue queues events for other servers durably (federation/sender's
// Sender is one).
type EventQueue interface {
	SendEvent(ctx context.Context, ev *roomversion.Event, destinations []string) error
}

// RoomRemote is what the room logic needs of federation
// (roomserver.Remote): events go through the outbound queue, invites are
// sent at once.
type RoomRemote struct {
	Events EventQueue
	Client *Client
}

var _ roomserver.Remote = RoomRemote{}

// SendEvent queues ev for the destinations.
func (r RoomRemote) SendEvent(ctx context.Context, ev *roomversion.Event, destinations []string) error {
	return r.Events.SendEvent(ctx, ev, destinations)
}

// Invite sends a remote invite.
func (r RoomRemote) Invite(ctx context.Context, inv roomserver.RemoteInvite) error {
	return r.Client.Invite(ctx, inv)
}
