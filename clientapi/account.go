package clientapi

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/userapi"
)

// registerAccountRoutes mounts accounts, sessions, devices, profiles and
// filters (docs/CLIENT-API.md). Each handler decodes, calls one
// userapi.Service method and encodes.
func (a *API) registerAccountRoutes(r *mux.Router) {
	a.handle(r, http.MethodPost, "/register", false, a.register)
	a.handle(r, http.MethodGet, "/login", false, a.loginFlows)
	a.handle(r, http.MethodPost, "/login", false, a.login)
	a.handle(r, http.MethodPost, "/logout", true, a.logout)
	a.handle(r, http.MethodPost, "/logout/all", true, a.logoutAll)
	a.handle(r, http.MethodGet, "/account/whoami", true, a.whoami)
	a.handle(r, http.MethodGet, "/profile/{userId}", false, a.profile(""))
	a.handle(r, http.MethodGet, "/profile/{userId}/displayname", false, a.profile(userapi.FieldDisplayName))
	a.handle(r, http.MethodGet, "/profile/{userId}/avatar_url", false, a.profile(userapi.FieldAvatarURL))
	a.handle(r, http.MethodPut, "/profile/{userId}/displayname", true, a.setProfile(userapi.FieldDisplayName))
	a.handle(r, http.MethodPut, "/profile/{userId}/avatar_url", true, a.setProfile(userapi.FieldAvatarURL))
	a.handle(r, http.MethodPost, "/user/{userId}/filter", true, a.storeFilter)
	a.handle(r, http.MethodGet, "/user/{userId}/filter/{filterId}", true, a.filter)
	a.handle(r, http.MethodGet, "/devices", true, a.devices)
	a.handle(r, http.MethodGet, "/devices/{deviceId}", true, a.device)
	a.handle(r, http.MethodPut, "/devices/{deviceId}", true, a.updateDevice)
	a.handle(r, http.MethodDelete, "/devices/{deviceId}", true, a.deleteDevice)
}

// uia turns a user-interactive authentication answer into its 401 body
// (no Matrix error: the body is the flows, not an errcode alone).
func uia(body any, err error) (any, error) {
	var ar *userapi.AuthRequired
	if errors.As(err, &ar) {
		return &withStatus{status: http.StatusUnauthorized, body: ar}, nil
	}
	return body, err
}

func (a *API) register(rq *request) (any, error) {
	var req userapi.RegisterRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	req.Kind = rq.URL.Query().Get("kind")
	resp, err := a.cfg.Users.Register(rq.Context(), req)
	if err != nil {
		return uia(nil, err)
	}
	return resp, nil
}

func (a *API) loginFlows(*request) (any, error) {
	return a.cfg.Users.LoginFlows(), nil
}

func (a *API) login(rq *request) (any, error) {
	var req userapi.LoginRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	return a.cfg.Users.Login(rq.Context(), req)
}

func (a *API) logout(rq *request) (any, error) {
	return struct{}{}, a.cfg.Users.Logout(rq.Context(), rq.device.UserID, rq.device.DeviceID)
}

func (a *API) logoutAll(rq *request) (any, error) {
	return struct{}{}, a.cfg.Users.LogoutAll(rq.Context(), rq.device.UserID)
}

func (a *API) whoami(rq *request) (any, error) {
	return a.cfg.Users.Whoami(rq.device.UserID, rq.device.DeviceID), nil
}

func (a *API) profile(field string) handlerFunc {
	return func(rq *request) (any, error) {
		return a.cfg.Users.Profile(rq.Context(), rq.vars["userId"], field)
	}
}

func (a *API) setProfile(field string) handlerFunc {
	return func(rq *request) (any, error) {
		var req userapi.SetProfileRequest
		if err := rq.decode(&req); err != nil {
			return nil, err
		}
		return struct{}{}, a.cfg.Users.SetProfileField(rq.Context(), rq.device.UserID, rq.vars["userId"], field, req)
	}
}

func (a *API) storeFilter(rq *request) (any, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	return a.cfg.Users.StoreFilter(rq.Context(), rq.device.UserID, rq.vars["userId"], body)
}

func (a *API) filter(rq *request) (any, error) {
	return a.cfg.Users.Filter(rq.Context(), rq.device.UserID, rq.vars["userId"], rq.vars["filterId"])
}

func (a *API) devices(rq *request) (any, error) {
	return a.cfg.Users.Devices(rq.Context(), rq.device.UserID)
}

func (a *API) device(rq *request) (any, error) {
	return a.cfg.Users.Device(rq.Context(), rq.device.UserID, rq.vars["deviceId"])
}

func (a *API) updateDevice(rq *request) (any, error) {
	var req userapi.UpdateDeviceRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	return struct{}{}, a.cfg.Users.UpdateDevice(rq.Context(), rq.device.UserID, rq.vars["deviceId"], req)
}

func (a *API) deleteDevice(rq *request) (any, error) {
	var req userapi.DeleteDeviceRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	return uia(struct{}{}, a.cfg.Users.DeleteDevice(rq.Context(), rq.device.UserID, rq.vars["deviceId"], req))
}
