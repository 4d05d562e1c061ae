// Package plot draws the PNG plots of a simulator sweep (package sim):
// conflict rate and undecryptable-message rate against powers length,
// security.window and partition length. It is the only part of the
// simulator that depends on gonum.org/v1/plot.
package plot

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/mlsmode/mlsmode/sim"
)

// metric is one y axis.
type metric struct {
	file, label string
	y           func(r sim.Result) float64
}

// axis is one x axis, with the lines drawn along it.
type axis struct {
	file, label string
	x           func(r sim.Result) float64
	line        func(r sim.Result) string
}

var metrics = []metric{
	{"conflict", "conflict rate (commits lost / proposed)", func(r sim.Result) float64 { return r.Report.ConflictRate }},
	{"undecryptable", "undecryptable-message rate", func(r sim.Result) float64 { return r.Report.Messages.Rate }},
}

var axes = []axis{
	{"powers", "powers length", func(r sim.Result) float64 { return float64(r.Point.Powers) },
		func(r sim.Result) string { return "partitions: " + r.Point.Regime.Name }},
	{"window", "security.window (minutes)", func(r sim.Result) float64 { return r.Point.Window.Minutes() },
		func(r sim.Result) string { return fmt.Sprintf("powers %d", r.Point.Powers) }},
	{"partition", "mean partition length (minutes; 0: none)", func(r sim.Result) float64 { return r.Point.Regime.MeanLength.D().Minutes() },
		func(r sim.Result) string { return fmt.Sprintf("powers %d", r.Point.Powers) }},
}

// Write draws every plot into dir as <metric>_vs_<axis>.png and returns
// the file names. Each point is the mean over the runs sharing its x and
// line (the other settings and the seeds).
func Write(dir string, results []sim.Result) ([]string, error) {
	var files []string
	for _, m := range metrics {
		for _, a := range axes {
			name := fmt.Sprintf("%s_vs_%s.png", m.file, a.file)
			if err := draw(filepath.Join(dir, name), m, a, results); err != nil {
				return files, fmt.Errorf("plot: %s: %w", name, err)
			}
			files = append(files, name)
		}
	}
	return files, nil
}

func draw(path string, m metric, a axis, results []sim.Result) error {
	type key struct {
		line string
		x    float64
	}
	sum, n := map[key]float64{}, map[key]int{}
	var lines []string
	for _, r := range results {
		k := key{a.line(r), a.x(r)}
		if !slices.Contains(lines, k.line) {
			lines = append(lines, k.line)
		}
		sum[k] += m.y(r)
		n[k]++
	}
	p := plot.New()
	p.Title.Text = m.label + " by " + a.label
	p.X.Label.Text = a.label
	p.Y.Label.Text = m.label
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(40)
	var args []any
	for _, l := range lines {
		var xs []float64
		for k := range n {
			if k.line == l {
				xs = append(xs, k.x)
			}
		}
		slices.Sort(xs)
		pts := make(plotter.XYs, len(xs))
		for i, x := range xs {
			k := key{l, x}
			pts[i].X, pts[i].Y = x, sum[k]/float64(n[k])
		}
		args = append(args, l, pts)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
