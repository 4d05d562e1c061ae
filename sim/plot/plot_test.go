package plot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/sim"
)

func TestWrite(t *testing.T) {
	var res []sim.Result
	for _, p := range []int{1, 3} {
		for _, w := range []time.Duration{0, 10 * time.Minute} {
			for _, rg := range []sim.PartitionRegime{{Name: "none"}, {Name: "short", PerDay: 8, MeanLength: sim.Duration(10 * time.Minute)}} {
				r := &sim.Report{ConflictRate: float64(p) / 100}
				r.Messages.Rate = w.Hours()
				res = append(res, sim.Result{Point: sim.Point{Powers: p, Window: w, Regime: rg}, Report: r})
			}
		}
	}
	dir := t.TempDir()
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
			t.Fatalf("%s: %v, %d bytes", f, err, len(b))
		}
	}
	// The same results draw the same bytes.
	dir2 := t.TempDir()
	if _, err := Write(dir2, res); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs between two drawings", f)
		}
	}
}
