package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/sim"
	"github.com/mlsmode/mlsmode/sim/plot"
)

const simulateUsage = `usage: mlsroom simulate [--config FILE] [--json] [FLAGS]
       mlsroom simulate --sweep FILE --out DIR [--workers N]

Simulates one MLS mode room shared by many homeservers (up to 100) on a
virtual clock, deterministically for a given seed, and reports how often
commits conflict, how the room forks and what that costs the members. Every
server runs the project's own auth rules, state resolution and
pending-commit queue on in-memory storage; MLS is modelled (epochs, commits,
forks and the keys each client holds; MLS messages carry real headers and
random bytes); events are real signed PDUs whose signatures receivers do not
verify. See docs/DECENTRALISATION.md.

A single run takes its settings from --config (a JSON sim.Config: see
docs/mlsroom.md) or the defaults, then from the flags:
  --seed N                 seed (default 1)
  --servers N              homeservers s00.example... (default 3)
  --clients N              clients per server (default 2)
  --powers N               length of powers (default 2)
  --powers-order O         index, reverse or random (default index)
  --can-propose C          all or powers (default all)
  --security-window D      security.window, e.g. 10m (default 0s)
  --duration D             simulated time clients act (default 1h)
  --membership R           membership changes per server per hour (default 2)
  --messages R             messages per server per hour (default 60)
  --latency-min D, --latency-max D, --jitter D, --loss P
                           links (defaults 20ms, 80ms, 10ms, 0)
  --partitions-per-day R, --partition-mean D
                           random partitions (default none)
  --outages-per-day R, --outage-mean D
                           random outages per server (default none)
  --clock-skew-max D       each server's clock off by up to D
  --mode M                 model (default) or mls: real MLS clients (at
                           most 32), for checking the model on small runs
  --json                   print the report as JSON

--sweep FILE runs a grid of settings (a JSON sim.Sweep: base config,
powers lengths, security windows, partition regimes, seeds; unknown fields
are refused) and writes DIR/sweep.csv, DIR/sweep.md and PNG plots of the
conflict rate and the undecryptable-message rate against powers length,
window and partition length. --workers runs that many simulations at once
(default: the number of CPUs).

Exit status: 0 when the run completed (also when it measured forks or
losses; a failed convergence check is an error), 1 for an invalid config
or a failed run, 2 for usage errors.
`

