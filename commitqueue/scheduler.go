package commitqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

// Store is what the scheduler reads and writes; storage.Database has it.
type Store interface {
	storage.PendingCommits
	// Event, CurrentState and EventReferences as in storage.Events.
	Event(ctx context.Context, eventID string) (*storage.StoredEvent, error)
	CurrentState(ctx context.Context, roomID string) (storage.RoomState, error)
	EventReferences(ctx context.Context, eventID string) ([]string, error)
}

// Applier turns a pending commit into an m.mls.commit (SPEC-NOTES §6).
// Applying takes two steps: the queue stores the built commit itself, in
// the same transaction that claims the pending commit, and only then has it
// sent.
type Applier interface {
	// Build makes, without storing or sending it, the m.mls.commit applying
	// pending on current (the room's current commit): pending's content,
	// auth events [create, current], pending among its prev events.
	Build(ctx context.Context, pending, current *roomversion.Event) (*roomversion.Event, error)
	// Apply sends commit, which the queue has already stored as the room's
	// current commit (storing it again is harmless). It is called at most
	// once per pending commit across every process sharing the database.
	Apply(ctx context.Context, pending, commit *roomversion.Event) error
}

// Config configures a Scheduler.
type Config struct {
	// ServerName is this server's name, looked up in powers.
	ServerName string
	Store      Store
	Applier    Applier
	// Clock defaults to RealClock().
	Clock Clock
	// PollInterval is the longest Run waits between ticks (to see work
	// other processes queued); default 1 s.
	PollInterval time.Duration
	// Logf, if set, receives errors Run cannot return.
	Logf func(format string, args ...any)
}

// Status is a pending commit's state for the client API.
type Status struct {
	EventID string
	RoomID  string
	// Status is waiting, applied, stale or expired. A pending commit some
	// server applied (seen through a commit with the same ciphertext naming
	// it as a prev event) is applied even when this server's queue marked
	// it stale.
	Status storage.PendingStatus
	// CommitEventID is the commit that applied it: the one on the room's
	// current mainline when several servers applied it (the state
	// resolution winner), else the one this server made.
	CommitEventID string
	// AppliedHere is the commit this server's queue made, if any.
	AppliedHere string
	// Lost is true when commits applied it but none is on the room's
	// current mainline.
	Lost       bool
	ReceivedAt time.Time
	Windows    []storage.Window
}

