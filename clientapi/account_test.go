package clientapi_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/storage"
)

const acctV3 = "/_matrix/client/v3"

// acctDevices returns a user's device IDs as stored.
func acctDevices(t *testing.T, e *roomEnv, userID string) []string {
	t.Helper()
	devs, err := e.db.Devices(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(devs))
	for _, d := range devs {
		out = append(out, d.DeviceID)
	}
	return out
}

func TestAccountRegisterLogin(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		ctx := context.Background()

		// GET /login lists m.login.password.
		r := e.do("GET", acctV3+"/login", "", nil).must(t, 200, "login flows")
		flows, _ := r.body["flows"].([]any)
		if len(flows) != 1 || flows[0].(map[string]any)["type"] != "m.login.password" {
			t.Fatalf("login flows %s", r.raw)
		}

		// POST /register without auth: 401 with the dummy flow, nothing stored.
		r = e.do("POST", acctV3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice"}).must(t, 401, "register without auth")
		if r.str("session") == "" || r.errcode() != "" {
			t.Fatalf("UIA answer %s", r.raw)
		}
		stages := r.body["flows"].([]any)[0].(map[string]any)["stages"].([]any)
		if len(stages) != 1 || stages[0] != "m.login.dummy" {
			t.Fatalf("UIA flows %s", r.raw)
		}
		if _, err := e.db.User(ctx, "@alice:a.test"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("user stored before auth: %v", err)
		}
		aliceID, aliceDev, aliceTok := e.register("alice")
		if aliceID != "@alice:a.test" || aliceDev == "" || aliceTok == "" {
			t.Fatalf("register: %s %s %s", aliceID, aliceDev, aliceTok)
		}
		dummy := map[string]any{"type": "m.login.dummy"}
		e.do("POST", acctV3+"/register", "", map[string]any{"username": "alice", "password": "x", "auth": dummy}).refused(t, 400, "M_USER_IN_USE", "taken")
		e.do("POST", acctV3+"/register", "", map[string]any{"username": "Bad Name", "password": "x", "auth": dummy}).refused(t, 400, "M_INVALID_USERNAME", "bad username")
		e.do("POST", acctV3+"/register?kind=guest", "", map[string]any{"username": "guest", "password": "x", "auth": dummy}).refused(t, 403, "M_FORBIDDEN", "guest")
		e.do("POST", acctV3+"/register", "", "{").refused(t, 400, "M_NOT_JSON", "not JSON")
		e.do("POST", acctV3+"/register", "", map[string]any{"username": 5}).refused(t, 400, "M_BAD_JSON", "wrong shape")
		for _, u := range []string{"@bad name:a.test", "@guest:a.test"} {
			if _, err := e.db.User(ctx, u); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("refused user %s stored: %v", u, err)
			}
		}

		// POST /login.
		r = e.do("POST", acctV3+"/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw-alice"}).must(t, 200, "login")
		tok2, dev2 := r.str("access_token"), r.str("device_id")
		if r.str("user_id") != aliceID || tok2 == "" || dev2 == "" || dev2 == aliceDev {
			t.Fatalf("login %s", r.raw)
		}
		e.do("POST", acctV3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "wrong"}).refused(t, 403, "M_FORBIDDEN", "wrong password")
		e.do("POST", acctV3+"/login", "", map[string]any{"type": "m.login.sso"}).refused(t, 400, "M_UNKNOWN", "unknown login type")
		if devs := acctDevices(t, e, aliceID); len(devs) != 2 {
			t.Fatalf("devices after logins %v", devs)
		}

		// whoami.
		r = e.do("GET", acctV3+"/account/whoami", tok2, nil).must(t, 200, "whoami")
		if r.str("user_id") != aliceID || r.str("device_id") != dev2 {
			t.Fatalf("whoami %s", r.raw)
		}
		e.do("GET", acctV3+"/account/whoami", "", nil).refused(t, 401, "M_MISSING_TOKEN", "whoami without token")
		e.do("GET", acctV3+"/account/whoami", "nope", nil).refused(t, 401, "M_UNKNOWN_TOKEN", "whoami bad token")

		// logout ends the session and the device.
		e.do("POST", acctV3+"/logout", tok2, nil).must(t, 200, "logout")
		e.do("GET", acctV3+"/account/whoami", tok2, nil).refused(t, 401, "M_UNKNOWN_TOKEN", "after logout")
		e.do("POST", acctV3+"/logout", tok2, nil).refused(t, 401, "M_UNKNOWN_TOKEN", "logout twice")
		if devs := acctDevices(t, e, aliceID); len(devs) != 1 || devs[0] != aliceDev {
			t.Fatalf("devices after logout %v", devs)
		}
		e.do("GET", acctV3+"/account/whoami", aliceTok, nil).must(t, 200, "other session alive")
		e.do("POST", acctV3+"/logout/all", "nope", nil).refused(t, 401, "M_UNKNOWN_TOKEN", "logout/all with a bad token")
		if devs := acctDevices(t, e, aliceID); len(devs) != 1 {
			t.Fatalf("devices after refused logout/all %v", devs)
		}
		e.do("POST", acctV3+"/logout/all", aliceTok, nil).must(t, 200, "logout/all")
		if devs := acctDevices(t, e, aliceID); len(devs) != 0 {
			t.Fatalf("devices after logout/all %v", devs)
		}
	})
}

