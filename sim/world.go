package sim

import (
	"container/heap"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

type rvEvent = roomversion.Event

// keyID is the signing key ID of every simulated server.
const keyID = "ed25519:sim"

// warmup is how long after the room's creation clients start acting.
const warmup = time.Minute

// drainLimit bounds how long after Duration the run may take to empty the
// network and the queues.
const drainLimit = 24 * time.Hour

// start is the virtual time every run starts at.
var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// item kinds of the event queue.
const (
	kDeliver = iota
	kTick
	kMessage
	kMembership
	kUpdate
	kRewelcome
	kPartStart
	kPartEnd
	kOutStart
	kOutEnd
	kEnd
)

type item struct {
	at   time.Time
	seq  uint64
	kind int
	a, b int
	ev   *rvEvent
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// change is what a modelled commit does to the group.
type change struct {
	add, remove int // client indexes; -1: none
	all         bool
}

// modelCommit is one MLS commit of the model (shared by the commit and
// pending commit events carrying the same ciphertext).
type modelCommit struct {
	parent int // -1: genesis
	epoch  uint64
	roster []uint64 // member client indexes after the commit
	change change
}

func (m *modelCommit) has(c int) bool { return m.roster[c/64]&(1<<(c%64)) != 0 }

// proposal is a commit a client sent (directly or as a pending commit).
type proposal struct {
	ct      int
	kind    string // "commit", "pending", "rewelcome"
	pending *rvEvent
	client  int
	at      time.Time
}

// message is an application message a client sent.
type message struct {
	ev     *rvEvent
	sender int
	ct     int // the model commit it was sent on
}

// World is one simulation run.
type World struct {
	cfg     Config
	ctx     context.Context
	rng     *rand.Rand
	now     time.Time
	end     time.Time
	ended   bool
	version roomversion.Version
	suite   mls.CipherSuite
	roomID  string
	fedAD   []byte // CBOR federation map every commit carries
	powers  []string
	propose []string
	window  time.Duration
	servers []*server
	clients []*client
	queue   itemHeap
	seq     uint64
	create  *rvEvent
	order   []*rvEvent
	err     error

	// network
	base        [][]time.Duration
	lastArrival [][]time.Time
	held        [][][]*rvEvent
	inFlight    int
	heldCount   int
	side        []int
	activePart  int // index of the active partition, -1 none
	parts       []Partition
	outages     []Outage
	waiting     int // waiting pending commits over all servers

	// model MLS
	cts       map[string]int
	commits   []*modelCommit
	proposals []*proposal
	msgs      []*message
	appliedAt map[string]time.Time // commit event -> when its queue applied it
	winIndex  map[string]int       // commit event -> power index whose window it was applied in

	// the "mls" mode
	real           bool
	welcomes       map[int]*mls.MLSMessage // model commit -> its Welcome
	pendingWelcome *mls.MLSMessage
	msgIndex       map[string]int // message event -> index in msgs
	readBits       [][]uint64     // per message, the clients that decrypted it

	stats    counters
	checkDue string
	settled  time.Time // when the last convergence check ran
	checks   []ConvergenceCheck
}

type counters struct {
	rejected        int
	rejectReasons   []string
	softFailed      map[string]int
	ownSoftFailed   int
	refusedEpoch    int
	refusedCommit   int
	notPermitted    int
	busy            int
	noMember        int
	rollbacks       int
	welcomesNeeded  int
	rewelcomed      int
	queueErrors     int
	queueErrSamples []string
}

// New prepares a run of cfg (validated).
func New(ctx context.Context, cfg Config) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &World{cfg: cfg, ctx: ctx, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6d6c736d6f6465)), now: start,
		end: start.Add(cfg.Duration.D()), version: roomversion.V1, suite: mls.X25519AES128GCMSHA256Ed25519,
		roomID: "!sim:" + ServerName(0), window: min(cfg.SecurityWindow.D(), maxWindow), activePart: -1,
		cts: map[string]int{}, appliedAt: map[string]time.Time{}, winIndex: map[string]int{}}
	w.stats.softFailed = map[string]int{}
	w.real = cfg.Mode == "mls"
	w.welcomes, w.msgIndex = map[int]*mls.MLSMessage{}, map[string]int{}
	n := cfg.Servers
	var all []string
	for i := range n {
		all = append(all, ServerName(i))
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	switch cfg.PowersOrder {
	case "reverse":
		slices.Reverse(idx)
	case "random":
		w.rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	}
	for _, i := range idx[:cfg.Powers] {
		w.powers = append(w.powers, ServerName(i))
	}
	w.propose = all
	if cfg.CanPropose == "powers" {
		w.propose = slices.Clone(w.powers)
	}
	m := &fedmap.Map{Federation: fedmap.Federation{Powers: w.powers, Servers: all, CanPropose: w.propose}}
	if cfg.SecurityWindow > 0 {
		m.Security = &fedmap.Security{Window: uint64(cfg.SecurityWindow.D() / time.Second)}
	}
	ad, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("sim: encoding the federation map: %w", err)
	}
	w.fedAD = ad
	for i := range n {
		s := newServer(w, i)
		w.servers = append(w.servers, s)
	}
	for i, s := range w.servers {
		if v, ok := cfg.Network.ClockSkew[fmt.Sprint(i)]; ok {
			s.skew = v.D()
		} else if mx := cfg.Network.ClockSkewMax.D(); mx > 0 {
			s.skew = time.Duration(w.rng.Int64N(int64(2*mx)+1)) - mx
		}
		for range cfg.ClientsPerServer {
			c := &client{w: w, idx: len(w.clients), srv: s, at: -1, staged: -1, history: map[int]bool{}}
			w.clients = append(w.clients, c)
			s.clients = append(s.clients, c)
		}
	}
	if w.real {
		for _, c := range w.clients {
			if err := w.newRealClient(c); err != nil {
				return nil, err
			}
		}
	}
	nt := cfg.Network
	w.side = make([]int, n)
	w.base = make([][]time.Duration, n)
	w.lastArrival = make([][]time.Time, n)
	w.held = make([][][]*rvEvent, n)
	for i := range n {
		w.base[i] = make([]time.Duration, n)
		w.lastArrival[i] = make([]time.Time, n)
		w.held[i] = make([][]*rvEvent, n)
		for j := range n {
			if i != j {
				w.base[i][j] = nt.LatencyMin.D() + time.Duration(w.rng.Int64N(int64(nt.LatencyMax.D()-nt.LatencyMin.D())+1))
			}
		}
	}
	// Scheduled and random partitions and outages.
	w.parts = slices.Clone(nt.Partitions)
	if r := nt.RandomPartitions; r != nil && r.PerDay > 0 {
		at := time.Duration(0)
		for {
			at += w.expoMean(time.Duration(float64(24*time.Hour) / r.PerDay))
			if at >= cfg.Duration.D() {
				break
			}
			var side []int
			for len(side) == 0 || len(side) == n {
				side = side[:0]
				for i := range n {
					if w.rng.IntN(2) == 0 {
						side = append(side, i)
					}
				}
			}
			w.parts = append(w.parts, Partition{At: Duration(at), Length: Duration(max(time.Second, w.expoMean(r.MeanLength.D()))), Side: side})
		}
	}
	w.outages = slices.Clone(nt.Outages)
	if r := nt.RandomOutages; r != nil && r.PerDay > 0 {
		for i := range n {
			at := time.Duration(0)
			for {
				at += w.expoMean(time.Duration(float64(24*time.Hour) / r.PerDay))
				if at >= cfg.Duration.D() {
					break
				}
				w.outages = append(w.outages, Outage{Server: i, At: Duration(at), Length: Duration(max(time.Second, w.expoMean(r.MeanLength.D())))})
			}
		}
	}
	for i, p := range w.parts {
		if p.At.D() < cfg.Duration.D() {
			w.push(start.Add(p.At.D()), kPartStart, i, 0, nil)
			w.push(start.Add(p.At.D()+p.Length.D()), kPartEnd, i, 0, nil)
		}
	}
	for i, o := range w.outages {
		if o.At.D() < cfg.Duration.D() {
			w.push(start.Add(o.At.D()), kOutStart, i, 0, nil)
			w.push(start.Add(o.At.D()+o.Length.D()), kOutEnd, i, 0, nil)
		}
	}
	w.push(w.end, kEnd, 0, 0, nil)
	return w, nil
}

