package sim

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// outcome is what both modes must agree on: everything in the report but
// event IDs, which hash real MLS randomness in the mls mode.
type outcome struct {
	Proposals  any
	Conflict   float64
	Acceptance any
	Forks      any
	Messages   any
	Clients    any
	SoftFailed any
	Checks     int
	Epoch      uint64
}

func outcomeOf(r *Report) outcome {
	return outcome{r.Proposals, r.ConflictRate, r.Acceptance, r.Forks, r.Messages, r.Clients, r.Events.SoftFailed, r.Convergence.Checks, r.FinalEpoch}
}

// TestModesAgree runs small scenarios with real MLS clients and with the
// model: a fork during a partition (with a window that covers it and
// without: rollback, lost fork, a new Welcome), powers[0] down, and a random
// workload of adds, removals and messages on three servers with partitions
// (three seeds).
func TestModesAgree(t *testing.T) {
	part := []Partition{{At: min_(10), Length: min_(10), Side: []int{1}}}
	fork := []Action{
		{At: min_(12), Server: 0, Kind: "update"}, {At: min_(12), Server: 1, Kind: "update"},
		{At: min_(13), Server: 1, Kind: "message"}, {At: min_(13), Server: 0, Kind: "message"},
		{At: min_(14), Server: 0, Kind: "message"}, {At: min_(18), Server: 1, Kind: "message"},
		{At: min_(19), Server: 1, Kind: "message"}, {At: min_(30), Server: 2, Kind: "message"},
		{At: min_(31), Server: 1, Kind: "message"},
	}
	down := scripted(0, Action{At: min_(12), Server: 2, Kind: "update"}, Action{At: min_(20), Server: 2, Kind: "message"},
		Action{At: min_(45), Server: 0, Kind: "message"})
	down.Network.Outages = []Outage{{Server: 0, At: min_(10), Length: min_(30)}}
	random := DefaultConfig()
	random.Seed, random.ClientsPerServer, random.Duration = 5, 2, Duration(4*time.Hour)
	random.MembershipPerHour, random.MessagesPerHour = 6, 20
	random.SecurityWindow = Duration(5 * time.Minute)
	random.Network.RandomPartitions = &RandomEvents{PerDay: 72, MeanLength: Duration(20 * time.Minute)}
	random6, random8 := random, random
	random6.Seed, random8.Seed = 6, 8
	cases := map[string]Config{"fork window 0": scripted(0, fork...), "fork window 10m": scripted(10*time.Minute, fork...),
		"powers[0] down": down, "random": random, "random seed 6": random6, "random seed 8": random8}
	for _, name := range []string{"fork window 0", "fork window 10m"} {
		c := cases[name]
		c.Network.Partitions = part
		cases[name] = c
	}
	for _, name := range []string{"fork window 0", "fork window 10m", "powers[0] down", "random", "random seed 6", "random seed 8"} {
		t.Run(name, func(t *testing.T) {
			cfg := cases[name]
			model := mustRun(t, cfg)
			cfg.Mode = "mls"
			w, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Run(); err != nil {
				t.Fatal(err)
			}
			real, err := w.Report()
			if err != nil {
				t.Fatal(err)
			}
			if len(w.readBits) == 0 || w.clients[1].real.group == nil {
				t.Fatal("the mls mode decrypted nothing")
			}
			if a, b := outcomeOf(model), outcomeOf(real); !equalJSON(t, a, b) {
				t.Errorf("the modes disagree:\nmodel %+v\nmls   %+v", a, b)
			}
			if strings.HasPrefix(name, "random") && (model.Forks.Count == 0 || model.Proposals.Proposed < 10) {
				t.Errorf("the random run shows little: %d forks, %d proposals", model.Forks.Count, model.Proposals.Proposed)
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
