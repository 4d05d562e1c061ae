// Package federation owns the Matrix server-server API of an mlsmode
// homeserver (SPEC-NOTES §8, §12): gorilla/mux handlers a homeserver mounts
// on its own router with Register, and the outbound side other packages
// use to reach remote servers.
//
// What it owns:
//
//   - GET /_matrix/key/v2/server: this server's ed25519 signing key, signed
//     by itself, valid for Config.KeyValidity.
//   - Remote signing keys (KeyFetcher): looked up in storage first, fetched
//     from the server's own key endpoint otherwise (the response's
//     self-signatures checked with gomatrixserverlib), stored with their
//     valid_until_ts and fetched again when they no longer cover the time
//     asked for. It implements roomversion.KeyFetcher for event signatures
//     and backs the gomatrixserverlib.KeyRing that checks X-Matrix.
//   - X-Matrix request authentication: every /_matrix/federation request
//     must carry a valid signature of its origin addressed to this server
//     (401 M_UNAUTHORIZED otherwise); handlers see the verified origin.
//     Outbound requests are signed by Client.
//   - The room fetch endpoints (/event, /state, /state_ids, /event_auth,
//     /get_missing_events, /backfill), answered only to servers listed in
//     `servers` of the room's current commit, and their client side
//     (Fetcher).
//
// Handlers decode the request, call one function that reads storage, and
// encode the answer; every refusal is a *matrixerr.Error written in one
// place (writeError). docs/FEDERATION.md lists the endpoints.
//
//   - PUT /send/{txnId}: at most 50 PDUs and 100 EDUs, the body's origin the
//     request's; PDUs go to roomserver.ReceivePDUs, m.direct_to_device EDUs
//     to userapi; the answer is recorded and a retried transaction ID is
//     answered from it without being applied again. Client.SendTransaction
//     is the outbound side, the Transport of federation/sender's queue.
//   - The remote invite (SPEC-NOTES §12), both sides; RoomRemote gives the
//     room logic the outbound queue and invites.
//   - The user endpoints (keys query and claim, devices, profile) and
//     UserRemote, userapi's way to other servers.
package federation

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// Config configures the API.
type Config struct {
	// ServerName is this server's name; KeyID ("ed25519:...") and
	// PrivateKey its signing key.
	ServerName string
	KeyID      string
	PrivateKey ed25519.PrivateKey
	// Store is the server's storage.
	Store storage.Database
	// Rooms is the room logic: /send hands it received PDUs. Without it
	// /send answers 501.
	Rooms *roomserver.Server
	// Users receives m.direct_to_device EDUs (Welcomes); optional.
	Users *userapi.Service
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Transport carries outbound HTTPS requests; nil means
	// http.DefaultTransport. Tests pass an httptest.Server's client
	// transport, which trusts the test certificate.
	Transport http.RoundTripper
	// Resolve pins server names to "host:port" addresses; names not in it
	// are resolved as the Matrix spec says (well-known, SRV, port 8448).
	Resolve map[string]string
	// KeyValidity is how long the published key response is valid
	// (valid_until_ts = now + KeyValidity); default 7 days.
	KeyValidity time.Duration
	// MaxBodyBytes limits inbound request bodies; default 64 MiB
	// (SPEC-NOTES §2).
	MaxBodyBytes int64
	// Timeout bounds one outbound request; default 30 s.
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// API is the server-server API of one homeserver.
type API struct {
	cfg     Config
	public  ed25519.PublicKey
	client  *Client
	keys    *KeyFetcher
	ring    gomatrixserverlib.JSONVerifier
	fetcher *Fetcher
	// paths are the registered routes' path patterns (405 or 404).
	paths []*regexp.Regexp
}

// New returns the API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.ServerName == "" || cfg.Store == nil || len(cfg.PrivateKey) != ed25519.PrivateKeySize {
		return nil, errors.New("federation: ServerName, Store and an ed25519 PrivateKey are required")
	}
	if !strings.HasPrefix(cfg.KeyID, "ed25519:") || len(cfg.KeyID) == len("ed25519:") {
		return nil, fmt.Errorf("federation: key ID %q is not ed25519:<version>", cfg.KeyID)
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(cfg.ServerName)); !ok {
		return nil, fmt.Errorf("federation: %q is not a valid server name", cfg.ServerName)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.KeyValidity <= 0 {
		cfg.KeyValidity = 7 * 24 * time.Hour
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	resolve := make(map[string]string, len(cfg.Resolve))
	for k, v := range cfg.Resolve {
		resolve[k] = v
	}
	cfg.Resolve = resolve
	a := &API{cfg: cfg, public: cfg.PrivateKey.Public().(ed25519.PublicKey)}
	a.client = newClient(cfg)
	a.keys = newKeyFetcher(cfg, a.public, a.client)
	a.ring = gomatrixserverlib.KeyRing{KeyDatabase: a.keys.db, KeyFetchers: []gomatrixserverlib.KeyFetcher{a.keys.direct}}
	a.fetcher = NewFetcher(a.client)
	return a, nil
}

// Attach gives the API the room logic and the user logic once they are
// built. They need the API's KeyFetcher, Fetcher and Client (and the
// outbound queue built on the Client), so a server builds the API first,
// then rooms and users from it, then attaches them before serving.
func (a *API) Attach(rooms *roomserver.Server, users *userapi.Service) {
	a.cfg.Rooms, a.cfg.Users = rooms, users
}

// Client returns the signing client for outbound requests.
func (a *API) Client() *Client { return a.client }

// KeyFetcher returns the remote key fetcher (roomversion.KeyFetcher).
func (a *API) KeyFetcher() *KeyFetcher { return a.keys }

// Fetcher returns the client side of the room fetch endpoints.
func (a *API) Fetcher() *Fetcher { return a.fetcher }

func (a *API) now() time.Time { return a.cfg.Clock() }

// Register mounts the API on r: /_matrix/key/v2/server and everything
// under /_matrix/federation (X-Matrix authenticated). Unknown paths under
// both prefixes answer 404 M_UNRECOGNIZED (405 for a known path with
// another method); r's other routes are untouched.
func (a *API) Register(r *mux.Router) {
	k := r.PathPrefix("/_matrix/key").Subrouter()
	k.NotFoundHandler = unrecognized{a}
	k.MethodNotAllowedHandler = unrecognized{a}
	a.handle(k, http.MethodGet, "/v2/server", false, a.serverKeys)

	f := r.PathPrefix("/_matrix/federation").Subrouter()
	f.NotFoundHandler = k.NotFoundHandler
	f.MethodNotAllowedHandler = k.MethodNotAllowedHandler
	a.handle(f, http.MethodGet, "/v1/event/{eventId}", true, a.getEvent)
	a.handle(f, http.MethodGet, "/v1/state/{roomId}", true, a.getState)
	a.handle(f, http.MethodGet, "/v1/state_ids/{roomId}", true, a.getStateIDs)
	a.handle(f, http.MethodGet, "/v1/event_auth/{roomId}/{eventId}", true, a.getEventAuth)
	a.handle(f, http.MethodPost, "/v1/get_missing_events/{roomId}", true, a.getMissingEvents)
	a.handle(f, http.MethodGet, "/v1/backfill/{roomId}", true, a.getBackfill)
	a.handle(f, http.MethodPut, "/v1/send/{txnId}", true, a.send)
	a.handle(f, http.MethodPut, invitePath, true, a.invite)
	a.registerUserRoutes(f)
}

// Handler returns a router with only this API mounted (tests, and servers
// with nothing else to serve).
func (a *API) Handler() http.Handler {
	r := mux.NewRouter()
	a.Register(r)
	return r
}
