package fedmap

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes, and decodes again to the same Map, whose encoding is stable.
func FuzzDecode(f *testing.F) {
	f.Add(fed(tx("powers"), txs("a.example"), tx("servers"), txs("a.example")))
	f.Add(mp(tx("federation"), mp(tx("powers"), txs("b", "a"), tx("servers"), txs("a", "b"), tx("can_propose"), txs()),
		tx("security"), mp(tx("window"), un(300), tx("required_verification"), tx("m.tofu"))))
	f.Add(mp(tx("federation"), okFed, tx("x"), mp(un(1), ar(un(2), []byte{0xf6}))))
	f.Add(mp(tx("security"), mp(), tx("federation"), okFed))
	f.Add([]byte{0xbf, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatal("map returned with an error")
			}
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %x to %+v, which does not encode: %v", b, m, err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("encoding %x of a decoded map does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("decode-encode-decode changed the map:\n%+v\n%+v", m, m2)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %x then %x (%v)", enc, enc2, err)
		}
	})
}
