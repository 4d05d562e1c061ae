package sim

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

const sweepFile = `{
  "base": {"seed": 3, "servers": 4, "clients_per_server": 1, "powers": 1, "security_window": "0s",
           "duration": "2h", "membership_per_hour": 2, "messages_per_hour": 20,
           "network": {"latency_min": "20ms", "latency_max": "60ms", "jitter": "5ms", "loss": 0}},
  "powers": [1, 3],
  "security_windows": ["0s", "10m"],
  "partition_regimes": [{"name": "none"}, {"name": "short", "per_day": 24, "mean_length": "10m"}]
}`

func TestSweepGrid(t *testing.T) {
	s, err := ParseSweep([]byte(sweepFile))
	if err != nil {
		t.Fatal(err)
	}
	pts := s.Points()
	if len(pts) != 8 || pts[0].Powers != 1 || pts[7].Powers != 3 || pts[7].Regime.Name != "short" || pts[7].Config.Network.RandomPartitions == nil || pts[0].Config.Network.RandomPartitions != nil {
		t.Fatalf("points %+v", pts)
	}
	res, err := RunSweep(context.Background(), s, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var csv, md bytes.Buffer
	if err := WriteCSV(&csv, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&md, res); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(csv.String(), "\n"); n != 9 {
		t.Fatalf("%d CSV lines, want 9:\n%s", n, csv.String())
	}
	if n := strings.Count(md.String(), "\n"); n != 10 {
		t.Fatalf("%d Markdown lines, want 10:\n%s", n, md.String())
	}
	for _, r := range res {
		if r.Point.Powers == 1 && r.Report.Forks.Count != 0 {
			t.Errorf("powers 1 forked: %+v", r.Point)
		}
		if r.Report.Convergence.Failures != 0 {
			t.Errorf("%+v: convergence failures", r.Point)
		}
	}
	// Workers do not change the results.
	res1, err := RunSweep(context.Background(), s, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var csv1 bytes.Buffer
	WriteCSV(&csv1, res1)
	if csv1.String() != csv.String() {
		t.Fatal("one worker and two gave different tables")
	}
}

func TestParseSweepErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"base": {}, "powers": [1], "security_windows": ["0s"], "partition_regimes": [{"name": "x"}], "extra": 1}`, `unknown field "extra"`},
		{strings.Replace(sweepFile, `"loss": 0`, `"loss": 0, "los": 1`, 1), `unknown field "los"`},
		{strings.Replace(sweepFile, `"powers": [1, 3]`, `"powers": [1, 5]`, 1), "powers: 5, want 1 to servers (4)"},
		{strings.Replace(sweepFile, `"powers": [1, 3]`, `"powers": []`, 1), "powers: want at least one"},
		{strings.Replace(sweepFile, `["0s", "10m"]`, `[600]`, 1), "duration string"},
		{strings.Replace(sweepFile, `"10m"}]`, `"10q"}]`, 1), `unknown unit`},
		{strings.Replace(sweepFile, `{"name": "none"}`, `{"name": "short"}`, 1), `"short" repeated`},
		{strings.Replace(sweepFile, `"per_day": 24, `, ``, 1), "per_day 0 to 1000 and mean_length"},
		{sweepFile + " {}", "trailing data"},
		{strings.Replace(sweepFile, `"servers": 4`, `"servers": 101`, 1), "servers: 101"},
	} {
		_, err := ParseSweep([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one containing %q", err, tc.want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "network": {"clock_skew": {"1": "30s"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network.ClockSkew["1"].D().Seconds() != 30 {
		t.Fatalf("%+v", c)
	}
	for _, in := range []string{
		`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "network": {"clock_skew": {"3": "30s"}}}`,
		`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "actions": [{"at": "2h", "server": 0, "kind": "message"}]}`,
		`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "mode": "mlx"}`,
		`{"servers": 3, "clients_per_server": 11, "powers": 2, "duration": "1h", "mode": "mls"}`,
		`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "network": {"partitions": [{"at": "1m", "length": "1m", "side": [0, 1, 2]}]}}`,
	} {
		if _, err := ParseConfig([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

func FuzzParseSweep(f *testing.F) {
	f.Add([]byte(sweepFile))
	f.Add([]byte(`{"base": {}, "powers": [1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSweep(b)
		if err != nil {
			return
		}
		for _, c := range s.Configs() {
			if err := c.Validate(); err != nil {
				t.Fatalf("ParseSweep accepted a grid with an invalid config: %v", err)
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h"}`))
	f.Add([]byte(`{"servers": 3, "clients_per_server": 1, "powers": 2, "duration": "1h", "network": {"clock_skew": {"1": "30s"}, "partitions": [{"at": "1m", "length": "1m", "side": [0]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig returned an invalid config: %v", err)
		}
	})
}
