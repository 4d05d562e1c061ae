package fedmap

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// MaxServerNameLength is the longest server name, in bytes, ValidServerName
// accepts.
const MaxServerNameLength = 255

// ValidServerName checks s against the Matrix server-name grammar (Matrix
// specification, appendices, "Server Name"):
//
//	server_name = hostname [ ":" port ]
//	port        = 1*5DIGIT          ; here also 1-65535
//	hostname    = IPv4address / "[" IPv6address "]" / dns-name
//	IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
//	IPv6address = 2*45IPv6char
//	IPv6char    = DIGIT / %x41-46 / %x61-66 / ":" / "."
//	dns-name    = 1*255dns-char
//	dns-char    = DIGIT / ALPHA / "-" / "."
//
// with the whole name at most MaxServerNameLength bytes. Two readings are
// stricter than the bare grammar: the text between brackets must also be an
// IPv6 address (net/netip, no zone), and the port must be 1-65535. A dotted
// quad is always also a dns-name under the grammar, so IPv4 octets are not
// range-checked. Names are compared byte for byte elsewhere; ValidServerName
// does not fold case. It returns nil or an error saying what is wrong.
func ValidServerName(s string) error {
	if s == "" {
		return errors.New("empty server name")
	}
	if len(s) > MaxServerNameLength {
		return fmt.Errorf("server name of %d bytes, at most %d allowed", len(s), MaxServerNameLength)
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("server name %q: '[' without ']'", s)
		}
		host, port = s[:end+1], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return fmt.Errorf("server name %q: unexpected text after ']'", s)
			}
			port = port[1:]
			if err := validPort(port); err != nil {
				return fmt.Errorf("server name %q: %w", s, err)
			}
		}
		if err := validIPv6(host[1 : len(host)-1]); err != nil {
			return fmt.Errorf("server name %q: %w", s, err)
		}
		return nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if err := validPort(port); err != nil {
			return fmt.Errorf("server name %q: %w", s, err)
		}
	}
	if host == "" {
		return fmt.Errorf("server name %q: empty hostname", s)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
			return fmt.Errorf("server name %q: character %q not allowed in a hostname", s, c)
		}
	}
	return nil
}

// validPort checks 1*5DIGIT with a value of 1-65535.
func validPort(p string) error {
	if p == "" || len(p) > 5 {
		return fmt.Errorf("port %q: want 1 to 5 digits", p)
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return fmt.Errorf("port %q: not a number", p)
		}
		n = n*10 + int(p[i]-'0')
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", n)
	}
	return nil
}

// validIPv6 checks the text between brackets: 2*45IPv6char that parses as an
// IPv6 address without a zone.
func validIPv6(a string) error {
	if len(a) < 2 || len(a) > 45 {
		return fmt.Errorf("IPv6 address %q: want 2 to 45 characters", a)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
			return fmt.Errorf("IPv6 address %q: character %q not allowed", a, c)
		}
	}
	ip, err := netip.ParseAddr(a)
	if err != nil || !ip.Is6() {
		return fmt.Errorf("IPv6 address %q: not an IPv6 address", a)
	}
	return nil
}
