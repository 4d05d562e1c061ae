package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/authrules/authrulestest"
)

var updateCheck = flag.Bool("update-check", false, "rewrite testdata/authrules/room.check.jsonl from mlsroom check's output")

const (
	checkRoomFile   = "../../testdata/authrules/room.jsonl"
	checkGoldenFile = "../../testdata/authrules/room.check.jsonl"
)

// checkRun runs mlsroom check with args and stdin.
func checkRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"check"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// checkVerdicts decodes check's output.
func checkVerdicts(t *testing.T, out string) []checkVerdict {
	t.Helper()
	var vs []checkVerdict
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var v checkVerdict
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("output line %d: %v: %s", i+1, err, l)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestCheckRoom runs check over the room of the auth-rule vectors (a fork,
// its healing, a demoted server's backdated fork, a pending commit and its
// conversion, replays, a removal, rejections) and compares its output with
// the golden file (regenerate with go test ./cmd/mlsroom -run TestCheckRoom
// -update-check), and each verdict with the case table's.
func TestCheckRoom(t *testing.T) {
	code, stdout, stderr := checkRun(t, "", checkRoomFile)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if *updateCheck {
		if err := os.WriteFile(checkGoldenFile, []byte(stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(checkGoldenFile)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(golden) {
		t.Errorf("output differs from %s (run with -update-check if the change is intended):\n%s", checkGoldenFile, stdout)
	}

	// The input is the case table's room scenario, and every verdict is the
	// one the table expects (the simplified states of check agree with the
	// states the table gives each step).
	cases := authrulestest.RoomScenario(authrulestest.DefaultParams())
	input, err := os.ReadFile(checkRoomFile)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, c := range cases {
		want.Write(c.JSON)
		want.WriteByte('\n')
	}
	if !bytes.Equal(input, want.Bytes()) {
		t.Fatalf("%s is not the room scenario (go test ./authrules -run TestVectors -update)", checkRoomFile)
	}
	vs := checkVerdicts(t, stdout)
	if len(vs) != len(cases) {
		t.Fatalf("%d verdicts for %d events", len(vs), len(cases))
	}
	for i, c := range cases {
		v := vs[i]
		sf, _ := v.SoftFailed.(string)
		if v.EventID != c.Event.EventID() || v.Allowed != (c.Rule == "") || v.Rule != c.Rule || sf != c.SoftFail {
			t.Errorf("%s: got %+v, want rule %q soft-fail %q", c.Name, v, c.Rule, c.SoftFail)
		}
		if v.Allowed == (v.Reason != "") || (sf != "") == (v.SoftFailReason == "") {
			t.Errorf("%s: reasons do not fit the verdict: %+v", c.Name, v)
		}
	}
}

func TestCheckInputs(t *testing.T) {
	room, err := os.ReadFile(checkRoomFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(room), "\n"), "\n")
	create, c0 := lines[0], lines[1]
	_, full, _ := checkRun(t, "", checkRoomFile)

	// Standard input, "-", blank lines and surrounding spaces.
	for _, args := range [][]string{nil, {"-"}} {
		code, out, errs := checkRun(t, "\n  "+strings.Join(lines, "\n")+"\n\n", args...)
		if code != exitOK || out != full || errs != "" {
			t.Errorf("%q: exit %d, stderr %q, output differs: %v", args, code, errs, out != full)
		}
	}

	// A repeated event gets its first verdict again.
	code, out, _ := checkRun(t, create+c0+c0)
	if vs := checkVerdicts(t, out); code != exitOK || len(vs) != 3 || vs[2] != vs[1] {
		t.Errorf("repeated event: exit %d, %+v", code, vs)
	}

	// An event the format refuses for an auth rule's reason is a verdict.
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(c0), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "state_key")
	noStateKey, _ := json.Marshal(m)
	code, out, _ = checkRun(t, create+string(noStateKey)+"\n")
	if vs := checkVerdicts(t, out); code != exitOK || len(vs) != 2 || vs[1].Allowed || vs[1].Rule != "9.1" || !strings.HasPrefix(vs[1].EventID, "$") {
		t.Errorf("commit without state key: exit %d, %+v", code, vs)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		stdout      string // substring
		stderr      string // substring, "" for nothing
	}{
		{"-h", "", []string{"-h"}, exitOK, "Signatures are NOT verified", ""},
		{"two files", "", []string{"a", "b"}, exitUsage, "", "want at most one FILE, got 2"},
		{"bad flag", "", []string{"--nope"}, exitUsage, "", "flag provided but not defined"},
		{"missing file", "", []string{filepath.Join(t.TempDir(), "absent")}, exitInvalid, "", "reading input: open "},
		{"not JSON", create + "not json\n" + c0, nil, exitInvalid, "", "line 2: not a JSON object"},
		{"JSON array", create + "\n[1]\n", nil, exitInvalid, "", "line 3: not a JSON object"},
		{"not an event", create + `{"type":"m.room.message","content":{}}` + "\n", nil, exitInvalid, "", "line 2: not an event of room version m.mls.1"},
		{"no create event", c0, nil, exitInvalid, "", "no m.room.create event"},
		{"empty input", "", nil, exitInvalid, "", "no m.room.create event"},
		{"not an MLS room", strings.Replace(create, `"room_version":"m.mls.1"`, `"room_version":"11"`, 1), nil, exitInvalid, "", `room_version "11" is not an MLS room version`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := checkRun(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errs)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			if !strings.Contains(errs, tc.stderr) || tc.stderr == "" && errs != "" {
				t.Errorf("stderr %q, want %q", errs, tc.stderr)
			}
		})
	}

	// A malformed line stops the check after the lines before it.
	_, out, _ = checkRun(t, create+"{oops\n"+c0)
	if vs := checkVerdicts(t, out); len(vs) != 1 || !vs[0].Allowed {
		t.Errorf("before a malformed line: %+v", vs)
	}
}

// TestCheckHelp checks that "mlsroom help check" shows check's usage.
func TestCheckHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help", "check"}, strings.NewReader(""), &out, &errb); code != exitOK || !strings.Contains(out.String(), "usage: mlsroom check") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
