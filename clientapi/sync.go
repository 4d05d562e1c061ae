package clientapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomserver"
)

// maxSyncTimeout caps a /sync long-poll.
const maxSyncTimeout = 5 * time.Minute

func (a *API) registerSyncRoutes(r *mux.Router) {
	a.handle(r, http.MethodGet, "/sync", true, a.sync)
}

type strippedEvent struct {
	Type     string `json:"type"`
	StateKey string `json:"state_key"`
	Sender   string `json:"sender,omitempty"`
	Content  any    `json:"content"`
}

type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

func (a *API) sync(rq *request) (any, error) {
	q := rq.URL.Query()
	timeout, err := rq.queryInt("timeout", 0)
	if err != nil {
		return nil, err
	}
	fullState := false
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		fullState = true
	default:
		return nil, matrixerr.InvalidParam("full_state must be true or false")
	}
	resp, err := a.cfg.Rooms.Sync(rq.Context(), roomserver.SyncRequest{
		UserID: rq.device.UserID, DeviceID: rq.device.DeviceID, Since: q.Get("since"),
		Timeout: min(time.Duration(timeout)*time.Millisecond, maxSyncTimeout), FullState: fullState,
		Filter: q.Get("filter")})
	if err != nil {
		return nil, err
	}
	join := map[string]any{}
	for id, jr := range resp.Join {
		timeline := map[string]any{"events": a.formatEvents(jr.Timeline), "limited": jr.Limited}
		if jr.PrevBatch != "" {
			timeline["prev_batch"] = jr.PrevBatch
		}
		join[id] = map[string]any{"state": map[string]any{"events": a.formatEvents(jr.State)}, "timeline": timeline}
	}
	invite := map[string]any{}
	for id, ir := range resp.Invite {
		create := ir.Create.Event
		invite[id] = map[string]any{"invite_state": map[string]any{"events": []strippedEvent{
			{Type: create.Type(), StateKey: "", Content: json.RawMessage(create.Content())},
			{Type: "m.room.member", StateKey: ir.Invitee, Sender: ir.Inviter, Content: map[string]string{"membership": "invite"}},
		}}}
	}
	leave := map[string]any{}
	for id := range resp.Leave {
		leave[id] = map[string]any{"timeline": map[string]any{"events": []any{}}}
	}
	toDevice := make([]toDeviceEvent, 0, len(resp.ToDevice))
	for _, m := range resp.ToDevice {
		toDevice = append(toDevice, toDeviceEvent{Sender: m.Sender, Type: m.Type, Content: m.Content})
	}
	counts := resp.OneTimeKeyCounts
	if counts == nil {
		counts = map[string]int{}
	}
	fallback := resp.UnusedFallbackTypes
	if fallback == nil {
		fallback = []string{}
	}
	changed := resp.DeviceListsChanged
	if changed == nil {
		changed = []string{}
	}
	return map[string]any{
		"next_batch":                       resp.NextBatch,
		"rooms":                            map[string]any{"join": join, "invite": invite, "leave": leave},
		"to_device":                        map[string]any{"events": toDevice},
		"device_one_time_keys_count":       counts,
		"device_unused_fallback_key_types": fallback,
		"device_lists":                     map[string]any{"changed": changed, "left": []string{}},
	}, nil
}
