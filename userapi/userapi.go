// Package userapi owns the logic of accounts, devices, access tokens,
// profiles, /sync filters, device keys and MLS key packages (SPEC-NOTES §9)
// and to-device messages: everything of the client-server API that is not a
// room. It has no HTTP: package clientapi decodes requests and calls one
// Service method per endpoint, and federation will reuse the same methods
// for remote key queries, claims and to-device messages.
//
// Every refusal a client should see is a *matrixerr.Error (or, for
// user-interactive authentication, an *AuthRequired); every other error is
// an internal failure. docs/CLIENT-API.md lists the endpoints and
// their errors.
package userapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/storage"
)

// Config configures a Service.
type Config struct {
	// ServerName is this homeserver's name (the domain of local user IDs).
	ServerName string
	// Store keeps accounts, keys and to-device inboxes.
	Store storage.Database
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Rand is the source of access tokens, device IDs and UIA sessions;
	// default crypto/rand.Reader.
	Rand io.Reader
	// Remote reaches users on other servers; nil until federation exists
	// (remote users are then reported as unreachable).
	Remote Remote
	// BcryptCost is the cost of password hashes; default
	// bcrypt.DefaultCost (tests use bcrypt.MinCost).
	BcryptCost int
	// RegistrationDisabled makes POST /register answer 403 M_FORBIDDEN.
	RegistrationDisabled bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// CheckKeyPackage checks each uploaded key package; nil means the
	// package's CheckKeyPackage (every SPEC-NOTES §9 check). Replacing it
	// makes a server that breaks the specification: the conformance
	// suite's own tests do, to show that its checks catch it.
	CheckKeyPackage func(ctx context.Context, algorithm, keyID, value, userID, deviceID string, now time.Time) (*mls.KeyPackage, error)
}

// QueryKeysResponse is the answer of a device key query (POST
// /keys/query, and the federation user/keys/query): user ID -> device ID
// -> the device keys JSON (signatures uploaded through
// /keys/signatures/upload merged in), the users' cross-signing keys (user
// ID -> CrossSigningKey; user_signing_keys only of the caller), and the
// servers that could not be reached.
type QueryKeysResponse struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys,omitempty"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys,omitempty"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys,omitempty"`
	Failures        map[string]json.RawMessage            `json:"failures"`
}

