// Package testvectors finds and loads the official MLS test vectors
// (github.com/mlswg/mls-implementations) for the tests of package mls and its
// internal packages, and reports per ciphersuite how many cases ran.
//
// The directory is $MLS_TEST_VECTORS, or else ../shared/mls-test-vectors
// beside the module root. A missing directory fails the test: vector tests
// never skip silently.
package testvectors

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Dir returns the test-vector directory, failing t if there is none.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("MLS_TEST_VECTORS"); d != "" {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("MLS_TEST_VECTORS=%s: %v", d, err)
		}
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			v := filepath.Join(d, "..", "shared", "mls-test-vectors")
			if _, err := os.Stat(v); err != nil {
				t.Fatalf("no MLS test vectors: set MLS_TEST_VECTORS or put them at %s (%v)", v, err)
			}
			return v
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s and MLS_TEST_VECTORS is not set", wd)
		}
	}
}

// Load decodes the JSON vector file name (for example "crypto-basics") into v.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), name+".json"))
	if err != nil {
		t.Fatalf("reading test vectors: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parsing %s.json: %v", name, err)
	}
}

// Hex is a hex string in a vector file, decoded on unmarshalling. JSON null
// decodes to nil.
type Hex []byte

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// Counter counts, per ciphersuite, the cases of one vector file that ran and
// the cases that could not run because the suite is not supported, and logs
// the tally when the test ends.
type Counter struct {
	ran         map[uint16]int
	unsupported map[uint16]int
}

// NewCounter returns a Counter that logs its tally for file through t when t
// finishes.
func NewCounter(t *testing.T, file string) *Counter {
	c := &Counter{ran: map[uint16]int{}, unsupported: map[uint16]int{}}
	t.Cleanup(func() {
		var parts []string
		for _, s := range sortedKeys(c.ran, c.unsupported) {
			switch {
			case c.ran[s] > 0 && c.unsupported[s] > 0:
				parts = append(parts, fmt.Sprintf("suite %d: %d ran, %d not supported", s, c.ran[s], c.unsupported[s]))
			case c.ran[s] > 0:
				parts = append(parts, fmt.Sprintf("suite %d: %d ran", s, c.ran[s]))
			default:
				parts = append(parts, fmt.Sprintf("suite %d: %d not run (suite not supported)", s, c.unsupported[s]))
			}
		}
		t.Logf("%s: %s", file, strings.Join(parts, "; "))
		if len(c.ran) == 0 && !t.Failed() {
			t.Errorf("%s: no case ran", file)
		}
	})
	return c
}

// Ran records a case that ran for suite.
func (c *Counter) Ran(suite uint16) { c.ran[suite]++ }

// Unsupported records a case not run because suite is not supported.
func (c *Counter) Unsupported(suite uint16) { c.unsupported[suite]++ }

func sortedKeys(ms ...map[uint16]int) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ForEachCase runs f as a subtest "suite=S/case=I" for each of n cases of
// file whose suite (suiteOf) is supported, and tallies the others as not
// supported, reporting per suite when t ends.
func ForEachCase(t *testing.T, file string, n int, suiteOf func(i int) uint16, supported func(uint16) bool, f func(t *testing.T, i int)) {
	count := NewCounter(t, file)
	for i := range n {
		s := suiteOf(i)
		if !supported(s) {
			count.Unsupported(s)
			continue
		}
		t.Run(fmt.Sprintf("suite=%d/case=%d", s, i), func(t *testing.T) { f(t, i) })
		count.Ran(s)
	}
}