// expoMean draws an exponentially distributed duration of the given mean.
func (w *World) expoMean(mean time.Duration) time.Duration {
	return time.Duration(w.rng.ExpFloat64() * float64(mean))
}

func (w *World) push(at time.Time, kind, a, b int, ev *rvEvent) {
	w.seq++
	heap.Push(&w.queue, &item{at: at, seq: w.seq, kind: kind, a: a, b: b, ev: ev})
}

// pushAction schedules a random client action, unless it falls after the
// clients stop.
func (w *World) pushAction(at time.Time, kind, server int) {
	if at.Before(w.end) {
		w.push(at, kind, server, 0, nil)
	}
}

// derive returns 32 bytes derived from the seed and labels.
func (w *World) derive(labels ...string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "mlsmode sim|%d", w.cfg.Seed)
	for _, l := range labels {
		fmt.Fprintf(h, "|%s", l)
	}
	return h.Sum(nil)
}

// randBytes returns n bytes of the run's random stream.
func (w *World) randBytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := w.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// mlsMessage returns a fake-but-valid MLSMessage (a PrivateMessage whose
// header is right and whose encrypted parts are random bytes): the auth
// rules and state resolution read only the header.
func (w *World) mlsMessage(epoch uint64, ct mls.ContentType, ad []byte) ([]byte, error) {
	pm := &mls.PrivateMessage{GroupID: []byte(w.roomID), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: w.randBytes(28), Ciphertext: w.randBytes(48)}
	return (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS()
}

// newCommit registers a model commit on parent and returns its ID.
func (w *World) newCommit(parent int, ch change) int {
	mc := &modelCommit{parent: parent, change: ch, roster: make([]uint64, (len(w.clients)+63)/64)}
	if parent >= 0 {
		p := w.commits[parent]
		copy(mc.roster, p.roster)
		mc.epoch = p.epoch + 1
	}
	if ch.all {
		for i := range w.clients {
			mc.roster[i/64] |= 1 << (i % 64)
		}
	}
	if ch.add >= 0 {
		mc.roster[ch.add/64] |= 1 << (ch.add % 64)
	}
	if ch.remove >= 0 {
		mc.roster[ch.remove/64] &^= 1 << (ch.remove % 64)
	}
	w.commits = append(w.commits, mc)
	return len(w.commits) - 1
}

// ctOf returns the model commit of a commit or pending commit event.
func (w *World) ctOf(ev *rvEvent) int {
	if ev == nil {
		return -1
	}
	id, ok := w.cts[string(ev.Ciphertext())]
	if !ok {
		return -1
	}
	return id
}

// Run runs the simulation to its end and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	w, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := w.Run(); err != nil {
		return nil, err
	}
	return w.Report()
}

