package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// EDUQueue queues an EDU (the whole {"edu_type", "content"} object) for a
// destination durably; federation/sender.Sender implements it.
type EDUQueue interface {
	SendEDU(ctx context.Context, destination string, edu json.RawMessage) error
}

// UserRemote reaches users of other servers over federation: it
// implements userapi.Remote with the signing Client (device key queries,
// key package claims, profiles) and an EDUQueue (to-device messages, sent
// as m.direct_to_device EDUs, and device list updates, sent as
// m.device_list_update EDUs). Answers are checked: a status other than
// 200 is a *RemoteError, a body of the wrong shape is an error, and only entries
// of users of the server asked (and that were asked for) are kept.
type UserRemote struct {
	client *Client
	edus   EDUQueue

	// Servers returns the other servers sharing a room with a local user,
	// the destinations of its m.device_list_update EDUs
	// (roomserver.Server.ServersSharedWith). Set it before serving; nil
	// sends device list updates nowhere.
	Servers func(ctx context.Context, userID string) ([]string, error)
}

var _ userapi.Remote = (*UserRemote)(nil)

// NewUserRemote returns a UserRemote sending requests with client and
// to-device messages through edus.
func NewUserRemote(client *Client, edus EDUQueue) *UserRemote {
	return &UserRemote{client: client, edus: edus}
}

// NewClient returns a signing client for cfg without the rest of the API
// (ServerName, KeyID, PrivateKey, Transport, Resolve and Timeout are
// used). It lets a server build its UserRemote, and the userapi.Service
// that needs it, before the API whose Config.Users is that service.
func NewClient(cfg Config) (*Client, error) {
	if cfg.ServerName == "" || len(cfg.PrivateKey) != ed25519.PrivateKeySize {
		return nil, errors.New("federation: ServerName and an ed25519 PrivateKey are required")
	}
	if !strings.HasPrefix(cfg.KeyID, "ed25519:") || len(cfg.KeyID) == len("ed25519:") {
		return nil, fmt.Errorf("federation: key ID %q is not ed25519:<version>", cfg.KeyID)
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	resolve := make(map[string]string, len(cfg.Resolve))
	for k, v := range cfg.Resolve {
		resolve[k] = v
	}
	cfg.Resolve = resolve
	return newClient(cfg), nil
}

// userIDServer returns the server name of a user ID ("" if malformed).
func userIDServer(userID string) string {
	local, server, ok := strings.Cut(userID, ":")
	if !ok || len(local) < 2 || !strings.HasPrefix(local, "@") {
		return ""
	}
	return server
}

// remoteError is the *RemoteError of a non-200 answer to path.
func remoteError(server, path string, status int, body []byte) error {
	re := &RemoteError{Server: server, Path: path, Status: status}
	var m struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		re.Errcode, re.Message = m.Errcode, m.Error
	}
	return re
}

// QueryKeys asks server for the device keys of its users (POST
// /_matrix/federation/v1/user/keys/query; user ID -> device IDs, empty for
// all). The answer keeps the users asked that belong to server, and of
// each only the devices asked (all when none were named) whose keys are
// an object naming that user and device and whose MLS credentials name
// them too (deviceKeysOK), and their master and self-signing keys
// (crossSigningKeysOK); anything else is left out. A
// body that is not {"device_keys": {user: {device: object}}} is an error.
func (u *UserRemote) QueryKeys(ctx context.Context, server string, req map[string][]string) (userapi.QueryKeysResponse, error) {
	body := make(map[string][]string, len(req))
	for user, devs := range req {
		if devs == nil {
			devs = []string{}
		}
		body[user] = devs
	}
	const path = "/_matrix/federation" + userKeysQueryPath
	status, resp, err := u.client.Do(ctx, server, http.MethodPost, path, map[string]any{"device_keys": body})
	if err != nil {
		return userapi.QueryKeysResponse{}, err
	}
	if status != http.StatusOK {
		return userapi.QueryKeysResponse{}, remoteError(server, path, status, resp)
	}
	var got struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	}
	if err := json.Unmarshal(resp, &got); err != nil {
		return userapi.QueryKeysResponse{}, fmt.Errorf("federation: answer of %s to %s: %w", server, path, err)
	}
	out := userapi.QueryKeysResponse{DeviceKeys: map[string]map[string]json.RawMessage{}, Failures: map[string]json.RawMessage{}}
	for user, devs := range got.DeviceKeys {
		asked, ok := req[user]
		if !ok || userIDServer(user) != server {
			continue
		}
		kept := map[string]json.RawMessage{}
		for dev, keys := range devs {
			if len(asked) > 0 && !slices.Contains(asked, dev) {
				continue
			}
			if deviceKeysOK(keys, user, dev) {
				kept[dev] = keys
			}
		}
		out.DeviceKeys[user] = kept
	}
	out.MasterKeys, out.SelfSigningKeys = crossSigningKeysOK(server, req, got.MasterKeys, got.SelfSigningKeys)
	return out, nil
}

