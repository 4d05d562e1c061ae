package federation

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/userapi"
)

// MaxUserKeysEntries bounds the users plus devices one user/keys/query or
// user/keys/claim request may name (400 M_BAD_JSON beyond).
const MaxUserKeysEntries = 1000

// Paths of the user endpoints (SPEC-NOTES §12), under /_matrix/federation.
const (
	userKeysQueryPath = "/v1/user/keys/query"
	userKeysClaimPath = "/v1/user/keys/claim"
	userDevicesPath   = "/v1/user/devices/{userId}"
	queryProfilePath  = "/v1/query/profile"
)

// registerUserRoutes mounts the user endpoints on f (the /_matrix/federation
// subrouter), X-Matrix authenticated like the others.
func (a *API) registerUserRoutes(f *mux.Router) {
	a.handle(f, http.MethodPost, userKeysQueryPath, true, a.userKeysQuery)
	a.handle(f, http.MethodPost, userKeysClaimPath, true, a.userKeysClaim)
	a.handle(f, http.MethodGet, userDevicesPath, true, a.userDevices)
	a.handle(f, http.MethodGet, queryProfilePath, true, a.queryProfile)
}

// users returns the user logic, or 501 M_UNRECOGNIZED without it.
func (a *API) users() (*userapi.Service, error) {
	if a.cfg.Users == nil {
		return nil, matrixerr.New(http.StatusNotImplemented, matrixerr.CodeUnrecognized, "this server does not serve user keys or profiles")
	}
	return a.cfg.Users, nil
}

// userKeysQueryBody is the body of POST user/keys/query.
type userKeysQueryBody struct {
	DeviceKeys map[string][]string `json:"device_keys"`
}

// userKeysClaimBody is the body of POST user/keys/claim.
type userKeysClaimBody struct {
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
}

// userKeysQuery handles POST user/keys/query: the device keys of this
// server's users asked for with their master and self-signing keys
// (userapi.Service.QueryLocalKeys); users of other servers are left out of
// the answer.
func (a *API) userKeysQuery(rq *request) (any, error) {
	users, err := a.users()
	if err != nil {
		return nil, err
	}
	var body userKeysQueryBody
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	n := 0
	for _, devs := range body.DeviceKeys {
		n += 1 + len(devs)
	}
	if n > MaxUserKeysEntries {
		return nil, matrixerr.BadJSON("device_keys: %d users and devices, at most %d", n, MaxUserKeysEntries)
	}
	return users.QueryLocalKeys(rq.Context(), body.DeviceKeys)
}

// userKeysClaim handles POST user/keys/claim: one key package per device
// of this server's users (userapi.Service.ClaimLocalKeysFederation, the
// client API's claim path: one-time packages at most once, then the
// fallback).
func (a *API) userKeysClaim(rq *request) (any, error) {
	users, err := a.users()
	if err != nil {
		return nil, err
	}
	var body userKeysClaimBody
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	n := 0
	for _, devs := range body.OneTimeKeys {
		n += 1 + len(devs)
	}
	if n > MaxUserKeysEntries {
		return nil, matrixerr.BadJSON("one_time_keys: %d users and devices, at most %d", n, MaxUserKeysEntries)
	}
	keys, err := users.ClaimLocalKeysFederation(rq.Context(), body.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": keys}, nil
}

// userDevices handles GET user/devices/{userId}: a local user's devices
// with their keys (userapi.Service.LocalUserDevices); a user of another
// server is 404 M_NOT_FOUND.
func (a *API) userDevices(rq *request) (any, error) {
	users, err := a.users()
	if err != nil {
		return nil, err
	}
	return users.LocalUserDevices(rq.Context(), rq.vars["userId"])
}

// queryProfile handles GET query/profile?user_id=&field=: a local user's
// profile or one field (userapi.Service.LocalProfile); an unknown user or
// one of another server is 404 M_NOT_FOUND, a missing user_id 400
// M_MISSING_PARAM, an unknown field 400 M_INVALID_PARAM.
func (a *API) queryProfile(rq *request) (any, error) {
	users, err := a.users()
	if err != nil {
		return nil, err
	}
	q := rq.URL.Query()
	userID := q.Get("user_id")
	if userID == "" {
		return nil, matrixerr.MissingParam("user_id is required")
	}
	return users.LocalProfile(rq.Context(), userID, q.Get("field"))
}
