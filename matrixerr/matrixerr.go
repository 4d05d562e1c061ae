// Package matrixerr owns the Matrix errors the module's APIs answer with:
// an HTTP status, an errcode and a message, plus the extra top-level fields
// some errors carry (retry_after_ms, and current_epoch/current_commit of
// DE.BWI.MLS.WRONG_EPOCH, SPEC-NOTES §11).
//
// The layers below HTTP (roomserver, userapi, federation's logic) return
// *Error for every refusal a caller should see; the HTTP layers write them
// with one function each and turn every other error into a 500 M_UNKNOWN.
// It knows nothing else of the module.
package matrixerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes the module uses.
const (
	CodeForbidden              = "M_FORBIDDEN"
	CodeNotFound               = "M_NOT_FOUND"
	CodeBadJSON                = "M_BAD_JSON"
	CodeNotJSON                = "M_NOT_JSON"
	CodeMissingToken           = "M_MISSING_TOKEN"
	CodeUnknownToken           = "M_UNKNOWN_TOKEN"
	CodeTooLarge               = "M_TOO_LARGE"
	CodeLimitExceeded          = "M_LIMIT_EXCEEDED"
	CodeUnrecognized           = "M_UNRECOGNIZED"
	CodeUnsupportedRoomVersion = "M_UNSUPPORTED_ROOM_VERSION"
	CodeInvalidParam           = "M_INVALID_PARAM"
	CodeMissingParam           = "M_MISSING_PARAM"
	CodeUserInUse              = "M_USER_IN_USE"
	CodeInvalidUsername        = "M_INVALID_USERNAME"
	CodeUnknown                = "M_UNKNOWN"
	CodeUnauthorized           = "M_UNAUTHORIZED"
	CodeWeakPassword           = "M_WEAK_PASSWORD"
	// CodeWrongEpoch is the 409 of SPEC-NOTES §11: the client's MLS state
	// is not at the room's current commit.
	CodeWrongEpoch = "DE.BWI.MLS.WRONG_EPOCH"
)

// Error is one Matrix error.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the errcode.
	Code string
	// Message is the human-readable "error".
	Message string
	// Extra holds additional top-level fields of the JSON body.
	Extra map[string]any
}

// Error returns "errcode: message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// MarshalJSON writes {"errcode", "error", extra fields...}.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	m["errcode"] = e.Code
	m["error"] = e.Message
	return json.Marshal(m)
}

// New returns an error with a formatted message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// As returns the *Error in err's chain, or nil.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// Forbidden is 403 M_FORBIDDEN.
func Forbidden(format string, args ...any) *Error {
	return New(http.StatusForbidden, CodeForbidden, format, args...)
}

// NotFound is 404 M_NOT_FOUND.
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, CodeNotFound, format, args...)
}

// BadJSON is 400 M_BAD_JSON: JSON of the wrong shape (name the field).
func BadJSON(format string, args ...any) *Error {
	return New(http.StatusBadRequest, CodeBadJSON, format, args...)
}

// NotJSON is 400 M_NOT_JSON: a body that does not parse as JSON.
func NotJSON(format string, args ...any) *Error {
	return New(http.StatusBadRequest, CodeNotJSON, format, args...)
}

// InvalidParam is 400 M_INVALID_PARAM: a bad query or path parameter.
func InvalidParam(format string, args ...any) *Error {
	return New(http.StatusBadRequest, CodeInvalidParam, format, args...)
}

// MissingParam is 400 M_MISSING_PARAM.
func MissingParam(format string, args ...any) *Error {
	return New(http.StatusBadRequest, CodeMissingParam, format, args...)
}

// MissingToken is 401 M_MISSING_TOKEN.
func MissingToken() *Error {
	return New(http.StatusUnauthorized, CodeMissingToken, "missing access token")
}

// UnknownToken is 401 M_UNKNOWN_TOKEN.
func UnknownToken() *Error {
	return New(http.StatusUnauthorized, CodeUnknownToken, "unknown access token")
}

// TooLarge is 413 M_TOO_LARGE.
func TooLarge(format string, args ...any) *Error {
	return New(http.StatusRequestEntityTooLarge, CodeTooLarge, format, args...)
}

// Unrecognized is 404 M_UNRECOGNIZED (405 for a known path with another
// method).
func Unrecognized(status int, format string, args ...any) *Error {
	return New(status, CodeUnrecognized, format, args...)
}

// UnsupportedRoomVersion is 400 M_UNSUPPORTED_ROOM_VERSION.
func UnsupportedRoomVersion(format string, args ...any) *Error {
	return New(http.StatusBadRequest, CodeUnsupportedRoomVersion, format, args...)
}

// LimitExceeded is 429 M_LIMIT_EXCEEDED with retry_after_ms.
func LimitExceeded(retryAfterMS int64) *Error {
	e := New(http.StatusTooManyRequests, CodeLimitExceeded, "too many requests")
	e.Extra = map[string]any{"retry_after_ms": retryAfterMS}
	return e
}

// WrongEpoch is 409 DE.BWI.MLS.WRONG_EPOCH with the room's current epoch
// and commit (SPEC-NOTES §11). currentCommit is "" before the epoch-0
// commit, when currentEpoch is -1.
func WrongEpoch(currentEpoch int64, currentCommit, format string, args ...any) *Error {
	e := New(http.StatusConflict, CodeWrongEpoch, format, args...)
	e.Extra = map[string]any{"current_epoch": currentEpoch, "current_commit": currentCommit}
	return e
}
