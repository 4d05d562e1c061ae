// Package sender is the outbound federation queue (SPEC-NOTES §8, §12): a
// persistent queue per destination server built on storage.OutboundQueue.
//
// SendEvent and SendEDU append the payload to each destination's queue in
// storage before they return, then wake that destination's worker. One
// worker goroutine runs per destination with queued items. It takes the
// oldest items of the queue, up to MaxPDUsPerTransaction PDUs and
// MaxEDUsPerTransaction EDUs (always a prefix of the queue, so queue order
// is kept), sends them as one transaction through the Transport and, only
// once the destination has accepted it, deletes them from storage. Nothing
// is therefore lost when a send fails, the process stops or it crashes:
// Start sends whatever is still queued (catch-up after a restart), batch
// after batch, in queue order.
//
// Transaction IDs are derived from the batch (destination, first and last
// queue NIDs and the payloads), so a retry of the same batch, in this
// process or after a restart, reuses the ID and the receiver's
// per-origin transaction dedupe answers it without processing it twice.
// While a batch is being retried the worker keeps it fixed (items queued
// meanwhile wait for the next batch), so the ID stays stable across
// retries.
//
// On failure the worker backs off exponentially: InitialBackoff, doubling
// after each consecutive failure, capped at MaxBackoff; a success resets it.
// A wake (a new item for the destination) during a backoff does not cut the
// backoff short: a destination that is down is not hammered by a busy room,
// and the new item goes out with the catch-up once the backoff ends.
// Destinations are independent: each has its own worker and backoff.
package sender

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// Kinds of queued items (storage.OutboundItem.Kind).
const (
	KindPDU = "pdu"
	KindEDU = "edu"
)

// Transaction limits of the federation API.
const (
	MaxPDUsPerTransaction = 50
	MaxEDUsPerTransaction = 100
)

// Backoff defaults.
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = time.Hour
)

// Transport sends one transaction to a destination (the federation client
// implements it: PUT /_matrix/federation/v1/send/{txnId}). A nil error
// means the destination accepted the transaction; any error is retried
// with backoff. It should honour ctx, which Stop cancels.
type Transport interface {
	SendTransaction(ctx context.Context, destination, txnID string, pdus, edus []json.RawMessage) error
}

// Config configures a Sender.
type Config struct {
	// ServerName is this server's name; nothing is ever queued for it.
	ServerName string
	// Store holds the queue.
	Store storage.OutboundQueue
	// Transport sends the transactions.
	Transport Transport
	// Clock times the backoff; default commitqueue.RealClock().
	Clock commitqueue.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// InitialBackoff is the wait after a destination's first consecutive
	// failure; default DefaultInitialBackoff (1 s).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait; default DefaultMaxBackoff (1 h).
	MaxBackoff time.Duration
	// RescanInterval, when positive, makes the sender list the queued
	// destinations again at that interval and start workers for those it
	// has none for: items another process sharing the database queued (and
	// could not send, having stopped) are sent without waiting for this
	// process to restart. Zero: only at Start.
	RescanInterval time.Duration
}

// Sender is the outbound federation queue of one server process. Start and
// Stop must not be called concurrently with each other.
type Sender struct {
	cfg   Config
	store storage.OutboundQueue
	clock commitqueue.Clock
	log   *slog.Logger

	mu      sync.Mutex
	runCtx  context.Context // nil while not running
	cancel  context.CancelFunc
	workers map[string]*worker
	wg      sync.WaitGroup

	// testHookEmpty, if set (by tests), runs when a worker has found its
	// queue empty, before it decides to end.
	testHookEmpty func(destination string)
}

// worker is the goroutine of one destination.
type worker struct {
	destination string
	// wake holds at most one pending "new item queued" signal.
	wake chan struct{}
	// done is closed when the goroutine has ended.
	done chan struct{}
}

// New returns a Sender; Start starts sending.
func New(cfg Config) (*Sender, error) {
	switch {
	case cfg.ServerName == "":
		return nil, errors.New("sender: ServerName is required")
	case cfg.Store == nil:
		return nil, errors.New("sender: Store is required")
	case cfg.Transport == nil:
		return nil, errors.New("sender: Transport is required")
	case cfg.InitialBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("sender: negative backoff")
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.InitialBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("sender: InitialBackoff %s exceeds MaxBackoff %s", cfg.InitialBackoff, cfg.MaxBackoff)
	}
	if cfg.Clock == nil {
		cfg.Clock = commitqueue.RealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sender{
		cfg: cfg, store: cfg.Store, clock: cfg.Clock,
		log:     cfg.Logger.With("component", "federation_sender"),
		workers: map[string]*worker{},
	}, nil
}

// Start starts sending: it restores every destination with queued items
// (catch-up after a restart) and, from now on, sends what SendEvent and
// SendEDU queue. The workers run until ctx ends or Stop. Starting a running
// Sender does nothing.
func (s *Sender) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx != nil {
		return
	}
	s.runCtx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.restore(s.runCtx)
}

