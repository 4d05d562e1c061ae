package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Fetcher is the client side of the room fetch endpoints: it asks a remote
// server for events over Client. It returns the events' JSON as the server
// sent it; the caller parses (roomversion.Parse) and checks them (event
// IDs are reference hashes, so a parsed event is the one asked for when
// its ID matches). The roomserver's ingestion takes an interface with
// these three methods.
type Fetcher struct {
	client *Client
}

// NewFetcher returns a Fetcher sending through c.
func NewFetcher(c *Client) *Fetcher { return &Fetcher{client: c} }

// RemoteError is a remote server's refusal: the HTTP status and the Matrix
// error it answered with (errcode "" when the body was not one).
type RemoteError struct {
	Server  string
	Path    string
	Status  int
	Errcode string
	Message string
}

// Error names the server, the request and the refusal.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("federation: %s answered %s with %d %s: %s", e.Server, e.Path, e.Status, e.Errcode, e.Message)
}

// get sends a signed request and decodes a 200 answer into out; any other
// status is a *RemoteError.
func (f *Fetcher) get(ctx context.Context, server, method, path string, body, out any) error {
	status, resp, err := f.client.Do(ctx, server, method, path, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		re := &RemoteError{Server: server, Path: path, Status: status}
		var m struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(resp, &m) == nil {
			re.Errcode, re.Message = m.Errcode, m.Error
		}
		return re
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("federation: decoding the answer of %s to %s: %w", server, path, err)
	}
	return nil
}

// Event fetches one event (GET /_matrix/federation/v1/event/{eventId}).
func (f *Fetcher) Event(ctx context.Context, server, eventID string) (json.RawMessage, error) {
	var tx transaction
	if err := f.get(ctx, server, http.MethodGet, "/_matrix/federation/v1/event/"+url.PathEscape(eventID), nil, &tx); err != nil {
		return nil, err
	}
	if len(tx.PDUs) != 1 {
		return nil, fmt.Errorf("federation: %s answered /event/%s with %d events, want 1", server, eventID, len(tx.PDUs))
	}
	return tx.PDUs[0], nil
}

// EventAuth fetches an event's auth chain (GET
// /_matrix/federation/v1/event_auth/{roomId}/{eventId}).
func (f *Fetcher) EventAuth(ctx context.Context, server, roomID, eventID string) ([]json.RawMessage, error) {
	var out struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	path := "/_matrix/federation/v1/event_auth/" + url.PathEscape(roomID) + "/" + url.PathEscape(eventID)
	if err := f.get(ctx, server, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.AuthChain, nil
}

// MissingEvents fetches the events between earliest and latest (POST
// /_matrix/federation/v1/get_missing_events/{roomId}); limit <= 0 means
// the server's default.
func (f *Fetcher) MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error) {
	body := map[string]any{"earliest_events": nonNil(earliest), "latest_events": nonNil(latest), "min_depth": 0}
	if limit > 0 {
		body["limit"] = limit
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := f.get(ctx, server, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(roomID), body, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
