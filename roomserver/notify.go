package roomserver

import (
	"context"
	"log/slog"
	"sync"

	"github.com/mlsmode/mlsmode/storage"
)

// hub dispatches the store's change notifications (storage.Changes: room
// IDs and user IDs, "*" for anything) to the /sync long-polls waiting on
// them. One subscription serves every waiter of the process.
type hub struct {
	st     storage.Changes
	logger *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	active  int // registered waiters
	cancel  context.CancelFunc
	done    chan struct{}
}

// waiter is one long-poll; ch is closed when one of its keys changes.
// fired collects the keys that changed (guarded by the hub's mutex).
type waiter struct {
	keys  []string
	ch    chan struct{}
	once  sync.Once
	fired map[string]bool
	// released is set by release (guarded by the hub's mutex).
	released bool
}

// wake records key and closes ch once. The hub's mutex is held.
func (w *waiter) wake(key string) {
	if w.fired == nil {
		w.fired = map[string]bool{}
	}
	w.fired[key] = true
	w.once.Do(func() { close(w.ch) })
}

func newHub(st storage.Changes, logger *slog.Logger) *hub {
	return &hub{st: st, logger: logger, waiters: map[string]map[*waiter]struct{}{}}
}

// start subscribes and dispatches until stop.
func (h *hub) start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	ch, err := h.st.SubscribeChanges(ctx)
	if err != nil {
		cancel()
		return err
	}
	h.mu.Lock()
	h.cancel, h.done = cancel, make(chan struct{})
	done := h.done
	h.mu.Unlock()
	go func() {
		defer close(done)
		for key := range ch {
			h.dispatch(key)
		}
		h.dispatch("*") // the subscription ended: let every poll re-check
	}()
	return nil
}

func (h *hub) stop() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel = nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// dispatch wakes the waiters of key (all of them for "*").
func (h *hub) dispatch(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if key == "*" {
		for _, ws := range h.waiters {
			for w := range ws {
				w.wake(key)
			}
		}
		return
	}
	for w := range h.waiters[key] {
		w.wake(key)
	}
}

// wait registers a waiter on keys; release it with done.
func (h *hub) wait(keys ...string) *waiter {
	w := &waiter{keys: keys, ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active++
	for _, k := range keys {
		ws := h.waiters[k]
		if ws == nil {
			ws = map[*waiter]struct{}{}
			h.waiters[k] = ws
		}
		ws[w] = struct{}{}
	}
	return w
}

// release unregisters w and returns the keys that fired it.
func (h *hub) release(w *waiter) map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.released {
		return w.fired
	}
	w.released = true
	h.active--
	for _, k := range w.keys {
		if ws := h.waiters[k]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(h.waiters, k)
			}
		}
	}
	return w.fired
}

// waiting is the number of registered waiters.
func (h *hub) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active
}
