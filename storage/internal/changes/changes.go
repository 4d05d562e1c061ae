// Package changes owns the in-process fan-out of change notifications that
// both storage backends use for SubscribeChanges: a Hub delivers every
// published key to every subscriber without ever blocking the publisher; a
// subscriber that falls behind gets "*" (anything may have changed) in
// place of the keys it could not keep.
package changes

import (
	"context"
	"sync"
)

// All is the key meaning "anything may have changed".
const All = "*"

// maxPending is how many undelivered keys a subscriber may have before
// they are replaced by All.
const maxPending = 256

// Hub fans keys out to subscribers. The zero value is not usable; use
// NewHub.
type Hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*subscriber]struct{}{}} }

type subscriber struct {
	mu      sync.Mutex
	pending []string
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (s *subscriber) push(key string) {
	s.mu.Lock()
	switch {
	case len(s.pending) > 0 && s.pending[len(s.pending)-1] == All:
		// Everything is covered already.
	case key == All || len(s.pending) >= maxPending:
		s.pending = append(s.pending[:0], All)
	default:
		s.pending = append(s.pending, key)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) stop() { s.once.Do(func() { close(s.done) }) }

// Subscribe returns a channel receiving every key published from now on
// until ctx ends or the hub is closed; then the channel is closed.
func (h *Hub) Subscribe(ctx context.Context) <-chan string {
	out := make(chan string)
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(out)
		return out
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			if len(s.pending) == 0 {
				s.mu.Unlock()
				select {
				case <-s.wake:
					continue
				case <-ctx.Done():
					return
				case <-s.done:
					return
				}
			}
			key := s.pending[0]
			s.pending = s.pending[1:]
			s.mu.Unlock()
			select {
			case out <- key:
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
	}()
	return out
}

// Publish delivers key to every subscriber; it never blocks.
func (h *Hub) Publish(key string) {
	h.mu.Lock()
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.push(key)
	}
}

// Close ends every subscription (closing the channels) and refuses new
// ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.stop()
	}
}
