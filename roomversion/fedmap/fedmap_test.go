package fedmap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// A tiny CBOR writer for building test inputs by hand, so that malformed
// and non-canonical inputs can be made too.

func hd(major byte, n uint64) []byte {
	switch {
	case n < 24:
		return []byte{major<<5 | byte(n)}
	case n <= 0xff:
		return []byte{major<<5 | 24, byte(n)}
	case n <= 0xffff:
		return []byte{major<<5 | 25, byte(n >> 8), byte(n)}
	case n <= 0xffffffff:
		return []byte{major<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	b := []byte{major<<5 | 27}
	for i := 7; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func tx(s string) []byte         { return cat(hd(majorText, uint64(len(s))), []byte(s)) }
func un(n uint64) []byte         { return hd(majorUint, n) }
func ar(items ...[]byte) []byte  { return cat(hd(majorArray, uint64(len(items))), cat(items...)) }

// mp builds a map from alternating keys and values (keys given encoded).
func mp(kv ...[]byte) []byte { return cat(hd(majorMap, uint64(len(kv)/2)), cat(kv...)) }

func txs(ss ...string) []byte {
	var items [][]byte
	for _, s := range ss {
		items = append(items, tx(s))
	}
	return ar(items...)
}

func fed(kv ...[]byte) []byte { return mp(tx("federation"), mp(kv...)) }

var okFed = mp(tx("powers"), txs("a.example"), tx("servers"), txs("a.example"))

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	many := make([]string, MaxListEntries+1)
	for i := range many {
		many[i] = strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	manyInts := make([][]byte, MaxListEntries+1)
	for i := range manyInts {
		manyInts[i] = un(0)
	}
	deep := un(1)
	for range unknownMaxNesting + 1 {
		deep = ar(deep)
	}
	sec := func(kv ...[]byte) []byte {
		return mp(tx("federation"), okFed, tx("security"), mp(kv...))
	}
	cases := []struct {
		name  string
		in    []byte
		field string // the field the error must name ("" for the map)
		want  string // a substring of the reason
	}{
		{"empty", nil, "", "unexpected end of data"},
		{"too large", append(fed(tx("powers"), txs("a"), tx("servers"), txs("a")), make([]byte, MaxSize)...), "", "at most 65536"},
		{"top-level array", txs("a"), "", "got array, want map"},
		{"top-level text", tx("federation"), "", "got text string, want map"},
		{"trailing bytes", append(fed(tx("powers"), txs("a"), tx("servers"), txs("a")), 0x00), "", "1 trailing bytes"},
		{"two maps", append(fed(tx("powers"), txs("a"), tx("servers"), txs("a")), fed(tx("powers"), txs("a"), tx("servers"), txs("a"))...), "", "trailing bytes"},
		{"indefinite top-level map", unhex(t, "bf ff"), "", "indefinite-length map not allowed"},
		{"indefinite federation map", cat(hd(majorMap, 1), tx("federation"), []byte{0xbf, 0xff}), "federation", "indefinite-length map"},
		{"indefinite powers array", fed(tx("powers"), []byte{0x9f, 0xff}, tx("servers"), txs("a")), "federation.powers", "indefinite-length array"},
		{"indefinite text entry", fed(tx("powers"), cat(hd(majorArray, 1), []byte{0x7f, 0x61, 0x61, 0xff}), tx("servers"), txs("a")), "federation.powers[0]", "indefinite-length text string"},
		{"indefinite key", cat(hd(majorMap, 1), []byte{0x7f, 0xff}, okFed), "key", "indefinite-length text string"},
		{"duplicate top-level key", mp(tx("federation"), okFed, tx("federation"), okFed), "federation", "duplicate map key"},
		{"duplicate federation key", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("powers"), txs("a")), "federation.powers", "duplicate map key"},
		{"duplicate unknown key", mp(tx("federation"), okFed, tx("x"), un(1), tx("x"), un(2)), "x", "duplicate map key"},
		{"duplicate security key", sec(tx("window"), un(1), tx("window"), un(1)), "security.window", "duplicate map key"},
		{"integer key", mp(un(1), un(2), tx("federation"), okFed), "", "map key 0: got unsigned integer"},
		{"byte string key", mp(tx("federation"), okFed, cat(hd(majorBytes, 1), []byte("x")), un(2)), "", "map key 1: got byte string"},
		{"integer key in federation", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), un(7), un(1)), "federation", "map key 2: got unsigned integer"},
		{"integer key in security", sec(un(7), un(1)), "security", "got unsigned integer, want text string"},
		{"invalid UTF-8 key", mp(cat(hd(majorText, 1), []byte{0xff}), un(1), tx("federation"), okFed), "key", "not valid UTF-8"},
		{"no federation", mp(tx("security"), mp()), "federation", "missing"},
		{"empty map", mp(), "federation", "missing"},
		{"federation is an array", mp(tx("federation"), txs("a")), "federation", "got array, want map"},
		{"federation is null", mp(tx("federation"), []byte{0xf6}), "federation", "got null, want map"},
		{"no powers", fed(tx("servers"), txs("a")), "federation.powers", "missing"},
		{"no servers", fed(tx("powers"), txs("a")), "federation.servers", "missing"},
		{"powers is text", fed(tx("powers"), tx("a"), tx("servers"), txs("a")), "federation.powers", "got text string, want array"},
		{"powers is a map", fed(tx("powers"), mp(), tx("servers"), txs("a")), "federation.powers", "got map, want array"},
		{"powers entry is an integer", fed(tx("powers"), ar(un(1)), tx("servers"), txs("a")), "federation.powers[0]", "got unsigned integer, want text string"},
		{"powers entry is negative", fed(tx("powers"), ar(hd(majorNegint, 0)), tx("servers"), txs("a")), "federation.powers[0]", "got negative integer"},
		{"servers entry is bytes", fed(tx("powers"), txs("a"), tx("servers"), ar(cat(hd(majorBytes, 1), []byte("a")))), "federation.servers[0]", "got byte string"},
		{"servers entry is a float", fed(tx("powers"), txs("a"), tx("servers"), ar(unhex(t, "f9 3c00"))), "federation.servers[0]", "got float"},
		{"servers entry is tagged", fed(tx("powers"), txs("a"), tx("servers"), ar(cat(hd(majorTag, 32), tx("a")))), "federation.servers[0]", "got tag"},
		{"servers entry is null", fed(tx("powers"), txs("a"), tx("servers"), ar([]byte{0xf6})), "federation.servers[0]", "got null"},
		{"servers entry is boolean", fed(tx("powers"), txs("a"), tx("servers"), ar([]byte{0xf5})), "federation.servers[0]", "got boolean"},
		{"invalid UTF-8 entry", fed(tx("powers"), ar(cat(hd(majorText, 2), []byte{0xc3, 0x28})), tx("servers"), txs("a")), "federation.powers[0]", "not valid UTF-8"},
		{"duplicate powers entry", fed(tx("powers"), txs("a", "b", "a"), tx("servers"), txs("a", "b")), "federation.powers[2]", "duplicate entry \"a\" (also entry 0)"},
		{"duplicate servers entry", fed(tx("powers"), txs("a"), tx("servers"), txs("a", "a")), "federation.servers[1]", "duplicate entry"},
		{"duplicate can_propose entry", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("can_propose"), txs("b", "b")), "federation.can_propose[1]", "duplicate entry"},
		{"too many powers", fed(tx("powers"), txs(many...), tx("servers"), txs("a")), "federation.powers", "1001 entries, at most 1000"},
		{"too many servers", fed(tx("powers"), txs("a"), tx("servers"), txs(many...)), "federation.servers", "1001 entries"},
		{"too many can_propose", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("can_propose"), txs(many...)), "federation.can_propose", "1001 entries"},
		{"can_propose is null", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("can_propose"), []byte{0xf6}), "federation.can_propose", "got null, want array"},
		{"security is null", mp(tx("federation"), okFed, tx("security"), []byte{0xf6}), "security", "got null, want map"},
		{"security is an array", mp(tx("federation"), okFed, tx("security"), ar()), "security", "got array, want map"},
		{"window is negative", sec(tx("window"), hd(majorNegint, 4)), "security.window", "got negative integer, want unsigned integer"},
		{"window is a float", sec(tx("window"), unhex(t, "fb 4072c00000000000")), "security.window", "got float"},
		{"window is a half float", sec(tx("window"), unhex(t, "f9 0000")), "security.window", "got float"},
		{"window is a bignum tag", sec(tx("window"), cat(hd(majorTag, 2), cat(hd(majorBytes, 1), []byte{1}))), "security.window", "got tag"},
		{"window is text", sec(tx("window"), tx("300")), "security.window", "got text string"},
		{"window is undefined", sec(tx("window"), []byte{0xf7}), "security.window", "got undefined"},
		{"window is a simple value", sec(tx("window"), []byte{0xf8, 0x20}), "security.window", "got simple value"},
		{"window is a two-byte small simple value", sec(tx("window"), []byte{0xf8, 0x10}), "security.window", "simple value 16 in two bytes"},
		{"required_verification unknown", sec(tx("required_verification"), tx("m.maybe")), "security.required_verification", "\"m.maybe\" is not one of"},
		{"required_verification empty", sec(tx("required_verification"), tx("")), "security.required_verification", "is not one of"},
		{"required_verification integer", sec(tx("required_verification"), un(1)), "security.required_verification", "got unsigned integer, want text string"},
		{"unknown value indefinite", mp(tx("federation"), okFed, tx("x"), []byte{0x9f, 0xff}), "x", "indefinite-length"},
		{"unknown value nested duplicate", mp(tx("federation"), okFed, tx("x"), mp(un(1), un(1), un(1), un(2))), "x", "duplicate map key"},
		{"unknown value list too long", mp(tx("federation"), okFed, tx("x"), ar(manyInts...)), "x", "exceeded max number of elements 1000"},
		{"unknown value too deep", mp(tx("federation"), okFed, tx("x"), deep), "x", "exceeded max nested level"},
		{"unknown value invalid UTF-8", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("y"), cat(hd(majorText, 1), []byte{0x80})), "federation.y", "invalid UTF-8"},
		{"unknown value truncated", mp(tx("federation"), okFed, tx("x"), []byte{0x82, 0x01}), "x", "unexpected EOF"},
		{"reserved additional information", mp(tx("federation"), okFed, tx("security"), []byte{0x1c}), "security", "reserved additional information 28"},
		{"break as a value", mp(tx("federation"), []byte{0xff}), "federation", "break outside"},
		{"truncated after key", cat(hd(majorMap, 1), tx("federation")), "federation", "unexpected end of data"},
		{"truncated map count", cat(hd(majorMap, 3), tx("federation"), okFed), "key", "unexpected end of data"},
		{"truncated head", fed(tx("powers"), []byte{0x99, 0x01}), "federation.powers", "unexpected end of data in the head"},
		{"text runs past end", fed(tx("powers"), ar(cat(hd(majorText, 9), []byte("abc")))), "federation.powers[0]", "runs past the end"},
		{"huge array count", fed(tx("powers"), hd(majorArray, 1<<40)), "federation.powers", "entries, at most 1000"},
		{"huge map count", hd(majorMap, 1<<62), "key", "unexpected end of data"},
		{"indefinite integer", mp(tx("federation"), okFed, tx("security"), mp(tx("window"), []byte{0x1f})), "security.window", "indefinite length on a unsigned integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if err == nil {
				t.Fatalf("accepted %x as %+v", c.in, m)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v, want *DecodeError", err, err)
			}
			if de.Field != c.field || !strings.Contains(de.Reason, c.want) {
				t.Fatalf("error %q (field %q), want field %q and reason containing %q", err, de.Field, c.field, c.want)
			}
			if c.field != "" && !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error text %q does not name %q", err, c.field)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want Map
	}{
		{"minimal", fed(tx("powers"), txs("a.example"), tx("servers"), txs("a.example")),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}}},
		{"empty lists parse (rules 9.5, 9.6 reject them)", fed(tx("powers"), txs(), tx("servers"), txs()),
			Map{Federation: Federation{Powers: []string{}, Servers: []string{}}}},
		{"invalid server names parse (rules 9.5, 9.6 reject them)", fed(tx("powers"), txs("not a server!"), tx("servers"), txs("")),
			Map{Federation: Federation{Powers: []string{"not a server!"}, Servers: []string{""}}}},
		{"empty can_propose", fed(tx("powers"), txs("a"), tx("servers"), txs("a"), tx("can_propose"), txs()),
			Map{Federation: Federation{Powers: []string{"a"}, Servers: []string{"a"}, CanPropose: []string{}}}},
		{"empty security takes defaults", mp(tx("security"), mp(), tx("federation"), okFed),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}, Security: &Security{Window: 0, RequiredVerification: "m.cross"}}},
		{"security with values", mp(tx("federation"), okFed, tx("security"), mp(tx("required_verification"), tx("m.none"), tx("window"), un(604800))),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}, Security: &Security{Window: 604800, RequiredVerification: "m.none"}}},
		{"largest window", mp(tx("federation"), okFed, tx("security"), mp(tx("window"), un(1<<64-1))),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}, Security: &Security{Window: 1<<64 - 1, RequiredVerification: "m.cross"}}},
		{"non-shortest heads are well-formed", cat([]byte{0xb8, 0x01}, []byte{0x78, 10}, []byte("federation"), okFed),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}}},
		{"non-shortest integer", mp(tx("federation"), okFed, tx("security"), mp(tx("window"), unhex(t, "1b 0000000000000005"))),
			Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}, Security: &Security{Window: 5, RequiredVerification: "m.cross"}}},
		{"unknown keys everywhere are ignored", mp(
			tx("zzz"), mp(un(1), ar(unhex(t, "fb 3ff8000000000000"), []byte{0xf6}), hd(majorNegint, 9), cat(hd(majorTag, 32), tx("https://x"))),
			tx("federation"), mp(tx("extra"), unhex(t, "f9 3c00"), tx("powers"), txs("b", "a"), tx("servers"), txs("a", "b")),
			tx("security"), mp(tx("later"), tx("x"), tx("window"), un(9)),
			tx("a"), cat(hd(majorBytes, 2), []byte{1, 2})),
			Map{Federation: Federation{Powers: []string{"b", "a"}, Servers: []string{"a", "b"}}, Security: &Security{Window: 9, RequiredVerification: "m.cross"}}},
		{"keys in any order", mp(tx("security"), mp(tx("window"), un(1)), tx("federation"), mp(tx("servers"), txs("a"), tx("can_propose"), txs("a"), tx("powers"), txs("a"))),
			Map{Federation: Federation{Powers: []string{"a"}, Servers: []string{"a"}, CanPropose: []string{"a"}}, Security: &Security{Window: 1, RequiredVerification: "m.cross"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*m, c.want) {
				t.Fatalf("got %+v (security %+v), want %+v", *m, m.Security, c.want)
			}
		})
	}
}

