package commitqueue

import (
	"time"

	"github.com/mlsmode/mlsmode/storage"
)

// Window lengths (SPEC-NOTES §6).
const (
	// Slot is the time between two power indexes' windows.
	Slot = 5 * time.Minute
	// Apply is how long one power index may apply (the rest of Slot is
	// grace).
	Apply = 3 * time.Minute
	// MaxFuture is how far ahead of its receipt a pending commit's
	// origin_server_ts counts.
	MaxFuture = time.Minute
)

// Windows computes the windows of a pending commit with timestamp ots,
// first received at receivedAt, in a room whose powers has n servers: with
// T = min(ots, receivedAt + 1 min) and S = max(T, receivedAt), index i gets
// [S + 5i min, S + 5i min + 3 min), cut at the expiry T + n x 5 min; windows
// the expiry leaves empty are omitted. It returns the windows and the
// expiry.
func Windows(ots, receivedAt time.Time, n int) ([]storage.Window, time.Time) {
	t := ots
	if lim := receivedAt.Add(MaxFuture); t.After(lim) {
		t = lim
	}
	s := t
	if receivedAt.After(s) {
		s = receivedAt
	}
	expiry := t.Add(time.Duration(n) * Slot)
	var ws []storage.Window
	for i := range n {
		start := s.Add(time.Duration(i) * Slot)
		end := start.Add(Apply)
		if end.After(expiry) {
			end = expiry
		}
		if !start.Before(end) {
			continue
		}
		ws = append(ws, storage.Window{PowerIndex: i, Start: start.UnixMilli(), End: end.UnixMilli()})
	}
	return ws, expiry
}
