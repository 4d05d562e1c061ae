package conformance_test

import (
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/mlsmode/mlsmode/conformance"
	"github.com/mlsmode/mlsmode/internal/mlsserver"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomversion"
)

func TestMain(m *testing.M) {
	roomversion.Register()
	os.Exit(m.Run())
}

// TestConformance runs every check against our mlsserver in this process
// or the server the MLSMODE_CONFORMANCE_* variables name, each check a
// subtest (go test -json reports each), and prints one summary line per
// section; MLSMODE_CONFORMANCE_REPORT=file writes the report as JSON.
func TestConformance(t *testing.T) {
	env, target := conformance.Setup(t, mlsserver.Options{})
	report := &conformance.Report{}
	conformance.Run(t, env, conformance.All(), report)
	left := conformance.AuthRuleCasesLeftOut()
	reasons := map[string]int{}
	for _, l := range left {
		reasons[l.Reason]++
	}
	for reason, n := range reasons {
		report.Notes = append(report.Notes, fmt.Sprintf("federation/authrules: %d cases of the table left out: %s", n, reason))
	}
	for _, l := range conformance.StateResScenariosLeftOut() {
		report.Notes = append(report.Notes, fmt.Sprintf("federation/stateres: scenario %s left out: %s", l.Name, l.Reason))
	}
	sort.Strings(report.Notes)
	if err := report.WriteSummary(os.Stdout, target); err != nil {
		t.Error(err)
	}
	if path := os.Getenv(conformance.EnvReport); path != "" {
		if err := report.WriteJSON(path, target); err != nil {
			t.Error(err)
		}
	}
}

// TestConformancePostgres runs the checks against our mlsserver on
// PostgreSQL (MLSMODE_TEST_POSTGRES, a fresh schema), but for the
// auth-rule cases: they check the rules above storage and run on SQLite in
// TestConformance; the storage-heavy parts (accounts, key claims under
// concurrency, commits, the remote invite, state resolution) run on both.
func TestConformancePostgres(t *testing.T) {
	if _, external, _ := conformance.FromEnvironment(); external {
		t.Skip("MLSMODE_CONFORMANCE_CLIENT_URL names an external server: TestConformance tests it; this test is of our server's PostgreSQL backend")
	}
	env, target := conformance.SetupLocalDatabase(t, mlsserver.Options{}, testdb.PostgresDSN(t))
	var checks []conformance.Check
	for _, ch := range conformance.All() {
		if ch.Section != "federation/authrules" {
			checks = append(checks, ch)
		}
	}
	report := &conformance.Report{}
	conformance.Run(t, env, checks, report)
	if err := report.WriteSummary(os.Stdout, target); err != nil {
		t.Error(err)
	}
}