func TestAccountDevices(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		aliceID, aliceDev, tok := e.register("alice")
		r := e.do("POST", acctV3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "pw-alice",
			"initial_device_display_name": "laptop"}).must(t, 200, "login")
		dev2, tok2 := r.str("device_id"), r.str("access_token")

		r = e.do("GET", acctV3+"/devices", tok, nil).must(t, 200, "devices")
		if list, _ := r.body["devices"].([]any); len(list) != 2 {
			t.Fatalf("devices %s", r.raw)
		}
		r = e.do("GET", acctV3+"/devices/"+dev2, tok, nil).must(t, 200, "device")
		if r.str("device_id") != dev2 || r.str("display_name") != "laptop" {
			t.Fatalf("device %s", r.raw)
		}
		e.do("GET", acctV3+"/devices/NOPE", tok, nil).refused(t, 404, "M_NOT_FOUND", "unknown device")
		e.do("GET", acctV3+"/devices", "", nil).refused(t, 401, "M_MISSING_TOKEN", "devices without token")
		e.do("PUT", acctV3+"/devices/"+dev2, tok, map[string]any{"display_name": 5}).refused(t, 400, "M_BAD_JSON", "display_name not a string")
		e.do("PUT", acctV3+"/devices/"+dev2, tok, map[string]any{"display_name": "tablet"}).must(t, 200, "rename")
		e.do("PUT", acctV3+"/devices/NOPE", tok, map[string]any{"display_name": "x"}).refused(t, 404, "M_NOT_FOUND", "rename unknown")
		if r := e.do("GET", acctV3+"/devices/"+dev2, tok, nil); r.str("display_name") != "tablet" {
			t.Fatalf("renamed device %s", r.raw)
		}

		// DELETE with a wrong password: 401 UIA with M_FORBIDDEN, nothing deleted.
		r = e.do("DELETE", acctV3+"/devices/"+dev2, tok, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": aliceID}, "password": "wrong"}})
		r.refused(t, 401, "M_FORBIDDEN", "delete with wrong password")
		if r.body["flows"] == nil {
			t.Fatalf("no flows in %s", r.raw)
		}
		if devs := acctDevices(t, e, aliceID); len(devs) != 2 {
			t.Fatalf("devices after refused delete %v", devs)
		}
		e.do("DELETE", acctV3+"/devices/NOPE", tok, nil).refused(t, 404, "M_NOT_FOUND", "delete unknown")
		// With the right password, and without auth.
		e.do("DELETE", acctV3+"/devices/"+dev2, tok, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "user": "alice", "password": "pw-alice"}}).must(t, 200, "delete with password")
		e.do("GET", acctV3+"/account/whoami", tok2, nil).refused(t, 401, "M_UNKNOWN_TOKEN", "deleted device's token")
		e.do("DELETE", acctV3+"/devices/"+aliceDev, tok, nil).must(t, 200, "delete without auth")
		if devs := acctDevices(t, e, aliceID); len(devs) != 0 {
			t.Fatalf("devices left %v", devs)
		}
	})
}

