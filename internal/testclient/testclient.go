// Package testclient is a real MLS client of one device over the
// client-server API, for tests, the e2e tests and the conformance suite:
// it registers (m.login.dummy), uploads its credential and key packages,
// creates rooms and sends their epoch-0 commit, stages and sends commits
// and pending commits, encrypts and decrypts messages and follows /sync.
// It reports failures through testing.TB. Only tests import it.
package testclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// Suite is the cipher suite of the clients New makes (NewWithSuite takes
// another).
const Suite = mls.X25519AES128GCMSHA256Ed25519

// Response is a decoded HTTP response.
type Response struct {
	Status int
	// Body is the JSON object of the response (nil if it is not one).
	Body map[string]any
	Raw  []byte
}

// Str returns the string field key of the body ("" if absent).
func (r Response) Str(key string) string { s, _ := r.Body[key].(string); return s }

// Errcode returns the body's errcode.
func (r Response) Errcode() string { return r.Str("errcode") }

// Must fails the test unless the response has the status.
func (r Response) Must(tb testing.TB, status int, what string) Response {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Raw)
	}
	return r
}

// KeyPackage is an uploaded key package with its private keys.
type KeyPackage struct {
	KeyPackage *mls.KeyPackage
	Secrets    *mls.KeyPackageSecrets
}

// Client is one device of one user, with its MLS state.
type Client struct {
	T testing.TB
	// BaseURL is the server's URL ("http://127.0.0.1:8008"). It may be
	// changed between calls: processes serving one server name accept
	// each other's tokens.
	BaseURL string
	HTTP    *http.Client
	// NextTxn returns a fresh transaction ID; New sets a per-client
	// counter.
	NextTxn func() string

	UserID, DeviceID, Token string
	Signer                  *mls.Signer
	Credential              mls.Credential
	Version                 roomversion.Version
	// CipherSuite is the suite of the client's signer, credential, key
	// packages and rooms (Suite for clients New makes).
	CipherSuite mls.CipherSuite
	// Alg is the room version's algorithm name of CipherSuite.
	Alg string
	// KeyPackages are the uploaded key packages by key ID.
	KeyPackages map[string]*KeyPackage
	// Group is the MLS group of the client's room (nil before one).
	Group *mls.Group
	// CommitID is the commit Group is at ("" before epoch 0).
	CommitID string
	// Since is the last /sync token.
	Since string
	// Kept is a copy of Group kept at commit KeptAt (Keep).
	Kept   *mls.Group
	KeptAt string
}

// New registers name with the m.login.dummy flow on baseURL and makes the
// device's MLS signer and credential of Suite. hc nil means
// http.DefaultClient.
func New(tb testing.TB, baseURL string, hc *http.Client, name string) *Client {
	tb.Helper()
	return NewWithSuite(tb, baseURL, hc, name, Suite)
}

// NewWithSuite is New for a client whose signer, key packages and rooms
// use cipher suite cs (one the room version accepts).
func NewWithSuite(tb testing.TB, baseURL string, hc *http.Client, name string, cs mls.CipherSuite) *Client {
	tb.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	c := &Client{T: tb, BaseURL: baseURL, HTTP: hc, Version: roomversion.V1, CipherSuite: cs, KeyPackages: map[string]*KeyPackage{}}
	prefix := make([]byte, 4)
	_, _ = rand.Read(prefix)
	var txn atomic.Int64
	c.NextTxn = func() string { return fmt.Sprintf("tc%s-%d", hex.EncodeToString(prefix), txn.Add(1)) }
	r := c.Request("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": name, "password": "pw-" + name, "auth": map[string]any{"type": "m.login.dummy"}})
	r.Must(tb, 200, "register "+name)
	c.UserID, c.DeviceID, c.Token = r.Str("user_id"), r.Str("device_id"), r.Str("access_token")
	var err error
	if c.Signer, err = mls.GenerateSigner(cs); err != nil {
		tb.Fatal(err)
	}
	if c.Credential, err = mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: c.UserID, DeviceID: c.DeviceID, SignatureKey: c.Signer.PublicKey()}); err != nil {
		tb.Fatal(err)
	}
	if c.Alg, err = c.Version.Algorithm(cs); err != nil {
		tb.Fatal(err)
	}
	return c
}

