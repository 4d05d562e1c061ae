package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
)

// commitIDParam is the query parameter naming the commit the client's MLS
// state is at (SPEC-NOTES §11).
const commitIDParam = "de.bwi.mls.commit_id"

// membershipRefusal answers the member APIs of MLS rooms.
const membershipRefusal = "membership of MLS rooms is managed inside MLS"

func (a *API) registerRoomRoutes(r *mux.Router) {
	a.handle(r, http.MethodGet, "/capabilities", true, a.capabilities)
	a.handle(r, http.MethodPost, "/createRoom", true, a.createRoom)
	a.handle(r, http.MethodPut, "/rooms/{roomId}/state/{eventType}", true, a.putState)
	a.handle(r, http.MethodPut, "/rooms/{roomId}/state/{eventType}/{stateKey:.*}", true, a.putState)
	a.handle(r, http.MethodPut, "/rooms/{roomId}/send/{eventType}/{txnId}", true, a.send)
	a.handle(r, http.MethodGet, "/rooms/{roomId}/state", true, a.getState)
	a.handle(r, http.MethodGet, "/rooms/{roomId}/state/{eventType}", true, a.getStateEvent)
	a.handle(r, http.MethodGet, "/rooms/{roomId}/state/{eventType}/{stateKey:.*}", true, a.getStateEvent)
	a.handle(r, http.MethodGet, "/rooms/{roomId}/event/{eventId}", true, a.getEvent)
	a.handle(r, http.MethodGet, "/rooms/{roomId}/messages", true, a.messages)
	a.handle(r, http.MethodGet, "/joined_rooms", true, a.joinedRooms)
	a.handle(r, http.MethodPost, "/rooms/{roomId}/invite", true, a.invite)
	a.handle(r, http.MethodPost, "/rooms/{roomId}/join", true, a.join)
	a.handle(r, http.MethodPost, "/join/{roomIdOrAlias}", true, a.join)
	a.handle(r, http.MethodPost, "/rooms/{roomId}/leave", true, a.leave)
	for _, p := range []struct{ method, path string }{
		{http.MethodGet, "/rooms/{roomId}/members"},
		{http.MethodGet, "/rooms/{roomId}/joined_members"},
		{http.MethodPost, "/rooms/{roomId}/kick"},
		{http.MethodPost, "/rooms/{roomId}/ban"},
		{http.MethodPost, "/rooms/{roomId}/unban"},
		{http.MethodPost, "/knock/{roomIdOrAlias}"},
	} {
		a.handle(r, p.method, p.path, true, a.membershipAPI)
	}
	a.handle(r, http.MethodPost, "/rooms/{roomId}/upgrade", true, a.upgrade)
}

func (a *API) registerUnstableRoutes(r *mux.Router) {
	a.handle(r, http.MethodGet, "/rooms/{roomId}/pending_commit/{eventId}", true, a.pendingCommit)
}

func (a *API) capabilities(*request) (any, error) {
	avail := map[string]string{}
	for _, v := range roomversion.Versions() {
		avail[string(v)] = "unstable"
	}
	return map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": string(roomversion.V1), "available": avail},
		"m.change_password": map[string]bool{"enabled": false},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
	}}, nil
}

// createRoomBody is POST /createRoom. Fields MLS rooms do not have are
// kept raw so that their presence can be refused.
type createRoomBody struct {
	RoomVersion     *string                    `json:"room_version"`
	CreationContent map[string]json.RawMessage `json:"creation_content"`
	Preset          string                     `json:"preset"`
	Visibility      string                     `json:"visibility"`
	IsDirect        bool                       `json:"is_direct"`
}

// refusedCreateFields are refused for MLS rooms (SPEC-NOTES §11).
var refusedCreateFields = []string{"initial_state", "invite", "invite_3pid", "name", "topic",
	"room_alias_name", "power_level_content_override"}

