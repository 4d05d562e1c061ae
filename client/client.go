package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Config says where a client talks to and how it behaves.
type Config struct {
	// BaseURL is the homeserver's client-server API ("http://127.0.0.1:8008").
	BaseURL string
	// HTTP is the HTTP client; nil means http.DefaultClient.
	HTTP *http.Client
	// Store keeps the client's state; nil means a fresh memory store.
	Store Store
	// Suite is the MLS cipher suite of the device's credential, key
	// packages and the rooms it creates; zero means suite 1
	// (X25519, AES-128-GCM, SHA-256, Ed25519).
	Suite mls.CipherSuite
	// Version is the room version of created rooms; "" means m.mls.1.
	Version roomversion.Version
	// OneTimeKeyPackages is how many one-time key packages the client
	// keeps on the server (refilled from /sync counts); zero means 10.
	OneTimeKeyPackages int
	// EpochHistory is how many past epochs keep their message keys, so
	// that messages arriving late (after a partition, say) can still be
	// read; zero means the mls package's default (4). More epochs read more
	// late messages and keep keys longer (less forward secrecy).
	EpochHistory int
	// Now is the client's clock (pending-commit timeouts, security.window);
	// nil means time.Now.
	Now func() time.Time
	// Log receives the client's log; nil discards it.
	Log *slog.Logger
	// Rand is the source of transaction IDs; nil means crypto/rand.
	Rand io.Reader
}

// Error is a Matrix error answered by the homeserver.
type Error struct {
	Status  int
	Errcode string
	Message string
	// Body is the whole error body (for fields such as current_commit).
	Body map[string]any
}

func (e *Error) Error() string {
	return fmt.Sprintf("homeserver answered %d %s: %s", e.Status, e.Errcode, e.Message)
}

// IsErrcode reports whether err is a Matrix error with errcode code.
func IsErrcode(err error, code string) bool {
	var me *Error
	return errors.As(err, &me) && me.Errcode == code
}

// ErrcodeWrongEpoch is the errcode of a send whose named commit is not the
// room's current one (SPEC-NOTES §11).
const ErrcodeWrongEpoch = "DE.BWI.MLS.WRONG_EPOCH"

// Client is one device of one user: its account, keys, rooms and their
// MLS state. Its methods are safe for concurrent use; they run one at a
// time.
type Client struct {
	cfg   Config
	hc    *http.Client
	store Store
	log   *slog.Logger

	// syncMu makes Sync calls take turns; mu guards everything else and
	// is not held during Sync's long-poll.
	syncMu sync.Mutex
	mu     sync.Mutex
	acct   account
	sign   *mls.Signer
	alg    string
	rooms  map[string]*room
	// txnPrefix makes transaction IDs unique across restarts.
	txnPrefix string
	txn       int
	// redoing is set while lost adds are being redone (they sync).
	redoing bool
}

// account is what the store keeps of the device (key "account").
type account struct {
	UserID     string `json:"user_id"`
	DeviceID   string `json:"device_id"`
	Token      string `json:"access_token"`
	Suite      uint16 `json:"suite"`
	Version    string `json:"room_version"`
	SignerKey  []byte `json:"mls_signature_key"`
	Since      string `json:"since,omitempty"`
	KeysSent   bool   `json:"device_keys_uploaded,omitempty"`
	MasterSeed []byte `json:"master_seed,omitempty"`
	SelfSeed   []byte `json:"self_signing_seed,omitempty"`
	UserSeed   []byte `json:"user_signing_seed,omitempty"`
}

const keyAccount = "account"

