package mls

import (
	"bytes"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// testVectorsDeserialization decodes each variable-length vector header of
// deserialization.json, checks the length, and checks that encoding the length
// gives the header back.
func testVectorsDeserialization(t *testing.T) {
	var vectors []struct {
		Header testvectors.Hex `json:"vlbytes_header"`
		Length uint32          `json:"length"`
	}
	testvectors.Load(t, "deserialization", &vectors)
	if len(vectors) == 0 {
		t.Fatal("deserialization.json: no cases")
	}
	for i, v := range vectors {
		r := codec.NewReader(v.Header)
		var n uint32
		r.Varint("length", &n)
		if err := r.Finish("vlbytes_header"); err != nil {
			t.Errorf("case %d (%x): %v", i, v.Header, err)
			continue
		}
		if n != v.Length {
			t.Errorf("case %d (%x): length %d, want %d", i, v.Header, n, v.Length)
		}
		w := codec.NewWriter(nil)
		w.Varint(uint64(v.Length))
		enc, err := w.Bytes()
		if err != nil || !bytes.Equal(enc, v.Header) {
			t.Errorf("case %d: encoding %d gives %x (%v), want %x", i, v.Length, enc, err, v.Header)
		}
	}
	t.Logf("deserialization: %d cases ran (suite-independent)", len(vectors))
}
