package fedmap

import (
	"strings"
	"testing"
)

func TestValidServerName(t *testing.T) {
	long := strings.Repeat("a", 250) + ".com" // 254
	valid := []string{
		"example.com", "matrix.org:8448", "a", "localhost", "localhost:1", "x:65535", "EXAMPLE.COM",
		"1.2.3.4", "1.2.3.4:8008", "999.1.1.1", "-weird-.", "a..b",
		"[::1]", "[::1]:8448", "[2001:db8::1]", "[::ffff:1.2.3.4]", "[ABCD::EF]:1", "[1:2:3:4:5:6:7:8]",
		long, long + "x", long[:250] + ":8448",
	}
	for _, s := range valid {
		if err := ValidServerName(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	invalid := []struct{ name, want string }{
		{"", "empty server name"},
		{long + "xy", "256 bytes"},
		{long[:251] + ":8448", "256 bytes"},
		{"exa mple.com", "' ' not allowed"},
		{"exa_mple.com", "'_' not allowed"},
		{"ex/ample", "'/' not allowed"},
		{"ü.example", "not allowed"},
		{"example.com:", "port \"\""},
		{"example.com:0", "port 0 out of range"},
		{"example.com:00000", "port 0 out of range"},
		{"example.com:65536", "port 65536 out of range"},
		{"example.com:123456", "1 to 5 digits"},
		{"example.com:80a", "not a number"},
		{"example.com:-1", "not a number"},
		{"example.com:80:80", "not a number"},
		{":8448", "empty hostname"},
		{"[::1", "without ']'"},
		{"[::1]x", "unexpected text after ']'"},
		{"[::1]:", "port"},
		{"[::1]:0", "out of range"},
		{"[]", "2 to 45 characters"},
		{"[1]", "2 to 45 characters"},
		{"[1.2.3.4]", "not an IPv6 address"},
		{"[::g]", "'g' not allowed"},
		{"[fe80::1%eth0]", "'%' not allowed"},
		{"[::::]", "not an IPv6 address"},
		{"[" + strings.Repeat("1:", 23) + "1]", "2 to 45 characters"},
		{"::1", "not a number"},
	}
	for _, c := range invalid {
		err := ValidServerName(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