// Scheduler is the pending-commit queue of one homeserver process.
type Scheduler struct {
	cfg   Config
	clock Clock

	mu      sync.Mutex
	rooms   map[string]struct{}
	powers  map[string][]string  // commit ID -> powers of that commit
	creates map[string]string    // room ID -> create event ID
	roomDue map[string]time.Time // room -> when something in it is next due
	dirty   map[string]struct{}  // rooms Receive queued something in
	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a scheduler; Start or Run it, or call Tick.
func New(cfg Config) (*Scheduler, error) {
	if cfg.ServerName == "" || cfg.Store == nil || cfg.Applier == nil {
		return nil, errors.New("commitqueue: ServerName, Store and Applier are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	return &Scheduler{cfg: cfg, clock: cfg.Clock, rooms: map[string]struct{}{},
		powers: map[string][]string{}, creates: map[string]string{},
		roomDue: map[string]time.Time{}, dirty: map[string]struct{}{}, wake: make(chan struct{}, 1)}, nil
}

// Track makes the scheduler look at the rooms' queues now. Receive tracks
// its room, and every Tick tracks the rooms with waiting pending commits in
// storage (after a restart, or received by another process).
func (s *Scheduler) Track(roomIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range roomIDs {
		s.rooms[r] = struct{}{}
	}
}

// Receive queues a valid pending commit, first received at receivedAt; the
// caller has stored the event and its auth events. It reports false if it
// was queued already (the first receipt counts).
func (s *Scheduler) Receive(ctx context.Context, pending *roomversion.Event, receivedAt time.Time) (bool, error) {
	if pending.Kind() != roomversion.EventPendingCommit {
		return false, fmt.Errorf("commitqueue: %s is a %s, not a pending commit", pending.EventID(), pending.Type())
	}
	roomID := pending.RoomID().String()
	commitID, err := s.authCommitID(ctx, pending)
	if err != nil {
		return false, err
	}
	powers, err := s.powersOf(ctx, commitID)
	if err != nil {
		return false, err
	}
	ots := time.UnixMilli(int64(pending.OriginServerTS()))
	ws, _ := Windows(ots, receivedAt, len(powers))
	added, err := s.cfg.Store.AddPendingCommit(ctx, storage.PendingCommit{
		EventID: pending.EventID(), RoomID: roomID, CommitID: commitID,
		ReceivedTS: receivedAt.UnixMilli(), Windows: ws,
	})
	if err != nil {
		return false, fmt.Errorf("commitqueue: queueing %s: %w", pending.EventID(), err)
	}
	s.Track(roomID)
	s.mu.Lock()
	s.dirty[roomID] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return added, nil
}

// authCommitID returns the commit in a pending commit's auth events. The
// room's create event ID is cached (immutable) so that later calls load
// nothing.
func (s *Scheduler) authCommitID(ctx context.Context, ev *roomversion.Event) (string, error) {
	roomID := ev.RoomID().String()
	s.mu.Lock()
	createID, ok := s.creates[roomID]
	s.mu.Unlock()
	if ok {
		if id := stateres.AuthCommitID(ev, createID); id != "" {
			return id, nil
		}
		return "", fmt.Errorf("commitqueue: %s has no commit in its auth events", ev.EventID())
	}
	var commitID string
	for _, id := range ev.AuthEventIDs() {
		st, err := s.cfg.Store.Event(ctx, id)
		if err != nil {
			return "", fmt.Errorf("commitqueue: auth event %s of %s: %w", id, ev.EventID(), err)
		}
		switch st.Event.Kind() {
		case roomversion.EventCommit:
			commitID = id
		case roomversion.EventCreate:
			s.mu.Lock()
			s.creates[roomID] = id
			s.mu.Unlock()
		}
	}
	if commitID == "" {
		return "", fmt.Errorf("commitqueue: %s has no commit in its auth events", ev.EventID())
	}
	return commitID, nil
}

// powersOf returns powers of a commit (cached: events are immutable).
func (s *Scheduler) powersOf(ctx context.Context, commitID string) ([]string, error) {
	s.mu.Lock()
	p, ok := s.powers[commitID]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	st, err := s.cfg.Store.Event(ctx, commitID)
	if err != nil {
		return nil, fmt.Errorf("commitqueue: commit %s: %w", commitID, err)
	}
	fm, err := st.Event.FederationMap()
	if err != nil {
		return nil, fmt.Errorf("commitqueue: federation map of %s: %w", commitID, err)
	}
	p = fm.Federation.Powers
	s.mu.Lock()
	s.powers[commitID] = p
	s.mu.Unlock()
	return p, nil
}

// expiry is T + len(powers) x 5 min of a queued pending commit.
func (s *Scheduler) expiry(ctx context.Context, pc storage.PendingCommit) (time.Time, error) {
	st, err := s.cfg.Store.Event(ctx, pc.EventID)
	if err != nil {
		return time.Time{}, fmt.Errorf("commitqueue: pending commit %s: %w", pc.EventID, err)
	}
	powers, err := s.powersOf(ctx, pc.CommitID)
	if err != nil {
		return time.Time{}, err
	}
	_, exp := Windows(time.UnixMilli(int64(st.Event.OriginServerTS())), time.UnixMilli(pc.ReceivedTS), len(powers))
	return exp, nil
}

// Tick processes what is due now in every tracked room and every room with
// a waiting pending commit in storage: expires, marks stale and applies
// pending commits. It returns the first error; the other
// rooms are still processed.
func (s *Scheduler) Tick(ctx context.Context) error {
	// Rooms with waiting pending commits in storage: after a restart, and
	// those another process received.
	waiting, err := s.cfg.Store.PendingCommitRooms(ctx, storage.PendingWaiting)
	if err != nil {
		return fmt.Errorf("commitqueue: listing rooms with waiting pending commits: %w", err)
	}
	s.Track(waiting...)
	s.mu.Lock()
	rooms := make([]string, 0, len(s.rooms))
	for r := range s.rooms {
		rooms = append(rooms, r)
	}
	clear(s.dirty)
	s.mu.Unlock()
	return s.process(ctx, rooms)
}

// tickDue processes only the rooms Receive touched and those with
// something due by now (Run does this between full Ticks).
func (s *Scheduler) tickDue(ctx context.Context) error {
	now := s.clock.Now()
	s.mu.Lock()
	var rooms []string
	for r := range s.rooms {
		_, dirty := s.dirty[r]
		if d, ok := s.roomDue[r]; dirty || ok && !d.After(now) {
			rooms = append(rooms, r)
		}
	}
	clear(s.dirty)
	s.mu.Unlock()
	return s.process(ctx, rooms)
}

func (s *Scheduler) process(ctx context.Context, rooms []string) error {
	sort.Strings(rooms)
	now := s.clock.Now()
	var first error
	for _, r := range rooms {
		s.mu.Lock()
		delete(s.roomDue, r)
		s.mu.Unlock()
		if err := s.processRoom(ctx, r, now); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// due notes that something in a room is due at t.
func (s *Scheduler) due(roomID string, t time.Time) {
	s.mu.Lock()
	if d, ok := s.roomDue[roomID]; !ok || t.Before(d) {
		s.roomDue[roomID] = t
	}
	s.mu.Unlock()
}

// nextDue is the earliest due time of any room (zero if none).
func (s *Scheduler) nextDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, d := range s.roomDue {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next
}

func (s *Scheduler) processRoom(ctx context.Context, roomID string, now time.Time) error {
	st := s.cfg.Store
	pcs, err := st.PendingCommits(ctx, roomID, storage.PendingWaiting)
	if err != nil || len(pcs) == 0 {
		return err
	}
	cur, err := st.CurrentState(ctx, roomID)
	if err != nil {
		return fmt.Errorf("commitqueue: current state of %s: %w", roomID, err)
	}
	nowMS := now.UnixMilli()
	var candidates []storage.PendingCommit
	for _, pc := range pcs {
		last := int64(0)
		if n := len(pc.Windows); n > 0 {
			last = pc.Windows[n-1].End
		}
		if nowMS >= last {
			exp, err := s.expiry(ctx, pc)
			if err != nil {
				return err
			}
			if !now.Before(exp) {
				if _, err := st.SetPendingCommitStatus(ctx, pc.EventID, storage.PendingExpired); err != nil {
					return err
				}
				continue
			}
			s.due(roomID, exp)
		} else {
			s.due(roomID, time.UnixMilli(last))
		}
		if pc.CommitID != cur.CommitID {
			if _, err := st.SetPendingCommitStatus(ctx, pc.EventID, storage.PendingStale); err != nil {
				return err
			}
			continue
		}
		powers, err := s.powersOf(ctx, pc.CommitID)
		if err != nil {
			return err
		}
		i := slices.Index(powers, s.cfg.ServerName)
		if i < 0 {
			continue
		}
		for _, w := range pc.Windows {
			if w.PowerIndex != i {
				continue
			}
			if nowMS < w.Start {
				s.due(roomID, time.UnixMilli(w.Start))
			} else if nowMS < w.End {
				candidates = append(candidates, pc)
			}
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	return s.apply(ctx, candidates[0], cur)
}

// apply builds, claims and applies one pending commit.
func (s *Scheduler) apply(ctx context.Context, pc storage.PendingCommit, cur storage.RoomState) error {
	st := s.cfg.Store
	pending, err := st.Event(ctx, pc.EventID)
	if err != nil {
		return fmt.Errorf("commitqueue: pending commit %s: %w", pc.EventID, err)
	}
	current, err := st.Event(ctx, cur.CommitID)
	if err != nil {
		return fmt.Errorf("commitqueue: current commit %s: %w", cur.CommitID, err)
	}
	commit, err := s.cfg.Applier.Build(ctx, pending.Event, current.Event)
	if err != nil {
		return fmt.Errorf("commitqueue: building the commit of %s: %w", pc.EventID, err)
	}
	// Claiming and storing happen in one transaction under the room's lock
	// (storage.ApplyPendingCommit): across processes, one pending commit is
	// applied once, one commit gets one pending commit applied on it, and a
	// crash leaves the pending commit either waiting or applied and stored.
	next := storage.RoomState{CreateID: cur.CreateID, CommitID: commit.EventID()}
	res, err := st.ApplyPendingCommit(ctx, pc.EventID, commit, storage.StoreEventOptions{StateBefore: cur, CurrentState: &next})
	if err != nil {
		return fmt.Errorf("commitqueue: applying %s: %w", pc.EventID, err)
	}
	if res != storage.ClaimWon {
		return nil
	}
	if err := s.cfg.Applier.Apply(ctx, pending.Event, commit); err != nil {
		return fmt.Errorf("commitqueue: sending %s, applying %s: %w", commit.EventID(), pc.EventID, err)
	}
	return nil
}

// Status reports a queued pending commit's state; storage.ErrNotFound
// (wrapped) if this server never queued it.
func (s *Scheduler) Status(ctx context.Context, eventID string) (Status, error) {
	st := s.cfg.Store
	pc, err := st.PendingCommit(ctx, eventID)
	if err != nil {
		return Status{}, fmt.Errorf("commitqueue: status of %s: %w", eventID, err)
	}
	out := Status{EventID: eventID, RoomID: pc.RoomID, Status: pc.Status, AppliedHere: pc.AppliedCommitID,
		CommitEventID: pc.AppliedCommitID, ReceivedAt: time.UnixMilli(pc.ReceivedTS), Windows: pc.Windows}
	pending, err := st.Event(ctx, eventID)
	if err != nil {
		return out, fmt.Errorf("commitqueue: pending commit %s: %w", eventID, err)
	}
	refs, err := st.EventReferences(ctx, eventID)
	if err != nil {
		return out, err
	}
	var appliers []*roomversion.Event
	for _, id := range refs {
		ev, err := st.Event(ctx, id)
		if err != nil {
			return out, err
		}
		if ev.Event.Kind() == roomversion.EventCommit && !ev.Rejected && stateres.Equivalent(ev.Event, pending.Event) {
			appliers = append(appliers, ev.Event)
		}
	}
	if len(appliers) == 0 {
		return out, nil
	}
	cur, err := st.CurrentState(ctx, pc.RoomID)
	if err != nil {
		return out, err
	}
	on, err := s.onMainline(ctx, cur, appliers)
	if err != nil {
		return out, err
	}
	out.Status = storage.PendingApplied
	if on != "" {
		out.CommitEventID = on
	} else {
		out.Lost = true
		if out.CommitEventID == "" {
			out.CommitEventID = appliers[0].EventID()
		}
	}
	return out, nil
}

// onMainline returns the commit among cands on the mainline of cur, "" if
// none.
func (s *Scheduler) onMainline(ctx context.Context, cur storage.RoomState, cands []*roomversion.Event) (string, error) {
	minEpoch := cands[0].Epoch()
	for _, c := range cands {
		minEpoch = min(minEpoch, c.Epoch())
	}
	id := cur.CommitID
	for id != "" {
		ev, err := s.cfg.Store.Event(ctx, id)
		if err != nil {
			return "", err
		}
		for _, c := range cands {
			if c.EventID() == id {
				return id, nil
			}
		}
		if ev.Event.Epoch() <= minEpoch {
			return "", nil
		}
		id = stateres.AuthCommitID(ev.Event, cur.CreateID)
	}
	return "", nil
}

// Run ticks until ctx ends or Stop: a full Tick at least every
// PollInterval (to see work other processes queued), and in between only
// the rooms with something due or just received.
func (s *Scheduler) Run(ctx context.Context) error {
	var lastFull time.Time
	for {
		now := s.clock.Now()
		var err error
		if lastFull.IsZero() || now.Sub(lastFull) >= s.cfg.PollInterval {
			lastFull = now
			err = s.Tick(ctx)
		} else {
			err = s.tickDue(ctx)
		}
		if err != nil && s.cfg.Logf != nil && ctx.Err() == nil {
			s.cfg.Logf("commitqueue: %v", err)
		}
		now = s.clock.Now()
		wait := s.cfg.PollInterval - now.Sub(lastFull)
		if next := s.nextDue(); !next.IsZero() {
			wait = min(wait, next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-s.clock.After(max(wait, 0)):
		}
	}
}

// Start runs Run in a goroutine until Stop.
func (s *Scheduler) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.mu.Lock()
	s.cancel, s.done = cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
}

// Stop stops a started scheduler and waits for it.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
