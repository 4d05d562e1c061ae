package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
)

// Transaction limits (the Matrix spec's).
const (
	MaxPDUsPerTransaction = 50
	MaxEDUsPerTransaction = 100
)

// EDU types this server acts on; others are accepted and ignored, as the
// Matrix spec lets servers do.
const (
	eduDirectToDevice = "m.direct_to_device"
)

// sendBody is PUT /_matrix/federation/v1/send/{txnId}.
type sendBody struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []edu             `json:"edus"`
}

type edu struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// directToDevice is the content of an m.direct_to_device EDU.
type directToDevice struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// pduResult is one PDU's entry in the answer: {} when accepted (soft-failed
// events included, as Matrix reports them), {"error"} otherwise.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

// send handles PUT /send/{txnId}: a transaction answered before is answered
// the same way and not applied again; otherwise its PDUs go to the room
// logic (roomserver.ReceivePDUs: parsing, signatures, missing events, auth
// rules, state resolution, soft-fail) and its EDUs to userapi, and the
// per-PDU answer is recorded before it is returned.
func (a *API) send(rq *request) (any, error) {
	if a.cfg.Rooms == nil {
		return nil, matrixerr.New(http.StatusNotImplemented, matrixerr.CodeUnrecognized, "this server does not take room events")
	}
	ctx := rq.Context()
	txnID := rq.vars["txnId"]
	if prev, err := a.cfg.Store.TransactionResult(ctx, rq.origin, txnID); err == nil {
		return json.RawMessage(prev), nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("reading the answer to transaction %s from %s: %w", txnID, rq.origin, err)
	}
	var body sendBody
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	if body.Origin != rq.origin {
		return nil, matrixerr.BadJSON("origin %q is not the request's origin %s", body.Origin, rq.origin)
	}
	if len(body.PDUs) > MaxPDUsPerTransaction {
		return nil, matrixerr.BadJSON("pdus: %d entries, at most %d", len(body.PDUs), MaxPDUsPerTransaction)
	}
	if len(body.EDUs) > MaxEDUsPerTransaction {
		return nil, matrixerr.BadJSON("edus: %d entries, at most %d", len(body.EDUs), MaxEDUsPerTransaction)
	}
	results, err := a.cfg.Rooms.ReceivePDUs(ctx, rq.origin, body.PDUs)
	if err != nil {
		return nil, fmt.Errorf("receiving transaction %s from %s: %w", txnID, rq.origin, err)
	}
	answer := map[string]pduResult{}
	for _, r := range results {
		if r.EventID == "" {
			continue // not even an event ID could be read
		}
		answer[r.EventID] = pduResult{Error: r.Error}
	}
	for i, e := range body.EDUs {
		if err := a.receiveEDU(ctx, rq.origin, i, e); err != nil {
			return nil, fmt.Errorf("receiving transaction %s from %s: %w", txnID, rq.origin, err)
		}
	}
	out, err := json.Marshal(map[string]any{"pdus": answer})
	if err != nil {
		return nil, fmt.Errorf("encoding the answer to transaction %s: %w", txnID, err)
	}
	if err := a.cfg.Store.StoreTransactionResult(ctx, rq.origin, txnID, out, a.now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("recording the answer to transaction %s from %s: %w", txnID, rq.origin, err)
	}
	return json.RawMessage(out), nil
}

// receiveEDU acts on one EDU. EDUs have no per-item answer in /send: a bad
// one is logged and dropped, and the others still count. An error (the
// store failed to record a device list update) fails the transaction, which
// is then not recorded, so the origin retries it.
func (a *API) receiveEDU(ctx context.Context, origin string, i int, e edu) error {
	switch e.Type {
	case eduDirectToDevice:
		if a.cfg.Users == nil {
			return nil
		}
		var d directToDevice
		if err := json.Unmarshal(e.Content, &d); err != nil {
			a.cfg.Logger.Warn("dropping a malformed m.direct_to_device EDU", slog.String("origin", origin), slog.Int("index", i), slog.Any("error", err))
			return nil
		}
		if _, err := a.cfg.Users.ReceiveToDevice(ctx, origin, d.Sender, d.Type, d.MessageID, d.Messages); err != nil {
			a.cfg.Logger.Warn("dropping an m.direct_to_device EDU", slog.String("origin", origin), slog.Int("index", i), slog.Any("error", err))
		}
	case eduDeviceListUpdate:
		return a.receiveDeviceListUpdate(ctx, origin, i, e.Content)
	}
	return nil
}

// receiveDeviceListUpdate acts on an m.device_list_update EDU: the user
// must be a user of origin (else it is dropped and logged). The change is
// recorded in the device key change stream (no keys are kept: clients
// query them), where /sync lists the user in device_lists.changed to
// local users joined to a room whose current commit's `servers` holds
// origin; every waiting /sync is woken ("*": finding the local users who
// share a room with origin costs more than re-checking the polls, and
// device changes are rare). stream_id and prev_id are not checked: this
// server caches no remote device lists, so every update means "query
// again". A failure to record the change is an error (the transaction
// fails and is retried).
func (a *API) receiveDeviceListUpdate(ctx context.Context, origin string, i int, content json.RawMessage) error {
	var d deviceListUpdate
	if err := json.Unmarshal(content, &d); err != nil {
		a.cfg.Logger.Warn("dropping a malformed m.device_list_update EDU", slog.String("origin", origin), slog.Int("index", i), slog.Any("error", err))
		return nil
	}
	if userIDServer(d.UserID) != origin || d.DeviceID == "" {
		a.cfg.Logger.Warn("dropping an m.device_list_update EDU not of a device of a user of its origin", slog.String("origin", origin),
			slog.Int("index", i), slog.String("user_id", d.UserID), slog.String("device_id", d.DeviceID))
		return nil
	}
	if err := a.cfg.Store.RecordDeviceKeyChange(ctx, d.UserID); err != nil {
		return fmt.Errorf("m.device_list_update EDU %d: %w", i, err)
	}
	if err := a.cfg.Store.NotifyChange(ctx, "*"); err != nil {
		a.cfg.Logger.Warn("notifying a device list change", slog.String("user_id", d.UserID), slog.Any("error", err))
	}
	return nil
}

// SendTransaction sends one transaction to destination (PUT
// /_matrix/federation/v1/send/{txnId}); it implements the outbound queue's
// Transport (federation/sender). A status other than 200 is an error, so
// the queue retries.
func (c *Client) SendTransaction(ctx context.Context, destination, txnID string, pdus, edus []json.RawMessage) error {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	if edus == nil {
		edus = []json.RawMessage{}
	}
	body := map[string]any{"origin": c.origin, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": edus}
	status, resp, err := c.Do(ctx, destination, http.MethodPut, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("federation: %s answered transaction %s with %d: %s", destination, txnID, status, responseMessage(json.RawMessage(resp)))
	}
	return nil
}