func (a *API) createRoom(rq *request) (any, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := decodeJSON(orEmpty(body), &raw); err != nil {
		return nil, err
	}
	var b createRoomBody
	if err := decodeJSON(orEmpty(body), &b); err != nil {
		return nil, err
	}
	v := roomversion.V1
	if b.RoomVersion != nil {
		var err error
		if v, err = roomversion.Lookup(*b.RoomVersion); err != nil {
			return nil, matrixerr.UnsupportedRoomVersion("room_version %q: this server creates only MLS rooms (%s, %s)",
				*b.RoomVersion, roomversion.V1, roomversion.V1Unstable)
		}
	}
	for _, f := range refusedCreateFields {
		if _, ok := raw[f]; ok {
			return nil, matrixerr.BadJSON("%s is not supported in MLS rooms (room state and membership live inside MLS)", f)
		}
	}
	var alg string
	if rawAlg, ok := b.CreationContent["algorithm"]; ok {
		if err := json.Unmarshal(rawAlg, &alg); err != nil {
			return nil, matrixerr.BadJSON("creation_content.algorithm must be a string")
		}
	}
	federate := true
	if rawFed, ok := b.CreationContent["m.federate"]; ok {
		if err := json.Unmarshal(rawFed, &federate); err != nil {
			return nil, matrixerr.BadJSON("creation_content.m.federate must be a boolean")
		}
	}
	roomID, err := a.cfg.Rooms.CreateRoom(rq.Context(), roomserver.CreateRoomRequest{
		UserID: rq.device.UserID, Version: v, Algorithm: alg, Federate: federate})
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// orEmpty reads an empty body as {}.
func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// eventContent reads a body that must be a JSON object (event content).
func (rq *request) eventContent() ([]byte, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := decodeJSON(orEmpty(body), &obj); err != nil {
		return nil, err
	}
	return orEmpty(body), nil
}

func (a *API) putState(rq *request) (any, error) {
	content, err := rq.eventContent()
	if err != nil {
		return nil, err
	}
	stateKey := rq.vars["stateKey"]
	id, err := a.cfg.Rooms.SendEvent(rq.Context(), roomserver.SendRequest{
		UserID: rq.device.UserID, DeviceID: rq.device.DeviceID, RoomID: rq.vars["roomId"],
		Type: rq.vars["eventType"], StateKey: &stateKey, Content: content, CommitID: rq.URL.Query().Get(commitIDParam)})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}

func (a *API) send(rq *request) (any, error) {
	content, err := rq.eventContent()
	if err != nil {
		return nil, err
	}
	id, err := a.cfg.Rooms.SendEvent(rq.Context(), roomserver.SendRequest{
		UserID: rq.device.UserID, DeviceID: rq.device.DeviceID, TxnID: rq.vars["txnId"], RoomID: rq.vars["roomId"],
		Type: rq.vars["eventType"], Content: content, CommitID: rq.URL.Query().Get(commitIDParam)})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}

func (a *API) getState(rq *request) (any, error) {
	evs, err := a.cfg.Rooms.State(rq.Context(), rq.device.UserID, rq.vars["roomId"])
	if err != nil {
		return nil, err
	}
	return a.formatEvents(evs), nil
}

func (a *API) getStateEvent(rq *request) (any, error) {
	ev, err := a.cfg.Rooms.StateEvent(rq.Context(), rq.device.UserID, rq.vars["roomId"], rq.vars["eventType"], rq.vars["stateKey"])
	if err != nil {
		return nil, err
	}
	if rq.URL.Query().Get("format") == "event" {
		return a.formatEvent(ev), nil
	}
	return json.RawMessage(ev.Event.Content()), nil
}

func (a *API) getEvent(rq *request) (any, error) {
	ev, err := a.cfg.Rooms.Event(rq.Context(), rq.device.UserID, rq.device.DeviceID, rq.vars["roomId"], rq.vars["eventId"])
	if err != nil {
		return nil, err
	}
	return a.formatEvent(ev), nil
}

func (a *API) messages(rq *request) (any, error) {
	q := rq.URL.Query()
	limit, err := rq.queryInt("limit", 10)
	if err != nil {
		return nil, err
	}
	dir := q.Get("dir")
	if dir == "" {
		dir = "b"
	}
	if dir != "b" && dir != "f" {
		return nil, matrixerr.InvalidParam("dir must be b or f, not %q", dir)
	}
	resp, err := a.cfg.Rooms.Messages(rq.Context(), roomserver.MessagesRequest{
		UserID: rq.device.UserID, DeviceID: rq.device.DeviceID, RoomID: rq.vars["roomId"],
		From: q.Get("from"), To: q.Get("to"), Backward: dir == "b", Limit: int(min(limit, 1000))})
	if err != nil {
		return nil, err
	}
	out := map[string]any{"chunk": a.formatEvents(resp.Chunk), "start": resp.Start}
	if resp.End != "" {
		out["end"] = resp.End
	}
	return out, nil
}

func (a *API) joinedRooms(rq *request) (any, error) {
	rooms, err := a.cfg.Rooms.JoinedRooms(rq.Context(), rq.device.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"joined_rooms": rooms}, nil
}

func (a *API) invite(rq *request) (any, error) {
	var b struct {
		UserID string `json:"user_id"`
		Reason string `json:"reason"`
	}
	if err := rq.decode(&b); err != nil {
		return nil, err
	}
	if b.UserID == "" {
		return nil, matrixerr.BadJSON("user_id is required")
	}
	if err := a.cfg.Rooms.InviteUser(rq.Context(), rq.device.UserID, rq.vars["roomId"], b.UserID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (a *API) join(rq *request) (any, error) {
	var b map[string]json.RawMessage
	if err := rq.decode(&b); err != nil {
		return nil, err
	}
	target := rq.vars["roomId"]
	if target == "" {
		target = rq.vars["roomIdOrAlias"]
	}
	roomID, err := a.cfg.Rooms.JoinRoom(rq.Context(), rq.device.UserID, target)
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

func (a *API) leave(rq *request) (any, error) {
	var b map[string]json.RawMessage
	if err := rq.decode(&b); err != nil {
		return nil, err
	}
	if err := a.cfg.Rooms.LeaveRoom(rq.Context(), rq.device.UserID, rq.vars["roomId"]); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (a *API) membershipAPI(*request) (any, error) {
	return nil, matrixerr.Forbidden(membershipRefusal)
}

func (a *API) upgrade(*request) (any, error) {
	return nil, matrixerr.UnsupportedRoomVersion("MLS rooms cannot be upgraded: changing the algorithm means a new room (tombstones are not allowed state)")
}

func (a *API) pendingCommit(rq *request) (any, error) {
	st, err := a.cfg.Rooms.PendingCommitStatus(rq.Context(), rq.device.UserID, rq.vars["roomId"], rq.vars["eventId"])
	if err != nil {
		return nil, err
	}
	out := map[string]any{"status": st.Status}
	if st.CommitEventID != "" {
		out["commit_event_id"] = st.CommitEventID
	}
	if st.Lost {
		// Applied, but by commits of a fork that lost: the client must
		// catch up with the winner (project extension).
		out["lost"] = true
	}
	return out, nil
}
