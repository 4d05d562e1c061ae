package sim

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkModel measures simulated server-hours per wall-clock second in
// the model mode, for the sweep's room (10 membership changes and 1,000
// messages per simulated hour for the whole room, 3 clients per server,
// powers of 3, short random partitions and outages, clock skew) on 20 and
// 100 servers, 4 simulated hours per iteration.
func BenchmarkModel(b *testing.B) {
	for _, n := range []int{20, 100} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Servers, cfg.ClientsPerServer, cfg.Powers = n, 3, 3
			cfg.Duration = Duration(4 * time.Hour)
			cfg.MembershipPerHour, cfg.MessagesPerHour = 10/float64(n), 1000/float64(n)
			cfg.SecurityWindow = Duration(10 * time.Minute)
			cfg.Network = Network{LatencyMin: Duration(20 * time.Millisecond), LatencyMax: Duration(200 * time.Millisecond), Jitter: Duration(50 * time.Millisecond),
				Loss: 0.01, RandomPartitions: &RandomEvents{PerDay: 8, MeanLength: Duration(10 * time.Minute)},
				RandomOutages: &RandomEvents{PerDay: 0.5, MeanLength: Duration(20 * time.Minute)}, ClockSkewMax: Duration(2 * time.Second)}
			start := time.Now()
			for b.Loop() {
				r, err := Run(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if r.Convergence.Failures != 0 {
					b.Fatal("convergence failed")
				}
			}
			hours := float64(n) * cfg.Duration.D().Hours() * float64(b.N)
			b.ReportMetric(hours/time.Since(start).Seconds(), "server-hours/s")
		})
	}
}