// Request sends a request to BaseURL+path with token ("" for none); body
// is JSON-encoded unless it is nil, []byte or string.
func (c *Client) Request(method, path, token string, body any) Response {
	c.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.T.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.BaseURL+path, rd)
	if err != nil {
		c.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.T.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	out := Response{Status: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// Do sends a request with the client's access token.
func (c *Client) Do(method, path string, body any) Response {
	c.T.Helper()
	return c.Request(method, path, c.Token, body)
}

// RoomPath is /_matrix/client/v3/rooms/{roomID}rest.
func RoomPath(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}

// Content is the content of an MLS event of type typ carrying wire.
func Content(typ, alg string, wire []byte) map[string]string {
	enc := base64.RawURLEncoding
	if typ == roomversion.EventTypeEncrypted {
		enc = base64.RawStdEncoding
	}
	return map[string]string{"algorithm": alg, "ciphertext": enc.EncodeToString(wire)}
}

// Wire encodes an MLS message.
func Wire(tb testing.TB, m *mls.MLSMessage) []byte {
	tb.Helper()
	b, err := m.MarshalMLS()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FedMap is a federation map.
func FedMap(powers, servers, canPropose []string) *fedmap.Map {
	return &fedmap.Map{Federation: fedmap.Federation{Powers: powers, Servers: servers, CanPropose: canPropose}}
}

// Keep copies the group's current state, as a client keeps past states.
func (c *Client) Keep() {
	c.T.Helper()
	b, err := c.Group.MarshalState()
	if err != nil {
		c.T.Fatal(err)
	}
	if c.Kept, err = mls.LoadGroup(b, mls.GroupConfig{}); err != nil {
		c.T.Fatal(err)
	}
	c.KeptAt = c.CommitID
}

// NewKeyPackage makes a key package, keeps it in KeyPackages and returns
// its key ID and value (unpadded base64 of the MLSMessage).
func (c *Client) NewKeyPackage() (id, value string) {
	c.T.Helper()
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: c.Signer, Credential: c.Credential, Capabilities: client.Capabilities()})
	if err != nil {
		c.T.Fatal(err)
	}
	ref, err := kp.Ref()
	if err != nil {
		c.T.Fatal(err)
	}
	wire := Wire(c.T, &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp})
	id = c.Alg + ":" + base64.RawStdEncoding.EncodeToString(ref)
	c.KeyPackages[id] = &KeyPackage{kp, sec}
	return id, base64.RawStdEncoding.EncodeToString(wire)
}

// UploadKeys uploads the device keys with the credential (before the first
// /sync), n one-time key packages and, if fallback, a fallback one; it
// returns the one-time key counts.
func (c *Client) UploadKeys(n int, fallback bool) map[string]any {
	c.T.Helper()
	credBytes, err := c.Credential.MarshalMLS()
	if err != nil {
		c.T.Fatal(err)
	}
	otks := map[string]string{}
	for range n {
		id, val := c.NewKeyPackage()
		otks[id] = val
	}
	body := map[string]any{"one_time_keys": otks}
	if c.Since == "" {
		body["device_keys"] = map[string]any{
			"user_id": c.UserID, "device_id": c.DeviceID, "algorithms": []string{c.Alg},
			"keys": map[string]string{c.Alg + ":" + c.DeviceID: base64.RawStdEncoding.EncodeToString(credBytes)},
		}
	}
	if fallback {
		id, val := c.NewKeyPackage()
		body["fallback_keys"] = map[string]string{id: val}
	}
	r := c.Do("POST", "/_matrix/client/v3/keys/upload", body).Must(c.T, 200, "keys/upload")
	counts, _ := r.Body["one_time_key_counts"].(map[string]any)
	return counts
}

