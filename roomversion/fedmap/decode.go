package fedmap

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// CBOR major types (RFC 8949 §3.1).
const (
	majorUint   = 0
	majorNegint = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
)

// unknownMaxNesting bounds the nesting of the value of an unknown key.
const unknownMaxNesting = 16

// unknownDecMode checks the value of an unknown key: it must be well-formed,
// definite-length CBOR without duplicate map keys, within the list bound. It
// is built once and immutable.
var unknownDecMode = sync.OnceValues(func() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  unknownMaxNesting,
		MaxArrayElements: MaxListEntries,
		MaxMapPairs:      MaxListEntries,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
})

// Decode parses authenticated data as a federation map (SPEC-NOTES §3). It
// fails with a *DecodeError naming the field when b is larger than MaxSize,
// is not exactly one well-formed CBOR map, uses an indefinite length, repeats
// a map key, has a non-text key in a map of the schema, gives a field of the
// schema the wrong type (floats, negative integers, tags, byte strings and
// null are all wrong where a type is given), repeats an entry in a list,
// has a list longer than MaxListEntries, or lacks federation, powers or
// servers. Unknown keys are ignored, but their values must still be
// well-formed definite-length CBOR without duplicate map keys, nested at
// most 16 deep. Absent security fields take their defaults.
//
// Decode does not check that powers and servers are non-empty nor that
// entries are valid server names (auth rules 9.5, 9.6 and 10.3 do).
func Decode(b []byte) (*Map, error) {
	if len(b) > MaxSize {
		return nil, &DecodeError{Reason: fmt.Sprintf("%d bytes, at most %d allowed", len(b), MaxSize)}
	}
	d := &decoder{b: b}
	m, err := d.topMap()
	if err != nil {
		return nil, err
	}
	if d.off != len(b) {
		return nil, d.errorf("", "%d trailing bytes after the map", len(b)-d.off)
	}
	return m, nil
}

// decoder reads the schema of SPEC-NOTES §3 from b, explicitly and with
// bounds: every length is checked against the bytes left before use.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) errorf(field, format string, args ...any) *DecodeError {
	return &DecodeError{Field: field, Offset: d.off, Reason: fmt.Sprintf(format, args...)}
}

// head is the initial byte and argument of a data item.
type head struct {
	major byte
	ai    byte   // additional information, the low 5 bits
	arg   uint64 // the argument (a length, a value, a tag number)
	start int    // offset of the initial byte
}

// readHead reads the head of the next data item. It rejects what is not
// well-formed (truncation, reserved additional information, a simple value
// below 32 in two bytes, a break outside an indefinite item) and every
// indefinite length.
func (d *decoder) readHead(field string) (head, error) {
	h := head{start: d.off}
	if d.off >= len(d.b) {
		return h, d.errorf(field, "unexpected end of data")
	}
	ib := d.b[d.off]
	h.major, h.ai = ib>>5, ib&0x1f
	d.off++
	switch {
	case h.ai < 24:
		h.arg = uint64(h.ai)
	case h.ai <= 27:
		n := 1 << (h.ai - 24)
		if len(d.b)-d.off < n {
			d.off = h.start
			return h, d.errorf(field, "unexpected end of data in the head of a %s", majorName(h.major, h.ai))
		}
		p := d.b[d.off : d.off+n]
		switch n {
		case 1:
			h.arg = uint64(p[0])
		case 2:
			h.arg = uint64(binary.BigEndian.Uint16(p))
		case 4:
			h.arg = uint64(binary.BigEndian.Uint32(p))
		default:
			h.arg = binary.BigEndian.Uint64(p)
		}
		d.off += n
		if h.major == majorSimple && h.ai == 24 && h.arg < 32 {
			d.off = h.start
			return h, d.errorf(field, "not well-formed: simple value %d in two bytes", h.arg)
		}
	case h.ai <= 30:
		d.off = h.start
		return h, d.errorf(field, "not well-formed: reserved additional information %d", h.ai)
	default: // 31
		d.off = h.start
		switch h.major {
		case majorBytes, majorText, majorArray, majorMap:
			return h, d.errorf(field, "indefinite-length %s not allowed", majorName(h.major, 0))
		case majorSimple:
			return h, d.errorf(field, "not well-formed: break outside an indefinite-length item")
		default:
			return h, d.errorf(field, "not well-formed: indefinite length on a %s", majorName(h.major, 0))
		}
	}
	return h, nil
}

// majorName describes a data item's type for error messages.
func majorName(major, ai byte) string {
	switch major {
	case majorUint:
		return "unsigned integer"
	case majorNegint:
		return "negative integer"
	case majorBytes:
		return "byte string"
	case majorText:
		return "text string"
	case majorArray:
		return "array"
	case majorMap:
		return "map"
	case majorTag:
		return "tag"
	}
	switch ai {
	case 20, 21:
		return "boolean"
	case 22:
		return "null"
	case 23:
		return "undefined"
	case 25, 26, 27:
		return "float"
	}
	return "simple value"
}

// expect reads a head and checks its major type.
func (d *decoder) expect(field string, major byte) (head, error) {
	h, err := d.readHead(field)
	if err != nil {
		return h, err
	}
	if h.major != major {
		d.off = h.start
		return h, d.errorf(field, "got %s, want %s", majorName(h.major, h.ai), majorName(major, 0))
	}
	return h, nil
}

