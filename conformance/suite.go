package conformance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

// SuiteKeyID is the key ID of the suite's signing keys.
const SuiteKeyID = "ed25519:conformance"

// SuiteServer is the suite acting as other homeservers: one HTTPS
// listener on loopback serving, for each of its names (by the Host
// header), the server key endpoint and the fetch endpoints (/event,
// /event_auth, /get_missing_events) of the events the checks made, and
// taking /send transactions. Its requests to the server under test are
// signed with X-Matrix by its own keys.
type SuiteServer struct {
	// Names are the server names it answers for: SuiteNameA, B and D.
	Names []string
	// Addr is the listener's "host:port".
	Addr string
	// CertFile is the PEM certificate the server under test must trust
	// (its own CA).
	CertFile string

	seeds map[string][]byte
	// genSeed is the Seed of the stateresttest rooms the suite plays: its
	// names also publish the keys those rooms' events are signed with.
	genSeed string
	srv     *http.Server

	mu       sync.Mutex
	events   map[string]json.RawMessage
	received []ReceivedTxn
}

// ReceivedTxn is a /send transaction the server under test sent the
// suite, as it came (the checks verify its X-Matrix signature).
type ReceivedTxn struct {
	Method, RequestURI, Host string
	Authorization            []string
	Body                     []byte
	PDUs                     []json.RawMessage
}

// StartSuiteServer starts the suite's homeserver on listen
// ("127.0.0.1:0" for any port) with its certificate in tlsDir (created
// there if missing). Its signing keys are new for each run.
func StartSuiteServer(listen, tlsDir string) (*SuiteServer, error) {
	s := &SuiteServer{Names: []string{SuiteNameA, SuiteNameB, SuiteNameD}, events: map[string]json.RawMessage{}}
	keys, err := suiteKeys(tlsDir, s.Names)
	if err != nil {
		return nil, fmt.Errorf("conformance: the suite's signing keys: %w", err)
	}
	s.seeds, s.genSeed = keys.Seeds, keys.GenSeed
	certFile, keyFile, err := SuiteCertificate(tlsDir)
	if err != nil {
		return nil, fmt.Errorf("conformance: the suite's certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("conformance: the suite's certificate: %w", err)
	}
	s.CertFile = certFile
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("conformance: the suite's listener: %w", err)
	}
	s.Addr = ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// suiteKeyFile holds the suite's signing keys next to its certificate:
// a server under test keeps the keys it fetched (under the same key IDs)
// across runs, so runs against it must sign with the same keys.
type suiteKeyFile struct {
	Seeds   map[string][]byte `json:"seeds"`
	GenSeed string            `json:"stateresttest_seed"`
}

// suiteKeys loads dir/suite-keys.json, or makes new keys and writes it.
func suiteKeys(dir string, names []string) (suiteKeyFile, error) {
	path := filepath.Join(dir, "suite-keys.json")
	var k suiteKeyFile
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &k); err != nil {
			return k, fmt.Errorf("%s: %w", path, err)
		}
		for _, n := range names {
			if len(k.Seeds[n]) != ed25519.SeedSize {
				return k, fmt.Errorf("%s: no seed of %d bytes for %s", path, ed25519.SeedSize, n)
			}
		}
		if k.GenSeed == "" {
			return k, fmt.Errorf("%s: no stateresttest_seed", path)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	k.Seeds = map[string][]byte{}
	for _, n := range names {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return k, err
		}
		k.Seeds[n] = seed
	}
	gs := make([]byte, 16)
	if _, err := rand.Read(gs); err != nil {
		return k, err
	}
	k.GenSeed = fmt.Sprintf("conformance %x", gs)
	b, err := json.Marshal(k)
	if err != nil {
		return k, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, err
	}
	return k, os.WriteFile(path, b, 0o600)
}

