package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// rough is a hostile network: random partitions and outages, loss, jitter
// and skewed clocks.
func rough(seed int64, powers int) Config {
	cfg := DefaultConfig()
	cfg.Seed = seed
	cfg.Servers, cfg.ClientsPerServer, cfg.Powers = 6, 2, powers
	cfg.Duration = Duration(6 * time.Hour)
	cfg.MembershipPerHour, cfg.MessagesPerHour = 3, 30
	cfg.SecurityWindow = Duration(5 * time.Minute)
	cfg.Network = Network{
		LatencyMin: Duration(10 * time.Millisecond), LatencyMax: Duration(300 * time.Millisecond), Jitter: Duration(100 * time.Millisecond),
		Loss: 0.05, RetryAfter: Duration(5 * time.Second),
		RandomPartitions: &RandomEvents{PerDay: 16, MeanLength: Duration(15 * time.Minute)},
		RandomOutages:    &RandomEvents{PerDay: 4, MeanLength: Duration(10 * time.Minute)},
		ClockSkewMax:     Duration(90 * time.Second),
	}
	return cfg
}

// TestOnePowerNeverForks: with one server in powers only it commits, so
// no network, however bad, makes a fork (the proposal's own claim).
func TestOnePowerNeverForks(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		r := mustRun(t, rough(seed, 1))
		if r.Forks.Count != 0 || r.Proposals.LostFork != 0 || r.Messages.ByReason[ReasonLostFork] != 0 || r.Clients.NeededWelcome != 0 {
			t.Errorf("seed %d: forks %+v, proposals %+v, messages %+v, clients %+v", seed, r.Forks, r.Proposals, r.Messages, r.Clients)
		}
		if r.Proposals.Proposed < 20 || r.Messages.Sent < 500 {
			t.Errorf("seed %d: only %d proposals and %d messages: the run did too little to show anything", seed, r.Proposals.Proposed, r.Messages.Sent)
		}
	}
}

// TestConvergesAfterEveryHeal: with several powers the same network forks
// the room, and after every partition's end and every server's return all
// servers are on one linear chain of commits passing the auth rules
// (mustRun fails on any failed check).
func TestConvergesAfterEveryHeal(t *testing.T) {
	forks := 0
	for seed := int64(1); seed <= 4; seed++ {
		r := mustRun(t, rough(seed, 3))
		if r.Convergence.Checks < 3 {
			t.Errorf("seed %d: only %d convergence checks", seed, r.Convergence.Checks)
		}
		forks += r.Forks.Count
	}
	if forks == 0 {
		t.Error("no run forked: the test shows nothing about healing forks")
	}
}

// TestSameSeedSameOutput: two runs of one config give byte-identical
// reports, text and JSON; another seed gives another report.
func TestSameSeedSameOutput(t *testing.T) {
	out := func(cfg Config) []byte {
		r, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return append(b.Bytes(), j...)
	}
	a, b := out(rough(7, 2)), out(rough(7, 2))
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different output")
	}
	if bytes.Equal(a, out(rough(8, 2))) {
		t.Fatal("another seed gave the same output")
	}
}