// Run runs the simulation: it creates the room, lets the clients act for
// Duration, then heals everything and runs until nothing is in flight.
func (w *World) Run() error {
	if err := w.setup(); err != nil {
		return err
	}
	for w.queue.Len() > 0 && w.err == nil {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		it := heap.Pop(&w.queue).(*item)
		if it.at.After(w.now) {
			w.now = it.at
		}
		if w.now.Sub(w.end) > drainLimit {
			return fmt.Errorf("sim: the run did not settle within %v after its end", drainLimit)
		}
		w.handle(it)
		if w.checkDue != "" && w.quiet() {
			w.converge(w.checkDue)
			w.checkDue = ""
			w.settled = w.now
		}
	}
	if w.err != nil {
		return w.err
	}
	if w.checkDue != "" {
		w.converge(w.checkDue)
		w.checkDue = ""
		w.settled = w.now
	}
	return nil
}

// fail records the first internal error; the run stops.
func (w *World) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// setup creates the room on s00: the create event and the epoch-0 commit
// adding every client, and schedules the clients' first actions.
func (w *World) setup() error {
	s0 := w.servers[0]
	content, err := w.version.CreateContentJSON(w.suite, true)
	if err != nil {
		return err
	}
	create, err := s0.build(roomversion.EventTypeCreate, new(string), content, nil, nil)
	if err != nil {
		return err
	}
	w.create = create
	if err := s0.accept(create); err != nil {
		return err
	}
	ct := w.newCommit(-1, change{add: -1, remove: -1, all: true})
	var msg []byte
	if w.real {
		msg, err = w.realCreate(w.clients[0])
		w.clients[0].staged = ct
	} else {
		msg, err = w.mlsMessage(0, mls.ContentTypeCommit, w.fedAD)
	}
	if err != nil {
		return err
	}
	w.cts[string(msg)] = ct
	w.takeWelcome(ct)
	w.proposals = append(w.proposals, &proposal{ct: ct, kind: "commit", client: 0, at: w.now})
	c0, err := s0.submit(w.version.CommitType(), new(string), msg, "")
	if err != nil {
		return err
	}
	if err := s0.accept(c0); err != nil {
		return err
	}
	for _, a := range w.cfg.Actions {
		k := map[string]int{"message": kMessage, "membership": kMembership, "update": kUpdate}[a.Kind]
		w.push(start.Add(a.At.D()), k, a.Server, 1, nil)
	}
	for i := range w.servers {
		if w.cfg.MessagesPerHour > 0 {
			w.pushAction(w.now.Add(warmup+w.expoMean(time.Duration(float64(time.Hour)/w.cfg.MessagesPerHour))), kMessage, i)
		}
		if w.cfg.MembershipPerHour > 0 {
			w.pushAction(w.now.Add(warmup+w.expoMean(time.Duration(float64(time.Hour)/w.cfg.MembershipPerHour))), kMembership, i)
		}
	}
	return w.err
}