// SuiteCertificate returns the suite's TLS certificate and key files in
// dir (suite-cert.pem, suite-key.pem), creating them if missing: a
// self-signed CA certificate for the suite's names, 127.0.0.1 and ::1,
// which the server under test is told to trust.
func SuiteCertificate(dir string) (certFile, keyFile string, err error) {
	return selfSignedCert(dir, "suite", SuiteNameA, SuiteNameB, SuiteNameD)
}

// Close stops the listener.
func (s *SuiteServer) Close() error { return s.srv.Close() }

// GenParams are the stateresttest parameters of the rooms the suite
// plays (the caller sets Servers and RoomID): its Seed derives the keys
// the suite's names publish under stateresttest.KeyID.
func (s *SuiteServer) GenParams() stateresttest.Params {
	p := stateresttest.DefaultParams()
	p.Seed = s.genSeed
	return p
}

// Seed returns the ed25519 seed of name's signing key.
func (s *SuiteServer) Seed(name string) []byte { return s.seeds[name] }

// Key returns name's signing key.
func (s *SuiteServer) Key(name string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.seeds[name])
}

// Serve makes events (federation format) available on the fetch
// endpoints.
func (s *SuiteServer) Serve(events ...json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		if id := eventIDOf(ev); id != "" {
			s.events[id] = ev
		}
	}
}

// Received returns the transactions the server under test sent the
// suite.
func (s *SuiteServer) Received() []ReceivedTxn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ReceivedTxn(nil), s.received...)
}

// FedDo sends a request signed by from (one of the suite's names) to the
// server under test's federation API and returns the status and body.
func (e *Env) FedDo(ctx context.Context, from, method, path string, body any) (int, []byte, error) {
	return e.FedDoSigned(ctx, from, e.ServerName, e.Suite.Key(from), method, path, body)
}

