package userapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
	"github.com/mlsmode/mlsmode/userapi/userapitest"
)

const server = "a.example"

// forEachBackend runs f with a fresh Service on each storage backend.
func forEachBackend(t *testing.T, f func(t *testing.T, s *userapi.Service, db storage.Database)) {
	t.Helper()
	for _, b := range userapitest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			db := b.Open(t)
			s := newService(t, db, nil)
			f(t, s, db)
		})
	}
}

func newService(t *testing.T, db storage.Database, remote userapi.Remote) *userapi.Service {
	t.Helper()
	s, err := userapi.New(userapi.Config{ServerName: server, Store: db, BcryptCost: bcrypt.MinCost, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantErr fails unless err is a Matrix error with status and code.
func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	me := matrixerr.As(err)
	if me == nil {
		t.Fatalf("got error %v, want %d %s", err, status, code)
	}
	if me.Status != status || me.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", me.Status, me.Code, me.Message, status, code)
	}
}

// register creates a user with the dummy flow and returns its session.
func register(t *testing.T, s *userapi.Service, name string) *userapi.RegisterResponse {
	t.Helper()
	resp, err := s.Register(context.Background(), userapi.RegisterRequest{Username: name, Password: "pw-" + name, Auth: &userapi.AuthData{Type: userapi.LoginDummy}})
	if err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return resp
}

func TestRegister(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		_, err := s.Register(ctx, userapi.RegisterRequest{Username: "alice", Password: "secret"})
		var ar *userapi.AuthRequired
		if !errors.As(err, &ar) {
			t.Fatalf("register without auth: %v, want AuthRequired", err)
		}
		if len(ar.Flows) != 1 || !slices.Equal(ar.Flows[0].Stages, []string{"m.login.dummy"}) || ar.Session == "" || ar.ErrCode != "" {
			t.Fatalf("UIA answer %+v", ar)
		}
		if _, err := db.User(ctx, "@alice:"+server); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("user stored before auth: %v", err)
		}
		resp, err := s.Register(ctx, userapi.RegisterRequest{Username: "alice", Password: "secret", DeviceID: "ADEV",
			InitialDeviceDisplayName: "phone", Auth: &userapi.AuthData{Type: userapi.LoginDummy, Session: ar.Session}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.UserID != "@alice:"+server || resp.DeviceID != "ADEV" || resp.AccessToken == "" {
			t.Fatalf("register answer %+v", resp)
		}
		u, d, err := s.Authenticate(ctx, resp.AccessToken)
		if err != nil || u != resp.UserID || d != "ADEV" {
			t.Fatalf("Authenticate = %s %s %v", u, d, err)
		}
		dev, err := s.Device(ctx, u, "ADEV")
		if err != nil || dev.DisplayName != "phone" {
			t.Fatalf("device %+v %v", dev, err)
		}

		// Refusals: nothing stored.
		for _, c := range []struct {
			name   string
			req    userapi.RegisterRequest
			status int
			code   string
		}{
			{"taken", userapi.RegisterRequest{Username: "alice", Password: "x"}, 400, "M_USER_IN_USE"},
			{"upper case", userapi.RegisterRequest{Username: "Bob", Password: "x"}, 400, "M_INVALID_USERNAME"},
			{"colon", userapi.RegisterRequest{Username: "b:ob", Password: "x"}, 400, "M_INVALID_USERNAME"},
			{"long", userapi.RegisterRequest{Username: string(make([]byte, 300)), Password: "x"}, 400, "M_INVALID_USERNAME"},
			{"no password", userapi.RegisterRequest{Username: "bob"}, 400, "M_MISSING_PARAM"},
			{"long password", userapi.RegisterRequest{Username: "bob", Password: string(make([]byte, 73))}, 400, "M_INVALID_PARAM"},
			{"guest", userapi.RegisterRequest{Username: "bob", Password: "x", Kind: "guest"}, 403, "M_FORBIDDEN"},
		} {
			c.req.Auth = &userapi.AuthData{Type: userapi.LoginDummy}
			_, err := s.Register(ctx, c.req)
			wantErr(t, err, c.status, c.code)
		}
		if _, err := db.User(ctx, "@bob:"+server); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("refused user stored: %v", err)
		}
		// Wrong auth type: UIA again, with an errcode.
		_, err = s.Register(ctx, userapi.RegisterRequest{Username: "bob", Password: "x", Auth: &userapi.AuthData{Type: "m.login.password"}})
		if !errors.As(err, &ar) || ar.ErrCode == "" {
			t.Fatalf("wrong auth type: %v", err)
		}

		// inhibit_login: no device, no token.
		resp, err = s.Register(ctx, userapi.RegisterRequest{Username: "carol", Password: "pw", InhibitLogin: true, Auth: &userapi.AuthData{Type: userapi.LoginDummy}})
		if err != nil || resp.AccessToken != "" || resp.DeviceID != "" {
			t.Fatalf("inhibit_login: %+v %v", resp, err)
		}
		if devs, err := db.Devices(ctx, "@carol:"+server); err != nil || len(devs) != 0 {
			t.Fatalf("inhibit_login devices %v %v", devs, err)
		}
	})
}

