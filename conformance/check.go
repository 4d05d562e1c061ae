package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Check is one conformance check: it talks to the server under test over
// HTTP only (through Env) and fails, naming the rule or endpoint and what
// came back, when the server does not behave as SPEC-NOTES reads m.mls.1.
type Check struct {
	// Section groups checks in the summary ("client/rooms", "federation/authrules", ...).
	Section string
	// Name is unique within its section.
	Name string
	// About is the rule or endpoint the check is about, for the failure
	// message and docs/CONFORMANCE.md.
	About string
	// Run performs the check; it fails through c (Errorf, Fatalf).
	Run func(c *C)
	// Parallel lets Run (the runner) run the check alongside the other
	// parallel checks of its section: it shares nothing with them.
	Parallel bool
}

// ID is "section/name".
func (ch Check) ID() string { return ch.Section + "/" + ch.Name }

// C is what a check runs with: the environment and a testing.TB whose
// failures are recorded in the check's Result instead of failing the
// surrounding test, so that the suite's own tests can expect a check to
// fail. Fatal ends only the check. Methods not overridden (Log, TempDir,
// Cleanup, ...) are those of the test the check runs under.
type C struct {
	testing.TB
	// Env is the server under test and the suite's own homeserver.
	Env *Env
	// Check is the check being run.
	Check Check

	mu       sync.Mutex
	failures []string
}

// Error records a failure.
func (c *C) Error(args ...any) { c.fail(fmt.Sprintln(args...)) }

// Errorf records a failure.
func (c *C) Errorf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }

// Fatal records a failure and ends the check.
func (c *C) Fatal(args ...any) { c.fail(fmt.Sprintln(args...)); c.FailNow() }

// Fatalf records a failure and ends the check.
func (c *C) Fatalf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)); c.FailNow() }

// Fail marks the check failed.
func (c *C) Fail() { c.fail("failed") }

// FailNow ends the check; it must be called from the check's goroutine.
func (c *C) FailNow() {
	c.mu.Lock()
	if len(c.failures) == 0 {
		c.failures = append(c.failures, "failed")
	}
	c.mu.Unlock()
	runtime.Goexit()
}

// Failed reports whether the check failed so far.
func (c *C) Failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.failures) > 0
}

// Skip is a failure, as are SkipNow and Skipf: a conformance check never
// skips silently.
func (c *C) Skip(args ...any) { c.Fatal(append([]any{"check cannot run:"}, args...)...) }

// Skipf is a failure (see Skip).
func (c *C) Skipf(format string, args ...any) { c.Fatalf("check cannot run: "+format, args...) }

// SkipNow is a failure (see Skip).
func (c *C) SkipNow() { c.Fatal("check cannot run") }

// Helper does nothing: failure messages name the check, not a line.
func (c *C) Helper() {}

func (c *C) fail(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, strings.TrimSpace(msg))
}

// Result is the outcome of one check.
type Result struct {
	Section  string        `json:"section"`
	Name     string        `json:"name"`
	About    string        `json:"about"`
	Passed   bool          `json:"passed"`
	Failures []string      `json:"failures,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// RunCheck runs ch against env under tb (used for logs, temporary
// directories and cleanups only: a failing check does not fail tb) and
// returns its result. A panic in the check is a failure.
func RunCheck(tb testing.TB, env *Env, ch Check) Result {
	c := &C{TB: tb, Env: env, Check: ch}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				c.fail(fmt.Sprintf("panic: %v", r))
			}
		}()
		ch.Run(c)
	}()
	<-done
	res := Result{Section: ch.Section, Name: ch.Name, About: ch.About, Duration: time.Since(start)}
	c.mu.Lock()
	res.Failures = append(res.Failures, c.failures...)
	c.mu.Unlock()
	res.Passed = len(res.Failures) == 0
	return res
}

// Report is the results of a run.
type Report struct {
	mu      sync.Mutex
	Results []Result `json:"results"`
	// Notes are printed after the summary and written to the JSON report
	// (what the run could not check, for example).
	Notes []string `json:"notes,omitempty"`
}

// Add appends a result.
func (r *Report) Add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Results = append(r.Results, res)
}

// SectionSummary is the passed and failed counts of one section.
type SectionSummary struct {
	Section string   `json:"section"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Failing []string `json:"failing,omitempty"`
}