func TestAccountProfileFilters(t *testing.T) {
	forBackends(t, func(t *testing.T, b testdb.Backend) {
		e := newRoomEnv(t, b, roomEnvOptions{})
		ctx := context.Background()
		aliceID, _, tok := e.register("alice")
		bobID, _, bobTok := e.register("bob")
		prof := acctV3 + "/profile/" + url.PathEscape(aliceID)

		e.do("PUT", prof+"/displayname", tok, map[string]any{"displayname": "Alice"}).must(t, 200, "set displayname")
		e.do("PUT", prof+"/avatar_url", tok, map[string]any{"avatar_url": "mxc://a.test/pic"}).must(t, 200, "set avatar")
		r := e.do("GET", prof, "", nil).must(t, 200, "profile")
		if r.str("displayname") != "Alice" || r.str("avatar_url") != "mxc://a.test/pic" {
			t.Fatalf("profile %s", r.raw)
		}
		if r := e.do("GET", prof+"/displayname", "", nil).must(t, 200, "displayname"); r.str("displayname") != "Alice" || r.body["avatar_url"] != nil {
			t.Fatalf("displayname %s", r.raw)
		}
		if r := e.do("GET", prof+"/avatar_url", "", nil).must(t, 200, "avatar_url"); r.str("avatar_url") != "mxc://a.test/pic" || r.body["displayname"] != nil {
			t.Fatalf("avatar_url %s", r.raw)
		}
		e.do("PUT", prof+"/displayname", bobTok, map[string]any{"displayname": "Mallory"}).refused(t, 403, "M_FORBIDDEN", "someone else's profile")
		e.do("PUT", prof+"/avatar_url", tok, map[string]any{"avatar_url": "http://x/y"}).refused(t, 400, "M_INVALID_PARAM", "non-mxc avatar")
		e.do("PUT", prof+"/displayname", tok, map[string]any{"displayname": 7}).refused(t, 400, "M_BAD_JSON", "displayname not a string")
		e.do("PUT", prof+"/displayname", "", map[string]any{"displayname": "x"}).refused(t, 401, "M_MISSING_TOKEN", "no token")
		if p, err := e.db.Profile(ctx, aliceID); err != nil || p.DisplayName != "Alice" || p.AvatarURL != "mxc://a.test/pic" {
			t.Fatalf("profile changed by refused requests: %+v %v", p, err)
		}
		e.do("GET", acctV3+"/profile/"+url.PathEscape("@nobody:a.test"), "", nil).refused(t, 404, "M_NOT_FOUND", "unknown user")
		e.do("GET", acctV3+"/profile/"+url.PathEscape("@carol:b.test"), "", nil).refused(t, 404, "M_NOT_FOUND", "remote user without federation")
		e.do("GET", acctV3+"/profile/nobody", "", nil).refused(t, 400, "M_INVALID_PARAM", "not a user ID")
		e.do("GET", acctV3+"/profile/"+url.PathEscape("@nobody:a.test")+"/displayname", "", nil).refused(t, 404, "M_NOT_FOUND", "displayname of unknown user")
		e.do("GET", acctV3+"/profile/"+url.PathEscape("@nobody:a.test")+"/avatar_url", "", nil).refused(t, 404, "M_NOT_FOUND", "avatar_url of unknown user")

		// Filters.
		fpath := acctV3 + "/user/" + url.PathEscape(aliceID) + "/filter"
		r = e.do("POST", fpath, tok, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}}).must(t, 200, "store filter")
		id := r.str("filter_id")
		if id == "" {
			t.Fatalf("filter %s", r.raw)
		}
		r = e.do("GET", fpath+"/"+url.PathEscape(id), tok, nil).must(t, 200, "get filter")
		if room, _ := r.body["room"].(map[string]any); room == nil || room["timeline"].(map[string]any)["limit"] != float64(5) {
			t.Fatalf("filter %s", r.raw)
		}
		e.do("GET", fpath+"/"+url.PathEscape(id), bobTok, nil).refused(t, 403, "M_FORBIDDEN", "someone else's filter")
		e.do("GET", fpath+"/999999", tok, nil).refused(t, 404, "M_NOT_FOUND", "unknown filter")
		e.do("POST", fpath, bobTok, map[string]any{}).refused(t, 403, "M_FORBIDDEN", "filter for someone else")
		e.do("POST", fpath, tok, "[1,2]").refused(t, 400, "M_BAD_JSON", "filter not an object")
		e.do("POST", fpath, tok, "{").refused(t, 400, "M_NOT_JSON", "filter not JSON")
		if _, err := e.db.Filter(ctx, bobID, id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("bob has alice's filter: %v", err)
		}
	})
}