func (w *World) handle(it *item) {
	switch it.kind {
	case kDeliver:
		w.inFlight--
		from, to := w.servers[it.a], w.servers[it.b]
		if w.blocked(from, to) {
			w.held[it.a][it.b] = append(w.held[it.a][it.b], it.ev)
			w.heldCount++
			return
		}
		if err := to.receive(it.ev, from); err != nil {
			w.fail(err)
		}
	case kTick:
		w.servers[it.a].tick()
	case kMessage, kMembership, kUpdate:
		if w.ended {
			return
		}
		s := w.servers[it.a]
		if s.down == 0 {
			var err error
			switch it.kind {
			case kMessage:
				err = s.sendMessage()
			case kMembership:
				err = s.changeMembership(false)
			case kUpdate:
				err = s.changeMembership(true)
			}
			if err != nil {
				w.fail(err)
			}
		}
		if it.b == 1 {
			return // scripted
		}
		rate := w.cfg.MessagesPerHour
		if it.kind == kMembership {
			rate = w.cfg.MembershipPerHour
		}
		w.pushAction(w.now.Add(w.expoMean(time.Duration(float64(time.Hour)/rate))), it.kind, it.a)
	case kRewelcome:
		if err := w.rewelcome(w.clients[it.a]); err != nil {
			w.fail(err)
		}
	case kPartStart:
		if w.ended {
			return
		}
		w.activePart = it.a
		for i := range w.side {
			w.side[i] = 0
		}
		for _, i := range w.parts[it.a].Side {
			w.side[i] = 1
		}
		// A partition replacing another may open links the other cut.
		w.release()
	case kPartEnd:
		if w.activePart != it.a || w.ended {
			return
		}
		w.heal("partition healed")
	case kOutStart:
		if w.ended {
			return
		}
		w.servers[w.outages[it.a].Server].down++
	case kOutEnd:
		if w.ended {
			return
		}
		s := w.servers[w.outages[it.a].Server]
		s.down--
		if s.down == 0 {
			w.release()
			s.tick()
			w.checkDue = "server back up"
		}
	case kEnd:
		w.ended = true
		for _, s := range w.servers {
			s.down = 0
		}
		w.heal("end of run")
		for _, s := range w.servers {
			s.tick()
		}
	}
}

