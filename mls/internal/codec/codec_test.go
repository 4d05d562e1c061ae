package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestVarintBoundaries(t *testing.T) {
	for _, tc := range []struct {
		n   uint64
		enc []byte
	}{
		{0, []byte{0x00}},
		{63, []byte{0x3f}},
		{64, []byte{0x40, 0x40}},
		{16383, []byte{0x7f, 0xff}},
		{16384, []byte{0x80, 0x00, 0x40, 0x00}},
		{MaxVarint, []byte{0xbf, 0xff, 0xff, 0xff}},
	} {
		w := NewWriter(nil)
		w.Varint(tc.n)
		got, err := w.Bytes()
		if err != nil || !bytes.Equal(got, tc.enc) {
			t.Errorf("Varint(%d) = %x, %v; want %x", tc.n, got, err, tc.enc)
		}
		var v uint32
		r := NewReader(tc.enc)
		r.Varint("n", &v)
		if err := r.Finish("n"); err != nil || uint64(v) != tc.n {
			t.Errorf("reading %x = %d, %v", tc.enc, v, err)
		}
	}
	w := NewWriter(nil)
	w.Varint(MaxVarint + 1)
	if _, err := w.Bytes(); err == nil {
		t.Error("a length of 2^30 encoded")
	}
}

func TestReaderErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		read func(r *Reader)
		want string
	}{
		{[]byte{0x40, 0x3f}, func(r *Reader) { var v uint32; r.Varint("len", &v) }, "len: length prefix: non-minimal"},
		{[]byte{0x80, 0x00, 0x3f, 0xff}, func(r *Reader) { var v uint32; r.Varint("len", &v) }, "non-minimal"},
		{[]byte{0xc0}, func(r *Reader) { var v uint32; r.Varint("len", &v) }, "reserved"},
		{[]byte{0x05, 1, 2}, func(r *Reader) { var b []byte; r.Opaque("data", &b) }, "data: length 5 exceeds"},
		{[]byte{0x02}, func(r *Reader) { r.Optional("opt", func(*Reader) {}) }, "opt: optional presence byte 2"},
		{[]byte{0x02, 0x00, 0x01}, func(r *Reader) {
			r.Vector("list", func(v *Reader) { var x uint8; v.Uint8("x", &x) })
		}, "list: 1 bytes left inside the vector"},
		{[]byte{0x01, 0x07}, func(r *Reader) {
			r.Vector("outer", func(v *Reader) { var x uint16; v.Uint16("inner", &x) })
		}, "outer.inner: truncated"},
		{[]byte{0x07}, func(r *Reader) { var b bool; r.Bool("flag", &b) }, "flag: boolean value 7"},
		{[]byte{0x01, 0x00}, func(r *Reader) { var x uint8; r.Uint8("x", &x) }, "trailing bytes"},
	} {
		r := NewReader(tc.in)
		tc.read(r)
		err := r.Finish("top")
		var de *Error
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%x: %v, want an *Error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestOptionalAndVectorRoundTrip(t *testing.T) {
	b, err := Marshal(func(w *Writer) {
		w.Optional(true, func(w *Writer) { w.Uint32(7) })
		w.Optional(false, nil)
		w.Vector(func(w *Writer) { w.Opaque([]byte("ab")); w.Opaque(nil) })
		w.Bool(true)
	})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(b)
	var v uint32
	if !r.Optional("a", func(r *Reader) { r.Uint32("a", &v) }) || v != 7 {
		t.Fatal("present optional")
	}
	if r.Optional("b", func(*Reader) { t.Fatal("absent optional read") }) {
		t.Fatal("absent optional")
	}
	var items [][]byte
	r.Vector("v", func(v *Reader) {
		for !v.Empty() {
			var x []byte
			v.Opaque("item", &x)
			items = append(items, x)
		}
	})
	var flag bool
	r.Bool("flag", &flag)
	if err := r.Finish("all"); err != nil || len(items) != 2 || string(items[0]) != "ab" || !flag {
		t.Fatalf("%v %q %v", err, items, flag)
	}
}
