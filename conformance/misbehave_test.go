package conformance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/conformance"
	"github.com/mlsmode/mlsmode/internal/mlsserver"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/userapi"
)

// expectVerdicts runs checks against env and fails t unless exactly the
// checks in failing fail (each naming what came back) and the others
// pass: a misbehaving server is caught by the checks about what it
// breaks, and only by them.
func expectVerdicts(t *testing.T, env *conformance.Env, checks []conformance.Check, failing ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range failing {
		want[id] = true
	}
	for _, ch := range checks {
		res := conformance.RunCheck(t, env, ch)
		switch {
		case want[ch.ID()] && res.Passed:
			t.Errorf("%s passed against a server that breaks it", ch.ID())
		case want[ch.ID()]:
			t.Logf("%s failed as it must: %s", ch.ID(), strings.Join(res.Failures, "; "))
		case !res.Passed:
			t.Errorf("%s failed against a server that does not break it: %s", ch.ID(), strings.Join(res.Failures, "; "))
		}
	}
}

// proxy is a reverse proxy in front of the client API whose answers
// modify changes.
func proxy(t *testing.T, target string, modify func(*http.Response) error) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = modify
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// rewriteBody replaces a JSON answer's body.
func rewriteBody(resp *http.Response, status int, body []byte) {
	resp.StatusCode = status
	resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

// addSender adds a sender to every event (an object with event_id and
// type) in v.
func addSender(v any) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["event_id"]; ok {
			if _, ok := x["type"]; ok {
				x["sender"] = "@leaked:example.org"
			}
		}
		for _, e := range x {
			addSender(e)
		}
	case []any:
		for _, e := range x {
			addSender(e)
		}
	}
}

// TestSuiteCatchesSenderInEvents: a proxy adds sender to the events of
// the client API's answers; the client-format checks fail.
func TestSuiteCatchesSenderInEvents(t *testing.T) {
	env, _ := conformance.SetupLocal(t, mlsserver.Options{})
	bad := env.WithClientURL(proxy(t, env.ClientURL, func(resp *http.Response) error {
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var v any
		if json.Unmarshal(b, &v) == nil {
			addSender(v)
			if nb, err := json.Marshal(v); err == nil {
				b = nb
			}
		}
		rewriteBody(resp, resp.StatusCode, b)
		return nil
	}))
	checks := conformance.Select(conformance.All(), "client/rooms/create-event-client-format", "client/rooms/events-have-no-sender",
		"client/capabilities/mls-room-versions", "client/keys/upload-and-list")
	expectVerdicts(t, bad, checks, "client/rooms/create-event-client-format", "client/rooms/events-have-no-sender")
}

// TestSuiteCatchesRefusalsAnswered200: a proxy answers every 400, 403
// and 404 with 200 {}; the refusal checks fail.
func TestSuiteCatchesRefusalsAnswered200(t *testing.T) {
	env, _ := conformance.SetupLocal(t, mlsserver.Options{})
	bad := env.WithClientURL(proxy(t, env.ClientURL, func(resp *http.Response) error {
		if resp.StatusCode == 400 || resp.StatusCode == 403 || resp.StatusCode == 404 {
			_ = resp.Body.Close()
			rewriteBody(resp, 200, []byte("{}"))
		}
		return nil
	}))
	failing := []string{"client/rooms/createRoom-refuses-name", "client/rooms/createRoom-refuses-initial_state",
		"client/refusals/members", "client/refusals/kick", "client/refusals/other-event-type", "client/refusals/upgrade",
		"client/commits/commit-refused-off-powers0", "client/commits/pending-commit-status-unknown"}
	checks := conformance.Select(conformance.All(), append([]string{"client/capabilities/mls-room-versions", "client/commits/epoch-race-409"}, failing...)...)
	expectVerdicts(t, bad, checks, failing...)
}

// TestSuiteCatchesKeyPackagesAcceptedUnchecked: the server's key-package
// check is replaced (userapi.Config.CheckKeyPackage through
// mlsserver.Options) by one that accepts everything; every check of the
// corpus of bad key packages fails, the good-upload check still passes.
func TestSuiteCatchesKeyPackagesAcceptedUnchecked(t *testing.T) {
	acceptAll := func(context.Context, string, string, string, string, string, time.Time) (*mls.KeyPackage, error) {
		return nil, nil
	}
	env, _ := conformance.SetupLocal(t, mlsserver.Options{Users: func(c *userapi.Config) { c.CheckKeyPackage = acceptAll }})
	var failing []string
	ids := []string{"client/keys/upload-and-list", "client/keys/claim-once-under-concurrency"}
	for _, ch := range conformance.All() {
		if strings.HasPrefix(ch.ID(), "client/keys/refuses-") {
			failing = append(failing, ch.ID())
		}
	}
	if len(failing) < 7 {
		t.Fatalf("only %d bad key package checks: %v", len(failing), failing)
	}
	expectVerdicts(t, env, conformance.Select(conformance.All(), append(ids, failing...)...), failing...)
}

