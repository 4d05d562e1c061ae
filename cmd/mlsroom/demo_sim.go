package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

// demoKeyID is the signing key ID of every simulated server.
const demoKeyID = "ed25519:demo"

// demoWorld is the whole simulation: servers, their clients, the network
// between them and the virtual clock they share.
type demoWorld struct {
	ctx     context.Context
	seed    int64
	window  uint64
	rng     *rand.Rand
	clock   *commitqueue.FakeClock
	version roomversion.Version
	suite   mls.CipherSuite
	roomID  string
	fed     fedmap.Map
	servers []*demoServer
	clients []*demoClient
	// side is each server's side of the partition: servers reach each
	// other only on the same side. held keeps what could not be
	// delivered, in sending order, until heal.
	side map[string]int
	held []demoHeld
	// labels names events for people: event IDs hash random MLS
	// ciphertexts, so they differ from run to run; labels do not.
	labels  map[string]string
	byLabel map[string]*roomversion.Event
	order   []*roomversion.Event // every event built, in building order
	lastTS  time.Time
	steps   []demoStep
	msgs    []*demoMessage
	// applied records the pending commits the servers' queues applied.
	applied []demoApplied
}

type demoHeld struct {
	from, to *demoServer
	ev       *roomversion.Event
}

type demoApplied struct {
	server          *demoServer
	pending, commit *roomversion.Event
	at              time.Time
	windowIndex     int
	windows         []storage.Window // the applier's windows of the pending commit
}

// window returns the window of powers index i, as "hh:mm:ss to hh:mm:ss".
func (ap demoApplied) window(i int) string {
	for _, win := range ap.windows {
		if win.PowerIndex == i {
			return time.UnixMilli(win.Start).UTC().Format("15:04:05") + " to " + time.UnixMilli(win.End).UTC().Format("15:04:05")
		}
	}
	return "none"
}

// derive returns n bytes derived from the seed and labels (server signing
// keys and MLS signature keys, so that they are the same in every run).
func (w *demoWorld) derive(labels ...string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "mlsroom demo|%d", w.seed)
	for _, l := range labels {
		fmt.Fprintf(h, "|%s", l)
	}
	return h.Sum(nil)
}

// stamp returns the timestamp of a new event: the virtual time, at least a
// second after the previous event's, so that no two events tie.
func (w *demoWorld) stamp() time.Time {
	now := w.clock.Now()
	if !now.After(w.lastTS) && !w.lastTS.IsZero() {
		now = w.lastTS.Add(time.Second)
		w.clock.Set(now)
	}
	w.lastTS = now
	return now
}

// wait moves the virtual clock on by a seeded number of seconds in
// [lo, hi], ticking every server's queue.
func (w *demoWorld) wait(lo, hi int) error {
	d := time.Duration(lo+w.rng.IntN(hi-lo+1)) * time.Second
	return w.run(d, d)
}

// run moves the virtual clock on by d in steps of step, ticking every
// server's queue after each.
func (w *demoWorld) run(d, step time.Duration) error {
	end := w.clock.Now().Add(d)
	for w.clock.Now().Before(end) {
		next := w.clock.Now().Add(step)
		if next.After(end) {
			next = end
		}
		w.clock.Set(next)
		if err := w.tick(); err != nil {
			return err
		}
	}
	return nil
}

// tick runs every server's pending-commit queue once.
func (w *demoWorld) tick() error {
	for _, s := range w.servers {
		if err := s.sched.Tick(w.ctx); err != nil {
			return fmt.Errorf("%s: pending-commit queue: %w", s.name, err)
		}
	}
	return nil
}

// label names an event.
func (w *demoWorld) label(ev *roomversion.Event, label string) {
	if _, ok := w.labels[ev.EventID()]; ok {
		return
	}
	w.labels[ev.EventID()] = label
	w.byLabel[label] = ev
}