// CreateRoom creates a room and the MLS group, and sends the epoch-0
// commit with the federation map; it returns the room ID.
func (c *Client) CreateRoom(fm *fedmap.Map) string {
	c.T.Helper()
	r := c.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{
		"room_version": string(c.Version), "creation_content": map[string]any{"algorithm": c.Alg}}).Must(c.T, 200, "createRoom")
	roomID := r.Str("room_id")
	rc, err := client.RequiredCapabilities()
	if err != nil {
		c.T.Fatal(err)
	}
	c.Group, err = mls.CreateGroup(mls.CreateParams{GroupID: []byte(roomID), Signer: c.Signer, Credential: c.Credential,
		Capabilities: client.Capabilities(), Extensions: mls.Extensions{rc}})
	if err != nil {
		c.T.Fatal(err)
	}
	sc := c.Stage(fm, nil)
	id := c.PutCommit(roomID, sc).Must(c.T, 200, "epoch-0 commit").Str("event_id")
	c.AwaitCommit(roomID, id, sc)
	return roomID
}

// Stage makes a commit with the federation map and proposals.
func (c *Client) Stage(fm *fedmap.Map, proposals []*mls.Proposal) *mls.StagedCommit {
	c.T.Helper()
	opts, err := client.CommitOptions(fm, mls.CommitOptions{Proposals: proposals})
	if err != nil {
		c.T.Fatal(err)
	}
	sc, err := c.Group.Commit(opts)
	if err != nil {
		c.T.Fatal(err)
	}
	return sc
}

// withCommitID adds de.bwi.mls.commit_id naming CommitID to path.
func (c *Client) withCommitID(path string) string {
	if c.CommitID != "" {
		path += "?de.bwi.mls.commit_id=" + url.QueryEscape(c.CommitID)
	}
	return path
}

// PutCommit sends a staged commit with PUT /state (naming the commit the
// group is at). It does not merge it: see AwaitCommit.
func (c *Client) PutCommit(roomID string, sc *mls.StagedCommit) Response {
	c.T.Helper()
	content := Content(c.Version.CommitType(), c.Alg, Wire(c.T, sc.Message))
	return c.Do("PUT", c.withCommitID(RoomPath(roomID, "/state/"+c.Version.CommitType()+"/")), content)
}

// AwaitCommit syncs until the commit eventID comes back in the room's
// timeline, then merges sc (SPEC-NOTES §6: a commit is accepted only when
// it comes back in /sync).
func (c *Client) AwaitCommit(roomID, eventID string, sc *mls.StagedCommit) {
	c.T.Helper()
	for range 20 {
		for _, ev := range Timeline(c.Sync(2000), roomID) {
			if ev["event_id"] == eventID {
				if err := c.Group.Merge(sc); err != nil {
					c.T.Fatal(err)
				}
				c.CommitID = eventID
				return
			}
		}
	}
	c.T.Fatalf("%s: commit %s never came back in /sync", c.UserID, eventID)
}

// SendPending sends a staged commit as a pending commit.
func (c *Client) SendPending(roomID string, sc *mls.StagedCommit) Response {
	c.T.Helper()
	content := Content(c.Version.PendingCommitType(), c.Alg, Wire(c.T, sc.Message))
	return c.Do("PUT", c.withCommitID(RoomPath(roomID, "/send/"+c.Version.PendingCommitType()+"/"+c.NextTxn())), content)
}

// SendMessage encrypts an m.text message and sends it.
func (c *Client) SendMessage(roomID, text string) Response {
	c.T.Helper()
	pt, err := json.Marshal(map[string]any{"type": "m.room.message", "content": map[string]string{"msgtype": "m.text", "body": text}})
	if err != nil {
		c.T.Fatal(err)
	}
	m, err := c.Group.Encrypt(pt, nil)
	if err != nil {
		c.T.Fatal(err)
	}
	content := Content(roomversion.EventTypeEncrypted, c.Alg, Wire(c.T, m))
	return c.Do("PUT", c.withCommitID(RoomPath(roomID, "/send/m.room.encrypted/"+c.NextTxn())), content)
}