func newClient(cfg Config) *Client {
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.Suite == 0 {
		cfg.Suite = mls.X25519AES128GCMSHA256Ed25519
	}
	if cfg.Version == "" {
		cfg.Version = roomversion.V1
	}
	if cfg.OneTimeKeyPackages <= 0 {
		cfg.OneTimeKeyPackages = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	c := &Client{cfg: cfg, hc: cfg.HTTP, store: cfg.Store, log: cfg.Log, rooms: map[string]*room{}}
	p := make([]byte, 6)
	_, _ = io.ReadFull(cfg.Rand, p)
	c.txnPrefix = hex.EncodeToString(p)
	return c
}

// Register creates an account with the m.login.dummy flow, makes the
// device's MLS signature key and credential, uploads its device keys
// (signed with the MLS key), key packages and cross-signing keys, and
// stores everything in cfg.Store.
func Register(ctx context.Context, cfg Config, username, password string) (*Client, error) {
	c := newClient(cfg)
	var out struct {
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"username": username, "password": password, "auth": map[string]any{"type": "m.login.dummy"}}
	if err := c.do(ctx, "POST", "/_matrix/client/v3/register", "", body, &out); err != nil {
		return nil, fmt.Errorf("registering %s: %w", username, err)
	}
	if err := c.setUp(ctx, out.UserID, out.DeviceID, out.AccessToken, password); err != nil {
		return nil, err
	}
	return c, nil
}

// Login logs in as an existing user with a new device and sets it up as
// Register does. Cross-signing keys the user already has are not
// replaced; the new device is not cross-signed by them (it is for
// devices of the user that holds them: see CrossSignDevice).
func Login(ctx context.Context, cfg Config, username, password string) (*Client, error) {
	c := newClient(cfg)
	var out struct {
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": username}}
	if err := c.do(ctx, "POST", "/_matrix/client/v3/login", "", body, &out); err != nil {
		return nil, fmt.Errorf("logging in as %s: %w", username, err)
	}
	if err := c.setUp(ctx, out.UserID, out.DeviceID, out.AccessToken, password); err != nil {
		return nil, err
	}
	return c, nil
}

// Open resumes the device kept in cfg.Store (after a restart).
func Open(ctx context.Context, cfg Config) (*Client, error) {
	c := newClient(cfg)
	raw, err := c.store.Get(ctx, keyAccount)
	if err != nil {
		return nil, fmt.Errorf("opening the client store: %w", err)
	}
	if err := json.Unmarshal(raw, &c.acct); err != nil {
		return nil, fmt.Errorf("reading the stored account: %w", err)
	}
	c.cfg.Suite, c.cfg.Version = mls.CipherSuite(c.acct.Suite), roomversion.Version(c.acct.Version)
	if c.sign, err = mls.NewSigner(c.cfg.Suite, c.acct.SignerKey); err != nil {
		return nil, fmt.Errorf("reading the stored MLS signature key: %w", err)
	}
	if c.alg, err = c.cfg.Version.Algorithm(c.cfg.Suite); err != nil {
		return nil, err
	}
	if err := c.loadRooms(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) setUp(ctx context.Context, userID, deviceID, token, password string) error {
	var err error
	if c.sign, err = mls.GenerateSigner(c.cfg.Suite); err != nil {
		return fmt.Errorf("making the MLS signature key: %w", err)
	}
	if c.alg, err = c.cfg.Version.Algorithm(c.cfg.Suite); err != nil {
		return err
	}
	c.acct = account{UserID: userID, DeviceID: deviceID, Token: token, Suite: uint16(c.cfg.Suite),
		Version: string(c.cfg.Version), SignerKey: c.sign.PrivateKey()}
	if err := c.saveAccount(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.uploadKeys(ctx, c.cfg.OneTimeKeyPackages, true); err != nil {
		return err
	}
	if err := c.bootstrapCrossSigning(ctx, password); err != nil {
		return err
	}
	return nil
}

func (c *Client) saveAccount(ctx context.Context) error {
	b, err := json.Marshal(c.acct)
	if err != nil {
		return err
	}
	return c.store.Put(ctx, map[string][]byte{keyAccount: b})
}

// UserID is the client's user.
func (c *Client) UserID() string { return c.acct.UserID }

// DeviceID is the client's device.
func (c *Client) DeviceID() string { return c.acct.DeviceID }

// AccessToken is the device's access token.
func (c *Client) AccessToken() string { return c.acct.Token }

// ServerName is the server part of the client's user ID.
func (c *Client) ServerName() string { return roomversion.Domain(c.acct.UserID) }

// Algorithm is the room version's algorithm name of the client's suite.
func (c *Client) Algorithm() string { return c.alg }

// Close closes the client's store.
func (c *Client) Close() error { return c.store.Close() }

func (c *Client) nextTxn() string {
	c.txn++
	return fmt.Sprintf("mc%s-%d-%d", c.txnPrefix, c.cfg.Now().UnixNano(), c.txn)
}

// do sends a JSON request (body nil for none) with token ("" for none)
// and decodes a 2xx answer into out (nil to ignore it); other answers are
// *Error.
func (c *Client) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encoding the body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		e := &Error{Status: res.StatusCode}
		_ = json.Unmarshal(raw, &e.Body)
		e.Errcode, _ = e.Body["errcode"].(string)
		e.Message, _ = e.Body["error"].(string)
		if e.Errcode == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// call is do with the device's token.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	return c.do(ctx, method, path, c.acct.Token, body, out)
}

func roomPath(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}