// name returns an event's label, or "?" for an event the demo did not
// name (not reachable: every event built is named).
func (w *demoWorld) name(id string) string {
	if l, ok := w.labels[id]; ok {
		return l
	}
	return "?"
}

// commitLabel is the label of a commit: C, its epoch and its origin's
// letter.
func (w *demoWorld) commitLabel(ev *roomversion.Event) string {
	return fmt.Sprintf("C%d%s", ev.Epoch(), w.server(ev.Origin()).letter)
}

func (w *demoWorld) server(name string) *demoServer {
	for _, s := range w.servers {
		if s.name == name {
			return s
		}
	}
	return nil
}

// partition cuts the network: servers reach only those on their side.
func (w *demoWorld) partition(sides map[string]int) { w.side = sides }

// heal joins the network again and delivers what was held, in order.
func (w *demoWorld) heal() error {
	held := w.held
	w.held, w.side = nil, map[string]int{}
	for _, h := range held {
		if _, err := h.to.receive(h.ev, h.from); err != nil {
			return err
		}
	}
	return nil
}

// send federates an event from s to every other server in servers of the
// room's current commit, of the event's auth commit and (commits and
// pending commits) of the event's own federation map (SPEC-NOTES §8).
// Events for servers across the partition are held.
func (w *demoWorld) send(from *demoServer, ev *roomversion.Event) error {
	var to []string
	add := func(c *roomversion.Event) {
		if c == nil {
			return
		}
		if fm, err := c.FederationMap(); err == nil {
			to = append(to, fm.Federation.Servers...)
		}
	}
	add(from.rr.replay.Room().Commit())
	add(from.rr.replay.Room().AuthCommit(ev))
	if ev.Kind() == roomversion.EventCommit || ev.Kind() == roomversion.EventPendingCommit {
		add(ev)
	}
	for _, dst := range w.servers {
		if dst == from || !slices.Contains(to, dst.name) {
			continue
		}
		if w.side[dst.name] != w.side[from.name] {
			w.held = append(w.held, demoHeld{from: from, to: dst, ev: ev})
			continue
		}
		if _, err := dst.receive(ev, from); err != nil {
			return err
		}
	}
	return nil
}

// demoServer is one homeserver: its signing key, its own storage (SQLite
// in memory), its pending-commit queue, and its view of the room, kept as
// mlsroom resolve keeps it (auth rules, chain rule, soft-fail, state
// resolution at forward extremities).
type demoServer struct {
	w       *demoWorld
	name    string
	letter  string
	key     ed25519.PrivateKey
	db      storage.Database
	sched   *commitqueue.Scheduler
	rr      *roomResolver
	scratch resolveOutput
	clients []*demoClient
	// softFailed lists the events this server soft-failed, in order.
	softFailed []demoSoftFail
}

type demoSoftFail struct {
	ev     *roomversion.Event
	kase   string
	reason string
}

