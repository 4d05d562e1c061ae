package clientapi

import (
	"sync"
	"time"
)

// RateLimit is the per-device request limit: a token bucket refilled at
// PerSecond requests per second holding at most Burst.
type RateLimit struct {
	// Disabled turns the limit off.
	Disabled bool
	// PerSecond defaults to 20, Burst to 100.
	PerSecond float64
	Burst     int
}

// limiter keeps one token bucket per device.
type limiter struct {
	cfg     RateLimit
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory: when reached, full buckets are
// dropped (a full bucket is the same as none).
const maxBuckets = 100_000

func newLimiter(cfg RateLimit) *limiter {
	if cfg.PerSecond <= 0 {
		cfg.PerSecond = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 100
	}
	return &limiter{cfg: cfg, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket at now; when it is empty it
// reports false and how long until a token is back.
func (l *limiter) allow(key string, now time.Time) (time.Duration, bool) {
	if l.cfg.Disabled {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: float64(l.cfg.Burst), last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(float64(l.cfg.Burst), b.tokens+el*l.cfg.PerSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	wait := time.Duration((1 - b.tokens) / l.cfg.PerSecond * float64(time.Second))
	return wait, false
}

// prune drops the buckets that have refilled completely.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.cfg.PerSecond >= float64(l.cfg.Burst) {
			delete(l.buckets, k)
		}
	}
}
