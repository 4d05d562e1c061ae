// Package codec reads and writes the TLS presentation language as RFC 9420
// uses it: fixed-width big-endian integers, opaque byte strings and vectors
// with the variable-length (QUIC-style, at most 30-bit) length prefix of
// RFC 9420 §2.1.2, and optional<T> values.
//
// It owns nothing but the framing: every structure in package mls reads and
// writes its own fields explicitly through a Reader or a Writer, in the style
// of golang.org/x/crypto/cryptobyte, on which both are built. A Reader keeps
// the first error it meets, named after the field being read, so a decoder
// can read all of its fields and check Err once.
package codec

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// MaxVarint is the largest length a variable-length vector header can hold
// (2^30 - 1, RFC 9420 §2.1.2).
const MaxVarint = 1<<30 - 1

// Error is a decoding failure: Field names what was being read (dotted from
// the outermost structure) and Reason says what was wrong with it.
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "mls: decode: " + e.Reason
	}
	return "mls: decode " + e.Field + ": " + e.Reason
}

// ErrTruncated is wrapped by an Error when the input ends inside a field.
var ErrTruncated = errors.New("truncated")

// Reader decodes fields from a byte string. The zero value is an empty
// Reader.
type Reader struct {
	s      cryptobyte.String
	prefix string
	err    *error
}

// NewReader returns a Reader over b. It does not copy b: byte slices it hands
// out alias b.
func NewReader(b []byte) *Reader {
	var err error
	return &Reader{s: cryptobyte.String(b), err: &err}
}

func (r *Reader) errp() *error {
	if r.err == nil {
		r.err = new(error)
	}
	return r.err
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return *r.errp() }

// Failed reports whether an error has been met.
func (r *Reader) Failed() bool { return *r.errp() != nil }

// Fail records an error for field unless one is already recorded.
func (r *Reader) Fail(field, format string, args ...any) {
	p := r.errp()
	if *p == nil {
		*p = &Error{Field: r.prefix + field, Reason: fmt.Sprintf(format, args...)}
	}
}

func (r *Reader) truncated(field string) {
	r.Fail(field, "%v", ErrTruncated)
}

// Empty reports whether all input has been read (or an error stopped reading).
func (r *Reader) Empty() bool { return r.Failed() || r.s.Empty() }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.s) }

// Rest returns the unread bytes without consuming them.
func (r *Reader) Rest() []byte { return r.s }

// Finish records an error if bytes remain after what, the structure just read,
// and returns the Reader's error.
func (r *Reader) Finish(what string) error {
	if !r.Failed() && !r.s.Empty() {
		r.Fail(what, "%d trailing bytes", len(r.s))
	}
	return r.Err()
}

// Uint8 reads a uint8.
func (r *Reader) Uint8(field string, v *uint8) {
	if r.Failed() {
		return
	}
	if !r.s.ReadUint8(v) {
		r.truncated(field)
	}
}