// heal joins the network again and sends what was held.
func (w *World) heal(why string) {
	w.activePart = -1
	for i := range w.side {
		w.side[i] = 0
	}
	w.release()
	w.checkDue = why
}

// blocked reports whether from cannot reach to now.
func (w *World) blocked(from, to *server) bool {
	return from.down > 0 || to.down > 0 || w.side[from.idx] != w.side[to.idx]
}

// send federates an event from s to every other server (all of them are in
// servers of every commit).
func (w *World) send(from *server, ev *rvEvent) {
	for _, to := range w.servers {
		if to != from {
			w.transmit(from, to, ev)
		}
	}
}

// transmit sends ev on one link: held while the link is blocked, else
// delivered after the link's latency, jitter and retries of lost
// transmissions, in the link's order.
func (w *World) transmit(from, to *server, ev *rvEvent) {
	if w.blocked(from, to) {
		w.held[from.idx][to.idx] = append(w.held[from.idx][to.idx], ev)
		w.heldCount++
		return
	}
	nt := &w.cfg.Network
	d := w.base[from.idx][to.idx]
	if j := nt.Jitter.D(); j > 0 {
		d += w.expoMean(j)
	}
	retry := nt.RetryAfter.D()
	if retry == 0 {
		retry = 10 * time.Second
	}
	for nt.Loss > 0 && w.rng.Float64() < nt.Loss {
		d += retry
	}
	at := w.now.Add(d)
	if last := w.lastArrival[from.idx][to.idx]; at.Before(last) {
		at = last
	}
	w.lastArrival[from.idx][to.idx] = at
	w.inFlight++
	w.push(at, kDeliver, from.idx, to.idx, ev)
}

// release sends what was held on every link that is open again, in order.
func (w *World) release() {
	for i := range w.servers {
		for j := range w.servers {
			q := w.held[i][j]
			if len(q) == 0 || w.blocked(w.servers[i], w.servers[j]) {
				continue
			}
			w.held[i][j] = nil
			w.heldCount -= len(q)
			for _, ev := range q {
				w.transmit(w.servers[i], w.servers[j], ev)
			}
		}
	}
}

// quiet reports whether nothing is in flight, held or waiting in a queue
// and every server is up: then every server holds every event.
func (w *World) quiet() bool {
	if w.inFlight != 0 || w.heldCount != 0 || w.waiting != 0 {
		return false
	}
	for _, s := range w.servers {
		if s.down > 0 {
			return false
		}
	}
	return true
}

// rewelcome has a member add a client that lost its state again (a new
// Welcome), preferring one on the client's own server.
func (w *World) rewelcome(c *client) error {
	if !c.stuck {
		return nil
	}
	if w.ended && w.now.Sub(w.end) > time.Hour {
		return nil
	}
	cands := append(slices.Clone(c.srv.clients), w.clients...)
	for _, p := range cands {
		s := p.srv
		if p == c || !p.ready() || p.staged >= 0 || s.down > 0 || p.at != s.currentCt() || !w.mayCommit(s) {
			continue
		}
		if err := p.propose(change{add: c.idx, remove: -1}, "rewelcome"); err != nil {
			return err
		}
		break
	}
	w.push(w.now.Add(10*time.Minute), kRewelcome, c.idx, 0, nil)
	return nil
}

// takeWelcome files the Welcome of the commit just staged under ct.
func (w *World) takeWelcome(ct int) {
	if w.pendingWelcome != nil {
		w.welcomes[ct] = w.pendingWelcome
		w.pendingWelcome = nil
	}
}

// mayCommit reports whether s's clients may commit (s is powers[0]) or
// propose.
func (w *World) mayCommit(s *server) bool {
	return len(w.powers) > 0 && w.powers[0] == s.name || slices.Contains(w.propose, s.name)
}

// derivedKey returns a server's signing key.
func (w *World) derivedKey(name string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(w.derive("server", name))
}

// percentile returns the nearest-rank percentile p (0-100) of sorted xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}
