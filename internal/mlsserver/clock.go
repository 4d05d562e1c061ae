package mlsserver

import (
	"math"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
)

// scaledClock is the virtual clock of the clock settings (tests only):
// from the real instant start, at which it reads the real time plus
// offset, it runs speed times as fast as real time. Servers given the
// same start, offset and speed read the same time, also across restarts.
type scaledClock struct {
	start  time.Time
	offset time.Duration
	speed  float64
}

var _ commitqueue.Clock = scaledClock{}

// newClock returns the server's clock: the system clock unless the clock
// settings change it. A zero start means now.
func newClock(c clockConfig) commitqueue.Clock {
	if c.Offset == 0 && c.Speed == 1 {
		return commitqueue.RealClock()
	}
	start := c.start
	if start.IsZero() {
		start = time.Now()
	}
	return scaledClock{start: start, offset: c.Offset, speed: c.Speed}
}

// Now returns start + offset + (real now - start) x speed (the scaled
// part capped at about 292 years either way, time.Duration's range).
func (c scaledClock) Now() time.Time {
	scaled := float64(time.Since(c.start)) * c.speed
	scaled = max(min(scaled, math.MaxInt64/2), math.MinInt64/2)
	return c.start.Add(c.offset + time.Duration(scaled)).Round(0)
}

// After sends the virtual time on the channel once d of virtual time has
// passed: after d/speed of real time.
func (c scaledClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.Now()
		return ch
	}
	time.AfterFunc(c.realDuration(d), func() { ch <- c.Now() })
	return ch
}

// realDuration is the real time that d of virtual time takes (at least 1 ns).
func (c scaledClock) realDuration(d time.Duration) time.Duration {
	return max(time.Duration(float64(d)/c.speed), 1)
}
