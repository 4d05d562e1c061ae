package sim

import (
	"context"
	"testing"
	"time"
)

func min_(m int) Duration { return Duration(time.Duration(m) * time.Minute) }

// scripted returns a run of three servers with one client each, powers
// [s00, s01], no random workload and fixed 50 ms links.
func scripted(window time.Duration, actions ...Action) Config {
	cfg := DefaultConfig()
	cfg.ClientsPerServer = 1
	cfg.MembershipPerHour, cfg.MessagesPerHour = 0, 0
	cfg.Network = Network{LatencyMin: Duration(50 * time.Millisecond), LatencyMax: Duration(50 * time.Millisecond)}
	cfg.SecurityWindow = Duration(window)
	cfg.Actions = actions
	return cfg
}

func mustRun(t *testing.T, cfg Config) *Report {
	t.Helper()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Events.Rejected != 0 || len(r.Events.QueueErrors) != 0 {
		t.Fatalf("rejected %d events (%v), queue errors %v", r.Events.Rejected, r.Events.RejectedSample, r.Events.QueueErrors)
	}
	if r.Convergence.Checks == 0 || r.Convergence.Failures != 0 {
		t.Fatalf("convergence: %+v", r.Convergence)
	}
	return r
}

// TestScenarioPartitionTwoPowers: s01 is cut off from 10 to 20 min. At 12
// min s00's client commits epoch 1 directly and s01's client sends a
// pending commit for the same epoch, which s01 applies in its own window
// (index 1: 17 to 20 min). Both sides send messages. At the heal s00's
// commit wins (powers index 0): s01's commit and the two messages sent on
// it are lost to everyone else.
func TestScenarioPartitionTwoPowers(t *testing.T) {
	actions := []Action{
		{At: min_(12), Server: 0, Kind: "update"},
		{At: min_(12), Server: 1, Kind: "update"},
		{At: min_(13), Server: 1, Kind: "message"}, // on epoch 0's commit: readable by all
		{At: min_(13), Server: 0, Kind: "message"}, // on s00's commit
		{At: min_(14), Server: 0, Kind: "message"},
		{At: min_(18), Server: 1, Kind: "message"}, // on s01's commit: lost
		{At: min_(19), Server: 1, Kind: "message"},
	}
	part := []Partition{{At: min_(10), Length: min_(10), Side: []int{1}}}
	for _, tc := range []struct {
		name   string
		window time.Duration
		// what differs with the window
		proposed, welcomes, rollbacks, undecryptable, outside int
	}{
		// s01's client merged its commit 3 min before the heal and kept no
		// state: it needs a new Welcome (s00's client adds it again one
		// minute later) and never gets the keys of s00's commit, so it
		// cannot read s00's two messages.
		{"window 0", 0, 3, 1, 0, 4, 2},
		// With a 10-minute window it rolls back and reads them.
		{"window 10m", 10 * time.Minute, 2, 0, 1, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := scripted(tc.window, actions...)
			cfg.Network.Partitions = part
			r := mustRun(t, cfg)
			p := r.Proposals
			if p.Proposed != tc.proposed || p.Applied != tc.proposed-1 || p.LostFork != 1 || p.Stale != 0 || p.Expired != 0 {
				t.Errorf("proposals %+v, want %d proposed, 1 lost fork", p, tc.proposed)
			}
			if r.Forks.Count != 1 || r.Forks.MaxLength != 1 || r.Forks.Commits != 1 {
				t.Errorf("forks %+v, want one of one commit", r.Forks)
			}
			m := r.Messages
			if m.Sent != 5 || m.OnLosingBranch != 2 || m.Undecryptable != tc.undecryptable ||
				m.ByReason[ReasonLostFork] != 2 || m.Pairs[ReasonLostFork] != 4 ||
				m.ByReason[ReasonOutsideWindow] != tc.outside || m.Pairs[ReasonOutsideWindow] != tc.outside || m.ByReason[ReasonNoKeys] != 0 {
				t.Errorf("messages %+v", m)
			}
			if r.Clients.NeededWelcome != tc.welcomes || r.Clients.Rollbacks != tc.rollbacks || r.Clients.StillLost != 0 {
				t.Errorf("clients %+v", r.Clients)
			}
			// s01 applied its pending commit at the start of its window,
			// 5 minutes after it was sent; it is not on the final chain, so
			// it is no acceptance.
			if r.Acceptance.Count != 0 {
				t.Errorf("acceptance %+v, want none", r.Acceptance)
			}
		})
	}
}

// TestScenarioPowers0Down: s00 (powers[0]) is down from 10 to 40 min; a
// pending commit sent by s02's client at 12 min reaches s01 50 ms later
// and is applied by s01 at the start of its window, 5 minutes after
// receipt.
func TestScenarioPowers0Down(t *testing.T) {
	cfg := scripted(0, Action{At: min_(12), Server: 2, Kind: "update"}, Action{At: min_(20), Server: 2, Kind: "message"})
	cfg.Network.Outages = []Outage{{Server: 0, At: min_(10), Length: min_(30)}}
	r := mustRun(t, cfg)
	p := r.Proposals
	if p.Proposed != 1 || p.Pending != 1 || p.Applied != 1 || p.AppliedInWindow["1"] != 1 {
		t.Fatalf("proposals %+v, want one pending commit applied in the window of index 1", p)
	}
	if r.Acceptance.Count != 1 || r.Acceptance.Median != 300.05 {
		t.Errorf("acceptance %+v, want 300.05 s", r.Acceptance)
	}
	if r.Forks.Count != 0 || r.Messages.Undecryptable != 0 || r.FinalEpoch != 1 {
		t.Errorf("forks %+v, messages %+v, final epoch %d", r.Forks, r.Messages, r.FinalEpoch)
	}
}
