package roomversion

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the strict JSON reader and the canonical JSON writer.
//
// Matrix canonical JSON (spec appendix "Canonical JSON", room versions 6 and
// later): object keys sorted by code point, no insignificant whitespace,
// strings as short as possible (only '"', '\\' and control characters
// escaped; \b \t \n \f \r in their short forms, other controls as \u00xx),
// integers only, within ±(2^53-1). gomatrixserverlib checks the number rules
// with verifyEnforcedCanonicalJSON (values beyond the range, '.', 'e' and -0
// rejected) and writes the same string form (CompactJSON). This reader is
// stricter where gomatrixserverlib is lenient: it also rejects invalid UTF-8,
// lone surrogates, 'E' exponents, and duplicate object keys, so that every
// accepted input has exactly one canonical form.

// Bounds of the reader.
const (
	maxJSONDepth = 64
	maxSafeInt   = 1<<53 - 1
)

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

func (k jsonKind) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[k]
}

// jsonValue is a parsed JSON value. Object members are sorted by key.
type jsonValue struct {
	kind    jsonKind
	boolean bool
	num     int64
	str     string
	arr     []jsonValue
	obj     []jsonMember
}

type jsonMember struct {
	key string
	val jsonValue
}

// member returns the value of key in an object, or nil.
func (v *jsonValue) member(key string) *jsonValue {
	i, ok := slices.BinarySearchFunc(v.obj, key, func(m jsonMember, k string) int { return strings.Compare(m.key, k) })
	if !ok {
		return nil
	}
	return &v.obj[i].val
}

// jsonError is a syntax or canonical-JSON error at a byte offset.
type jsonError struct {
	off    int
	reason string
}

func (e *jsonError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.reason)
}

type jsonParser struct {
	b     []byte
	off   int
	depth int
}

// parseJSON parses one JSON value (surrounded by optional whitespace) with
// the rules above.
func parseJSON(b []byte) (jsonValue, error) {
	p := &jsonParser{b: b}
	p.ws()
	v, err := p.value()
	if err != nil {
		return jsonValue{}, err
	}
	p.ws()
	if p.off != len(p.b) {
		return jsonValue{}, p.errorf("unexpected %q after the value", p.b[p.off])
	}
	return v, nil
}

func (p *jsonParser) errorf(format string, args ...any) *jsonError {
	return &jsonError{off: p.off, reason: fmt.Sprintf(format, args...)}
}