// text reads a text string and checks that it is valid UTF-8.
func (d *decoder) text(field string) (string, error) {
	h, err := d.expect(field, majorText)
	if err != nil {
		return "", err
	}
	if h.arg > uint64(len(d.b)-d.off) {
		d.off = h.start
		return "", d.errorf(field, "text string of %d bytes runs past the end of the data", h.arg)
	}
	s := d.b[d.off : d.off+int(h.arg)]
	if !utf8.Valid(s) {
		d.off = h.start
		return "", d.errorf(field, "text string is not valid UTF-8")
	}
	d.off += int(h.arg)
	return string(s), nil
}

// textList reads an array of distinct text strings with at most
// MaxListEntries entries. The result is never nil.
func (d *decoder) textList(field string) ([]string, error) {
	h, err := d.expect(field, majorArray)
	if err != nil {
		return nil, err
	}
	if h.arg > MaxListEntries {
		d.off = h.start
		return nil, d.errorf(field, "%d entries, at most %d allowed", h.arg, MaxListEntries)
	}
	out := make([]string, 0, min(int(h.arg), len(d.b)-d.off))
	seen := make(map[string]int, cap(out))
	for i := range int(h.arg) {
		ef := field + "[" + strconv.Itoa(i) + "]"
		start := d.off
		s, err := d.text(ef)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[s]; dup {
			d.off = start
			return nil, d.errorf(ef, "duplicate entry %q (also entry %d)", s, j)
		}
		seen[s] = i
		out = append(out, s)
	}
	return out, nil
}

// uint reads an unsigned integer.
func (d *decoder) uint(field string) (uint64, error) {
	h, err := d.expect(field, majorUint)
	if err != nil {
		return 0, err
	}
	return h.arg, nil
}

// mapEntries reads a map with text keys, calling fn for each key with the
// decoder positioned at the value; fn must consume the value. Duplicate keys
// are rejected. fn consumes the values of unknown keys with d.skipUnknown.
func (d *decoder) mapEntries(field string, fn func(key, keyField string) error) error {
	h, err := d.expect(field, majorMap)
	if err != nil {
		return err
	}
	// Each pair takes at least two bytes; a count beyond that is truncated
	// data, reported when reading runs out.
	seen := make(map[string]struct{}, min(int(h.arg), (len(d.b)-d.off)/2))
	for i := uint64(0); i < h.arg; i++ {
		keyStart := d.off
		kh, err := d.readHead(join(field, "key"))
		if err != nil {
			return err
		}
		if kh.major != majorText {
			d.off = keyStart
			return d.errorf(field, "map key %d: got %s, want text string", i, majorName(kh.major, kh.ai))
		}
		d.off = keyStart
		key, err := d.text(join(field, "key"))
		if err != nil {
			return err
		}
		if _, dup := seen[key]; dup {
			d.off = keyStart
			return d.errorf(join(field, key), "duplicate map key %q", key)
		}
		seen[key] = struct{}{}
		if err := fn(key, join(field, key)); err != nil {
			return err
		}
	}
	return nil
}

// join builds a dotted field path.
func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// skipUnknown consumes the value of an unknown key after checking it with
// the strict generic decoder.
func (d *decoder) skipUnknown(field string) error {
	dm, err := unknownDecMode()
	if err != nil {
		return d.errorf(field, "building the CBOR decoder: %v", err)
	}
	var v any
	rest, err := dm.UnmarshalFirst(d.b[d.off:], &v)
	if err != nil {
		return d.errorf(field, "value of unknown key: %v", err)
	}
	d.off = len(d.b) - len(rest)
	return nil
}

// topMap reads the whole map.
func (d *decoder) topMap() (*Map, error) {
	m := &Map{}
	haveFed := false
	err := d.mapEntries("", func(key, field string) error {
		switch key {
		case "federation":
			haveFed = true
			return d.federation(field, &m.Federation)
		case "security":
			m.Security = &Security{Window: DefaultWindow, RequiredVerification: DefaultRequiredVerification}
			return d.security(field, m.Security)
		}
		return d.skipUnknown(field)
	})
	if err != nil {
		return nil, err
	}
	if !haveFed {
		return nil, d.errorf("federation", "missing (required)")
	}
	return m, nil
}

func (d *decoder) federation(field string, f *Federation) error {
	var havePowers, haveServers bool
	err := d.mapEntries(field, func(key, kf string) error {
		var err error
		switch key {
		case "powers":
			havePowers = true
			f.Powers, err = d.textList(kf)
		case "servers":
			haveServers = true
			f.Servers, err = d.textList(kf)
		case "can_propose":
			f.CanPropose, err = d.textList(kf)
		default:
			err = d.skipUnknown(kf)
		}
		return err
	})
	if err != nil {
		return err
	}
	if !havePowers {
		return d.errorf(join(field, "powers"), "missing (required)")
	}
	if !haveServers {
		return d.errorf(join(field, "servers"), "missing (required)")
	}
	return nil
}

func (d *decoder) security(field string, s *Security) error {
	return d.mapEntries(field, func(key, kf string) error {
		switch key {
		case "window":
			w, err := d.uint(kf)
			s.Window = w
			return err
		case "required_verification":
			start := d.off
			v, err := d.text(kf)
			if err != nil {
				return err
			}
			if !ValidVerification(v) {
				d.off = start
				return d.errorf(kf, "%q is not one of m.direct, m.cross, m.tofu, m.none", v)
			}
			s.RequiredVerification = v
			return nil
		}
		return d.skipUnknown(kf)
	})
}