// Decrypt processes one MLS event's ciphertext in the group, merging
// other members' commits.
func (c *Client) Decrypt(ev map[string]any) (*mls.Received, error) {
	content, _ := ev["content"].(map[string]any)
	ct, _ := content["ciphertext"].(string)
	enc := base64.RawURLEncoding
	if ev["type"] == roomversion.EventTypeEncrypted {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(ct)
	if err != nil {
		return nil, err
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(b); err != nil {
		return nil, err
	}
	rec, err := c.Group.Process(&m)
	if err == nil && rec.Commit != nil {
		// Another member's commit: the server accepted it (it came back
		// in /sync or /messages), so merge it.
		if err := c.Group.Merge(rec.Commit); err != nil {
			return nil, err
		}
		c.CommitID, _ = ev["event_id"].(string)
	}
	return rec, err
}

// MessageText decrypts an m.room.encrypted event and returns the body of
// the m.room.message inside; it fails the test on any error.
func (c *Client) MessageText(ev map[string]any) string {
	c.T.Helper()
	rec, err := c.Decrypt(ev)
	if err != nil {
		c.T.Fatalf("%s decrypting %v: %v", c.UserID, ev["event_id"], err)
	}
	var pt struct {
		Type    string `json:"type"`
		Content struct {
			Body string `json:"body"`
		} `json:"content"`
	}
	if err := json.Unmarshal(rec.Application, &pt); err != nil || pt.Type != "m.room.message" {
		c.T.Fatalf("%s: %v is not an m.room.message (%v): %q", c.UserID, ev["event_id"], err, rec.Application)
	}
	return pt.Content.Body
}

// Sync runs /sync from Since and returns the body; it sets Since to
// next_batch.
func (c *Client) Sync(timeoutMS int) map[string]any {
	c.T.Helper()
	body, err := c.TrySync(context.Background(), timeoutMS)
	if err != nil {
		c.T.Fatal(err)
	}
	return body
}

// TrySync is Sync returning its error instead of failing the test, for
// goroutines other than the test's (a long-poll held while the test
// sends). It does not use T.
func (c *Client) TrySync(ctx context.Context, timeoutMS int) (map[string]any, error) {
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d", timeoutMS)
	if c.Since != "" {
		path += "&since=" + url.QueryEscape(c.Since)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	res, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: sync: %w", c.UserID, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: sync: reading the body: %w", c.UserID, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: sync: status %d: %s", c.UserID, res.StatusCode, raw)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("%s: sync: %w", c.UserID, err)
	}
	next, _ := body["next_batch"].(string)
	if next == "" {
		return nil, fmt.Errorf("%s: sync: no next_batch: %s", c.UserID, raw)
	}
	c.Since = next
	return body, nil
}

// Timeline returns the timeline events of a joined room in a sync body.
func Timeline(body map[string]any, roomID string) []map[string]any {
	rooms, _ := body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	room, _ := join[roomID].(map[string]any)
	tl, _ := room["timeline"].(map[string]any)
	evs, _ := tl["events"].([]any)
	var out []map[string]any
	for _, e := range evs {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// ClaimKeyPackage claims one key package of userID's deviceID with
// /keys/claim.
func (c *Client) ClaimKeyPackage(userID, deviceID string) *mls.KeyPackage {
	c.T.Helper()
	r := c.Do("POST", "/_matrix/client/v3/keys/claim", map[string]any{
		"one_time_keys": map[string]any{userID: map[string]string{deviceID: c.Alg}}}).Must(c.T, 200, "keys/claim")
	otks, _ := r.Body["one_time_keys"].(map[string]any)
	user, _ := otks[userID].(map[string]any)
	claimed, _ := user[deviceID].(map[string]any)
	if len(claimed) != 1 {
		c.T.Fatalf("claiming a key package of %s %s: %s", userID, deviceID, r.Raw)
	}
	for _, v := range claimed {
		s, _ := v.(string)
		raw, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			c.T.Fatal(err)
		}
		var m mls.MLSMessage
		if err := m.UnmarshalMLS(raw); err != nil || m.KeyPackage == nil {
			c.T.Fatalf("claimed key package: %v", err)
		}
		return m.KeyPackage
	}
	return nil
}

// Add commits adding kp to the room (with the federation map), waits for
// the commit to come back and returns the Welcome.
func (c *Client) Add(roomID string, fm *fedmap.Map, kp *mls.KeyPackage) *mls.MLSMessage {
	c.T.Helper()
	sc := c.Stage(fm, []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}})
	id := c.PutCommit(roomID, sc).Must(c.T, 200, "add commit").Str("event_id")
	c.AwaitCommit(roomID, id, sc)
	if sc.Welcome == nil {
		c.T.Fatal("the add commit has no Welcome")
	}
	return sc.Welcome
}

// Invite sends welcome to userID's deviceID as an m.mls.welcome to-device
// message and invites userID to the room.
func (c *Client) Invite(roomID, userID, deviceID string, welcome *mls.MLSMessage) {
	c.T.Helper()
	w := base64.RawStdEncoding.EncodeToString(Wire(c.T, welcome))
	c.Do("PUT", "/_matrix/client/v3/sendToDevice/m.mls.welcome/"+c.NextTxn(), map[string]any{
		"messages": map[string]any{userID: map[string]any{deviceID: map[string]string{
			"algorithm": c.Alg, "room_id": roomID, "welcome": w}}}}).Must(c.T, 200, "sendToDevice")
	c.Do("POST", RoomPath(roomID, "/invite"), map[string]string{"user_id": userID}).Must(c.T, 200, "invite")
}

// JoinInvited syncs until the invite to roomID and its Welcome arrive,
// joins the group from the Welcome (at commit commitID, the add) and the
// room. Sync once before the invite is sent: an initial /sync (Since "")
// of mlsserver lists no invites.
func (c *Client) JoinInvited(roomID, commitID string) {
	c.T.Helper()
	var welcome *mls.Welcome
	invited := false
	for i := 0; i < 20 && (welcome == nil || !invited); i++ {
		body := c.Sync(2000)
		rooms, _ := body["rooms"].(map[string]any)
		invites, _ := rooms["invite"].(map[string]any)
		if _, ok := invites[roomID]; ok {
			invited = true
		}
		td, _ := body["to_device"].(map[string]any)
		evs, _ := td["events"].([]any)
		for _, e := range evs {
			ev, _ := e.(map[string]any)
			content, _ := ev["content"].(map[string]any)
			if ev["type"] != "m.mls.welcome" || content["room_id"] != roomID {
				continue
			}
			s, _ := content["welcome"].(string)
			raw, err := base64.RawStdEncoding.DecodeString(s)
			if err != nil {
				c.T.Fatal(err)
			}
			var m mls.MLSMessage
			if err := m.UnmarshalMLS(raw); err != nil || m.Welcome == nil {
				c.T.Fatalf("welcome: %v", err)
			}
			welcome = m.Welcome
		}
	}
	if welcome == nil || !invited {
		c.T.Fatalf("%s: no invite and Welcome for %s (invite %v, Welcome %v)", c.UserID, roomID, invited, welcome != nil)
	}
	var kp *KeyPackage
	for _, k := range c.KeyPackages {
		ref, err := k.KeyPackage.Ref()
		if err != nil {
			c.T.Fatal(err)
		}
		for _, s := range welcome.Secrets {
			if bytes.Equal(s.NewMember, ref) {
				kp = k
			}
		}
	}
	if kp == nil {
		c.T.Fatalf("%s: the Welcome is for none of our key packages", c.UserID)
	}
	g, err := mls.JoinFromWelcome(welcome, mls.JoinParams{KeyPackage: kp.KeyPackage, Secrets: kp.Secrets, Signer: c.Signer})
	if err != nil {
		c.T.Fatal(err)
	}
	c.Group, c.CommitID = g, commitID
	c.Do("POST", RoomPath(roomID, "/join"), map[string]any{}).Must(c.T, 200, "join")
}
