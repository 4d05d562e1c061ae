package clientapi

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/matrixerr"
)

// request is one decoded request: the HTTP request, its path variables and,
// for authenticated endpoints, the calling device.
type request struct {
	*http.Request
	api    *API
	vars   map[string]string
	device Device
	token  string
}

// handlerFunc handles one request: it returns the body to encode (status
// 200, or the status of a *withStatus) or an error (written by writeError).
type handlerFunc func(rq *request) (any, error)

// withStatus is a response body with a status other than 200.
type withStatus struct {
	status int
	body   any
}

// handle registers h for method and path on r. auth makes the endpoint
// require an access token (and count against the device's rate limit).
func (a *API) handle(r *mux.Router, method, path string, auth bool, h handlerFunc) {
	route := r.HandleFunc(path, func(w http.ResponseWriter, req *http.Request) {
		rq := &request{Request: req, api: a, vars: mux.Vars(req)}
		if auth {
			if err := a.authenticate(rq); err != nil {
				a.writeError(w, req, err)
				return
			}
			if wait, ok := a.limiter.allow(rq.device.UserID+"|"+rq.device.DeviceID, a.now()); !ok {
				a.writeError(w, req, matrixerr.LimitExceeded(wait.Milliseconds()+1))
				return
			}
		}
		body, err := h(rq)
		if err != nil {
			a.writeError(w, req, err)
			return
		}
		status := http.StatusOK
		if ws, ok := body.(*withStatus); ok {
			status, body = ws.status, ws.body
		}
		writeJSON(w, status, body)
	}).Methods(method, http.MethodOptions)
	if re, err := route.GetPathRegexp(); err == nil {
		a.paths = append(a.paths, regexp.MustCompile(re))
	}
}

// authenticate reads the access token (Authorization: Bearer, or the
// access_token query parameter) and asks the Authenticator who it is.
func (a *API) authenticate(rq *request) error {
	token := ""
	if h := rq.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return matrixerr.MissingToken()
		}
		token = t
	} else {
		token = rq.URL.Query().Get("access_token")
	}
	if token == "" {
		return matrixerr.MissingToken()
	}
	userID, deviceID, err := a.cfg.Auth.Authenticate(rq.Context(), token)
	if err != nil {
		return err
	}
	rq.device, rq.token = Device{UserID: userID, DeviceID: deviceID}, token
	return nil
}

// decode reads the JSON body into v: a body over the limit is 413
// M_TOO_LARGE, one that is not JSON 400 M_NOT_JSON, one of the wrong shape
// 400 M_BAD_JSON naming the field. An empty body decodes as {}.
func (rq *request) decode(v any) error {
	body, err := rq.body()
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	return decodeJSON(body, v)
}

// body reads the raw body within the size limit.
func (rq *request) body() ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, rq.Body, rq.api.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, matrixerr.TooLarge("request body over %d bytes", mbe.Limit)
		}
		return nil, matrixerr.NotJSON("reading the request body: %v", err)
	}
	return b, nil
}

// decodeJSON decodes body into v with the errors of decode.
func decodeJSON(body []byte, v any) error { return matrixerr.DecodeJSON(body, v) }

// queryInt reads an optional non-negative integer query parameter.
func (rq *request) queryInt(name string, def int64) (int64, error) {
	s := rq.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, matrixerr.InvalidParam("%s: %q is not a non-negative integer", name, s)
	}
	return n, nil
}

// writeJSON writes body as JSON with status.
func writeJSON(w http.ResponseWriter, status int, body any) { matrixerr.WriteJSON(w, status, body) }

// writeError is the one place Matrix errors are written
// (matrixerr.Write); internal failures are logged, not shown.
func (a *API) writeError(w http.ResponseWriter, req *http.Request, err error) {
	if matrixerr.Write(w, err) {
		a.cfg.Logger.Error("client API request failed", slog.String("method", req.Method),
			slog.String("path", req.URL.Path), slog.Any("error", err))
	}
}

// unrecognized answers endpoints this API does not have.
type unrecognized struct {
	api    *API
	status int
}

// ServeHTTP answers 405 when another method would match the path (gorilla
// mux does not tell nested routers' method mismatches apart reliably) and
// 404 otherwise.
func (u unrecognized) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := u.status
	for _, re := range u.api.paths {
		if re.MatchString(r.URL.Path) {
			status = http.StatusMethodNotAllowed
			break
		}
	}
	if status == http.StatusMethodNotAllowed {
		u.api.writeError(w, r, matrixerr.Unrecognized(status, "method %s not allowed for %s", r.Method, r.URL.Path))
		return
	}
	u.api.writeError(w, r, matrixerr.Unrecognized(status, "unrecognized request: %s %s", r.Method, r.URL.Path))
}
