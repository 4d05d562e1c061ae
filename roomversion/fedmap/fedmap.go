// Package fedmap owns the federation map of MLS mode Matrix (SPEC-NOTES §3):
// the CBOR map every commit and pending commit carries in the
// authenticated_data of its MLS PrivateMessage, saying which servers may
// commit (powers, in order of power), which take part in the room (servers),
// which may propose commits (can_propose), and the room's security settings.
//
// Decode is strict about structure (well-formed CBOR, exactly one top-level
// map with text keys, no duplicate map keys, no indefinite lengths, the types
// of SPEC-NOTES §3, no duplicate entries inside one list, at most MaxSize
// bytes and MaxListEntries entries per list) and ignores unknown keys. It
// does not check that powers and servers are non-empty, nor that their
// entries are valid server names: the auth rules (9.5, 9.6, 10.3) check those
// so that a rejection names the rule. ValidServerName, the Matrix server-name
// grammar those rules use, lives here because the map is where server names
// come from. Encode writes RFC 8949 core deterministic encoding.
package fedmap

import (
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Bounds of SPEC-NOTES §3.
const (
	// MaxSize is the largest authenticated data, in bytes, that Decode reads.
	MaxSize = 64 << 10
	// MaxListEntries is the largest number of entries of one list (powers,
	// servers, can_propose, and any list under an unknown key).
	MaxListEntries = 1000
)

// The values of security.required_verification: the verification a
// committer needs with a user or device it adds.
const (
	// VerificationDirect: verified directly, without cross-signing.
	VerificationDirect = "m.direct"
	// VerificationCross: verified through cross-signing (the default).
	VerificationCross = "m.cross"
	// VerificationTOFU: trust on first use of the user's master key.
	VerificationTOFU = "m.tofu"
	// VerificationNone: no verification required.
	VerificationNone = "m.none"
)

// Defaults of the optional security settings (SPEC-NOTES §3).
const (
	// DefaultWindow is security.window when absent.
	DefaultWindow uint64 = 0
	// DefaultRequiredVerification is security.required_verification when
	// absent.
	DefaultRequiredVerification = VerificationCross
)

// Map is the decoded authenticated data of a commit or pending commit.
type Map struct {
	// Federation is the required "federation" map.
	Federation Federation
	// Security is the optional "security" map; nil when absent. Use
	// Map.Window and Map.RequiredVerification for the values with defaults
	// applied.
	Security *Security
}

// Federation is the "federation" map: who may commit, who takes part, who
// may propose.
type Federation struct {
	// Powers lists the servers allowed to commit, index 0 the most powerful.
	Powers []string
	// Servers lists every server allowed to take part in the room.
	Servers []string
	// CanPropose lists the servers whose users may send pending commits.
	// nil when the key is absent, which means the same as empty; Decode
	// gives a non-nil slice when the key is present, so that a decoded Map
	// re-encodes to the same Map.
	CanPropose []string
}

// Security is the "security" map. Decode fills absent fields with their
// defaults (window 0, required_verification m.cross): an absent field and
// its default mean the same.
type Security struct {
	// Window is how many seconds clients may keep old epochs' private keys
	// to recover from commit conflicts (clients clamp it to 7 days).
	Window uint64
	// RequiredVerification is one of VerificationDirect, VerificationCross,
	// VerificationTOFU, VerificationNone. Encode omits it when empty.
	RequiredVerification string
}

// Window returns security.window, or DefaultWindow when there is no
// security map.
func (m *Map) Window() uint64 {
	if m.Security == nil {
		return DefaultWindow
	}
	return m.Security.Window
}

// RequiredVerification returns security.required_verification, or
// DefaultRequiredVerification when it is absent.
func (m *Map) RequiredVerification() string {
	if m.Security == nil || m.Security.RequiredVerification == "" {
		return DefaultRequiredVerification
	}
	return m.Security.RequiredVerification
}

// ValidVerification reports whether s is one of the four values of
// security.required_verification.
func ValidVerification(s string) bool {
	switch s {
	case VerificationDirect, VerificationCross, VerificationTOFU, VerificationNone:
		return true
	}
	return false
}

// DecodeError is the error Decode returns: Field names the field that was
// wrong ("federation.powers[2]", "security.window", "" for the map itself),
// Offset is the byte offset in the input where the problem was found, and
// Reason says what was wrong.
type DecodeError struct {
	Field  string
	Offset int
	Reason string
}

func (e *DecodeError) Error() string {
	field := e.Field
	if field == "" {
		field = "authenticated data"
	}
	return fmt.Sprintf("fedmap: decoding %s (byte %d): %s", field, e.Offset, e.Reason)
}

// Encoding-side wire shapes: struct field order does not matter, the encoder
// sorts keys (core deterministic encoding).
type wireFederation struct {
	Powers     []string  `cbor:"powers"`
	Servers    []string  `cbor:"servers"`
	CanPropose *[]string `cbor:"can_propose,omitempty"`
}

type wireSecurity struct {
	Window               uint64 `cbor:"window"`
	RequiredVerification string `cbor:"required_verification,omitempty"`
}

type wireMap struct {
	Federation wireFederation `cbor:"federation"`
	Security   *wireSecurity  `cbor:"security,omitempty"`
}

// encMode is the RFC 8949 core deterministic encoder, built once; it is
// immutable.
var encMode = sync.OnceValues(func() (cbor.EncMode, error) {
	opts := cbor.CoreDetEncOptions()
	opts.NilContainers = cbor.NilContainerAsEmpty
	return opts.EncMode()
})

// Encode returns the RFC 8949 core deterministic encoding of m (keys sorted
// bytewise by their encoding, shortest heads, definite lengths), omitting
// can_propose when it is nil and security when it is nil. A nil Powers or
// Servers encodes as an empty list. Encode refuses what Decode would refuse:
// a list with more than MaxListEntries entries or a duplicate entry, an
// unknown required_verification, or an encoding larger than MaxSize. It does
// not check server names.
func (m *Map) Encode() ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("fedmap: encoding: nil map")
	}
	f := &m.Federation
	for _, l := range []struct {
		name string
		list []string
	}{{"federation.powers", f.Powers}, {"federation.servers", f.Servers}, {"federation.can_propose", f.CanPropose}} {
		if err := checkList(l.list); err != nil {
			return nil, fmt.Errorf("fedmap: encoding %s: %w", l.name, err)
		}
	}
	w := wireMap{Federation: wireFederation{Powers: f.Powers, Servers: f.Servers}}
	if f.CanPropose != nil {
		cp := f.CanPropose
		w.Federation.CanPropose = &cp
	}
	if s := m.Security; s != nil {
		if s.RequiredVerification != "" && !ValidVerification(s.RequiredVerification) {
			return nil, fmt.Errorf("fedmap: encoding security.required_verification: %q is not one of m.direct, m.cross, m.tofu, m.none", s.RequiredVerification)
		}
		w.Security = &wireSecurity{Window: s.Window, RequiredVerification: s.RequiredVerification}
	}
	em, err := encMode()
	if err != nil {
		return nil, fmt.Errorf("fedmap: encoding: building the CBOR encoder: %w", err)
	}
	b, err := em.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("fedmap: encoding: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("fedmap: encoding: %d bytes, more than the %d allowed", len(b), MaxSize)
	}
	return b, nil
}

// checkList applies the list rules Decode applies.
func checkList(l []string) error {
	if len(l) > MaxListEntries {
		return fmt.Errorf("%d entries, at most %d allowed", len(l), MaxListEntries)
	}
	seen := make(map[string]struct{}, len(l))
	for i, s := range l {
		if !utf8.ValidString(s) {
			return fmt.Errorf("entry %d: not valid UTF-8", i)
		}
		if _, dup := seen[s]; dup {
			return fmt.Errorf("entry %d: duplicate entry %q", i, s)
		}
		seen[s] = struct{}{}
	}
	return nil
}
