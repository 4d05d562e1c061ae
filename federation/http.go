package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/matrixerr"
)

// request is one decoded request: the HTTP request, its path variables and,
// for authenticated endpoints, the verified origin and the body it signed.
type request struct {
	*http.Request
	api  *API
	vars map[string]string
	// origin is the X-Matrix-verified requesting server.
	origin string
	// content is the request body (verified as part of the signature).
	content []byte
}

// handlerFunc handles one request: it returns the body to encode (status
// 200) or an error (written by writeError).
type handlerFunc func(rq *request) (any, error)

// handle registers h for method and path on r. auth makes the endpoint
// require a valid X-Matrix signature addressed to this server.
func (a *API) handle(r *mux.Router, method, path string, auth bool, h handlerFunc) {
	route := r.HandleFunc(path, func(w http.ResponseWriter, req *http.Request) {
		rq := &request{Request: req, api: a, vars: mux.Vars(req)}
		if auth {
			if err := a.authenticate(rq); err != nil {
				a.writeError(w, req, err)
				return
			}
		}
		body, err := h(rq)
		if err != nil {
			a.writeError(w, req, err)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}).Methods(method)
	if re, err := route.GetPathRegexp(); err == nil {
		a.paths = append(a.paths, regexp.MustCompile(re))
	}
}

// unauthorized is 401 M_UNAUTHORIZED.
func unauthorized(format string, args ...any) error {
	return matrixerr.New(http.StatusUnauthorized, matrixerr.CodeUnauthorized, format, args...)
}

// authenticate checks the X-Matrix Authorization headers: at least one,
// each naming an origin, a key, a signature and this server as the
// destination (the destination is required), then the signature over
// method, URI, origin, destination and body with
// fclient.VerifyHTTPRequest and the key ring (keys from storage, fetched
// from the origin when missing or expired). It sets rq.origin and
// rq.content.
func (a *API) authenticate(rq *request) error {
	found := false
	for _, h := range rq.Header.Values("Authorization") {
		scheme, origin, destination, key, sig := fclient.ParseAuthorization(h)
		if scheme != "X-Matrix" {
			continue
		}
		found = true
		if origin == "" || key == "" || sig == "" {
			return unauthorized("X-Matrix authorization without origin, key or sig")
		}
		if destination == "" {
			return unauthorized("X-Matrix authorization without destination")
		}
		if string(destination) != a.cfg.ServerName {
			return unauthorized("X-Matrix destination %q is not this server", destination)
		}
	}
	if !found {
		return unauthorized("missing X-Matrix authorization")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, rq.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return matrixerr.TooLarge("request body over %d bytes", mbe.Limit)
		}
		return matrixerr.NotJSON("reading the request body: %v", err)
	}
	rq.Body = io.NopCloser(bytes.NewReader(body))
	fr, res := fclient.VerifyHTTPRequest(rq.Request, a.now(), spec.ServerName(a.cfg.ServerName), nil, a.ring)
	switch {
	case fr != nil && res.Code == http.StatusOK:
	case res.Code == http.StatusUnauthorized:
		return unauthorized("X-Matrix signature not valid: %s", responseMessage(res.JSON))
	case res.Code == http.StatusBadRequest:
		return matrixerr.BadJSON("%s", responseMessage(res.JSON))
	default:
		return errors.New("federation: verifying X-Matrix failed: " + responseMessage(res.JSON))
	}
	rq.origin, rq.content = string(fr.Origin()), fr.Content()
	return nil
}

// responseMessage reads the message of a gomatrixserverlib error response.
func responseMessage(v any) string {
	b, _ := json.Marshal(v)
	var m struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &m) == nil {
		if m.Message != "" {
			return m.Message
		}
		if m.Error != "" {
			return m.Error
		}
	}
	return string(b)
}

// decode reads the verified JSON body into v: one that is not JSON is 400
// M_NOT_JSON, one of the wrong shape 400 M_BAD_JSON. An empty body decodes
// as {}.
func (rq *request) decode(v any) error {
	body := rq.content
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	return matrixerr.DecodeJSON(body, v)
}

// queryInt reads an optional non-negative integer query parameter.
func (rq *request) queryInt(name string, def int) (int, error) {
	s := rq.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
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
		a.cfg.Logger.Error("federation request failed", slog.String("method", req.Method),
			slog.String("path", req.URL.Path), slog.Any("error", err))
	}
}

// unrecognized answers endpoints this API does not have.
type unrecognized struct{ api *API }

// ServeHTTP answers 405 when another method would match the path and 404
// otherwise.
func (u unrecognized) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := http.StatusNotFound
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
