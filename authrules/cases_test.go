package authrules_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// otherParams are parameters unlike the defaults in every way: the unstable
// room version, another suite, other names, keys, clock and room.
func otherParams() authrulestest.Params {
	srv := func(name string, b byte) authrulestest.Server {
		return authrulestest.Server{Name: name, KeyID: fmt.Sprintf("ed25519:k%d", b), Seed: bytes.Repeat([]byte{b}, ed25519.SeedSize)}
	}
	return authrulestest.Params{
		Version: roomversion.V1Unstable,
		Suite:   mls.X25519ChaCha20Poly1305SHA256Ed25519,
		RoomID:  "!xyz:hs1.test:8448",
		A:       srv("hs1.test:8448", 0x31),
		B:       srv("[2001:db8::2]", 0x32),
		C:       srv("10.0.0.3", 0x33),
		D:       srv("hs4.test", 0x34),
		Clock:   time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC),
		MLSSeed: []byte("other"),
	}
}

// TestCases runs every case of the table, for the vectors' parameters and
// for others, and checks the rule (and soft-fail case) each must get.
func TestCases(t *testing.T) {
	for _, ps := range []struct {
		name string
		p    authrulestest.Params
	}{{"default", authrulestest.DefaultParams()}, {"other", otherParams()}} {
		t.Run(ps.name, func(t *testing.T) {
			for _, c := range authrulestest.Cases(ps.p) {
				t.Run(c.Name, func(t *testing.T) {
					v, err := authrulestest.Run(&c)
					if err != nil {
						t.Fatal(err)
					}
					if v.Rule != c.Rule {
						t.Errorf("rule %q (%s: %s), want %q\n%s", v.Rule, v.Stage, v.Reason, c.Rule, c.Description)
					}
					if v.SoftFail != c.SoftFail {
						t.Errorf("soft-fail %q (%s), want %q\n%s", v.SoftFail, v.SoftFailReason, c.SoftFail, c.Description)
					}
					if testing.Verbose() {
						t.Logf("%s %s %s %s", v.Stage, v.Reason, v.SoftFail, v.SoftFailReason)
					}
				})
			}
		})
	}
}

// TestCoverage checks that every rule that can reject has an allowed and a
// rejected case, and every soft-fail case a soft-failed and a
// not-soft-failed one, and prints the table.
func TestCoverage(t *testing.T) {
	need := []string{"1", "2", "3.1", "3.2", "3.3", "3.4", "3.5", "4.1", "4.2", "4.3", "4.4", "5", "6", "7", "8",
		"9.1", "9.2", "9.3", "9.4", "9.5", "9.6", "9.7", "9.8", "9.9", "9.10",
		"10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.7", "11", "chain", "soft-fail-a", "soft-fail-b", "soft-fail-c"}
	pos, neg := map[string][]string{}, map[string][]string{}
	for _, c := range authrulestest.Cases(authrulestest.DefaultParams()) {
		about := c.About
		bad := c.Rule != ""
		if strings.HasPrefix(about, "soft-fail") {
			bad = c.SoftFail != ""
		}
		if about == "room" {
			if c.Rule == "" {
				continue
			}
			about = c.Rule
		}
		if bad {
			neg[about] = append(neg[about], c.Name)
		} else {
			pos[about] = append(pos[about], c.Name)
		}
	}
	var b strings.Builder
	for _, r := range need {
		if len(pos[r]) == 0 || len(neg[r]) == 0 {
			t.Errorf("rule %s: %d allowed and %d rejected cases, want at least one of each", r, len(pos[r]), len(neg[r]))
		}
		sort.Strings(pos[r])
		sort.Strings(neg[r])
		fmt.Fprintf(&b, "%s\n  ok:  %s\n  bad: %s\n", r, strings.Join(pos[r], ", "), strings.Join(neg[r], ", "))
	}
	t.Log("\n" + b.String())
}