// Summary returns one entry per section, in section order.
func (r *Report) Summary() []SectionSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	by := map[string]*SectionSummary{}
	for _, res := range r.Results {
		s := by[res.Section]
		if s == nil {
			s = &SectionSummary{Section: res.Section}
			by[res.Section] = s
		}
		if res.Passed {
			s.Passed++
		} else {
			s.Failed++
			s.Failing = append(s.Failing, res.Name)
		}
	}
	out := make([]SectionSummary, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Section < out[j].Section })
	return out
}

// Failed returns the results that failed.
func (r *Report) Failed() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, res := range r.Results {
		if !res.Passed {
			out = append(out, res)
		}
	}
	return out
}

// WriteSummary writes one line per section ("PASS client/keys 12 passed
// 0 failed") and a total line.
func (r *Report) WriteSummary(w io.Writer, target string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "conformance summary for %s\n", target)
	passed, failed := 0, 0
	for _, s := range r.Summary() {
		verdict := "PASS"
		if s.Failed > 0 {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %-28s %3d passed %3d failed", verdict, s.Section, s.Passed, s.Failed)
		if len(s.Failing) > 0 {
			fmt.Fprintf(&b, "  (%s)", strings.Join(s.Failing, ", "))
		}
		b.WriteString("\n")
		passed += s.Passed
		failed += s.Failed
	}
	fmt.Fprintf(&b, "  total: %d passed, %d failed\n", passed, failed)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report (target, summary and every result) as JSON
// to path.
func (r *Report) WriteJSON(path, target string) error {
	r.mu.Lock()
	results := append([]Result(nil), r.Results...)
	r.mu.Unlock()
	out := struct {
		Target  string           `json:"target"`
		Summary []SectionSummary `json:"summary"`
		Notes   []string         `json:"notes,omitempty"`
		Results []Result         `json:"results"`
	}{target, r.Summary(), r.Notes, results}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the conformance report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the conformance report: %w", err)
	}
	return nil
}

// Run runs checks against env as subtests of t, one per section and one
// per check within it (so that go test -json reports each check), records
// each result in report (if not nil), and fails each subtest whose check
// failed, naming what it is about and what came back.
func Run(t *testing.T, env *Env, checks []Check, report *Report) {
	var sections []string
	bySection := map[string][]Check{}
	for _, ch := range checks {
		if _, ok := bySection[ch.Section]; !ok {
			sections = append(sections, ch.Section)
		}
		bySection[ch.Section] = append(bySection[ch.Section], ch)
	}
	for _, sec := range sections {
		t.Run(sec, func(t *testing.T) {
			for _, ch := range bySection[sec] {
				t.Run(ch.Name, func(t *testing.T) {
					if ch.Parallel {
						t.Parallel()
					}
					res := RunCheck(t, env, ch)
					if report != nil {
						report.Add(res)
					}
					if !res.Passed {
						t.Errorf("%s (%s): %s", ch.ID(), ch.About, strings.Join(res.Failures, "; "))
					}
				})
			}
		})
	}
}

// Select returns the checks whose ID ("section/name") is in ids, in the
// order of checks; it panics if an ID names no check.
func Select(checks []Check, ids ...string) []Check {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []Check
	for _, ch := range checks {
		if want[ch.ID()] {
			out = append(out, ch)
			delete(want, ch.ID())
		}
	}
	if len(want) > 0 {
		panic(fmt.Sprintf("conformance: no checks %v", want))
	}
	return out
}