// Stop stops the workers and waits for them. Queued items stay in storage
// (an interrupted transaction is retried with the same ID by the next
// Start). SendEvent and SendEDU still queue while stopped.
func (s *Sender) Stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.runCtx, s.cancel = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

// restore starts a worker for each destination with queued items, retrying
// the listing with backoff if storage fails.
func (s *Sender) restore(ctx context.Context) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		dests, err := s.store.OutboundDestinations(ctx)
		if err == nil {
			for _, d := range dests {
				if d == s.cfg.ServerName {
					continue
				}
				s.wakeWorker(d)
			}
			if len(dests) > 0 && backoff >= 0 {
				s.log.InfoContext(ctx, "restored federation send queues", "destinations", len(dests))
			}
			if s.cfg.RescanInterval <= 0 {
				return
			}
			// Rescan: later listings are quiet, and failures wait for the
			// next interval.
			backoff = -1
			select {
			case <-s.clock.After(s.cfg.RescanInterval):
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if backoff < 0 { // a rescan failed: try at the next one
			s.log.ErrorContext(ctx, "rescanning federation send queues", "error", err)
			select {
			case <-s.clock.After(s.cfg.RescanInterval):
				continue
			case <-ctx.Done():
				return
			}
		}
		backoff = s.nextBackoff(backoff)
		s.log.ErrorContext(ctx, "listing federation send queues", "error", err, "retry_in", backoff)
		select {
		case <-s.clock.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

// SendEvent queues ev's JSON as a PDU for each destination except this
// server (duplicates are queued once), durably before it returns, then wakes
// the destinations' workers. It implements roomserver.Remote's SendEvent.
// If storage fails part-way, some destinations may be queued; calling again
// queues the event again for them, which receivers ignore (events are
// deduplicated by ID).
func (s *Sender) SendEvent(ctx context.Context, ev *roomversion.Event, destinations []string) error {
	if ev == nil {
		return errors.New("sender: nil event")
	}
	seen := make(map[string]bool, len(destinations))
	for _, d := range destinations {
		if d == "" {
			return fmt.Errorf("sender: queueing event %s: empty destination", ev.EventID())
		}
		if d == s.cfg.ServerName || seen[d] {
			continue
		}
		seen[d] = true
		if err := s.queue(ctx, d, KindPDU, ev.JSON()); err != nil {
			return fmt.Errorf("queueing event %s: %w", ev.EventID(), err)
		}
	}
	return nil
}

// SendEDU queues edu (the whole EDU object, {"edu_type", "content"}) for
// destination, durably before it returns, then wakes its worker. Sending an
// EDU to this server itself is an error.
func (s *Sender) SendEDU(ctx context.Context, destination string, edu json.RawMessage) error {
	switch {
	case destination == "":
		return errors.New("sender: queueing EDU: empty destination")
	case destination == s.cfg.ServerName:
		return fmt.Errorf("sender: queueing EDU: destination %s is this server", destination)
	case !json.Valid(edu):
		return fmt.Errorf("sender: queueing EDU for %s: invalid JSON", destination)
	}
	if err := s.queue(ctx, destination, KindEDU, edu); err != nil {
		return fmt.Errorf("queueing EDU: %w", err)
	}
	return nil
}

// queue stores one item and wakes the destination's worker.
func (s *Sender) queue(ctx context.Context, destination, kind string, payload []byte) error {
	if _, err := s.store.QueueOutbound(ctx, destination, kind, payload, s.clock.Now().UnixMilli()); err != nil {
		return fmt.Errorf("queueing %s for %s: %w", kind, destination, err)
	}
	s.wakeWorker(destination)
	return nil
}

// wakeWorker signals destination's worker, starting one if none runs. It
// does nothing while the Sender is not running (Start restores the queue).
func (s *Sender) wakeWorker(destination string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx == nil {
		return
	}
	if w := s.workers[destination]; w != nil {
		select {
		case w.wake <- struct{}{}:
		default: // a signal is already pending
		}
		return
	}
	w := &worker{destination: destination, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.workers[destination] = w
	s.wg.Add(1)
	go s.run(s.runCtx, w)
}

// run is a destination's worker: it sends batch after batch until the queue
// is empty, backing off on failures, and ends when the queue is empty or
// ctx ends.
func (s *Sender) run(ctx context.Context, w *worker) {
	defer s.wg.Done()
	defer close(w.done)
	defer s.removeWorker(w)
	log := s.log.With("destination", w.destination)
	var (
		backoff time.Duration
		pinned  int64 // last NID of the batch being retried, 0 if none
	)
	for ctx.Err() == nil {
		// Items queued before this point are seen by the fetch below.
		select {
		case <-w.wake:
		default:
		}
		empty, err := s.sendBatch(ctx, w.destination, &pinned)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = s.nextBackoff(backoff)
			log.WarnContext(ctx, "federation send failed", "error", err, "retry_in", backoff)
			select {
			case <-s.clock.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		if backoff > 0 {
			log.InfoContext(ctx, "destination reachable again")
			backoff = 0
		}
		if empty {
			if s.testHookEmpty != nil {
				s.testHookEmpty(w.destination)
			}
			if s.idle(w) {
				return
			}
		}
	}
}

// idle reports whether w may end: no wake arrived since its last fetch.
// It holds the lock so that a concurrent wakeWorker either signals w before
// this check or finds no worker and starts a new one.
func (s *Sender) idle(w *worker) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.wake:
		return false
	default:
	}
	if s.workers[w.destination] == w {
		delete(s.workers, w.destination)
	}
	return true
}

// removeWorker forgets w if it is still destination's worker.
func (s *Sender) removeWorker(w *worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workers[w.destination] == w {
		delete(s.workers, w.destination)
	}
}

// nextBackoff is the wait after one more consecutive failure.
func (s *Sender) nextBackoff(prev time.Duration) time.Duration {
	if prev <= 0 {
		return s.cfg.InitialBackoff
	}
	if prev >= s.cfg.MaxBackoff/2 {
		return s.cfg.MaxBackoff
	}
	return prev * 2
}

// sendBatch sends the next batch of destination's queue and deletes it on
// success. *pinned is the last NID of a batch that failed: the retry sends
// exactly that batch again. It reports whether the queue was empty.
func (s *Sender) sendBatch(ctx context.Context, destination string, pinned *int64) (empty bool, err error) {
	items, err := s.store.OutboundItems(ctx, destination, MaxPDUsPerTransaction+MaxEDUsPerTransaction)
	if err != nil {
		return false, fmt.Errorf("reading queue: %w", err)
	}
	if len(items) == 0 || (*pinned != 0 && items[0].NID > *pinned) {
		// The pinned batch is gone (deleted elsewhere): start afresh.
		*pinned = 0
	}
	if len(items) == 0 {
		return true, nil
	}
	var pdus, edus []json.RawMessage
	n := 0
	for _, it := range items {
		if *pinned != 0 && it.NID > *pinned {
			break
		}
		if (it.Kind == KindPDU && len(pdus) == MaxPDUsPerTransaction) || (it.Kind == KindEDU && len(edus) == MaxEDUsPerTransaction) {
			break
		}
		switch it.Kind {
		case KindPDU:
			pdus = append(pdus, json.RawMessage(it.Payload))
		case KindEDU:
			edus = append(edus, json.RawMessage(it.Payload))
		default:
			// Sending cannot fix it; skipping keeps the queue moving.
			s.log.ErrorContext(ctx, "dropping queued item of unknown kind", "destination", destination, "nid", it.NID, "kind", it.Kind)
		}
		n++
	}
	batch := items[:n]
	first, last := batch[0].NID, batch[len(batch)-1].NID
	*pinned = last
	if len(pdus)+len(edus) > 0 {
		txnID := TransactionID(destination, batch)
		if err := s.cfg.Transport.SendTransaction(ctx, destination, txnID, pdus, edus); err != nil {
			return false, fmt.Errorf("sending transaction %s (queue %d..%d, %d PDUs, %d EDUs): %w", txnID, first, last, len(pdus), len(edus), err)
		}
		s.log.DebugContext(ctx, "sent federation transaction", "destination", destination, "txn_id", txnID, "pdus", len(pdus), "edus", len(edus))
	}
	// Should this fail, the batch is sent again with the same ID, which the
	// receiver's dedupe answers.
	if err := s.store.DeleteOutbound(ctx, destination, last); err != nil {
		return false, fmt.Errorf("deleting sent items up to %d: %w", last, err)
	}
	*pinned = 0
	return false, nil
}

// TransactionID is the ID of the transaction that carries batch (queued
// items of destination, oldest first): the first and last queue NIDs, for
// reading logs, and a hash of the destination, the NIDs and the payloads.
// The same batch always gets the same ID, so a retry, even after a restart,
// is answered by the receiver's dedupe; the payload hash keeps IDs distinct
// should NIDs ever be reused (a database recreated from scratch).
func TransactionID(destination string, batch []storage.OutboundItem) string {
	if len(batch) == 0 {
		return ""
	}
	h := sha256.New()
	var buf [8]byte
	writeBytes := func(b []byte) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(b)))
		h.Write(buf[:])
		h.Write(b)
	}
	writeBytes([]byte(destination))
	for _, it := range batch {
		binary.BigEndian.PutUint64(buf[:], uint64(it.NID))
		h.Write(buf[:])
		writeBytes([]byte(it.Kind))
		writeBytes(it.Payload)
	}
	return fmt.Sprintf("%d-%d-%x", batch[0].NID, batch[len(batch)-1].NID, h.Sum(nil)[:12])
}