func TestDecodeListBoundary(t *testing.T) {
	names := make([]string, MaxListEntries)
	for i := range names {
		names[i] = "s" + strings.Repeat("0", 3-len(itoa(i))) + itoa(i) + ".example"
	}
	in := fed(tx("powers"), txs(names...), tx("servers"), txs(names...), tx("can_propose"), txs(names...))
	m, err := Decode(in)
	if err != nil {
		t.Fatalf("1000 entries: %v", err)
	}
	if len(m.Federation.Powers) != MaxListEntries || len(m.Federation.CanPropose) != MaxListEntries {
		t.Fatal("lists cut short")
	}
	if _, err := m.Encode(); err != nil {
		t.Fatal(err)
	}
	m.Federation.Servers = append(m.Federation.Servers, "one-more.example")
	if _, err := m.Encode(); err == nil || !strings.Contains(err.Error(), "federation.servers") {
		t.Fatalf("encoding 1001 servers: %v", err)
	}
}

func TestDecodeSizeBoundary(t *testing.T) {
	// Pad with an unknown byte string so the map is exactly MaxSize bytes.
	base := fed(tx("powers"), txs("a"), tx("servers"), txs("a"))
	build := func(total int) []byte {
		// map(2) header replaces map(1): same length.
		body := base[1:]
		key := tx("pad")
		n := total - 1 - len(body) - len(key) - 3 // 3: byte-string head with a 2-byte length
		return cat(hd(majorMap, 2), body, key, []byte{0x59, byte(n >> 8), byte(n)}, make([]byte, n))
	}
	at := build(MaxSize)
	if len(at) != MaxSize {
		t.Fatalf("built %d bytes", len(at))
	}
	if _, err := Decode(at); err != nil {
		t.Fatalf("exactly %d bytes: %v", MaxSize, err)
	}
	over := build(MaxSize + 1)
	if _, err := Decode(over); err == nil || !strings.Contains(err.Error(), "65537 bytes") {
		t.Fatalf("%d bytes: %v", len(over), err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestEncodeDeterministic checks byte-exact encodings worked out by hand from
// RFC 8949 §4.2.1: shortest heads, definite lengths, map keys sorted
// bytewise by their encodings (so a shorter text key sorts first: "security"
// (0x68...) before "federation" (0x6a...), "powers" before "servers" before
// "can_propose").
func TestEncodeDeterministic(t *testing.T) {
	cases := []struct {
		name string
		m    Map
		want string
	}{
		{"minimal", Map{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example"}}}, `
			a1                                  # map(1)
			  6a 66656465726174696f6e           # "federation"
			  a2                                # map(2)
			    66 706f77657273                 # "powers"
			    81 69 612e6578616d706c65        # ["a.example"]
			    67 73657276657273               # "servers"
			    81 69 612e6578616d706c65        # ["a.example"]`},
		{"everything", Map{
			Federation: Federation{Powers: []string{"b.org", "a.org"}, Servers: []string{"a.org", "b.org"}, CanPropose: []string{}},
			Security:   &Security{Window: 300, RequiredVerification: "m.tofu"},
		}, `
			a2                                  # map(2)
			  68 7365637572697479               # "security"
			  a2                                # map(2)
			    66 77696e646f77                 # "window"
			    19 012c                         # 300
			    75 72657175697265645f766572696669636174696f6e # "required_verification"
			    66 6d2e746f6675                 # "m.tofu"
			  6a 66656465726174696f6e           # "federation"
			  a3                                # map(3)
			    66 706f77657273                 # "powers"
			    82 65 622e6f7267 65 612e6f7267  # ["b.org", "a.org"]
			    67 73657276657273               # "servers"
			    82 65 612e6f7267 65 622e6f7267  # ["a.org", "b.org"]
			    6b 63616e5f70726f706f7365       # "can_propose"
			    80                              # []`},
		{"nil lists and empty verification", Map{Federation: Federation{}, Security: &Security{Window: 24}}, `
			a2                                  # map(2)
			  68 7365637572697479               # "security"
			  a1 66 77696e646f77 18 18          # {"window": 24}
			  6a 66656465726174696f6e           # "federation"
			  a2 66 706f77657273 80 67 73657276657273 80`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var clean []string
			for _, line := range strings.Split(c.want, "\n") {
				line, _, _ = strings.Cut(line, "#")
				clean = append(clean, line)
			}
			want := unhex(t, strings.Join(clean, " "))
			got, err := c.m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding\n got %x\nwant %x", got, want)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			// Decoding fills in defaults (an empty required_verification
			// becomes m.cross), so compare decoded maps, not bytes.
			again, err := back.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if back2, err := Decode(again); err != nil || !reflect.DeepEqual(back, back2) {
				t.Fatalf("re-encoding gave %x: %+v, %v", again, back2, err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	maps := []Map{
		{Federation: Federation{Powers: []string{"a.example"}, Servers: []string{"a.example", "b.example:8448", "[::1]:8008"}}},
		{Federation: Federation{Powers: []string{"x", "y"}, Servers: []string{"y", "x"}, CanPropose: []string{"x"}}, Security: &Security{Window: 1 << 40, RequiredVerification: "m.direct"}},
		{Federation: Federation{Powers: []string{"ü.example"}, Servers: []string{"ü.example"}, CanPropose: []string{}}, Security: &Security{Window: 0, RequiredVerification: "m.cross"}},
	}
	for i, m := range maps {
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(*got, m) {
			t.Fatalf("%d: got %+v, want %+v", i, *got, m)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	big := make([]string, 700)
	for i := range big {
		big[i] = strings.Repeat("s", 80) + itoa(i)
	}
	cases := []struct {
		name string
		m    *Map
		want string
	}{
		{"nil", nil, "nil map"},
		{"duplicate power", &Map{Federation: Federation{Powers: []string{"a", "a"}, Servers: []string{"a"}}}, "federation.powers: entry 1: duplicate entry"},
		{"duplicate server", &Map{Federation: Federation{Powers: []string{"a"}, Servers: []string{"a", "b", "b"}}}, "federation.servers: entry 2"},
		{"duplicate can_propose", &Map{Federation: Federation{CanPropose: []string{"a", "a"}}}, "federation.can_propose"},
		{"invalid UTF-8", &Map{Federation: Federation{Powers: []string{"\xff"}}}, "not valid UTF-8"},
		{"bad verification", &Map{Security: &Security{RequiredVerification: "m.maybe"}}, "security.required_verification"},
		{"too large", &Map{Federation: Federation{Powers: big, Servers: big}}, "more than the 65536 allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if b, err := c.m.Encode(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %x, %v; want an error containing %q", b, err, c.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	m := &Map{}
	if m.Window() != 0 || m.RequiredVerification() != "m.cross" {
		t.Fatalf("defaults without security: %d %q", m.Window(), m.RequiredVerification())
	}
	m.Security = &Security{Window: 5}
	if m.Window() != 5 || m.RequiredVerification() != "m.cross" {
		t.Fatalf("defaults with empty verification: %d %q", m.Window(), m.RequiredVerification())
	}
	m.Security.RequiredVerification = VerificationTOFU
	if m.RequiredVerification() != "m.tofu" {
		t.Fatal(m.RequiredVerification())
	}
}