func (p *jsonParser) ws() {
	for p.off < len(p.b) {
		switch p.b[p.off] {
		case ' ', '\t', '\n', '\r':
			p.off++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (jsonValue, error) {
	if p.off >= len(p.b) {
		return jsonValue{}, p.errorf("unexpected end of input")
	}
	switch c := p.b[p.off]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		return jsonValue{kind: jsonString, str: s}, err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return jsonValue{kind: jsonBool, boolean: true}, p.literal("true")
	case c == 'f':
		return jsonValue{kind: jsonBool}, p.literal("false")
	case c == 'n':
		return jsonValue{kind: jsonNull}, p.literal("null")
	default:
		return jsonValue{}, p.errorf("unexpected %q", c)
	}
}

func (p *jsonParser) literal(word string) error {
	if len(p.b)-p.off < len(word) || string(p.b[p.off:p.off+len(word)]) != word {
		return p.errorf("invalid literal, want %s", word)
	}
	p.off += len(word)
	return nil
}

func (p *jsonParser) enter() error {
	p.depth++
	if p.depth > maxJSONDepth {
		return p.errorf("nested more than %d deep", maxJSONDepth)
	}
	return nil
}

func (p *jsonParser) object() (jsonValue, error) {
	if err := p.enter(); err != nil {
		return jsonValue{}, err
	}
	p.off++ // '{'
	v := jsonValue{kind: jsonObject}
	p.ws()
	if p.off < len(p.b) && p.b[p.off] == '}' {
		p.off++
		p.depth--
		return v, nil
	}
	for {
		p.ws()
		if p.off >= len(p.b) || p.b[p.off] != '"' {
			return v, p.errorf("want an object key")
		}
		key, err := p.string()
		if err != nil {
			return v, err
		}
		p.ws()
		if p.off >= len(p.b) || p.b[p.off] != ':' {
			return v, p.errorf("want ':' after object key %q", key)
		}
		p.off++
		p.ws()
		val, err := p.value()
		if err != nil {
			return v, err
		}
		v.obj = append(v.obj, jsonMember{key: key, val: val})
		p.ws()
		if p.off >= len(p.b) {
			return v, p.errorf("unexpected end of input in an object")
		}
		if p.b[p.off] == '}' {
			p.off++
			break
		}
		if p.b[p.off] != ',' {
			return v, p.errorf("want ',' or '}' in an object, got %q", p.b[p.off])
		}
		p.off++
	}
	p.depth--
	slices.SortFunc(v.obj, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(v.obj); i++ {
		if v.obj[i].key == v.obj[i-1].key {
			return v, p.errorf("duplicate object key %q in the object ending here", v.obj[i].key)
		}
	}
	return v, nil
}

func (p *jsonParser) array() (jsonValue, error) {
	if err := p.enter(); err != nil {
		return jsonValue{}, err
	}
	p.off++ // '['
	v := jsonValue{kind: jsonArray, arr: []jsonValue{}}
	p.ws()
	if p.off < len(p.b) && p.b[p.off] == ']' {
		p.off++
		p.depth--
		return v, nil
	}
	for {
		p.ws()
		val, err := p.value()
		if err != nil {
			return v, err
		}
		v.arr = append(v.arr, val)
		p.ws()
		if p.off >= len(p.b) {
			return v, p.errorf("unexpected end of input in an array")
		}
		if p.b[p.off] == ']' {
			p.off++
			break
		}
		if p.b[p.off] != ',' {
			return v, p.errorf("want ',' or ']' in an array, got %q", p.b[p.off])
		}
		p.off++
	}
	p.depth--
	return v, nil
}

// number reads an integer: -?(0|[1-9][0-9]*), within ±(2^53-1), not -0.
// Fractions and exponents are JSON but not canonical JSON.
func (p *jsonParser) number() (jsonValue, error) {
	start := p.off
	if p.b[p.off] == '-' {
		p.off++
	}
	digits := p.off
	for p.off < len(p.b) && p.b[p.off] >= '0' && p.b[p.off] <= '9' {
		p.off++
	}
	text := string(p.b[start:p.off])
	switch {
	case p.off == digits:
		return jsonValue{}, p.errorf("invalid number")
	case p.b[digits] == '0' && p.off-digits > 1:
		return jsonValue{}, p.errorf("number %s has a leading zero", text)
	}
	if p.off < len(p.b) {
		switch p.b[p.off] {
		case '.', 'e', 'E':
			return jsonValue{}, p.errorf("number %s...: fractions and exponents are not allowed in canonical JSON", text)
		}
	}
	if text == "-0" {
		return jsonValue{}, p.errorf("-0 is not allowed in canonical JSON")
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n > maxSafeInt || n < -maxSafeInt {
		return jsonValue{}, p.errorf("integer %s outside ±(2^53-1)", text)
	}
	return jsonValue{kind: jsonNumber, num: n}, nil
}

// string reads a string at p.off (which is '"'), checking UTF-8 and
// escapes.
func (p *jsonParser) string() (string, error) {
	p.off++ // '"'
	start := p.off
	ascii := true
	for p.off < len(p.b) {
		c := p.b[p.off]
		switch {
		case c == '"':
			s := p.b[start:p.off]
			if !ascii && !utf8.Valid(s) {
				return "", p.invalidUTF8(start)
			}
			p.off++
			return string(s), nil
		case c == '\\':
			if !ascii && !utf8.Valid(p.b[start:p.off]) {
				return "", p.invalidUTF8(start)
			}
			return p.escapedString(start)
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in a string", c)
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.off++
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) invalidUTF8(start int) *jsonError {
	for i := start; i < len(p.b); {
		r, n := utf8.DecodeRune(p.b[i:])
		if r == utf8.RuneError && n <= 1 {
			return &jsonError{off: i, reason: "invalid UTF-8 in a string"}
		}
		i += n
	}
	return p.errorf("invalid UTF-8 in a string")
}

// escapedString continues a string from p.off (a backslash), whose text
// since start has no escapes.
func (p *jsonParser) escapedString(start int) (string, error) {
	out := make([]byte, 0, p.off-start+16)
	out = append(out, p.b[start:p.off]...)
	for p.off < len(p.b) {
		c := p.b[p.off]
		switch {
		case c == '"':
			p.off++
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in a string", c)
		case c == '\\':
			if p.off+1 >= len(p.b) {
				return "", p.errorf("unterminated escape")
			}
			e := p.b[p.off+1]
			p.off += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 {
						return "", p.errorf("lone low surrogate \\u%04x", r)
					}
					if p.off+1 >= len(p.b) || p.b[p.off] != '\\' || p.b[p.off+1] != 'u' {
						return "", p.errorf("high surrogate \\u%04x not followed by a low one", r)
					}
					p.off += 2
					r2, err := p.hex4()
					if err != nil {
						return "", err
					}
					if r2 < 0xdc00 || r2 > 0xdfff {
						return "", p.errorf("high surrogate \\u%04x followed by \\u%04x", r, r2)
					}
					r = utf16.DecodeRune(r, r2)
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.off++
		default:
			r, n := utf8.DecodeRune(p.b[p.off:])
			if r == utf8.RuneError && n <= 1 {
				return "", p.errorf("invalid UTF-8 in a string")
			}
			out = append(out, p.b[p.off:p.off+n]...)
			p.off += n
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *jsonParser) hex4() (rune, error) {
	if len(p.b)-p.off < 4 {
		return 0, p.errorf("truncated \\u escape")
	}
	var r rune
	for _, c := range p.b[p.off : p.off+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.errorf("invalid \\u escape")
		}
	}
	p.off += 4
	return r, nil
}

// appendCanonical appends the canonical JSON encoding of v.
func appendCanonical(dst []byte, v *jsonValue) []byte {
	switch v.kind {
	case jsonNull:
		return append(dst, "null"...)
	case jsonBool:
		if v.boolean {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case jsonNumber:
		return strconv.AppendInt(dst, v.num, 10)
	case jsonString:
		return appendString(dst, v.str)
	case jsonArray:
		dst = append(dst, '[')
		for i := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, &v.arr[i])
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i := range v.obj {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, v.obj[i].key)
			dst = append(dst, ':')
			dst = appendCanonical(dst, &v.obj[i].val)
		}
		return append(dst, '}')
	}
}

// appendString appends s (valid UTF-8) as a canonical JSON string.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[last:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		last = i + 1
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}

// canonicalJSON parses b strictly and returns its canonical encoding.
func canonicalJSON(b []byte) ([]byte, error) {
	v, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	return appendCanonical(make([]byte, 0, len(b)), &v), nil
}