// FedDoSigned sends a request from origin to the server under test's
// federation API signed by key for destination (the hostile checks change
// them).
func (e *Env) FedDoSigned(ctx context.Context, origin, destination string, key ed25519.PrivateKey, method, path string, body any) (int, []byte, error) {
	fr := fclient.NewFederationRequest(method, spec.ServerName(origin), spec.ServerName(destination), path)
	if body != nil {
		if err := fr.SetContent(body); err != nil {
			return 0, nil, fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
	}
	if err := fr.Sign(spec.ServerName(origin), gomatrixserverlib.KeyID(SuiteKeyID), key); err != nil {
		return 0, nil, fmt.Errorf("signing %s %s: %w", method, path, err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return 0, nil, err
	}
	return e.FedDoRaw(ctx, req)
}

// FedDoRaw sends req (a matrix:// request, or one whose URL is only a
// path) to the server under test's federation URL.
func (e *Env) FedDoRaw(ctx context.Context, req *http.Request) (int, []byte, error) {
	u, err := req.URL.Parse(e.FederationURL + req.URL.RequestURI())
	if err != nil {
		return 0, nil, err
	}
	out := req.Clone(ctx)
	out.URL, out.Host = u, u.Host
	resp, err := e.FedHTTP.Do(out)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the body: %w", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, b, nil
}

// serve answers the server under test.
func (s *SuiteServer) serve(w http.ResponseWriter, r *http.Request) {
	name := r.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	if _, ok := s.seeds[name]; !ok {
		name = SuiteNameA
	}
	p := r.URL.Path
	switch {
	case p == "/_matrix/key/v2/server":
		s.serverKey(w, name)
	case strings.HasPrefix(p, "/_matrix/federation/v1/event/"):
		s.mu.Lock()
		ev, ok := s.events[strings.TrimPrefix(p, "/_matrix/federation/v1/event/")]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": "unknown event"})
			return
		}
		writeJSON(w, 200, map[string]any{"origin": name, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{ev}})
	case strings.HasPrefix(p, "/_matrix/federation/v1/event_auth/"):
		parts := strings.Split(p, "/")
		writeJSON(w, 200, map[string]any{"auth_chain": s.authChain(parts[len(parts)-1])})
	case strings.HasPrefix(p, "/_matrix/federation/v1/get_missing_events/"):
		var body struct {
			Earliest []string `json:"earliest_events"`
			Latest   []string `json:"latest_events"`
			Limit    int      `json:"limit"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body)
		writeJSON(w, 200, map[string]any{"events": s.missing(body.Earliest, body.Latest, body.Limit)})
	case strings.HasPrefix(p, "/_matrix/federation/v1/send/"):
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		var body struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		_ = json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.received = append(s.received, ReceivedTxn{Method: r.Method, RequestURI: r.URL.RequestURI(), Host: r.Host,
			Authorization: r.Header.Values("Authorization"), Body: raw, PDUs: body.PDUs})
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"pdus": map[string]any{}})
	default:
		writeJSON(w, 404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "the conformance suite does not serve " + p})
	}
}

// serverKey answers GET /_matrix/key/v2/server for name: its own key
// and the key of its stateresttest rooms, the answer signed by both.
func (s *SuiteServer) serverKey(w http.ResponseWriter, name string) {
	keys := map[gomatrixserverlib.KeyID]ed25519.PrivateKey{
		SuiteKeyID:          s.Key(name),
		stateresttest.KeyID: ed25519.NewKeyFromSeed(s.GenParams().SigningSeed(name)),
	}
	fields := gomatrixserverlib.ServerKeyFields{
		ServerName:    spec.ServerName(name),
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{},
		ValidUntilTS:  spec.AsTimestamp(time.Now().Add(24 * time.Hour)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
	}
	for id, k := range keys {
		fields.VerifyKeys[id] = gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(k.Public().(ed25519.PublicKey))}
	}
	b, err := json.Marshal(fields)
	for id, k := range keys {
		if err == nil {
			b, err = gomatrixserverlib.SignJSON(name, id, k, b)
		}
	}
	if err != nil {
		writeJSON(w, 500, map[string]string{"errcode": "M_UNKNOWN", "error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// authChain is every event reachable through auth_events from id.
func (s *SuiteServer) authChain(id string) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []json.RawMessage
	var walk func(id string)
	walk = func(id string) {
		ev, ok := s.events[id]
		if !ok {
			return
		}
		for _, a := range refs(ev, "auth_events") {
			if !seen[a] {
				seen[a] = true
				if e, ok := s.events[a]; ok {
					out = append(out, e)
				}
				walk(a)
			}
		}
	}
	walk(id)
	return out
}

// missing is the ancestors (through prev_events) of latest that are not
// earliest nor behind them, up to limit.
func (s *SuiteServer) missing(earliest, latest []string, limit int) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit <= 0 || limit > 50 {
		limit = 50
	}
	stop := map[string]bool{}
	for _, e := range earliest {
		stop[e] = true
	}
	seen := map[string]bool{}
	var out []json.RawMessage
	queue := []string{}
	for _, l := range latest {
		if ev, ok := s.events[l]; ok {
			queue = append(queue, refs(ev, "prev_events")...)
		}
	}
	for len(queue) > 0 && len(out) < limit {
		id := queue[0]
		queue = queue[1:]
		if seen[id] || stop[id] {
			continue
		}
		seen[id] = true
		ev, ok := s.events[id]
		if !ok {
			continue
		}
		out = append(out, ev)
		queue = append(queue, refs(ev, "prev_events")...)
	}
	return out
}

// refs reads a list of event IDs of an event.
func refs(ev json.RawMessage, field string) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(ev, &m) != nil {
		return nil
	}
	var ids []string
	_ = json.Unmarshal(m[field], &ids)
	return ids
}

// eventIDOf is an m.mls.1 event's ID (its reference hash, SPEC-NOTES §2)
// computed from its federation JSON.
func eventIDOf(ev json.RawMessage) string { return roomversion.ReferenceIDOf(ev) }

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
