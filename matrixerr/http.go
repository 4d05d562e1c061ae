package matrixerr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// DecodeJSON decodes a request body into v: a body that is not JSON is 400
// M_NOT_JSON, JSON of the wrong shape 400 M_BAD_JSON naming the field.
func DecodeJSON(body []byte, v any) error {
	if !json.Valid(body) {
		return NotJSON("request body is not valid JSON")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "(body)"
			}
			return BadJSON("%s: expected %s, got JSON %s", field, te.Type, te.Value)
		}
		return BadJSON("%v", err)
	}
	return nil
}

// WriteJSON writes body as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errcode":"M_UNKNOWN","error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Write writes err as the response: an *Error as it is, anything else as
// 500 M_UNKNOWN without its details. It reports whether err was such an
// internal failure, for the caller to log.
func Write(w http.ResponseWriter, err error) (internal bool) {
	if me := As(err); me != nil {
		WriteJSON(w, me.Status, me)
		return false
	}
	WriteJSON(w, http.StatusInternalServerError, New(http.StatusInternalServerError, CodeUnknown, "internal error"))
	return true
}
