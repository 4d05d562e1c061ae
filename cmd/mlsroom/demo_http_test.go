package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
)

// The flags of demo --http: usage errors exit 2 before anything starts;
// a --server-bin that is not an executable file exits 1, also before any
// process starts.
func TestDemoHTTPFlags(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "mlsserver.txt")
	if err := os.WriteFile(notExec, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--server-bin", "/bin/true"}, exitUsage, "--server-bin needs --http"},
		{[]string{"--clock-speed", "30"}, exitUsage, "--clock-speed needs --http"},
		{[]string{"--keep"}, exitUsage, "--keep needs --http"},
		{[]string{"--json", "--clock-speed", "60"}, exitUsage, "--clock-speed needs --http"},
		{[]string{"--http", "--clock-speed", "0"}, exitUsage, "--clock-speed 0: must be from 1 to 600"},
		{[]string{"--http", "--clock-speed", "601"}, exitUsage, "must be from 1 to 600"},
		{[]string{"--http", "--clock-speed", "NaN"}, exitUsage, "must be from 1 to 600"},
		{[]string{"--http", "--clock-speed", "fast"}, exitUsage, "invalid value"},
		{[]string{"--http", "--server-bin", ""}, exitUsage, "--server-bin: empty path"},
		{[]string{"--http", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"--http=maybe"}, exitUsage, "invalid boolean value"},
		{[]string{"--http", "--server-bin", filepath.Join(dir, "missing")}, exitInvalid, "--server-bin: stat"},
		{[]string{"--http", "--server-bin", dir}, exitInvalid, "not an executable file"},
		{[]string{"--http", "--server-bin", notExec, "--json"}, exitInvalid, "not an executable file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"demo"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed on stdout: %q", stdout.String())
			}
		})
	}
}

// demoHTTPFlags returns the options of valid command lines.
func TestDemoHTTPOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want demoHTTPOptions
	}{
		{[]string{"--http"}, demoHTTPOptions{speed: demoHTTPSpeed}},
		{[]string{"--http", "--clock-speed", "1"}, demoHTTPOptions{speed: 1}},
		{[]string{"--http", "--clock-speed", "600", "--server-bin", "/x/mlsserver"}, demoHTTPOptions{serverBin: "/x/mlsserver", speed: 600}},
		{[]string{"--http", "--keep"}, demoHTTPOptions{speed: demoHTTPSpeed, keep: true}},
		{[]string{"--seed", "3"}, demoHTTPOptions{}},
	} {
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		httpMode := fs.Bool("http", false, "")
		bin := fs.String("server-bin", "", "")
		speed := fs.Float64("clock-speed", demoHTTPSpeed, "")
		keep := fs.Bool("keep", false, "")
		fs.Int64("seed", 1, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := demoHTTPFlags(fs, *httpMode, *bin, *speed, *keep)
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

// The usage names the --http flags.
func TestDemoHTTPUsage(t *testing.T) {
	out := runDemoCLI(t, "-h")
	for _, want := range []string{"mlsroom demo --http [--server-bin PATH] [--clock-speed N] [--keep]", "--server-bin PATH", "--clock-speed N", "--keep"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo -h does not mention %q", want)
		}
	}
}

// The transcript of a run over HTTP says so in its header and names the
// servers' verdicts as the source of what lost; the in-process one does
// not change.
func TestDemoHTTPTranscriptHeader(t *testing.T) {
	rep, _, err := demo(context.Background(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	rep.writeText(&plain)
	rep.HTTP = &demoReportHTTP{ClockSpeed: 60, URLs: []string{"a.example http://127.0.0.1:1"}, WallSeconds: 42}
	var over bytes.Buffer
	rep.writeText(&over)
	for _, want := range []string{"over HTTP: three mlsserver processes (a.example http://127.0.0.1:1), clock speed 60 from ",
		"42s of real time from the servers' start", "What lost (soft-failed as a lost fork, case c, by the servers):"} {
		if !strings.Contains(over.String(), want) {
			t.Errorf("the --http transcript lacks %q", want)
		}
	}
	for _, want := range []string{"virtual clock from", "What lost (stateres.Losers):"} {
		if !strings.Contains(plain.String(), want) || strings.Contains(over.String(), want) {
			t.Errorf("%q: in the in-process transcript %v, in the --http one %v", want, strings.Contains(plain.String(), want), strings.Contains(over.String(), want))
		}
	}
	// Everything after the header is the same.
	cut := func(s string) string { return s[strings.Index(s, "\nWhat happens"):] }
	if cut(strings.ReplaceAll(over.String(), "soft-failed as a lost fork, case c, by the servers", "stateres.Losers")) != cut(plain.String()) {
		t.Error("the --http transcript differs from the in-process one beyond its header and the losers' heading")
	}
}

// mlsContent reads the MLS framing of an event's content in either
// base64 alphabet, padded or not, and refuses what is not a
// PrivateMessage.
func TestDemoHTTPMLSContent(t *testing.T) {
	_, w, err := demo(context.Background(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var msg, commit *roomversion.Event
	for _, ev := range w.order {
		switch {
		case msg == nil && ev.Kind() == roomversion.EventEncrypted:
			msg = ev
		case commit == nil && ev.Kind() == roomversion.EventCommit && ev.Epoch() == 2:
			commit = ev
		}
	}
	for _, ev := range []*roomversion.Event{msg, commit} {
		wire := ev.Ciphertext()
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			content, _ := json.Marshal(map[string]string{"ciphertext": enc.EncodeToString(wire)})
			m, err := mlsContent(content)
			if err != nil {
				t.Fatalf("%s: %v", ev.Type(), err)
			}
			if want := ev.Epoch(); ev.Kind() == roomversion.EventCommit && m.PrivateMessage.Epoch != want {
				t.Errorf("commit epoch %d, want %d", m.PrivateMessage.Epoch, want)
			}
		}
	}
	for _, bad := range []string{`{"ciphertext": "%%%"}`, `{"ciphertext": 7}`, `[]`, `{"ciphertext": "AAAA"}`} {
		if _, err := mlsContent(json.RawMessage(bad)); err == nil {
			t.Errorf("mlsContent accepted %s", bad)
		}
	}
}

func FuzzDemoHTTPMLSContent(f *testing.F) {
	f.Add([]byte(`{"ciphertext":"AAEAAg"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		m, err := mlsContent(content)
		if err == nil && m.PrivateMessage == nil {
			t.Fatal("no error and no PrivateMessage")
		}
	})
}
