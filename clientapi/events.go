package clientapi

import (
	"encoding/json"

	"github.com/mlsmode/mlsmode/roomserver"
)

// clientEvent is an event in the client format of SPEC-NOTES §11: no
// sender, origin instead.
type clientEvent struct {
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	Content        json.RawMessage `json:"content"`
	Origin         string          `json:"origin"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id"`
	StateKey       *string         `json:"state_key,omitempty"`
	Unsigned       map[string]any  `json:"unsigned"`
}

// formatEvent writes ce in the client format.
func (a *API) formatEvent(ce roomserver.ClientEvent) clientEvent {
	ev := ce.Event
	ts := int64(ev.OriginServerTS())
	unsigned := map[string]any{"age": max(a.now().UnixMilli()-ts, 0)}
	if ce.TransactionID != "" {
		unsigned["transaction_id"] = ce.TransactionID
	}
	if ce.LostFork {
		unsigned["de.bwi.mls.lost_fork"] = true
	}
	if ce.SoftFailCase != "" || ce.SoftFailReason != "" {
		unsigned["de.bwi.mls.soft_failed"] = map[string]string{"case": ce.SoftFailCase, "reason": ce.SoftFailReason}
	}
	return clientEvent{EventID: ev.EventID(), Type: ev.Type(), Content: ev.Content(), Origin: ev.Origin(),
		OriginServerTS: ts, RoomID: ev.RoomID().String(), StateKey: ev.StateKey(), Unsigned: unsigned}
}

// formatEvents writes events in the client format (never null).
func (a *API) formatEvents(ces []roomserver.ClientEvent) []clientEvent {
	out := make([]clientEvent, 0, len(ces))
	for _, ce := range ces {
		out = append(out, a.formatEvent(ce))
	}
	return out
}