// TestSuiteCatchesFederationRefusalsAnswered200: a TLS proxy in front of
// the federation API answers 400, 401 and 403 with 200 {} and drops the
// per-PDU errors of /send answers (every refused PDU looks accepted); the
// hostile-request checks, the auth-rule cases whose event must be
// rejected (over /send or in the remote invite) and a random
// state-resolution room with rejected commits fail, the others pass.
func TestSuiteCatchesFederationRefusalsAnswered200(t *testing.T) {
	env, _ := conformance.SetupLocal(t, mlsserver.Options{})
	u, err := url.Parse(env.FederationURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = env.FedHTTP.Transport
	rp.ModifyResponse = func(resp *http.Response) error {
		switch {
		case resp.StatusCode == 400 || resp.StatusCode == 401 || resp.StatusCode == 403:
			_ = resp.Body.Close()
			rewriteBody(resp, 200, []byte("{}"))
		case resp.StatusCode == 200 && strings.HasPrefix(resp.Request.URL.Path, "/_matrix/federation/v1/send/"):
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			var ans struct {
				PDUs map[string]map[string]any `json:"pdus"`
			}
			if json.Unmarshal(b, &ans) == nil {
				for id := range ans.PDUs {
					ans.PDUs[id] = map[string]any{}
				}
				b, _ = json.Marshal(ans)
			}
			rewriteBody(resp, 200, b)
		}
		return nil
	}
	srv := httptest.NewTLSServer(rp)
	t.Cleanup(srv.Close)
	bad := env.WithFederationURL(srv.URL, srv.Client())

	var checks []conformance.Check
	var failing []string
	rejected, invited, accepted := 0, 0, 0
	for _, ch := range conformance.All() {
		switch {
		case ch.Section == "federation/hostile":
			checks, failing = append(checks, ch), append(failing, ch.ID())
		case ch.Section == "federation/authrules" && strings.Contains(ch.About, "rejected by rule") && strings.Contains(ch.About, "over /send") && rejected < 4:
			checks, failing = append(checks, ch), append(failing, ch.ID())
			rejected++
		case ch.Section == "federation/authrules" && strings.Contains(ch.About, "rejected by rule") && strings.Contains(ch.About, "remote invite") && invited < 2:
			checks, failing = append(checks, ch), append(failing, ch.ID())
			invited++
		case ch.Section == "federation/authrules" && !strings.Contains(ch.About, "rejected by rule") && accepted < 3:
			checks = append(checks, ch)
			accepted++
		case ch.ID() == "federation/keys/server-key" || ch.ID() == "federation/rooms/remote-invite-and-join":
			checks = append(checks, ch)
		case ch.ID() == "federation/stateres-random/room-4/in-order-made":
			// Its commits from a server outside servers are rejected
			// (rule 6) whatever the signing keys and so the tie-breaks.
			checks, failing = append(checks, ch), append(failing, ch.ID())
		}
	}
	if len(failing) < 16 {
		t.Fatalf("only %d checks expected to fail: %v", len(failing), failing)
	}
	expectVerdicts(t, bad, checks, failing...)
}

// jsonRewrite is a ModifyResponse that rewrites the JSON answers of
// requests match accepts with edit.
func jsonRewrite(match func(*http.Request) bool, edit func(v any) any) func(*http.Response) error {
	return func(resp *http.Response) error {
		if resp.StatusCode != 200 || !match(resp.Request) {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var v any
		if json.Unmarshal(b, &v) == nil {
			if nb, err := json.Marshal(edit(v)); err == nil {
				b = nb
			}
		}
		rewriteBody(resp, 200, b)
		return nil
	}
}

// TestSuiteCatchesOtherSections: misbehaviour caught by the sections the
// other tests leave alone. A proxy in front of the client API drops
// m.mls.1 from the capabilities and the commit from GET /state; one in
// front of the federation API names another server in the key answer,
// adds sender to the PDUs of GET /event and refuses invites with 403.
func TestSuiteCatchesOtherSections(t *testing.T) {
	env, _ := conformance.SetupLocal(t, mlsserver.Options{})
	pathHas := func(s string) func(*http.Request) bool {
		return func(r *http.Request) bool { return strings.Contains(r.URL.Path, s) }
	}
	client := env.WithClientURL(proxy(t, env.ClientURL, func(resp *http.Response) error {
		switch {
		case strings.HasSuffix(resp.Request.URL.Path, "/capabilities"):
			return jsonRewrite(pathHas("/capabilities"), func(v any) any {
				caps, _ := v.(map[string]any)["capabilities"].(map[string]any)
				rv, _ := caps["m.room_versions"].(map[string]any)
				avail, _ := rv["available"].(map[string]any)
				delete(avail, "m.mls.1")
				return v
			})(resp)
		case strings.HasSuffix(resp.Request.URL.Path, "/state") && resp.Request.Method == "GET":
			return jsonRewrite(pathHas("/state"), func(v any) any {
				l, _ := v.([]any)
				var out []any
				for _, e := range l {
					if m, _ := e.(map[string]any); m["type"] != "m.mls.commit" {
						out = append(out, e)
					}
				}
				return out
			})(resp)
		}
		return nil
	}))

	u, err := url.Parse(env.FederationURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = env.FedHTTP.Transport
	rp.ModifyResponse = func(resp *http.Response) error {
		p := resp.Request.URL.Path
		switch {
		case p == "/_matrix/key/v2/server":
			return jsonRewrite(pathHas(p), func(v any) any { v.(map[string]any)["server_name"] = "other.example"; return v })(resp)
		case strings.HasPrefix(p, "/_matrix/federation/v1/event/"):
			return jsonRewrite(pathHas(p), func(v any) any {
				pdus, _ := v.(map[string]any)["pdus"].([]any)
				for _, pdu := range pdus {
					pdu.(map[string]any)["sender"] = "@leaked:example.org"
				}
				return v
			})(resp)
		case strings.Contains(p, "/de.bwi.mls/invite/") && resp.StatusCode == 200:
			_ = resp.Body.Close()
			rewriteBody(resp, 403, []byte(`{"errcode":"M_FORBIDDEN","error":"no"}`))
		}
		return nil
	}
	srv := httptest.NewTLSServer(rp)
	t.Cleanup(srv.Close)
	fed := env.WithFederationURL(srv.URL, srv.Client())

	all := conformance.All()
	expectVerdicts(t, client, conformance.Select(all, "client/capabilities/mls-room-versions", "federation/stateres/power-transfer/in-order-made",
		"federation/stateres/concurrent-commits/winner-first", "federation/stateres-random/room-2/in-order-made",
		"federation/stateres-random/room-4/shuffled", "client/keys/upload-and-list"),
		"client/capabilities/mls-room-versions", "federation/stateres/power-transfer/in-order-made", "federation/stateres/concurrent-commits/winner-first",
		"federation/stateres-random/room-2/in-order-made", "federation/stateres-random/room-4/shuffled")
	expectVerdicts(t, fed, conformance.Select(all, "federation/keys/server-key", "federation/events/create-event-format",
		"federation/rooms/remote-invite-and-join", "federation/hostile/x-matrix-missing", "federation/keys/remote-key-claim"),
		"federation/keys/server-key", "federation/events/create-event-format", "federation/rooms/remote-invite-and-join")
}

// TestSuiteCatchesGoodKeyPackagesRefused: the server's key-package check
// refuses every algorithm but suite 1's m.mls.1 name; the good-corpus
// check fails, the suite-1 upload still passes.
func TestSuiteCatchesGoodKeyPackagesRefused(t *testing.T) {
	strict := func(ctx context.Context, alg, keyID, value, userID, deviceID string, now time.Time) (*mls.KeyPackage, error) {
		if alg != "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" {
			return nil, fmt.Errorf("algorithm %s not taken", alg)
		}
		return userapi.CheckKeyPackage(ctx, alg, keyID, value, userID, deviceID, now)
	}
	env, _ := conformance.SetupLocal(t, mlsserver.Options{Users: func(c *userapi.Config) { c.CheckKeyPackage = strict }})
	expectVerdicts(t, env, conformance.Select(conformance.All(), "client/keys/accepts-good-corpus", "client/keys/upload-and-list"),
		"client/keys/accepts-good-corpus")
}

// TestSuiteCatchesSoftFailHidden: a proxy in front of the client API
// drops unsigned de.bwi.mls.soft_failed from GET /event answers, so every
// soft-failed event looks accepted; the random state-resolution rooms
// (each has soft-failed events) fail, the named scenarios (which read only
// GET /state) pass.
func TestSuiteCatchesSoftFailHidden(t *testing.T) {
	env, _ := conformance.SetupLocal(t, mlsserver.Options{})
	client := env.WithClientURL(proxy(t, env.ClientURL, jsonRewrite(func(r *http.Request) bool {
		return r.Method == "GET" && strings.Contains(r.URL.Path, "/event/")
	}, func(v any) any {
		if m, ok := v.(map[string]any); ok {
			if u, ok := m["unsigned"].(map[string]any); ok {
				delete(u, "de.bwi.mls.soft_failed")
			}
		}
		return v
	})))
	failing := []string{"federation/stateres-random/room-1/in-order-made", "federation/stateres-random/room-4/shuffled",
		"federation/stateres-random/room-5/in-order-made"}
	expectVerdicts(t, client, conformance.Select(conformance.All(), append(failing, "federation/stateres/power-transfer/in-order-made")...), failing...)
}