// Remote reaches users on other servers (the federation issue implements
// it).
type Remote interface {
	// QueryKeys asks server for the device keys of its users (user ID ->
	// device IDs, empty for all).
	QueryKeys(ctx context.Context, server string, req map[string][]string) (QueryKeysResponse, error)
	// ClaimKeys claims one key package per device (user ID -> device ID ->
	// algorithm); the answer is user ID -> device ID -> key ID -> value.
	ClaimKeys(ctx context.Context, server string, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error)
	// SendToDevice sends to-device messages (user ID -> device ID or "*"
	// -> content) to server's users; messageID deduplicates retries.
	SendToDevice(ctx context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error
	// Profile fetches a remote user's profile ("" field for all of it, or
	// "displayname" / "avatar_url").
	Profile(ctx context.Context, userID, field string) (storage.Profile, error)
	// DeviceListUpdate tells the other servers sharing a room with a local
	// user that one of its devices changed keys (keys: the device_keys
	// object) or was deleted (an m.device_list_update EDU, queued durably
	// for each). An error means the update may not be queued everywhere:
	// the API call that changed the device fails, so the client retries.
	DeviceListUpdate(ctx context.Context, userID, deviceID string, deleted bool, keys json.RawMessage) error
}

// Service is the user logic of one homeserver. It is safe for concurrent
// use.
type Service struct {
	cfg Config

	// dummyHash is compared against for unknown users at login, so that
	// the answer takes as long as for known ones.
	dummyOnce sync.Once
	dummyHash []byte
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.ServerName == "" || cfg.Store == nil {
		return nil, errors.New("userapi: ServerName and Store are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("userapi: BcryptCost %d outside [%d, %d]", cfg.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckKeyPackage == nil {
		cfg.CheckKeyPackage = CheckKeyPackage
	}
	return &Service{cfg: cfg}, nil
}

// ServerName is the homeserver's name.
func (s *Service) ServerName() string { return s.cfg.ServerName }

func (s *Service) now() time.Time { return s.cfg.Clock() }

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

// Authenticate returns the user and device owning an access token; an
// unknown token is 401 M_UNKNOWN_TOKEN.
func (s *Service) Authenticate(ctx context.Context, token string) (userID, deviceID string, err error) {
	userID, deviceID, err = s.cfg.Store.AccessTokenOwner(ctx, token)
	if errors.Is(err, storage.ErrNotFound) {
		return "", "", matrixerr.UnknownToken()
	}
	if err != nil {
		return "", "", fmt.Errorf("looking up access token: %w", err)
	}
	return userID, deviceID, nil
}

// randomString returns n random bytes in URL-safe unpadded base64.
func (s *Service) randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// newDeviceID returns a random device ID of 10 upper-case letters.
func (s *Service) newDeviceID() (string, error) {
	b := make([]byte, 10)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	for i := range b {
		b[i] = 'A' + b[i]%26
	}
	return string(b), nil
}

// newAccessToken returns a fresh access token.
func (s *Service) newAccessToken() (string, error) {
	r, err := s.randomString(32)
	if err != nil {
		return "", err
	}
	return "mls_" + r, nil
}

// notify wakes /sync long-polls waiting on key (a user ID). A failure is
// logged, not returned: the write it follows has happened.
func (s *Service) notify(ctx context.Context, key string) {
	if err := s.cfg.Store.NotifyChange(ctx, key); err != nil {
		s.cfg.Logger.Warn("notifying change", slog.String("key", key), slog.Any("error", err))
	}
}

// deviceListUpdate tells other servers of a change to a local device
// (Remote.DeviceListUpdate; nothing without a Remote). Callers call it
// before the store records the change, so a failure leaves nothing
// changed and a retry of the request sends the update again.
func (s *Service) deviceListUpdate(ctx context.Context, userID, deviceID string, deleted bool, keys json.RawMessage) error {
	if s.cfg.Remote == nil {
		return nil
	}
	if err := s.cfg.Remote.DeviceListUpdate(ctx, userID, deviceID, deleted, keys); err != nil {
		return fmt.Errorf("telling other servers of the device list change of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}

// isLocal reports whether a user ID belongs to this server.
func (s *Service) isLocal(userID string) bool {
	return serverOf(userID) == s.cfg.ServerName
}

// serverOf returns the server name of a user ID ("" if malformed).
func serverOf(userID string) string {
	_, server, ok := strings.Cut(userID, ":")
	if !ok || !strings.HasPrefix(userID, "@") {
		return ""
	}
	return server
}

// checkUserID checks the shape of a user ID given by a client (path or
// body): "@localpart:server", at most 255 bytes.
func checkUserID(what, userID string) error {
	if len(userID) > 255 || !strings.HasPrefix(userID, "@") || serverOf(userID) == "" || strings.Index(userID, ":") < 2 {
		return matrixerr.InvalidParam("%s: %q is not a user ID", what, userID)
	}
	return nil
}

// AuthRequired is the 401 answer of user-interactive authentication
// (Matrix spec, "User-interactive authentication API"): the flows the
// server accepts, a session, and, when a stage failed, its errcode and
// error. The HTTP layer writes it as it is.
type AuthRequired struct {
	Flows   []AuthFlow                `json:"flows"`
	Params  map[string]map[string]any `json:"params"`
	Session string                    `json:"session"`
	// Completed lists the stages done (never any here: every flow has one
	// stage).
	Completed []string `json:"completed,omitempty"`
	ErrCode   string   `json:"errcode,omitempty"`
	Message   string   `json:"error,omitempty"`
}

// AuthFlow is one UIA flow: its stages in order.
type AuthFlow struct {
	Stages []string `json:"stages"`
}

// Error describes the refusal.
func (a *AuthRequired) Error() string {
	if a.ErrCode != "" {
		return "user-interactive authentication required: " + a.ErrCode + ": " + a.Message
	}
	return "user-interactive authentication required"
}

// Authentication types.
const (
	LoginDummy    = "m.login.dummy"
	LoginPassword = "m.login.password"
	IDUser        = "m.id.user"
)

// AuthData is the "auth" object of a UIA request.
type AuthData struct {
	Type    string `json:"type"`
	Session string `json:"session,omitempty"`
	// Identifier, User and Password are the m.login.password fields.
	Identifier *Identifier `json:"identifier,omitempty"`
	User       string      `json:"user,omitempty"`
	Password   string      `json:"password,omitempty"`
}

// Identifier is a login identifier; only m.id.user is supported.
type Identifier struct {
	Type string `json:"type"`
	User string `json:"user,omitempty"`
}

// authRequired returns a fresh 401 UIA answer offering one single-stage
// flow of stage.
func (s *Service) authRequired(stage, errcode, message string) error {
	session, err := s.randomString(16)
	if err != nil {
		return err
	}
	return &AuthRequired{
		Flows:   []AuthFlow{{Stages: []string{stage}}},
		Params:  map[string]map[string]any{},
		Session: session,
		ErrCode: errcode,
		Message: message,
	}
}