// crossSigningKeysOK keeps, of the users asked that belong to server, the
// master keys passing userapi.ParseCrossSigningKey (the user's, usage
// master, one ed25519 key) and the self-signing keys that pass it too and
// carry a valid signature of the kept master key; nil when none is kept.
func crossSigningKeysOK(server string, req map[string][]string, masters, selfs map[string]json.RawMessage) (map[string]json.RawMessage, map[string]json.RawMessage) {
	var outM, outS map[string]json.RawMessage
	for user, js := range masters {
		if _, ok := req[user]; !ok || userIDServer(user) != server {
			continue
		}
		mk, err := userapi.ParseCrossSigningKey("master_keys", js, user, userapi.UsageMaster)
		if err != nil {
			continue
		}
		if outM == nil {
			outM = map[string]json.RawMessage{}
		}
		outM[user] = js
		sjs, ok := selfs[user]
		if !ok {
			continue
		}
		sk, err := userapi.ParseCrossSigningKey("self_signing_keys", sjs, user, userapi.UsageSelfSigning)
		if err != nil {
			continue
		}
		if err := gomatrixserverlib.VerifyJSON(user, gomatrixserverlib.KeyID(mk.KeyID), mk.PublicKey, sk.Raw); err != nil {
			continue
		}
		if outS == nil {
			outS = map[string]json.RawMessage{}
		}
		outS[user] = sjs
	}
	return outM, outS
}

// deviceKeysOK reports whether keys is a device keys object of user's
// device dev: user_id and device_id name them, and every MLS credential in
// keys ("<MLS algorithm>:<device ID>") is one of that device
// (userapi.CheckCredential).
func deviceKeysOK(keys json.RawMessage, user, dev string) bool {
	var obj struct {
		UserID   string            `json:"user_id"`
		DeviceID string            `json:"device_id"`
		Keys     map[string]string `json:"keys"`
	}
	if json.Unmarshal(keys, &obj) != nil || obj.UserID != user || obj.DeviceID != dev {
		return false
	}
	for keyID, value := range obj.Keys {
		alg, keyDev, _ := strings.Cut(keyID, ":")
		if _, err := userapi.ParseAlgorithm(alg); err != nil {
			continue
		}
		if keyDev != dev {
			return false
		}
		if _, err := userapi.CheckCredential(value, user, dev); err != nil {
			return false
		}
	}
	return true
}

// ClaimKeys claims one key package per device of server's users (POST
// /_matrix/federation/v1/user/keys/claim; user ID -> device ID ->
// algorithm). The answer keeps, for the devices asked of server's users,
// a single key whose ID is "<the algorithm asked>:..." and whose value is
// a string (MLS key packages are base64 strings); devices answered
// otherwise are left out. A body that is not {"one_time_keys": {user:
// {device: {key ID: value}}}} is an error.
func (u *UserRemote) ClaimKeys(ctx context.Context, server string, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	const path = "/_matrix/federation" + userKeysClaimPath
	status, resp, err := u.client.Do(ctx, server, http.MethodPost, path, map[string]any{"one_time_keys": req})
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, remoteError(server, path, status, resp)
	}
	var got struct {
		OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	}
	if err := json.Unmarshal(resp, &got); err != nil {
		return nil, fmt.Errorf("federation: answer of %s to %s: %w", server, path, err)
	}
	out := map[string]map[string]map[string]json.RawMessage{}
	for user, devs := range got.OneTimeKeys {
		asked, ok := req[user]
		if !ok || userIDServer(user) != server {
			continue
		}
		kept := map[string]map[string]json.RawMessage{}
		for dev, keys := range devs {
			alg, ok := asked[dev]
			if !ok || len(keys) != 1 {
				continue
			}
			for keyID, value := range keys {
				var s string
				if strings.HasPrefix(keyID, alg+":") && json.Unmarshal(value, &s) == nil && s != "" {
					kept[dev] = map[string]json.RawMessage{keyID: value}
				}
			}
		}
		if len(kept) > 0 {
			out[user] = kept
		}
	}
	return out, nil
}

// Profile fetches a user's profile from the user's server (GET
// /_matrix/federation/v1/query/profile; field "" for all of it). A 404
// answer is 404 M_NOT_FOUND; another status other than 200 a *RemoteError.
// Fields that are not strings make the answer an error; an avatar URL that
// is not an mxc:// URI is dropped.
func (u *UserRemote) Profile(ctx context.Context, userID, field string) (storage.Profile, error) {
	server := userIDServer(userID)
	if server == "" {
		return storage.Profile{}, matrixerr.InvalidParam("%q is not a user ID", userID)
	}
	q := url.Values{"user_id": {userID}}
	if field != "" {
		q.Set("field", field)
	}
	const path = "/_matrix/federation" + queryProfilePath
	status, resp, err := u.client.Do(ctx, server, http.MethodGet, path+"?"+q.Encode(), nil)
	if err != nil {
		return storage.Profile{}, err
	}
	if status == http.StatusNotFound {
		return storage.Profile{}, matrixerr.NotFound("no user %s (%s says: %s)", userID, server, responseMessage(json.RawMessage(resp)))
	}
	if status != http.StatusOK {
		return storage.Profile{}, remoteError(server, path, status, resp)
	}
	var got struct {
		DisplayName *string `json:"displayname"`
		AvatarURL   *string `json:"avatar_url"`
	}
	if err := json.Unmarshal(resp, &got); err != nil {
		return storage.Profile{}, fmt.Errorf("federation: answer of %s to %s: %w", server, path, err)
	}
	var p storage.Profile
	if got.DisplayName != nil && field != userapi.FieldAvatarURL {
		p.DisplayName = *got.DisplayName
	}
	if got.AvatarURL != nil && field != userapi.FieldDisplayName && strings.HasPrefix(*got.AvatarURL, "mxc://") {
		p.AvatarURL = *got.AvatarURL
	}
	return p, nil
}