// runSimulate is the simulate subcommand.
func runSimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	def := sim.DefaultConfig()
	configFile := fs.String("config", "", "")
	sweepFile := fs.String("sweep", "", "")
	outDir := fs.String("out", "", "")
	workers := fs.Int("workers", 0, "")
	asJSON := fs.Bool("json", false, "")
	seed := fs.Int64("seed", def.Seed, "")
	servers := fs.Int("servers", def.Servers, "")
	clients := fs.Int("clients", def.ClientsPerServer, "")
	powers := fs.Int("powers", def.Powers, "")
	powersOrder := fs.String("powers-order", def.PowersOrder, "")
	canPropose := fs.String("can-propose", def.CanPropose, "")
	window := fs.Duration("security-window", def.SecurityWindow.D(), "")
	duration := fs.Duration("duration", def.Duration.D(), "")
	membership := fs.Float64("membership", def.MembershipPerHour, "")
	messages := fs.Float64("messages", def.MessagesPerHour, "")
	latMin := fs.Duration("latency-min", def.Network.LatencyMin.D(), "")
	latMax := fs.Duration("latency-max", def.Network.LatencyMax.D(), "")
	jitter := fs.Duration("jitter", def.Network.Jitter.D(), "")
	loss := fs.Float64("loss", 0, "")
	partsPerDay := fs.Float64("partitions-per-day", 0, "")
	partMean := fs.Duration("partition-mean", 10*time.Minute, "")
	outPerDay := fs.Float64("outages-per-day", 0, "")
	outMean := fs.Duration("outage-mean", 10*time.Minute, "")
	skew := fs.Duration("clock-skew-max", 0, "")
	mode := fs.String("mode", def.Mode, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, simulateUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "\n%s", simulateUsage)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mlsroom simulate: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	ctx := context.Background()

	if *sweepFile != "" {
		for name := range set {
			if name != "sweep" && name != "out" && name != "workers" {
				fmt.Fprintf(stderr, "mlsroom simulate: --%s does not go with --sweep (the sweep file holds the settings)\n", name)
				return exitUsage
			}
		}
		if *outDir == "" {
			fmt.Fprintln(stderr, "mlsroom simulate: --sweep needs --out DIR")
			return exitUsage
		}
		return runSweep(ctx, *sweepFile, *outDir, *workers, stdout, stderr)
	}
	if set["out"] || set["workers"] {
		fmt.Fprintln(stderr, "mlsroom simulate: --out and --workers go with --sweep")
		return exitUsage
	}

	cfg := def
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			fmt.Fprintf(stderr, "mlsroom simulate: reading the config: %v\n", err)
			return exitInvalid
		}
		if cfg, err = sim.ParseConfig(b); err != nil {
			fmt.Fprintf(stderr, "mlsroom simulate: %s: %v\n", *configFile, err)
			return exitInvalid
		}
	}
	apply := map[string]func(){
		"seed": func() { cfg.Seed = *seed }, "servers": func() { cfg.Servers = *servers },
		"clients": func() { cfg.ClientsPerServer = *clients }, "powers": func() { cfg.Powers = *powers },
		"powers-order": func() { cfg.PowersOrder = *powersOrder }, "can-propose": func() { cfg.CanPropose = *canPropose },
		"security-window": func() { cfg.SecurityWindow = sim.Duration(*window) }, "duration": func() { cfg.Duration = sim.Duration(*duration) },
		"membership": func() { cfg.MembershipPerHour = *membership }, "messages": func() { cfg.MessagesPerHour = *messages },
		"latency-min": func() { cfg.Network.LatencyMin = sim.Duration(*latMin) }, "latency-max": func() { cfg.Network.LatencyMax = sim.Duration(*latMax) },
		"jitter": func() { cfg.Network.Jitter = sim.Duration(*jitter) }, "loss": func() { cfg.Network.Loss = *loss },
		"partitions-per-day": func() {
			cfg.Network.RandomPartitions = &sim.RandomEvents{PerDay: *partsPerDay, MeanLength: sim.Duration(*partMean)}
		},
		"outages-per-day": func() {
			cfg.Network.RandomOutages = &sim.RandomEvents{PerDay: *outPerDay, MeanLength: sim.Duration(*outMean)}
		},
		"clock-skew-max": func() { cfg.Network.ClockSkewMax = sim.Duration(*skew) },
		"mode":           func() { cfg.Mode = *mode },
	}
	for _, name := range []string{"seed", "servers", "clients", "powers", "powers-order", "can-propose", "security-window", "duration",
		"membership", "messages", "latency-min", "latency-max", "jitter", "loss", "partitions-per-day", "outages-per-day", "clock-skew-max", "mode"} {
		if set[name] {
			apply[name]()
		}
	}
	if (set["partition-mean"] && !set["partitions-per-day"]) || (set["outage-mean"] && !set["outages-per-day"]) {
		fmt.Fprintln(stderr, "mlsroom simulate: --partition-mean and --outage-mean go with --partitions-per-day and --outages-per-day")
		return exitUsage
	}
	rep, err := sim.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
		return exitInvalid
	}
	out := bufio.NewWriter(stdout)
	if *asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
			return exitInvalid
		}
		out.Write(b)
		out.WriteByte('\n')
	} else if err := rep.WriteText(out); err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
		return exitInvalid
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: writing the report: %v\n", err)
		return exitInvalid
	}
	if rep.Convergence.Failures > 0 {
		fmt.Fprintf(stderr, "mlsroom simulate: %d convergence checks failed\n", rep.Convergence.Failures)
		return exitInvalid
	}
	return exitOK
}

// runSweep runs a sweep file and writes its tables and plots.
func runSweep(ctx context.Context, file, dir string, workers int, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: reading the sweep: %v\n", err)
		return exitInvalid
	}
	s, err := sim.ParseSweep(b)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %s: %v\n", file, err)
		return exitInvalid
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
		return exitInvalid
	}
	startWall := time.Now()
	res, err := sim.RunSweep(ctx, s, workers, func(done, total int) {
		fmt.Fprintf(stderr, "\rmlsroom simulate: %d/%d runs", done, total)
	})
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
		return exitInvalid
	}
	wall := time.Since(startWall)
	write := func(name string, f func(io.Writer) error) error {
		fh, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := f(fh); err != nil {
			fh.Close()
			return err
		}
		return fh.Close()
	}
	if err := write("sweep.csv", func(w io.Writer) error { return sim.WriteCSV(w, res) }); err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: writing sweep.csv: %v\n", err)
		return exitInvalid
	}
	if err := write("sweep.md", func(w io.Writer) error { return sim.WriteMarkdown(w, res) }); err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: writing sweep.md: %v\n", err)
		return exitInvalid
	}
	files, err := plot.Write(dir, res)
	if err != nil {
		fmt.Fprintf(stderr, "mlsroom simulate: %v\n", err)
		return exitInvalid
	}
	failures := 0
	for _, r := range res {
		failures += r.Report.Convergence.Failures
	}
	fmt.Fprintf(stdout, "%d runs in %v; wrote %s\n", len(res), wall.Round(time.Second),
		strings.Join(append([]string{"sweep.csv", "sweep.md"}, files...), ", "))
	if failures > 0 {
		fmt.Fprintf(stderr, "mlsroom simulate: %d convergence checks failed\n", failures)
		return exitInvalid
	}
	return exitOK
}