// Uint16 reads a big-endian uint16.
func (r *Reader) Uint16(field string, v *uint16) {
	if r.Failed() {
		return
	}
	if !r.s.ReadUint16(v) {
		r.truncated(field)
	}
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32(field string, v *uint32) {
	if r.Failed() {
		return
	}
	if !r.s.ReadUint32(v) {
		r.truncated(field)
	}
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64(field string, v *uint64) {
	if r.Failed() {
		return
	}
	if !r.s.ReadUint64(v) {
		r.truncated(field)
	}
}

// Bool reads a one-byte boolean, which must be 0 or 1.
func (r *Reader) Bool(field string, v *bool) {
	var b uint8
	r.Uint8(field, &b)
	if r.Failed() {
		return
	}
	if b > 1 {
		r.Fail(field, "boolean value %d is not 0 or 1", b)
		return
	}
	*v = b == 1
}

// Fixed reads exactly n bytes.
func (r *Reader) Fixed(field string, n int, v *[]byte) {
	if r.Failed() {
		return
	}
	if !r.s.ReadBytes(v, n) {
		r.truncated(field)
	}
}

// Varint reads a variable-length integer (RFC 9420 §2.1.2). Non-minimal
// encodings and the reserved 0b11 prefix are errors.
func (r *Reader) Varint(field string, v *uint32) {
	if r.Failed() {
		return
	}
	n, err := ReadVarint(&r.s)
	if err != nil {
		r.Fail(field, "%v", err)
		return
	}
	*v = n
}

// ReadVarint reads a variable-length integer from s. It is exported for the
// header-only parsers, which work on a cryptobyte.String directly.
func ReadVarint(s *cryptobyte.String) (uint32, error) {
	var first uint8
	if !s.ReadUint8(&first) {
		return 0, fmt.Errorf("length prefix: %w", ErrTruncated)
	}
	prefix := first >> 6
	if prefix == 3 {
		return 0, errors.New("length prefix: reserved 0b11 length encoding")
	}
	n := 1 << prefix
	v := uint32(first & 0x3f)
	for i := 1; i < n; i++ {
		var b uint8
		if !s.ReadUint8(&b) {
			return 0, fmt.Errorf("length prefix: %w", ErrTruncated)
		}
		v = v<<8 | uint32(b)
	}
	if prefix > 0 && v < 1<<(8*(n>>1)-2) {
		return 0, fmt.Errorf("length prefix: non-minimal %d-byte encoding of %d", n, v)
	}
	return v, nil
}

// Opaque reads a byte string with a variable-length prefix.
func (r *Reader) Opaque(field string, v *[]byte) {
	var n uint32
	r.Varint(field, &n)
	if r.Failed() {
		return
	}
	if !r.s.ReadBytes(v, int(n)) {
		r.Fail(field, "length %d exceeds the %d bytes left: %v", n, len(r.s), ErrTruncated)
	}
}

// Vector reads a variable-length-prefixed vector and calls f with a Reader
// over its contents. f is called once; it reads the elements itself (usually
// in a loop `for !v.Empty()`). Bytes left in the vector after f are an error.
func (r *Reader) Vector(field string, f func(v *Reader)) {
	var body []byte
	r.Opaque(field, &body)
	if r.Failed() {
		return
	}
	sub := &Reader{s: cryptobyte.String(body), prefix: r.prefix + field + ".", err: r.errp()}
	f(sub)
	if !sub.Failed() && !sub.s.Empty() {
		r.Fail(field, "%d bytes left inside the vector", len(sub.s))
	}
}

// Optional reads the presence byte of an optional<T> and, when present, calls
// f to read the value. It returns whether the value was present.
func (r *Reader) Optional(field string, f func(r *Reader)) bool {
	var present uint8
	r.Uint8(field, &present)
	if r.Failed() {
		return false
	}
	switch present {
	case 0:
		return false
	case 1:
		f(r)
		return !r.Failed()
	default:
		r.Fail(field, "optional presence byte %d is not 0 or 1", present)
		return false
	}
}

// Writer encodes fields. The zero value is not usable; use NewWriter or
// Marshal.
type Writer struct {
	b *cryptobyte.Builder
}

// NewWriter returns a Writer that appends to buf.
func NewWriter(buf []byte) *Writer {
	return &Writer{b: cryptobyte.NewBuilder(buf)}
}

// Marshal runs f on a new Writer and returns the bytes written.
func Marshal(f func(w *Writer)) ([]byte, error) {
	w := NewWriter(nil)
	f(w)
	return w.Bytes()
}

// Bytes returns the bytes written, or the first error met.
func (w *Writer) Bytes() ([]byte, error) {
	return w.b.Bytes()
}

// SetError makes Bytes fail with err.
func (w *Writer) SetError(err error) { w.b.SetError(err) }

// Uint8 writes a uint8.
func (w *Writer) Uint8(v uint8) { w.b.AddUint8(v) }

// Uint16 writes a big-endian uint16.
func (w *Writer) Uint16(v uint16) { w.b.AddUint16(v) }

// Uint32 writes a big-endian uint32.
func (w *Writer) Uint32(v uint32) { w.b.AddUint32(v) }

// Uint64 writes a big-endian uint64.
func (w *Writer) Uint64(v uint64) { w.b.AddUint64(v) }

// Bool writes a one-byte boolean.
func (w *Writer) Bool(v bool) {
	if v {
		w.b.AddUint8(1)
	} else {
		w.b.AddUint8(0)
	}
}

// Fixed writes v with no length prefix.
func (w *Writer) Fixed(v []byte) { w.b.AddBytes(v) }

// Varint writes n in the shortest variable-length encoding.
func (w *Writer) Varint(n uint64) {
	switch {
	case n < 1<<6:
		w.b.AddUint8(uint8(n))
	case n < 1<<14:
		w.b.AddUint16(uint16(n) | 0x4000)
	case n <= MaxVarint:
		w.b.AddUint32(uint32(n) | 0x80000000)
	default:
		w.b.SetError(fmt.Errorf("mls: encode: length %d exceeds the variable-length maximum %d", n, MaxVarint))
	}
}

// Opaque writes v with a variable-length prefix.
func (w *Writer) Opaque(v []byte) {
	w.Varint(uint64(len(v)))
	w.b.AddBytes(v)
}

// Vector writes what f writes with a variable-length prefix.
func (w *Writer) Vector(f func(w *Writer)) {
	sub := NewWriter(nil)
	f(sub)
	body, err := sub.Bytes()
	if err != nil {
		w.b.SetError(err)
		return
	}
	w.Opaque(body)
}

// Optional writes the presence byte of an optional<T> and, when present,
// calls f to write the value.
func (w *Writer) Optional(present bool, f func(w *Writer)) {
	if !present {
		w.b.AddUint8(0)
		return
	}
	w.b.AddUint8(1)
	f(w)
}
