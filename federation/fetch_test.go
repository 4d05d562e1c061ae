package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/roomversion"
)

// parsedIDs parses each event (every check of roomversion.Parse) and
// returns the IDs.
func parsedIDs(t *testing.T, raws []json.RawMessage) []string {
	t.Helper()
	out := make([]string, 0, len(raws))
	for _, raw := range raws {
		ev, err := roomversion.Parse(context.Background(), roomversion.V1, raw)
		if err != nil {
			t.Fatalf("parsing a fetched event: %v", err)
		}
		out = append(out, ev.EventID())
	}
	return out
}

// get does a signed request from s and decodes a 200 answer.
func get(t *testing.T, s *server, method, path string, body any, out any) (int, string) {
	t.Helper()
	status, resp, err := s.api.Client().Do(context.Background(), "hs1.test", method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if status == http.StatusOK && out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, resp)
		}
	}
	return status, errcode(resp)
}

// TestFetcher: hs2, in servers of the room's current commit, fetches events,
// auth chains and missing events from hs1 with the Fetcher; what it gets
// parses and carries hs1's and hs2's signatures, checked with keys fetched
// over HTTPS.
func TestFetcher(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	fe := f.hs2.api.Fetcher()

	raw, err := fe.Event(ctx, "hs1.test", f.m1.EventID())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := roomversion.Parse(ctx, roomversion.V1, raw)
	if err != nil || ev.EventID() != f.m1.EventID() {
		t.Fatalf("fetched event: %v", err)
	}
	if err := roomversion.VerifySignature(ctx, ev, f.hs2.api.KeyFetcher()); err != nil {
		t.Fatalf("signature of the fetched event: %v", err)
	}
	if f.hs1.keyHits.Load() != 1 {
		t.Fatalf("hs1's key fetched %d times, want 1", f.hs1.keyHits.Load())
	}

	chain, err := fe.EventAuth(ctx, "hs1.test", f.room.id, f.m3.EventID())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsedIDs(t, chain), ids(f.room.create, f.c0, f.c1); !slices.Equal(got, want) {
		t.Fatalf("auth chain of m3: %v, want %v", got, want)
	}

	missing, err := fe.MissingEvents(ctx, "hs1.test", f.room.id, ids(f.m1), ids(f.m3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsedIDs(t, missing), ids(f.m2, f.c1); !slices.Equal(got, want) {
		t.Fatalf("missing events between m1 and m3: %v, want %v", got, want)
	}
	missing, err = fe.MissingEvents(ctx, "hs1.test", f.room.id, nil, ids(f.m3), 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsedIDs(t, missing), ids(f.m2, f.c1); !slices.Equal(got, want) {
		t.Fatalf("missing events with limit 2: %v, want %v", got, want)
	}
	missing, err = fe.MissingEvents(ctx, "hs1.test", f.room.id, nil, ids(f.m3), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsedIDs(t, missing), ids(f.room.create, f.c0, f.m1, f.m2, f.c1); !slices.Equal(got, want) {
		t.Fatalf("missing events back to the create event: %v, want %v", got, want)
	}
	// A rejected event is neither served nor walked through.
	if missing, err = fe.MissingEvents(ctx, "hs1.test", f.room.id, nil, ids(f.rej), 10); err != nil || len(missing) != 0 {
		t.Fatalf("missing events from a rejected event: %d, %v", len(missing), err)
	}

	// Refusals come back as *RemoteError.
	var re *federation.RemoteError
	if _, err := fe.Event(ctx, "hs1.test", f.rej.EventID()); !errors.As(err, &re) || re.Status != http.StatusNotFound || re.Errcode != "M_NOT_FOUND" {
		t.Fatalf("rejected event: %v", err)
	}
	if _, err := f.hs3.api.Fetcher().Event(ctx, "hs1.test", f.m1.EventID()); !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Errcode != "M_FORBIDDEN" {
		t.Fatalf("hs3 fetching: %v", err)
	}
}

// TestFetchEndpoints: /state, /state_ids, /backfill and the refusals of
// every endpoint: 403 to servers not in `servers` of the current commit,
// 404 for unknown or rejected events, events of another room and unknown
// rooms.
func TestFetchEndpoints(t *testing.T) {
	f := newFixture(t, nil)
	room := url.PathEscape(f.room.id)
	fed := "/_matrix/federation/v1/"

	var state struct {
		PDUs      []json.RawMessage `json:"pdus"`
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	if status, code := get(t, f.hs2, http.MethodGet, fed+"state/"+room+"?event_id="+f.m3.EventID(), nil, &state); status != http.StatusOK {
		t.Fatalf("/state: %d %s", status, code)
	}
	if got, want := parsedIDs(t, state.PDUs), ids(f.room.create, f.c1); !slices.Equal(got, want) {
		t.Fatalf("/state at m3: %v, want %v", got, want)
	}
	if got, want := parsedIDs(t, state.AuthChain), ids(f.room.create, f.c0); !slices.Equal(got, want) {
		t.Fatalf("/state auth chain: %v, want %v", got, want)
	}
	var stateIDs struct {
		PDUIDs       []string `json:"pdu_ids"`
		AuthChainIDs []string `json:"auth_chain_ids"`
	}
	if status, code := get(t, f.hs2, http.MethodGet, fed+"state_ids/"+room+"?event_id="+f.c1.EventID(), nil, &stateIDs); status != http.StatusOK {
		t.Fatalf("/state_ids: %d %s", status, code)
	}
	if !slices.Equal(stateIDs.PDUIDs, ids(f.room.create, f.c0)) || !slices.Equal(stateIDs.AuthChainIDs, ids(f.room.create)) {
		t.Fatalf("/state_ids at c1: %+v", stateIDs)
	}
	if status, _ := get(t, f.hs2, http.MethodGet, fed+"state_ids/"+room+"?event_id="+f.room.create.EventID(), nil, &stateIDs); status != http.StatusOK || len(stateIDs.PDUIDs) != 0 || stateIDs.PDUIDs == nil {
		t.Fatalf("/state_ids at the create event: %d %+v", status, stateIDs)
	}

	var tx struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	if status, code := get(t, f.hs2, http.MethodGet, fed+"backfill/"+room+"?v="+f.m3.EventID()+"&limit=3", nil, &tx); status != http.StatusOK {
		t.Fatalf("/backfill: %d %s", status, code)
	}
	if got, want := parsedIDs(t, tx.PDUs), ids(f.m3, f.c1, f.m2); tx.Origin != "hs1.test" || !slices.Equal(got, want) {
		t.Fatalf("/backfill from m3: %v from %s, want %v", got, tx.Origin, want)
	}

	missingBody := map[string]any{"earliest_events": []string{}, "latest_events": ids(f.m3)}
	type call struct {
		method, path string
		body         any
	}
	all := map[string]call{
		"event":              {http.MethodGet, fed + "event/" + f.m1.EventID(), nil},
		"state":              {http.MethodGet, fed + "state/" + room + "?event_id=" + f.m3.EventID(), nil},
		"state_ids":          {http.MethodGet, fed + "state_ids/" + room + "?event_id=" + f.m3.EventID(), nil},
		"event_auth":         {http.MethodGet, fed + "event_auth/" + room + "/" + f.m3.EventID(), nil},
		"get_missing_events": {http.MethodPost, fed + "get_missing_events/" + room, missingBody},
		"backfill":           {http.MethodGet, fed + "backfill/" + room + "?v=" + f.m3.EventID(), nil},
	}
	for name, c := range all {
		if status, code := get(t, f.hs2, c.method, c.path, c.body, nil); status != http.StatusOK {
			t.Errorf("%s by hs2: %d %s, want 200", name, status, code)
		}
		if status, code := get(t, f.hs3, c.method, c.path, c.body, nil); status != http.StatusForbidden || code != "M_FORBIDDEN" {
			t.Errorf("%s by hs3 (not in servers): %d %s, want 403 M_FORBIDDEN", name, status, code)
		}
	}

	other, bare := url.PathEscape(f.other.id), url.PathEscape(f.bare.id)
	refused := []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"hs2 not in the other room's servers", http.MethodGet, fed + "event/" + f.otherCommit.EventID(), nil, 403, "M_FORBIDDEN"},
		{"hs2 before the epoch-0 commit of a room of hs1", http.MethodGet, fed + "state_ids/" + bare + "?event_id=" + f.bare.create.EventID(), nil, 403, "M_FORBIDDEN"},
		{"other room's backfill", http.MethodGet, fed + "backfill/" + other + "?v=" + f.otherCommit.EventID(), nil, 403, "M_FORBIDDEN"},
		{"unknown event", http.MethodGet, fed + "event/$unknown", nil, 404, "M_NOT_FOUND"},
		{"rejected event", http.MethodGet, fed + "event/" + f.rej.EventID(), nil, 404, "M_NOT_FOUND"},
		{"state at a rejected event", http.MethodGet, fed + "state/" + room + "?event_id=" + f.rej.EventID(), nil, 404, "M_NOT_FOUND"},
		{"state at another room's event", http.MethodGet, fed + "state/" + room + "?event_id=" + f.otherCommit.EventID(), nil, 404, "M_NOT_FOUND"},
		{"event_auth of another room's event", http.MethodGet, fed + "event_auth/" + room + "/" + f.otherCommit.EventID(), nil, 404, "M_NOT_FOUND"},
		{"unknown room", http.MethodGet, fed + "state_ids/" + url.PathEscape("!nope:hs1.test") + "?event_id=" + f.m1.EventID(), nil, 404, "M_NOT_FOUND"},
		{"state without event_id", http.MethodGet, fed + "state/" + room, nil, 400, "M_MISSING_PARAM"},
		{"backfill without v", http.MethodGet, fed + "backfill/" + room, nil, 400, "M_MISSING_PARAM"},
		{"backfill with a bad limit", http.MethodGet, fed + "backfill/" + room + "?v=" + f.m3.EventID() + "&limit=x", nil, 400, "M_INVALID_PARAM"},
		{"get_missing_events without latest_events", http.MethodPost, fed + "get_missing_events/" + room, map[string]any{}, 400, "M_BAD_JSON"},
		{"get_missing_events with a string limit", http.MethodPost, fed + "get_missing_events/" + room, map[string]any{"latest_events": ids(f.m3), "limit": "5"}, 400, "M_BAD_JSON"},
		{"unknown endpoint", http.MethodGet, fed + "nothing/here", nil, 404, "M_UNRECOGNIZED"},
		{"wrong method", http.MethodPost, fed + "event/" + f.m1.EventID(), map[string]any{}, 405, "M_UNRECOGNIZED"},
	}
	for _, c := range refused {
		if status, code := get(t, f.hs2, c.method, c.path, c.body, nil); status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, code, c.status, c.code)
		}
	}
}
