package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/federation/sender"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

var _ federation.EDUQueue = (*sender.Sender)(nil)

// fakeEDUs is an EDUQueue that records what it is given.
type fakeEDUs struct {
	mu   sync.Mutex
	sent []queuedEDU
}

type queuedEDU struct {
	destination string
	edu         json.RawMessage
}

func (f *fakeEDUs) SendEDU(_ context.Context, destination string, edu json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, queuedEDU{destination, append(json.RawMessage(nil), edu...)})
	return nil
}

func (f *fakeEDUs) all() []queuedEDU {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// userHS is a homeserver of a user network: the federation API with a
// userapi.Service (and a roomserver, for /send) on the same SQLite
// storage, a UserRemote its userapi.Service reaches other servers with,
// and a fake EDU queue behind that UserRemote.
type userHS struct {
	name   string
	db     storage.Database
	users  *userapi.Service
	api    *federation.API
	remote *federation.UserRemote
	edus   *fakeEDUs
}

// userNet is a network of userHS servers plus raw handlers.
type userNet struct {
	n  *network
	hs map[string]*userHS
}

// newUserNetwork starts a userHS for each name and the raw handlers, on
// the harness's HTTPS network.
func newUserNetwork(t *testing.T, names []string, raw map[string]http.Handler) *userNet {
	t.Helper()
	all := map[string]http.Handler{}
	for name, h := range raw {
		all[name] = h
	}
	slots := map[string]*atomic.Pointer[http.Handler]{}
	for _, name := range names {
		p := &atomic.Pointer[http.Handler]{}
		slots[name] = p
		all[name] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := p.Load(); h != nil {
				(*h).ServeHTTP(w, r)
				return
			}
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		})
	}
	n := newNetwork(t, nil, all, 0)
	un := &userNet{n: n, hs: map[string]*userHS{}}
	ctx := context.Background()
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		db, err := storage.Open(ctx, filepath.Join(t.TempDir(), name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		cfg := federation.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db,
			Clock: n.clock.Now, Transport: n.transport, Resolve: n.resolve}
		client, err := federation.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := &userHS{name: name, db: db, edus: &fakeEDUs{}}
		hs.remote = federation.NewUserRemote(client, hs.edus)
		hs.users, err = userapi.New(userapi.Config{ServerName: name, Store: db, Clock: n.clock.Now, Remote: hs.remote, BcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		keys := roomversion.KeyFetcherFunc(func(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error) {
			return hs.api.KeyFetcher().PublicKey(ctx, server, keyID, at)
		})
		rooms, err := roomserver.New(roomserver.Config{ServerName: name, KeyID: testKeyID, PrivateKey: key, Store: db, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users, cfg.Rooms = hs.users, rooms
		if hs.api, err = federation.New(cfg); err != nil {
			t.Fatal(err)
		}
		h := hs.api.Handler()
		slots[name].Store(&h)
		un.hs[name] = hs
	}
	return un
}

// bobDevice is a registered user with an uploaded device.
type bobDevice struct {
	userID, deviceID string
	alg              string
	otks             []userapitest.KeyPackage
	fallback         userapitest.KeyPackage
}

// registerWithKeys registers localpart on hs with device deviceID (display
// name "<deviceID> phone") and uploads its device keys, otks one-time key
// packages and a fallback.
func registerWithKeys(t *testing.T, hs *userHS, localpart, deviceID string, otks int) *bobDevice {
	t.Helper()
	ctx := context.Background()
	reg, err := hs.users.Register(ctx, userapi.RegisterRequest{Username: localpart, Password: "secret", DeviceID: deviceID,
		InitialDeviceDisplayName: deviceID + " phone", Auth: &userapi.AuthData{Type: userapi.LoginDummy}})
	if err != nil {
		t.Fatalf("registering %s: %v", localpart, err)
	}
	dev := userapitest.NewDevice(t, reg.UserID, deviceID, userapitest.Suite)
	b := &bobDevice{userID: reg.UserID, deviceID: deviceID, alg: userapitest.Algorithm(t, userapitest.Suite),
		otks: dev.KeyPackages(t, otks), fallback: dev.NewKeyPackage(t, userapitest.KeyPackageOptions{})}
	body, err := json.Marshal(map[string]any{"device_keys": dev.DeviceKeys(t),
		"one_time_keys": userapitest.KeyMap(b.otks...), "fallback_keys": userapitest.KeyMap(b.fallback)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.users.UploadKeys(ctx, reg.UserID, deviceID, body); err != nil {
		t.Fatalf("uploading keys of %s: %v", reg.UserID, err)
	}
	return b
}

// do sends a signed request from hs to destination and decodes a 200
// answer into out.
func (hs *userHS) do(t *testing.T, destination, method, path string, body, out any) (int, []byte) {
	t.Helper()
	status, resp, err := hs.api.Client().Do(context.Background(), destination, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if status == http.StatusOK && out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, resp, err)
		}
	}
	return status, resp
}

func TestUserKeysQueryOverFederation(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 1)
	ctx := context.Background()

	resp, err := a.remote.QueryKeys(ctx, "b.test", map[string][]string{bob.userID: nil, "@nobody:b.test": {}, "@carol:c.test": nil})
	if err != nil {
		t.Fatal(err)
	}
	keys, ok := resp.DeviceKeys[bob.userID]["BOBDEV"]
	if !ok {
		t.Fatalf("bob's device missing: %+v", resp.DeviceKeys)
	}
	var dk struct {
		UserID   string            `json:"user_id"`
		DeviceID string            `json:"device_id"`
		Keys     map[string]string `json:"keys"`
		Unsigned struct {
			Name string `json:"device_display_name"`
		} `json:"unsigned"`
	}
	if err := json.Unmarshal(keys, &dk); err != nil {
		t.Fatal(err)
	}
	if dk.UserID != bob.userID || dk.DeviceID != "BOBDEV" || dk.Keys[bob.alg+":BOBDEV"] == "" || dk.Unsigned.Name != "BOBDEV phone" {
		t.Errorf("device keys = %s", keys)
	}
	if m, ok := resp.DeviceKeys["@nobody:b.test"]; !ok || len(m) != 0 {
		t.Errorf("unknown local user: %v (present %v), want {}", m, ok)
	}
	if _, ok := resp.DeviceKeys["@carol:c.test"]; ok {
		t.Error("a user of another server is in the answer")
	}

	// Only the devices asked for.
	resp, err = a.remote.QueryKeys(ctx, "b.test", map[string][]string{bob.userID: {"OTHER"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.DeviceKeys[bob.userID]) != 0 {
		t.Errorf("asked for OTHER, got %v", resp.DeviceKeys[bob.userID])
	}

	// The server side leaves users of other servers (the asker's too) out.
	var raw struct {
		DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
	}
	status, body := a.do(t, "b.test", http.MethodPost, "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string][]string{bob.userID: {}, "@alice:a.test": {}, "@carol:c.test": {}}}, &raw)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if len(raw.DeviceKeys) != 1 || raw.DeviceKeys[bob.userID]["BOBDEV"] == nil {
		t.Errorf("answer %s, want bob only", body)
	}

	// The client API path of a's users reaches b through the UserRemote.
	q, err := a.users.QueryKeys(ctx, userapi.QueryKeysRequest{DeviceKeys: map[string][]string{bob.userID: nil}})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Failures) != 0 || q.DeviceKeys[bob.userID]["BOBDEV"] == nil {
		t.Errorf("client query: %+v", q)
	}
}

func TestUserKeysClaimOverFederation(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 1)
	ctx := context.Background()

	got, err := a.remote.ClaimKeys(ctx, "b.test", map[string]map[string]string{bob.userID: {"BOBDEV": bob.alg}, "@carol:c.test": {"X": bob.alg}})
	if err != nil {
		t.Fatal(err)
	}
	want := bob.otks[0]
	v, ok := got[bob.userID]["BOBDEV"][want.KeyID]
	if !ok || string(v) != `"`+want.Value+`"` || len(got) != 1 {
		t.Fatalf("claimed %v, want bob's one-time key package %s", got, want.KeyID)
	}
	left, err := b.users.ListKeys(ctx, bob.userID, "BOBDEV")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(left.OneTimeKeys, want.KeyID) {
		t.Errorf("claimed key package still listed on b: %v", left.OneTimeKeys)
	}

	// Next: the fallback, through a's client API path.
	c, err := a.users.ClaimKeys(ctx, userapi.ClaimKeysRequest{OneTimeKeys: map[string]map[string]string{bob.userID: {"BOBDEV": bob.alg}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.OneTimeKeys[bob.userID]["BOBDEV"][bob.fallback.KeyID]; !ok || len(c.Failures) != 0 {
		t.Errorf("second claim %+v, want the fallback %s", c, bob.fallback.KeyID)
	}

	// The server side refuses algorithms other than MLS ones and leaves
	// other servers' users out.
	status, body := a.do(t, "b.test", http.MethodPost, "/_matrix/federation/v1/user/keys/claim",
		map[string]any{"one_time_keys": map[string]map[string]string{bob.userID: {"BOBDEV": "signed_curve25519"}}}, nil)
	if status != http.StatusBadRequest || errcode(body) != matrixerr.CodeInvalidParam {
		t.Errorf("non-MLS algorithm: %d %s", status, body)
	}
	var raw struct {
		OneTimeKeys map[string]json.RawMessage `json:"one_time_keys"`
	}
	status, body = a.do(t, "b.test", http.MethodPost, "/_matrix/federation/v1/user/keys/claim",
		map[string]any{"one_time_keys": map[string]map[string]string{"@bob:a.test": {"BOBDEV": bob.alg}}}, &raw)
	if status != http.StatusOK || len(raw.OneTimeKeys) != 0 {
		t.Errorf("claim for a user of a.test: %d %s", status, body)
	}
}

func TestUserKeysConcurrentClaims(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 2)
	ctx := context.Background()
	// The claims are b's first contact with a: they also race on fetching
	// a's key, which they must share (none gets 401).
	var wg sync.WaitGroup
	ids := make([]string, 3)
	errs := make([]error, 3)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := a.remote.ClaimKeys(ctx, "b.test", map[string]map[string]string{bob.userID: {"BOBDEV": bob.alg}})
			errs[i] = err
			for id := range got[bob.userID]["BOBDEV"] {
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{bob.otks[0].KeyID, bob.otks[1].KeyID, bob.fallback.KeyID}
	sort.Strings(ids)
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Errorf("claimed %v, want the two one-time packages and the fallback %v", ids, want)
	}
}

func TestUserDevicesAndProfileOverFederation(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 1)
	ctx := context.Background()

	var devs struct {
		UserID   string `json:"user_id"`
		StreamID *int64 `json:"stream_id"`
		Devices  []struct {
			DeviceID string          `json:"device_id"`
			Keys     json.RawMessage `json:"keys"`
			Name     string          `json:"device_display_name"`
		} `json:"devices"`
	}
	status, body := a.do(t, "b.test", http.MethodGet, "/_matrix/federation/v1/user/devices/"+bob.userID, nil, &devs)
	if status != http.StatusOK {
		t.Fatalf("devices: %d %s", status, body)
	}
	if devs.UserID != bob.userID || devs.StreamID == nil || *devs.StreamID <= 0 || len(devs.Devices) != 1 ||
		devs.Devices[0].DeviceID != "BOBDEV" || devs.Devices[0].Name != "BOBDEV phone" || !strings.Contains(string(devs.Devices[0].Keys), bob.alg+":BOBDEV") {
		t.Errorf("devices: %s", body)
	}
	if status, body := a.do(t, "b.test", http.MethodGet, "/_matrix/federation/v1/user/devices/@alice:a.test", nil, nil); status != http.StatusNotFound || errcode(body) != matrixerr.CodeNotFound {
		t.Errorf("devices of a user of a.test: %d %s", status, body)
	}

	name, avatar := "Bob", "mxc://b.test/bob"
	if err := b.users.SetProfileField(ctx, bob.userID, bob.userID, userapi.FieldDisplayName, userapi.SetProfileRequest{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	if err := b.users.SetProfileField(ctx, bob.userID, bob.userID, userapi.FieldAvatarURL, userapi.SetProfileRequest{AvatarURL: &avatar}); err != nil {
		t.Fatal(err)
	}
	p, err := a.remote.Profile(ctx, bob.userID, "")
	if err != nil || p.DisplayName != name || p.AvatarURL != avatar {
		t.Errorf("profile = %+v, %v", p, err)
	}
	p, err = a.remote.Profile(ctx, bob.userID, userapi.FieldDisplayName)
	if err != nil || p.DisplayName != name || p.AvatarURL != "" {
		t.Errorf("displayname = %+v, %v", p, err)
	}
	_, err = a.remote.Profile(ctx, "@nobody:b.test", "")
	if me := matrixerr.As(err); me == nil || me.Status != http.StatusNotFound {
		t.Errorf("unknown user: %v, want 404", err)
	}
	// Through a's client API logic.
	pr, err := a.users.Profile(ctx, bob.userID, userapi.FieldAvatarURL)
	if err != nil || pr.AvatarURL != avatar || pr.DisplayName != "" {
		t.Errorf("client profile = %+v, %v", pr, err)
	}
	// Server side: a user of another server, a missing user_id, a bad field.
	for path, want := range map[string]string{
		"/_matrix/federation/v1/query/profile?user_id=@alice:a.test":               matrixerr.CodeNotFound,
		"/_matrix/federation/v1/query/profile":                                     matrixerr.CodeMissingParam,
		"/_matrix/federation/v1/query/profile?user_id=@bob:b.test&field=something": matrixerr.CodeInvalidParam,
	} {
		if _, body := a.do(t, "b.test", http.MethodGet, path, nil, nil); errcode(body) != want {
			t.Errorf("%s: %s, want %s", path, body, want)
		}
	}
}

func TestUserEndpointsNeedXMatrix(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@bob:b.test":[]}}`},
		{http.MethodPost, "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{}}`},
		{http.MethodGet, "/_matrix/federation/v1/user/devices/@bob:b.test", ``},
		{http.MethodGet, "/_matrix/federation/v1/query/profile?user_id=@bob:b.test", ``},
	} {
		req, err := http.NewRequest(c.method, "matrix://b.test"+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		status, body := un.n.send(req)
		if status != http.StatusUnauthorized || errcode(body) != matrixerr.CodeUnauthorized {
			t.Errorf("%s %s without X-Matrix: %d %s", c.method, c.path, status, body)
		}
	}
}

func TestUserEndpointsWithoutUsers(t *testing.T) {
	n := newNetwork(t, []string{"x.test", "y.test"}, nil, 0)
	status, body, err := n.servers["x.test"].api.Client().Do(context.Background(), "y.test", http.MethodPost,
		"/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": map[string][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusNotImplemented || errcode(body) != matrixerr.CodeUnrecognized {
		t.Errorf("without Users: %d %s", status, body)
	}
}

func TestUserRemoteSendToDevice(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 1)
	alice := registerWithKeys(t, a, "alice", "ALICEDEV", 0)
	ctx := context.Background()

	welcome := json.RawMessage(`{"algorithm":"` + bob.alg + `","room_id":"!r:a.test","welcome":"AAAA"}`)
	req := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.userID: {"BOBDEV": welcome}}}
	if err := a.users.SendToDevice(ctx, alice.userID, alice.deviceID, "m.mls.welcome", "txn1", req); err != nil {
		t.Fatal(err)
	}
	// A replay of the client transaction queues nothing more.
	if err := a.users.SendToDevice(ctx, alice.userID, alice.deviceID, "m.mls.welcome", "txn1", req); err != nil {
		t.Fatal(err)
	}
	queued := a.edus.all()
	if len(queued) != 1 || queued[0].destination != "b.test" {
		t.Fatalf("queued %v, want one EDU for b.test", queued)
	}
	var e struct {
		Type    string `json:"edu_type"`
		Content struct {
			Sender    string                                `json:"sender"`
			Type      string                                `json:"type"`
			MessageID string                                `json:"message_id"`
			Messages  map[string]map[string]json.RawMessage `json:"messages"`
		} `json:"content"`
	}
	if err := json.Unmarshal(queued[0].edu, &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != "m.direct_to_device" || e.Content.Sender != alice.userID || e.Content.Type != "m.mls.welcome" ||
		e.Content.MessageID != userapi.MessageID(alice.userID, alice.deviceID, "txn1") ||
		string(e.Content.Messages[bob.userID]["BOBDEV"]) != string(welcome) {
		t.Errorf("EDU = %s", queued[0].edu)
	}
	if err := a.remote.SendToDevice(ctx, "b.test", alice.userID, "t", "m1", map[string]map[string]json.RawMessage{"@carol:c.test": {"X": welcome}}); err == nil {
		t.Error("a recipient of another server was queued")
	}

	// Delivered over /send: once, though the transaction is retried with
	// a new transaction ID (and replayed with the old one).
	for _, txn := range []string{"t1", "t2", "t1"} {
		if err := a.api.Client().SendTransaction(ctx, "b.test", txn, nil, []json.RawMessage{queued[0].edu}); err != nil {
			t.Fatalf("transaction %s: %v", txn, err)
		}
	}
	msgs, err := b.db.ToDeviceMessages(ctx, bob.userID, "BOBDEV", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Sender != alice.userID || msgs[0].Type != "m.mls.welcome" || string(msgs[0].Content) != string(welcome) {
		t.Errorf("bob's inbox: %+v", msgs)
	}
}

// evilServer answers the user endpoints with fixed bodies.
func evilServer(answers map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok {
			http.Error(w, `{"errcode":"M_UNKNOWN","error":"boom"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
}

func TestUserRemoteValidatesAnswers(t *testing.T) {
	alg := userapitest.Algorithm(t, userapitest.Suite)
	good := `{"user_id":"@eve:evil.test","device_id":"D1","keys":{}}`
	un := newUserNetwork(t, []string{"a.test"}, map[string]http.Handler{
		"evil.test": evilServer(map[string]string{
			"/_matrix/federation/v1/user/keys/query": `{"device_keys":{
				"@eve:evil.test":{"D1":` + good + `,"D2":{"user_id":"@bob:b.test","device_id":"D2"},"D3":"nope","D4":` + good + `,
					"D5":{"user_id":"@eve:evil.test","device_id":"D5","keys":{"` + alg + `:D5":"AAAA"}}},
				"@bob:b.test":{"D1":{"user_id":"@bob:b.test","device_id":"D1"}},
				"@mallory:evil.test":{"D1":{"user_id":"@mallory:evil.test","device_id":"D1"}}}}`,
			"/_matrix/federation/v1/user/keys/claim": `{"one_time_keys":{
				"@eve:evil.test":{"D1":{"` + alg + `:abc":"AAAA"},
					"D2":{"other:abc":"AAAA"},"D3":{"m.mls.v1.x:a":"AAAA","m.mls.v1.x:b":"BBBB"},"D4":{"m.mls.v1.x:a":7}},
				"@bob:b.test":{"D1":{"m.mls.v1.x:a":"AAAA"}}}}`,
			"/_matrix/federation/v1/query/profile": `{"displayname":"Eve","avatar_url":"https://evil.test/x"}`,
		}),
		"down.test": evilServer(nil),
		"broken.test": evilServer(map[string]string{
			"/_matrix/federation/v1/user/keys/query": `{"device_keys":{"@eve:broken.test":["x"]}}`,
			"/_matrix/federation/v1/user/keys/claim": `{"one_time_keys":[]}`,
			"/_matrix/federation/v1/query/profile":   `{"displayname":5}`,
		}),
	})
	a := un.hs["a.test"]
	ctx := context.Background()

	q, err := a.remote.QueryKeys(ctx, "evil.test", map[string][]string{"@eve:evil.test": {"D1", "D2", "D3", "D5"}, "@bob:b.test": nil})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.DeviceKeys) != 1 || len(q.DeviceKeys["@eve:evil.test"]) != 1 || q.DeviceKeys["@eve:evil.test"]["D1"] == nil {
		t.Errorf("query kept %v, want eve's D1 only", q.DeviceKeys)
	}

	c, err := a.remote.ClaimKeys(ctx, "evil.test", map[string]map[string]string{
		"@eve:evil.test": {"D1": alg, "D2": alg, "D3": "m.mls.v1.x", "D4": "m.mls.v1.x"}, "@bob:b.test": {"D1": "m.mls.v1.x"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 1 || len(c["@eve:evil.test"]) != 1 || c["@eve:evil.test"]["D1"] == nil {
		t.Errorf("claim kept %v, want eve's D1 only", c)
	}

	p, err := a.remote.Profile(ctx, "@eve:evil.test", "")
	if err != nil || p.DisplayName != "Eve" || p.AvatarURL != "" {
		t.Errorf("profile = %+v, %v (a non-mxc avatar is dropped)", p, err)
	}

	if _, err := a.remote.QueryKeys(ctx, "broken.test", map[string][]string{"@eve:broken.test": nil}); err == nil {
		t.Error("query: a malformed answer is not an error")
	}
	if _, err := a.remote.ClaimKeys(ctx, "broken.test", map[string]map[string]string{"@eve:broken.test": {"D": alg}}); err == nil {
		t.Error("claim: a malformed answer is not an error")
	}
	if _, err := a.remote.Profile(ctx, "@eve:broken.test", ""); err == nil {
		t.Error("profile: a malformed answer is not an error")
	}
	// Non-200 answers are errors.
	var re *federation.RemoteError
	if _, err := a.remote.QueryKeys(ctx, "down.test", map[string][]string{"@x:down.test": nil}); !errors.As(err, &re) || re.Status != http.StatusInternalServerError || re.Errcode != "M_UNKNOWN" {
		t.Errorf("query answered 500: %v", err)
	}
	if _, err := a.remote.ClaimKeys(ctx, "down.test", map[string]map[string]string{"@x:down.test": {"D": alg}}); err == nil {
		t.Error("claim answered 500 is not an error")
	}
	if _, err := a.remote.Profile(ctx, "@x:down.test", ""); err == nil || matrixerr.As(err) != nil {
		t.Errorf("profile answered 500: %v, want a plain error", err)
	}
}

// TestToDeviceThroughSenderQueue sends a welcome from alice on a to bob on
// b through the durable outbound queue (federation/sender) and /send.
func TestToDeviceThroughSenderQueue(t *testing.T) {
	un := newUserNetwork(t, []string{"a.test", "b.test"}, nil)
	a, b := un.hs["a.test"], un.hs["b.test"]
	bob := registerWithKeys(t, b, "bob", "BOBDEV", 0)
	alice := registerWithKeys(t, a, "alice", "ALICEDEV", 0)
	ctx := context.Background()

	snd, err := sender.New(sender.Config{ServerName: "a.test", Store: a.db, Transport: a.api.Client()})
	if err != nil {
		t.Fatal(err)
	}
	snd.Start(ctx)
	t.Cleanup(snd.Stop)
	users, err := userapi.New(userapi.Config{ServerName: "a.test", Store: a.db, Remote: federation.NewUserRemote(a.api.Client(), snd), BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	welcome := json.RawMessage(`{"algorithm":"` + bob.alg + `","room_id":"!r:a.test","welcome":"AAAA"}`)
	req := userapi.SendToDeviceRequest{Messages: map[string]map[string]json.RawMessage{bob.userID: {"*": welcome}}}
	if err := users.SendToDevice(ctx, alice.userID, alice.deviceID, "m.mls.welcome", "txn1", req); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, err := b.db.ToDeviceMessages(ctx, bob.userID, "BOBDEV", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 && msgs[0].Sender == alice.userID && string(msgs[0].Content) == string(welcome) {
			break
		}
		if len(msgs) > 1 || time.Now().After(deadline) {
			t.Fatalf("bob's inbox: %+v", msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
