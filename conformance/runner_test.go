package conformance_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/conformance"
)

// TestRunner: a check's Errorf, Fatalf and panic are recorded in its
// result without failing the test it runs under; Fatalf ends the check;
// the summary counts per section and the JSON report holds every result.
func TestRunner(t *testing.T) {
	reached := false
	checks := []conformance.Check{
		{Section: "s1", Name: "passes", About: "nothing", Run: func(c *conformance.C) {}},
		{Section: "s1", Name: "errs", About: "rule 1", Run: func(c *conformance.C) { c.Errorf("got %d", 1); c.Errorf("got %d", 2) }},
		{Section: "s2", Name: "fatal", About: "endpoint", Run: func(c *conformance.C) { c.Fatalf("stop"); reached = true }},
		{Section: "s2", Name: "panics", About: "endpoint", Run: func(c *conformance.C) { panic("boom") }},
		{Section: "s2", Name: "skips", About: "endpoint", Run: func(c *conformance.C) { c.Skip("no tool") }},
	}
	report := &conformance.Report{}
	for _, ch := range checks {
		report.Add(conformance.RunCheck(t, nil, ch))
	}
	if reached {
		t.Error("Fatalf did not end the check")
	}
	want := map[string]string{"passes": "", "errs": "got 1|got 2", "fatal": "stop", "panics": "panic: boom", "skips": "check cannot run: no tool"}
	for _, r := range report.Results {
		if got := strings.Join(r.Failures, "|"); got != want[r.Name] || r.Passed != (want[r.Name] == "") {
			t.Errorf("%s: passed %v failures %q, want %q", r.Name, r.Passed, got, want[r.Name])
		}
	}
	sum := report.Summary()
	if len(sum) != 2 || sum[0].Section != "s1" || sum[0].Passed != 1 || sum[0].Failed != 1 || sum[1].Passed != 0 || sum[1].Failed != 3 {
		t.Errorf("summary %+v", sum)
	}
	var b strings.Builder
	if err := report.WriteSummary(&b, "test"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "FAIL s1") || !strings.Contains(b.String(), "total: 1 passed, 4 failed") {
		t.Errorf("summary text:\n%s", b.String())
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := report.WriteJSON(path, "test"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var js struct {
		Target  string                       `json:"target"`
		Summary []conformance.SectionSummary `json:"summary"`
		Results []conformance.Result         `json:"results"`
	}
	if err := json.Unmarshal(raw, &js); err != nil || js.Target != "test" || len(js.Results) != 5 || len(js.Summary) != 2 {
		t.Errorf("JSON report %s (%v)", raw, err)
	}
}
