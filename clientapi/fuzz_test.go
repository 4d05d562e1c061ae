package clientapi

import (
	"encoding/json"
	"testing"

	"github.com/mlsmode/mlsmode/matrixerr"
)

// FuzzDecodeJSON: request bodies are outside input. decodeJSON either
// fills the value or returns a 400 Matrix error (M_NOT_JSON or
// M_BAD_JSON), never a panic or another error.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"creation_content":{"algorithm":"x"}}`, `{"room_version":5}`, `[`, `"x"`, `{"creation_content":"x"}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b createRoomBody
		err := decodeJSON(body, &b)
		if err == nil {
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		me := matrixerr.As(err)
		if me == nil || me.Status != 400 || (me.Code != matrixerr.CodeNotJSON && me.Code != matrixerr.CodeBadJSON) {
			t.Fatalf("%q: %v", body, err)
		}
	})
}
