package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/userapi"
)

// registerKeyRoutes mounts device keys, MLS key packages (SPEC-NOTES §9)
// and to-device messages (docs/CLIENT-API.md). Each handler
// decodes, calls one userapi.Service method and encodes.
func (a *API) registerKeyRoutes(r *mux.Router) {
	a.handle(r, http.MethodPost, "/keys/upload", true, a.uploadKeys)
	a.handle(r, http.MethodPost, "/keys/query", true, a.queryKeys)
	a.handle(r, http.MethodPost, "/keys/claim", true, a.claimKeys)
	a.handle(r, http.MethodGet, "/keys/list", true, a.listKeys)
	a.handle(r, http.MethodPost, "/keys/device_signing/upload", true, a.uploadSigningKeys)
	a.handle(r, http.MethodPost, "/keys/signatures/upload", true, a.uploadSignatures)
	a.handle(r, http.MethodPut, "/sendToDevice/{eventType}/{txnId}", true, a.sendToDevice)
}

func (a *API) uploadKeys(rq *request) (any, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	return a.cfg.Users.UploadKeys(rq.Context(), rq.device.UserID, rq.device.DeviceID, body)
}

func (a *API) queryKeys(rq *request) (any, error) {
	var req userapi.QueryKeysRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	req.Caller = rq.device.UserID
	return a.cfg.Users.QueryKeys(rq.Context(), req)
}

func (a *API) uploadSigningKeys(rq *request) (any, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	return uia(struct{}{}, a.cfg.Users.UploadSigningKeys(rq.Context(), rq.device.UserID, body))
}

func (a *API) uploadSignatures(rq *request) (any, error) {
	body, err := rq.body()
	if err != nil {
		return nil, err
	}
	return a.cfg.Users.UploadSignatures(rq.Context(), rq.device.UserID, body)
}

func (a *API) claimKeys(rq *request) (any, error) {
	var req userapi.ClaimKeysRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	return a.cfg.Users.ClaimKeys(rq.Context(), req)
}

func (a *API) listKeys(rq *request) (any, error) {
	return a.cfg.Users.ListKeys(rq.Context(), rq.device.UserID, rq.device.DeviceID)
}

func (a *API) sendToDevice(rq *request) (any, error) {
	var req userapi.SendToDeviceRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	return struct{}{}, a.cfg.Users.SendToDevice(rq.Context(), rq.device.UserID, rq.device.DeviceID, rq.vars["eventType"], rq.vars["txnId"], req)
}