func newDemoServer(w *demoWorld, name string) (*demoServer, error) {
	s := &demoServer{w: w, name: name, letter: name[:1], key: ed25519.NewKeyFromSeed(w.derive("server", name))}
	db, err := storage.Open(w.ctx, ":memory:")
	if err != nil {
		return nil, fmt.Errorf("%s: opening storage: %w", name, err)
	}
	s.db = db
	s.sched, err = commitqueue.New(commitqueue.Config{ServerName: name, Store: db, Applier: demoApplier{s}, Clock: w.clock})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// has reports whether the server holds an event (accepted or rejected).
func (s *demoServer) has(id string) bool { return s.event(id) != nil }

// event returns an event the server holds.
func (s *demoServer) event(id string) *roomversion.Event {
	if s.rr == nil {
		return nil
	}
	if s.rr.replay.Room() != nil {
		if ev := s.rr.replay.Room().Event(id); ev != nil {
			return ev
		}
	}
	return s.rr.replay.Rejected(id)
}

// current returns the room's current commit on this server (nil: none).
func (s *demoServer) current() *roomversion.Event { return s.rr.replay.Room().Commit() }

// extremities returns the forward extremities, sorted.
func (s *demoServer) extremities() []string {
	out := s.rr.replay.ForwardExtremities()
	slices.Sort(out)
	return out
}

// build makes and signs an event of this server.
func (s *demoServer) build(typ string, stateKey *string, content []byte, auth, prev []string) (*roomversion.Event, error) {
	b := &roomversion.Builder{Version: s.w.version, RoomID: s.w.roomID, Type: typ, StateKey: stateKey, Content: content,
		AuthEvents: auth, PrevEvents: prev, Origin: s.name, Timestamp: s.w.stamp()}
	ev, err := b.Build(s.w.ctx, demoKeyID, s.key)
	if err != nil {
		return nil, fmt.Errorf("%s: building %s: %w", s.name, typ, err)
	}
	s.w.order = append(s.w.order, ev)
	return ev, nil
}

// receive takes an event in from another server (from; nil for the
// server's own events): it first fetches the auth and prev events it does
// not hold from the sender, then checks the event, stores it, queues a
// pending commit and passes it to the local clients. The demo's events
// are all meant to pass the auth rules: a rejection is an error.
func (s *demoServer) receive(ev *roomversion.Event, from *demoServer) (checkVerdict, error) {
	w := s.w
	if s.rr != nil {
		if v, ok := s.rr.verdicts[ev.EventID()]; ok {
			return v, nil
		}
	}
	if from != nil {
		for _, id := range append(ev.AuthEventIDs(), ev.PrevEventIDs()...) {
			if s.has(id) {
				continue
			}
			if missing := from.event(id); missing != nil {
				if _, err := s.receive(missing, from); err != nil {
					return checkVerdict{}, err
				}
			}
		}
	}
	if s.rr == nil {
		if ev.Kind() != roomversion.EventCreate {
			return checkVerdict{}, fmt.Errorf("%s: %s %s arrived before the room's create event", s.name, ev.Type(), w.name(ev.EventID()))
		}
		s.rr = &roomResolver{version: w.version, replay: stateres.NewReplay(), verdicts: map[string]checkVerdict{}}
	}
	v, err := s.rr.judge(ev, &s.scratch)
	if err != nil {
		return v, fmt.Errorf("%s: taking %s in: %w", s.name, w.name(ev.EventID()), err)
	}
	s.rr.verdicts[ev.EventID()] = v
	if !v.Allowed {
		return v, fmt.Errorf("%s rejected %s %s: rule %s: %s", s.name, ev.Type(), w.name(ev.EventID()), v.Rule, w.relabel(v.Reason))
	}
	create := s.rr.replay.Room().Create()
	opts := storage.StoreEventOptions{}
	sfCase, _ := v.SoftFailed.(string)
	if ev.Kind() != roomversion.EventCreate {
		opts.StateBefore = storage.RoomState{CreateID: create.EventID(), CommitID: stateres.AuthCommitID(ev, create.EventID())}
		if sfCase != "" {
			opts.SoftFailed, opts.SoftFailReason = true, v.SoftFailReason
			s.softFailed = append(s.softFailed, demoSoftFail{ev: ev, kase: sfCase, reason: v.SoftFailReason})
		} else {
			cur := storage.RoomState{CreateID: create.EventID()}
			if c := s.current(); c != nil {
				cur.CommitID = c.EventID()
			}
			opts.CurrentState = &cur
		}
	}
	if _, err := s.db.StoreEvent(w.ctx, ev, opts); err != nil {
		return v, fmt.Errorf("%s: storing %s: %w", s.name, w.name(ev.EventID()), err)
	}
	if ev.Kind() == roomversion.EventPendingCommit && sfCase == "" {
		if _, err := s.sched.Receive(w.ctx, ev, w.clock.Now()); err != nil {
			return v, fmt.Errorf("%s: queueing %s: %w", s.name, w.name(ev.EventID()), err)
		}
	}
	// Clients get commits and messages; of the soft-failed events only
	// the messages lost to a fork, flagged (SPEC-NOTES §4).
	deliver := sfCase == "" && (ev.Kind() == roomversion.EventCommit || ev.Kind() == roomversion.EventEncrypted)
	lostFork := sfCase == "c" && ev.Kind() == roomversion.EventEncrypted
	if deliver || lostFork {
		for _, c := range s.clients {
			if err := c.receive(ev, lostFork); err != nil {
				return v, err
			}
		}
	}
	return v, nil
}

// submit is a local client's send (SPEC-NOTES §11): the event names the
// commit the client's MLS state is at; a commit or pending commit must
// name the current commit, a message one on the mainline. It builds the
// event; accept then takes it in and federates it.
func (s *demoServer) submit(typ string, stateKey *string, msg []byte, commitID string) (*roomversion.Event, error) {
	w := s.w
	create := s.rr.replay.Room().Create()
	cur := s.current()
	auth := []string{create.EventID()}
	if commitID != "" {
		auth = append(auth, commitID)
	}
	if typ == w.version.CommitType() || typ == w.version.PendingCommitType() {
		if (cur == nil) != (commitID == "") || (cur != nil && cur.EventID() != commitID) {
			return nil, fmt.Errorf("%s: refusing %s on %s: not the current commit (409 DE.BWI.MLS.WRONG_EPOCH)", s.name, typ, w.name(commitID))
		}
	} else if c := s.rr.replay.Room().Event(commitID); c == nil || s.rr.replay.Room().MainlineAt(c.Epoch()) != c {
		return nil, fmt.Errorf("%s: refusing a message on %s: not on the mainline (409 DE.BWI.MLS.WRONG_EPOCH)", s.name, w.name(commitID))
	}
	content, err := w.version.MLSContent(typ, w.suite, msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return s.build(typ, stateKey, content, auth, s.extremities())
}

// accept takes a built local event in and federates it.
func (s *demoServer) accept(ev *roomversion.Event) error {
	v, err := s.receive(ev, nil)
	if err != nil {
		return err
	}
	if v.SoftFailed != false {
		return fmt.Errorf("%s soft-failed its own %s %s: %s", s.name, ev.Type(), s.w.name(ev.EventID()), s.w.relabel(v.SoftFailReason))
	}
	return s.w.send(s, ev)
}

// demoApplier turns a pending commit into this server's m.mls.commit.
type demoApplier struct{ s *demoServer }

// Build makes the commit: the pending commit's content, auth events
// [create, current], prev events the forward extremities (the pending
// commit among them).
func (a demoApplier) Build(_ context.Context, pending, current *roomversion.Event) (*roomversion.Event, error) {
	s := a.s
	prev := s.extremities()
	if !slices.Contains(prev, pending.EventID()) {
		prev = append(prev, pending.EventID())
	}
	return s.build(s.w.version.CommitType(), new(string), pending.Content(), []string{s.rr.replay.Room().Create().EventID(), current.EventID()}, prev)
}

// Apply takes the commit in (the queue stored it already) and sends it.
func (a demoApplier) Apply(ctx context.Context, pending, commit *roomversion.Event) error {
	s, w := a.s, a.s.w
	w.label(commit, w.commitLabel(commit))
	st, err := s.sched.Status(ctx, pending.EventID())
	if err != nil {
		return err
	}
	rec := demoApplied{server: s, pending: pending, commit: commit, at: w.clock.Now(), windowIndex: -1, windows: st.Windows}
	for _, win := range st.Windows {
		if t := commit.OriginServerTS().Time(); !t.Before(time.UnixMilli(win.Start)) && t.Before(time.UnixMilli(win.End)) {
			rec.windowIndex = win.PowerIndex
		}
	}
	w.applied = append(w.applied, rec)
	return s.accept(commit)
}

// errDemo marks a story that did not go as told.
var errDemo = errors.New("the demo did not go as expected")