func TestRegistrationDisabled(t *testing.T) {
	db := userapitest.Backends()[0].Open(t)
	s, err := userapi.New(userapi.Config{ServerName: server, Store: db, BcryptCost: bcrypt.MinCost, RegistrationDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Register(context.Background(), userapi.RegisterRequest{Username: "alice", Password: "pw", Auth: &userapi.AuthData{Type: userapi.LoginDummy}})
	wantErr(t, err, 403, "M_FORBIDDEN")
	if _, err := db.User(context.Background(), "@alice:"+server); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("user stored: %v", err)
	}
}

func TestLoginLogout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		reg := register(t, s, "alice")
		login, err := s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", Identifier: &userapi.Identifier{Type: "m.id.user", User: "alice"}, Password: "pw-alice"})
		if err != nil {
			t.Fatal(err)
		}
		if login.UserID != reg.UserID || login.DeviceID == reg.DeviceID || login.AccessToken == reg.AccessToken {
			t.Fatalf("login %+v after register %+v", login, reg)
		}
		// Legacy user field, full user ID, existing device: the device's
		// older token stops working, other devices' do not.
		again, err := s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", User: reg.UserID, Password: "pw-alice", DeviceID: reg.DeviceID})
		if err != nil || again.DeviceID != reg.DeviceID || again.AccessToken == reg.AccessToken {
			t.Fatalf("legacy login %+v %v", again, err)
		}
		_, _, err = s.Authenticate(ctx, reg.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN")
		if u, d, err := s.Authenticate(ctx, again.AccessToken); err != nil || u != reg.UserID || d != reg.DeviceID {
			t.Fatalf("new token of the device: %s %s %v", u, d, err)
		}
		if _, _, err := s.Authenticate(ctx, login.AccessToken); err != nil {
			t.Fatalf("other device's token ended by a login: %v", err)
		}
		for _, req := range []userapi.LoginRequest{
			{Type: "m.login.password", User: "alice", Password: "wrong"},
			{Type: "m.login.password", User: "nobody", Password: "pw-alice"},
			{Type: "m.login.password", User: "@alice:b.example", Password: "pw-alice"},
		} {
			_, err := s.Login(ctx, req)
			wantErr(t, err, 403, "M_FORBIDDEN")
		}
		_, err = s.Login(ctx, userapi.LoginRequest{Type: "m.login.token", User: "alice"})
		wantErr(t, err, 400, "M_UNKNOWN")
		_, err = s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", Password: "pw-alice"})
		wantErr(t, err, 400, "M_MISSING_PARAM")
		if devs, _ := db.Devices(ctx, reg.UserID); len(devs) != 2 {
			t.Fatalf("devices after logins: %v", devs)
		}

		if err := s.Logout(ctx, login.UserID, login.DeviceID); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Authenticate(ctx, login.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN")
		if _, err := s.Device(ctx, reg.UserID, login.DeviceID); matrixerr.As(err) == nil {
			t.Fatalf("device survived logout: %v", err)
		}
		if _, _, err := s.Authenticate(ctx, again.AccessToken); err != nil {
			t.Fatalf("other session ended by logout: %v", err)
		}
		if err := s.LogoutAll(ctx, reg.UserID); err != nil {
			t.Fatal(err)
		}
		if devs, _ := db.Devices(ctx, reg.UserID); len(devs) != 0 {
			t.Fatalf("devices after logout/all: %v", devs)
		}
	})
}

func TestDevices(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		reg := register(t, s, "alice")
		other, err := s.Login(ctx, userapi.LoginRequest{Type: "m.login.password", User: "alice", Password: "pw-alice", InitialDeviceDisplayName: "laptop"})
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.Devices(ctx, reg.UserID)
		if err != nil || len(list.Devices) != 2 {
			t.Fatalf("devices %+v %v", list, err)
		}
		name := "tablet"
		if err := s.UpdateDevice(ctx, reg.UserID, other.DeviceID, userapi.UpdateDeviceRequest{DisplayName: &name}); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Device(ctx, reg.UserID, other.DeviceID); err != nil || d.DisplayName != "tablet" {
			t.Fatalf("renamed device %+v %v", d, err)
		}
		_, err = s.Device(ctx, reg.UserID, "NOPE")
		wantErr(t, err, 404, "M_NOT_FOUND")
		err = s.DeleteDevice(ctx, reg.UserID, "NOPE", userapi.DeleteDeviceRequest{})
		wantErr(t, err, 404, "M_NOT_FOUND")

		// Wrong password in auth: 401 UIA with M_FORBIDDEN, device kept.
		err = s.DeleteDevice(ctx, reg.UserID, other.DeviceID, userapi.DeleteDeviceRequest{Auth: &userapi.AuthData{Type: "m.login.password", Password: "wrong"}})
		var ar *userapi.AuthRequired
		if !errors.As(err, &ar) || ar.ErrCode != "M_FORBIDDEN" || ar.Flows[0].Stages[0] != "m.login.password" {
			t.Fatalf("wrong password: %v", err)
		}
		if _, _, err := s.Authenticate(ctx, other.AccessToken); err != nil {
			t.Fatalf("device deleted despite wrong password: %v", err)
		}
		err = s.DeleteDevice(ctx, reg.UserID, other.DeviceID, userapi.DeleteDeviceRequest{Auth: &userapi.AuthData{Type: "m.login.password", User: "alice", Password: "pw-alice"}})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Authenticate(ctx, other.AccessToken)
		wantErr(t, err, 401, "M_UNKNOWN_TOKEN")
		// Without auth: the access token suffices.
		if err := s.DeleteDevice(ctx, reg.UserID, reg.DeviceID, userapi.DeleteDeviceRequest{}); err != nil {
			t.Fatal(err)
		}
		if devs, _ := db.Devices(ctx, reg.UserID); len(devs) != 0 {
			t.Fatalf("devices left: %v", devs)
		}
	})
}

func TestProfileAndFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *userapi.Service, db storage.Database) {
		ctx := context.Background()
		alice := register(t, s, "alice").UserID
		bob := register(t, s, "bob").UserID
		name, avatar := "Alice", "mxc://a.example/abc"
		if err := s.SetProfileField(ctx, alice, alice, userapi.FieldDisplayName, userapi.SetProfileRequest{DisplayName: &name}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetProfileField(ctx, alice, alice, userapi.FieldAvatarURL, userapi.SetProfileRequest{AvatarURL: &avatar}); err != nil {
			t.Fatal(err)
		}
		p, err := s.Profile(ctx, alice, "")
		if err != nil || p.DisplayName != "Alice" || p.AvatarURL != avatar {
			t.Fatalf("profile %+v %v", p, err)
		}
		if p, err := s.Profile(ctx, alice, userapi.FieldDisplayName); err != nil || p.AvatarURL != "" || p.DisplayName != "Alice" {
			t.Fatalf("displayname %+v %v", p, err)
		}
		evil, bad := "Mallory", "https://evil.example/x.png"
		err = s.SetProfileField(ctx, bob, alice, userapi.FieldDisplayName, userapi.SetProfileRequest{DisplayName: &evil})
		wantErr(t, err, 403, "M_FORBIDDEN")
		err = s.SetProfileField(ctx, alice, alice, userapi.FieldAvatarURL, userapi.SetProfileRequest{AvatarURL: &bad})
		wantErr(t, err, 400, "M_INVALID_PARAM")
		err = s.SetProfileField(ctx, alice, alice, userapi.FieldDisplayName, userapi.SetProfileRequest{})
		wantErr(t, err, 400, "M_MISSING_PARAM")
		if p, _ := db.Profile(ctx, alice); p.DisplayName != "Alice" || p.AvatarURL != avatar {
			t.Fatalf("profile changed by refused requests: %+v", p)
		}
		_, err = s.Profile(ctx, "@nobody:"+server, "")
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.Profile(ctx, "@carol:b.example", "")
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.Profile(ctx, "not-a-user", "")
		wantErr(t, err, 400, "M_INVALID_PARAM")

		f, err := s.StoreFilter(ctx, alice, alice, []byte(`{"room":{"timeline":{"limit":10}}}`))
		if err != nil || f.FilterID == "" {
			t.Fatalf("filter %+v %v", f, err)
		}
		got, err := s.Filter(ctx, alice, alice, f.FilterID)
		if err != nil || string(got) != `{"room":{"timeline":{"limit":10}}}` {
			t.Fatalf("filter %s %v", got, err)
		}
		_, err = s.Filter(ctx, bob, alice, f.FilterID)
		wantErr(t, err, 403, "M_FORBIDDEN")
		_, err = s.Filter(ctx, bob, bob, f.FilterID)
		wantErr(t, err, 404, "M_NOT_FOUND")
		_, err = s.StoreFilter(ctx, bob, alice, []byte(`{}`))
		wantErr(t, err, 403, "M_FORBIDDEN")
		_, err = s.StoreFilter(ctx, alice, alice, []byte(`[1]`))
		wantErr(t, err, 400, "M_BAD_JSON")
		_, err = s.StoreFilter(ctx, alice, alice, []byte(`{`))
		wantErr(t, err, 400, "M_NOT_JSON")
	})
}

func TestNewConfig(t *testing.T) {
	if _, err := userapi.New(userapi.Config{ServerName: server}); err == nil {
		t.Fatal("New without Store succeeded")
	}
	db := userapitest.Backends()[0].Open(t)
	if _, err := userapi.New(userapi.Config{ServerName: server, Store: db, BcryptCost: 99}); err == nil {
		t.Fatal("New with BcryptCost 99 succeeded")
	}
}

// mustJSON encodes v.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
