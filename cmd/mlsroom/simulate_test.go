package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSimulateRun(t *testing.T) {
	args := []string{"simulate", "--servers", "4", "--powers", "2", "--duration", "90m", "--partitions-per-day", "48", "--partition-mean", "10m", "--security-window", "5m", "--json"}
	code, out, errOut := runArgs(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Config struct {
			Servers int `json:"servers"`
		} `json:"config"`
		Messages struct {
			Sent int `json:"sent"`
		} `json:"messages"`
		Convergence struct {
			Checks, Failures int
		} `json:"convergence"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Config.Servers != 4 || rep.Messages.Sent == 0 || rep.Convergence.Checks == 0 || rep.Convergence.Failures != 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, again, _ := runArgs(t, args...); again != out {
		t.Fatal("the same seed gave different output")
	}
	code, text, errOut := runArgs(t, "simulate", "--duration", "30m", "--mode", "mls")
	if code != exitOK || !strings.Contains(text, "mls mode") {
		t.Fatalf("mls mode: exit %d: %s\n%s", code, errOut, text)
	}
	code, text, _ = runArgs(t, "simulate", "--duration", "30m")
	if code != exitOK || !strings.Contains(text, "Convergence: ") || !strings.Contains(text, "undecryptable for at least one member") {
		t.Fatalf("exit %d, text:\n%s", code, text)
	}
}

func TestSimulateConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	os.WriteFile(cfg, []byte(`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h",
		"membership_per_hour": 0, "messages_per_hour": 0,
		"network": {"latency_min": "50ms", "latency_max": "50ms", "outages": [{"server": 0, "at": "10m", "length": "30m"}]},
		"actions": [{"at": "12m", "server": 2, "kind": "update"}]}`), 0o600)
	code, out, errOut := runArgs(t, "simulate", "--config", cfg, "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"applied_in_window": {
      "1": 1
    }`) {
		t.Fatalf("the pending commit was not applied in powers[1]'s window:\n%s", out)
	}
	os.WriteFile(cfg, []byte(`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "powerz": 1}`), 0o600)
	if code, _, errOut := runArgs(t, "simulate", "--config", cfg); code != exitInvalid || !strings.Contains(errOut, `unknown field "powerz"`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestSimulateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"simulate", "-h"}, exitOK, "usage: mlsroom simulate"},
		{[]string{"help", "simulate"}, exitOK, "usage: mlsroom simulate"},
		{[]string{"simulate", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"simulate", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"simulate", "--sweep", "x.json"}, exitUsage, "--sweep needs --out"},
		{[]string{"simulate", "--sweep", "x.json", "--out", "d", "--powers", "2"}, exitUsage, "--powers does not go with --sweep"},
		{[]string{"simulate", "--out", "d"}, exitUsage, "go with --sweep"},
		{[]string{"simulate", "--powers", "9"}, exitInvalid, "powers: 9, want 1 to servers (3)"},
		{[]string{"simulate", "--partition-mean", "5m"}, exitUsage, "go with --partitions-per-day"},
		{[]string{"simulate", "--mode", "mls", "--servers", "40", "--powers", "1"}, exitInvalid, "mls mode runs at most 32 clients"},
	} {
		code, out, errOut := runArgs(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%q: exit %d, output %q %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

func TestSimulateSweep(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sweep.json")
	os.WriteFile(file, []byte(`{
	  "base": {"seed": 2, "servers": 3, "clients_per_server": 1, "powers": 1, "security_window": "0s", "duration": "1h",
	           "membership_per_hour": 2, "messages_per_hour": 10,
	           "network": {"latency_min": "20ms", "latency_max": "60ms", "jitter": "5ms", "loss": 0}},
	  "powers": [1, 2],
	  "security_windows": ["0s", "10m"],
	  "partition_regimes": [{"name": "none"}, {"name": "short", "per_day": 48, "mean_length": "10m"}]
	}`), 0o600)
	out := filepath.Join(dir, "out")
	code, stdout, errOut := runArgs(t, "simulate", "--sweep", file, "--out", out, "--workers", "2")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(stdout, "8 runs in") {
		t.Fatalf("stdout %q", stdout)
	}
	csv, err := os.ReadFile(filepath.Join(out, "sweep.csv"))
	if err != nil || strings.Count(string(csv), "\n") != 9 {
		t.Fatalf("sweep.csv: %v\n%s", err, csv)
	}
	for _, name := range []string{"sweep.md", "conflict_vs_powers.png", "conflict_vs_window.png", "conflict_vs_partition.png",
		"undecryptable_vs_powers.png", "undecryptable_vs_window.png", "undecryptable_vs_partition.png"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || len(b) < 100 {
			t.Fatalf("%s: %v (%d bytes)", name, err, len(b))
		}
		if strings.HasSuffix(name, ".png") && !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("%s is not a PNG", name)
		}
	}
	os.WriteFile(file, []byte(`{"base": {}, "powers": [1], "windows": ["0s"]}`), 0o600)
	if code, _, errOut := runArgs(t, "simulate", "--sweep", file, "--out", out); code != exitInvalid || !strings.Contains(errOut, `unknown field "windows"`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
