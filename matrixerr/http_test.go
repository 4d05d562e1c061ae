package matrixerr

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	var v struct {
		N int `json:"n"`
	}
	for _, c := range []struct {
		body string
		code string
	}{{`{"n":1}`, ""}, {`{"n":`, CodeNotJSON}, {`{"n":"x"}`, CodeBadJSON}, {`[1]`, CodeBadJSON}} {
		err := DecodeJSON([]byte(c.body), &v)
		if got := ""; err != nil {
			if me := As(err); me == nil || me.Status != 400 {
				t.Fatalf("%s: %v is not a 400 Matrix error", c.body, err)
			} else {
				got = me.Code
			}
			if got != c.code {
				t.Fatalf("%s: %s, want %q", c.body, got, c.code)
			}
		} else if c.code != "" {
			t.Fatalf("%s accepted", c.body)
		}
	}
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	if Write(w, WrongEpoch(3, "$c", "behind")) {
		t.Fatal("a Matrix error reported as internal")
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 409 || body["errcode"] != CodeWrongEpoch || body["current_commit"] != "$c" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	if !Write(w, errors.New("disk on fire")) {
		t.Fatal("an internal error not reported")
	}
	if w.Code != 500 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["errcode"] != CodeUnknown || body["error"] != "internal error" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
