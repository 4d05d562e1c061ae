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
	cancel  context.CancelFunc
	done    chan struct{}
}

// waiter is one long-poll; ch is closed when one of its keys changes.
type waiter struct {
	keys []string
	ch   chan struct{}
	once sync.Once
}

func (w *waiter) wake() { w.once.Do(func() { close(w.ch) }) }

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
				w.wake()
			}
		}
		return
	}
	for w := range h.waiters[key] {
		w.wake()
	}
}

// wait registers a waiter on keys; release it with done.
func (h *hub) wait(keys ...string) *waiter {
	w := &waiter{keys: keys, ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
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

// release unregisters w.
func (h *hub) release(w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range w.keys {
		if ws := h.waiters[k]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(h.waiters, k)
			}
		}
	}
}
