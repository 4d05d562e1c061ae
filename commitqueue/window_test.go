package commitqueue

import (
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/storage"
)

func TestWindows(t *testing.T) {
	r := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ms := func(d time.Duration) int64 { return r.Add(d).UnixMilli() }
	w := func(i int, start, end time.Duration) storage.Window {
		return storage.Window{PowerIndex: i, Start: ms(start), End: ms(end)}
	}
	m := time.Minute
	for _, tc := range []struct {
		name   string
		ots    time.Time
		n      int
		want   []storage.Window
		expiry time.Time
	}{
		{"on time", r, 3, []storage.Window{w(0, 0, 3*m), w(1, 5*m, 8*m), w(2, 10*m, 13*m)}, r.Add(15 * m)},
		{"30 s in the future", r.Add(30 * time.Second), 2, []storage.Window{w(0, 30*time.Second, 3*m+30*time.Second), w(1, 5*m+30*time.Second, 8*m+30*time.Second)}, r.Add(10*m + 30*time.Second)},
		{"future capped at R + 1 min", r.Add(time.Hour), 1, []storage.Window{w(0, m, 4*m)}, r.Add(6 * m)},
		// Backdating cannot skip windows (they start at R), but the
		// expiry counts from T: the last window is cut.
		{"backdated 3 min", r.Add(-3 * m), 3, []storage.Window{w(0, 0, 3*m), w(1, 5*m, 8*m), w(2, 10*m, 12*m)}, r.Add(12 * m)},
		{"backdated past expiry", r.Add(-20 * m), 3, nil, r.Add(-5 * m)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, exp := Windows(tc.ots, r, tc.n)
			if !slices.Equal(got, tc.want) || !exp.Equal(tc.expiry) {
				t.Fatalf("Windows = %+v, %v; want %+v, %v", got, exp, tc.want, tc.expiry)
			}
		})
	}
}

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(time.Unix(0, 0))
	ch := c.After(time.Minute)
	c.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Second)
	select {
	case got := <-ch:
		if !got.Equal(time.Unix(60, 0)) {
			t.Fatalf("fired at %v", got)
		}
	default:
		t.Fatal("did not fire")
	}
	c.Set(time.Unix(10, 0))
	if !c.Now().Equal(time.Unix(60, 0)) {
		t.Fatal("went backwards")
	}
}
