package sim

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sweep is a grid of runs: every combination of powers length, security
// window, partition regime and seed, on top of Base.
//
// Its file is one JSON object; unknown fields are refused, naming them:
//
//	{"base": {Config...},
//	 "powers": [1, 2, 3, 5],
//	 "security_windows": ["0s", "10m", "1h"],
//	 "partition_regimes": [{"name": "none"},
//	                       {"name": "short", "per_day": 12, "mean_length": "10m"}],
//	 "seeds": [1]}
//
// A regime's per_day and mean_length replace Base's random partitions
// (none: no random partitions); seeds default to [base.seed].
type Sweep struct {
	Base             Config            `json:"base"`
	Powers           []int             `json:"powers"`
	SecurityWindows  []Duration        `json:"security_windows"`
	PartitionRegimes []PartitionRegime `json:"partition_regimes"`
	Seeds            []int64           `json:"seeds,omitempty"`
}

// PartitionRegime is a named rate and mean length of random partitions.
type PartitionRegime struct {
	Name       string   `json:"name"`
	PerDay     float64  `json:"per_day,omitempty"`
	MeanLength Duration `json:"mean_length,omitempty"`
}

// MaxSweepRuns bounds the grid.
const MaxSweepRuns = 10000

// ParseSweep decodes and checks a sweep file.
func ParseSweep(b []byte) (*Sweep, error) {
	var s Sweep
	if err := decodeStrict(b, &s); err != nil {
		return nil, fmt.Errorf("sim: sweep: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the sweep and every config of its grid.
func (s *Sweep) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("sim: sweep: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if len(s.Powers) == 0 {
		return bad("powers", "want at least one length")
	}
	if len(s.SecurityWindows) == 0 {
		return bad("security_windows", "want at least one window")
	}
	if len(s.PartitionRegimes) == 0 {
		return bad("partition_regimes", "want at least one regime")
	}
	names := map[string]bool{}
	for i, r := range s.PartitionRegimes {
		f := fmt.Sprintf("partition_regimes[%d]", i)
		if r.Name == "" || len(r.Name) > 40 || strings.ContainsAny(r.Name, ",|\n\r\"") {
			return bad(f+".name", "want 1 to 40 characters without , | or quotes")
		}
		if names[r.Name] {
			return bad(f+".name", "%q repeated", r.Name)
		}
		names[r.Name] = true
		if !(r.PerDay >= 0 && r.PerDay <= 1000) || r.MeanLength < 0 || (r.PerDay > 0) != (r.MeanLength > 0) {
			return bad(f, "want per_day 0 to 1000 and mean_length > 0 together, or neither")
		}
	}
	n := len(s.Powers) * len(s.SecurityWindows) * len(s.PartitionRegimes) * max(1, len(s.Seeds))
	if n > MaxSweepRuns {
		return bad("", "%d runs, at most %d", n, MaxSweepRuns)
	}
	for i, c := range s.Configs() {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("sim: sweep: run %d: %w", i, err)
		}
	}
	return nil
}

// Point is one run of a sweep: its coordinates and config.
type Point struct {
	Powers    int
	Window    time.Duration
	Regime    PartitionRegime
	Seed      int64
	Config    Config
	regimeIdx int
}

// Points returns the grid in order: powers, then windows, then regimes,
// then seeds.
func (s *Sweep) Points() []Point {
	seeds := s.Seeds
	if len(seeds) == 0 {
		seeds = []int64{s.Base.Seed}
	}
	var out []Point
	for _, p := range s.Powers {
		for _, w := range s.SecurityWindows {
			for ri, r := range s.PartitionRegimes {
				for _, seed := range seeds {
					c := s.Base
					c.Network.Partitions = nil
					c.Powers, c.SecurityWindow, c.Seed = p, w, seed
					c.Network.RandomPartitions = nil
					if r.PerDay > 0 {
						c.Network.RandomPartitions = &RandomEvents{PerDay: r.PerDay, MeanLength: r.MeanLength}
					}
					out = append(out, Point{Powers: p, Window: w.D(), Regime: r, Seed: seed, Config: c, regimeIdx: ri})
				}
			}
		}
	}
	return out
}

// Configs returns the configs of the grid, in Points order.
func (s *Sweep) Configs() []Config {
	var out []Config
	for _, p := range s.Points() {
		out = append(out, p.Config)
	}
	return out
}

// Result is one run's point and report.
type Result struct {
	Point  Point
	Report *Report
}

// RunSweep runs the grid on workers goroutines (0: GOMAXPROCS) and returns
// the results in grid order. progress, if set, is called after each run.
func RunSweep(ctx context.Context, s *Sweep, workers int, progress func(done, total int)) ([]Result, error) {
	pts := s.Points()
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	res := make([]Result, len(pts))
	errs := make([]error, len(pts))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := Run(ctx, pts[i].Config)
				res[i], errs[i] = Result{Point: pts[i], Report: r}, err
				mu.Lock()
				done++
				if progress != nil {
					progress(done, len(pts))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range pts {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("sim: sweep run %d (powers %d, window %v, %s, seed %d): %w", i, pts[i].Powers, pts[i].Window, pts[i].Regime.Name, pts[i].Seed, err)
		}
	}
	return res, nil
}

// columns of the tables.
var columns = []string{"powers", "security_window_s", "partitions", "partitions_per_day", "partition_mean_s", "seed",
	"proposed", "applied", "lost_fork", "stale", "expired", "conflict_rate",
	"accept_median_s", "accept_p95_s", "accept_max_s", "forks", "fork_max_len",
	"messages", "undecryptable", "undecryptable_rate", "lost_fork_msgs", "outside_window_msgs", "late_msgs",
	"needed_welcome", "rollbacks", "convergence_checks", "convergence_failures"}

func (r Result) row() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
	s := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	i := strconv.Itoa
	p, rep := r.Point, r.Report
	return []string{i(p.Powers), i(int(p.Window / time.Second)), p.Regime.Name, strconv.FormatFloat(p.Regime.PerDay, 'g', -1, 64),
		i(int(p.Regime.MeanLength.D() / time.Second)), strconv.FormatInt(p.Seed, 10),
		i(rep.Proposals.Proposed), i(rep.Proposals.Applied), i(rep.Proposals.LostFork), i(rep.Proposals.Stale), i(rep.Proposals.Expired), f(rep.ConflictRate),
		s(rep.Acceptance.Median), s(rep.Acceptance.P95), s(rep.Acceptance.Max), i(rep.Forks.Count), i(rep.Forks.MaxLength),
		i(rep.Messages.Sent), i(rep.Messages.Undecryptable), f(rep.Messages.Rate), i(rep.Messages.ByReason[ReasonLostFork]), i(rep.Messages.ByReason[ReasonOutsideWindow]), i(rep.Messages.ByReason[ReasonLate]),
		i(rep.Clients.NeededWelcome), i(rep.Clients.Rollbacks), i(rep.Convergence.Checks), i(rep.Convergence.Failures)}
}

// WriteCSV writes one row per run.
func WriteCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(columns); err != nil {
		return err
	}
	for _, r := range results {
		if err := cw.Write(r.row()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteMarkdown writes the same table in Markdown.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(columns, " | ") + " |\n|")
	for range columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range results {
		b.WriteString("| " + strings.Join(r.row(), " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
