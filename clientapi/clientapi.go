// Package clientapi owns the Matrix client-server API of MLS rooms
// (SPEC-NOTES §6-§9, §11): gorilla/mux handlers that a homeserver mounts on
// its own router with Register. Handlers decode the request, call one
// function of the layer below (roomserver for rooms, events and /sync;
// userapi for accounts, devices, profiles, filters, keys and to-device
// messages) and encode the answer; every refusal is a Matrix error written
// in one place (writeError). The package holds no room logic.
//
// Every request: a body size limit (413 M_TOO_LARGE), JSON that does not
// parse (400 M_NOT_JSON), wrong shapes (400 M_BAD_JSON naming the field),
// missing or unknown tokens (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN), unknown
// endpoints under /_matrix/client (404 M_UNRECOGNIZED), and a per-device
// rate limit (429 M_LIMIT_EXCEEDED with retry_after_ms). docs/CLIENT-API.md
// lists the endpoints.
package clientapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/userapi"
)

// Device is the caller of an authenticated request.
type Device struct {
	UserID   string
	DeviceID string
}

// Authenticator tells who owns an access token; the host owns it (a
// userapi.Service is one). An unknown token is a *matrixerr.Error (401
// M_UNKNOWN_TOKEN).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (userID, deviceID string, err error)
}

// Config configures the API.
type Config struct {
	// ServerName is this homeserver's name (the domain of local user IDs).
	ServerName string
	// Rooms is the room logic; Users the account, key and to-device logic.
	Rooms *roomserver.Server
	Users *userapi.Service
	// Auth resolves access tokens; nil means Users.
	Auth Authenticator
	// BaseURL is advertised by /.well-known/matrix/client ("" leaves it
	// out: clients use the URL they reached).
	BaseURL string
	// Clock defaults to time.Now.
	Clock func() time.Time
	// MaxBodyBytes limits request bodies; default 8 MiB (a 2 MiB commit
	// in base64 JSON, a 4 MiB welcome in a to-device body).
	MaxBodyBytes int64
	// RateLimit limits requests per device.
	RateLimit RateLimit
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// API is the client-server API.
type API struct {
	cfg     Config
	limiter *limiter
	// paths are the registered routes' path patterns (405 or 404).
	paths []*regexp.Regexp
}

// New returns the API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.ServerName == "" || cfg.Rooms == nil || cfg.Users == nil {
		return nil, errors.New("clientapi: ServerName, Rooms and Users are required")
	}
	if cfg.Auth == nil {
		cfg.Auth = cfg.Users
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &API{cfg: cfg, limiter: newLimiter(cfg.RateLimit)}, nil
}

func (a *API) now() time.Time { return a.cfg.Clock() }

// Register mounts the API on r: /.well-known/matrix/client and everything
// under /_matrix/client. Unknown paths under /_matrix/client answer 404
// M_UNRECOGNIZED (405 for a known path with another method); r's other
// routes are untouched.
func (a *API) Register(r *mux.Router) {
	a.handle(r, http.MethodGet, "/.well-known/matrix/client", false, a.wellKnown)
	c := r.PathPrefix("/_matrix/client").Subrouter()
	c.NotFoundHandler = unrecognized{a, http.StatusNotFound}
	c.MethodNotAllowedHandler = unrecognized{a, http.StatusMethodNotAllowed}
	a.handle(c, http.MethodGet, "/versions", false, a.versions)
	v3 := c.PathPrefix("/v3").Subrouter()
	v3.NotFoundHandler = c.NotFoundHandler
	v3.MethodNotAllowedHandler = c.MethodNotAllowedHandler
	a.registerAccountRoutes(v3)
	a.registerKeyRoutes(v3)
	a.registerRoomRoutes(v3)
	a.registerSyncRoutes(v3)
	u := c.PathPrefix("/unstable/de.bwi.mls").Subrouter()
	u.NotFoundHandler = c.NotFoundHandler
	u.MethodNotAllowedHandler = c.MethodNotAllowedHandler
	a.registerUnstableRoutes(u)
}

// Handler returns a router with only this API mounted (tests, and servers
// with nothing else to serve).
func (a *API) Handler() http.Handler {
	r := mux.NewRouter()
	a.Register(r)
	return r
}

func (a *API) wellKnown(*request) (any, error) {
	out := map[string]any{}
	if a.cfg.BaseURL != "" {
		out["m.homeserver"] = map[string]string{"base_url": a.cfg.BaseURL}
	}
	return out, nil
}

func (a *API) versions(*request) (any, error) {
	return map[string]any{
		"versions":          []string{"v1.11", "v1.12"},
		"unstable_features": map[string]bool{"de.bwi.mls": true},
	}, nil
}