// directToDeviceEDU is an m.direct_to_device EDU.
type directToDeviceEDU struct {
	Type    string                `json:"edu_type"`
	Content directToDeviceContent `json:"content"`
}

// directToDeviceContent is the content of an outbound m.direct_to_device
// EDU.
type directToDeviceContent struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// SendToDevice queues an m.direct_to_device EDU for server with the
// messages (user ID -> device ID or "*" -> content) from sender; the
// EDUQueue stores it durably and retries it, and messageID lets server
// drop copies. Every recipient must be a user of server.
func (u *UserRemote) SendToDevice(ctx context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error {
	if server == "" || sender == "" || eventType == "" || messageID == "" {
		return errors.New("federation: to-device EDU needs a server, sender, type and message_id")
	}
	for user := range messages {
		if userIDServer(user) != server {
			return fmt.Errorf("federation: to-device recipient %q is not a user of %s", user, server)
		}
	}
	if messages == nil {
		messages = map[string]map[string]json.RawMessage{}
	}
	edu, err := json.Marshal(directToDeviceEDU{Type: "m.direct_to_device", Content: directToDeviceContent{
		Sender: sender, Type: eventType, MessageID: messageID, Messages: messages}})
	if err != nil {
		return fmt.Errorf("federation: encoding the to-device EDU for %s: %w", server, err)
	}
	if err := u.edus.SendEDU(ctx, server, edu); err != nil {
		return fmt.Errorf("federation: queueing the to-device EDU for %s: %w", server, err)
	}
	return nil
}

// eduDeviceListUpdate is the type of the EDU announcing a device change.
const eduDeviceListUpdate = "m.device_list_update"

// deviceListUpdateEDU is an m.device_list_update EDU.
type deviceListUpdateEDU struct {
	Type    string           `json:"edu_type"`
	Content deviceListUpdate `json:"content"`
}

// deviceListUpdate is the content of an m.device_list_update EDU (Matrix
// server-server API, "Device management").
type deviceListUpdate struct {
	UserID   string          `json:"user_id"`
	DeviceID string          `json:"device_id"`
	StreamID int64           `json:"stream_id"`
	PrevID   []int64         `json:"prev_id"`
	Deleted  bool            `json:"deleted,omitempty"`
	Keys     json.RawMessage `json:"keys,omitempty"`
}

// DeviceListUpdate queues an m.device_list_update EDU for a local user's
// device (keys: its device_keys object; deleted: the device is gone) for
// every server Servers names. stream_id is the time in microseconds (it
// grows with each update of the user) and prev_id is empty: this server
// keeps no device list stream per user, and receivers that cache device
// lists resync (re-query the keys) on an empty prev_id. The first server
// whose EDU cannot be queued ends the call with an error; the ones queued
// before keep theirs (a repeated update only makes a receiver query the
// keys again).
func (u *UserRemote) DeviceListUpdate(ctx context.Context, userID, deviceID string, deleted bool, keys json.RawMessage) error {
	if u.Servers == nil {
		return nil
	}
	if userID == "" || deviceID == "" {
		return errors.New("federation: a device list update needs a user and a device")
	}
	servers, err := u.Servers(ctx, userID)
	if err != nil {
		return fmt.Errorf("federation: servers sharing a room with %s: %w", userID, err)
	}
	if len(servers) == 0 {
		return nil
	}
	c := deviceListUpdate{UserID: userID, DeviceID: deviceID, StreamID: time.Now().UnixMicro(), PrevID: []int64{}, Deleted: deleted}
	if !deleted {
		c.Keys = keys
	}
	edu, err := json.Marshal(deviceListUpdateEDU{Type: eduDeviceListUpdate, Content: c})
	if err != nil {
		return fmt.Errorf("federation: encoding the device list update of %s/%s: %w", userID, deviceID, err)
	}
	for _, server := range servers {
		if server == u.client.origin {
			continue
		}
		if err := u.edus.SendEDU(ctx, server, edu); err != nil {
			return fmt.Errorf("federation: queueing the device list update of %s/%s for %s: %w", userID, deviceID, server, err)
		}
	}
	return nil
}
