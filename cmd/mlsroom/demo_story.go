package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// demoStart is the virtual time the story starts at.
func demoStart() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }

// demoStep is one numbered step of the story.
type demoStep struct {
	N    int    `json:"n"`
	Time string `json:"time"`
	Text string `json:"text"`
}

// demoMessage is one message a client sent.
type demoMessage struct {
	label  string
	sender *demoClient
	text   string
	epoch  uint64
	commit string // label of its auth commit
	ev     *roomversion.Event
}

// messageText returns the text the demo sent in a message event.
func (w *demoWorld) messageText(ev *roomversion.Event) string {
	for _, m := range w.msgs {
		if m.ev != nil && m.ev.EventID() == ev.EventID() {
			return m.text
		}
	}
	return ""
}

// relabel replaces the event IDs in a text by their labels.
func (w *demoWorld) relabel(s string) string {
	for _, ev := range w.order {
		if l, ok := w.labels[ev.EventID()]; ok {
			s = strings.ReplaceAll(s, ev.EventID(), l)
		}
	}
	return s
}

// logf adds a step to the story at the current virtual time.
func (w *demoWorld) logf(format string, args ...any) {
	w.steps = append(w.steps, demoStep{N: len(w.steps) + 1, Time: w.clock.Now().Format("15:04:05"), Text: fmt.Sprintf(format, args...)})
}

// pick returns one of the texts, chosen by the seed.
func (w *demoWorld) pick(texts ...string) string { return texts[w.rng.IntN(len(texts))] }

// demoNotes says what each commit did, by label, for the chain.
type demoNotes map[string]string

// simulateDemo runs the story and returns the world it leaves; the caller
// closes it.
func simulateDemo(ctx context.Context, seed int64, window uint64) (w *demoWorld, notes demoNotes, err error) {
	w = &demoWorld{ctx: ctx, seed: seed, window: window, rng: rand.New(rand.NewPCG(uint64(seed), 0x6d6c73726f6f6d)),
		clock: commitqueue.NewFakeClock(demoStart()), version: roomversion.V1, suite: mls.X25519AES128GCMSHA256Ed25519,
		roomID: "!demo:a.example", side: map[string]int{}, labels: map[string]string{}, byLabel: map[string]*roomversion.Event{}}
	w.fed = fedmap.Map{Federation: fedmap.Federation{Powers: []string{"a.example", "b.example"},
		Servers: []string{"a.example", "b.example", "c.example"}, CanPropose: []string{"a.example", "b.example", "c.example"}},
		Security: &fedmap.Security{Window: window}}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	for _, name := range []string{"a.example", "b.example", "c.example"} {
		s, err := newDemoServer(w, name)
		if err != nil {
			return nil, nil, err
		}
		w.servers = append(w.servers, s)
	}
	a, b, c := w.servers[0], w.servers[1], w.servers[2]
	alice, err := newDemoClient(w, "alice", a)
	if err != nil {
		return nil, nil, err
	}
	bob, err := newDemoClient(w, "bob", b)
	if err != nil {
		return nil, nil, err
	}
	carol, err := newDemoClient(w, "carol", c)
	if err != nil {
		return nil, nil, err
	}
	notes = demoNotes{}
	if err := w.story(a, b, c, alice, bob, carol, notes); err != nil {
		return nil, nil, err
	}
	return w, notes, nil
}

// close closes the servers' storage.
func (w *demoWorld) close() error {
	var errs []error
	for _, s := range w.servers {
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: closing storage: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// story is the demo: create, first commit, joins, messages, a pending
// commit, a partition with a commit on each side, the healing.
func (w *demoWorld) story(a, b, c *demoServer, alice, bob, carol *demoClient, notes demoNotes) error {
	// 1. The room.
	content, err := w.version.CreateContentJSON(w.suite, true)
	if err != nil {
		return err
	}
	create, err := a.build(roomversion.EventTypeCreate, new(string), content, nil, nil)
	if err != nil {
		return err
	}
	w.label(create, "create")
	if err := a.accept(create); err != nil {
		return err
	}
	if err := alice.create(); err != nil {
		return err
	}
	w.logf("a.example creates room %s (room version %s, MLS cipher suite %d). The server sends only the create event; alice's client makes the MLS group (epoch 0) on her device.",
		w.roomID, w.version, uint16(w.suite))
	if err := w.wait(2, 6); err != nil {
		return err
	}

	// 2. The epoch-0 commit.
	c0, _, err := alice.commit(nil)
	if err != nil {
		return err
	}
	if alice.commitID != c0.EventID() {
		return fmt.Errorf("alice did not merge her epoch-0 commit: %w", errDemo)
	}
	notes[w.name(c0.EventID())] = "alice's epoch-0 commit: the room's federation map"
	w.logf("alice sends the epoch-0 commit %s as m.mls.commit; its authenticated data holds the federation map: powers %s, servers %s, can_propose %s, security.window %ds. a.example accepts it and sends it to b.example and c.example, which fetch the create event; alice merges it once it is accepted.",
		w.name(c0.EventID()), demoList(w.fed.Federation.Powers), demoList(w.fed.Federation.Servers), demoList(w.fed.Federation.CanPropose), w.window)
	if err := w.wait(5, 20); err != nil {
		return err
	}

	// 3. Members on the other servers join by Welcome.
	for _, joiner := range []*demoClient{bob, carol} {
		ev, sc, err := alice.commit([]*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *joiner.kp}}})
		if err != nil {
			return err
		}
		if sc.Welcome == nil {
			return fmt.Errorf("alice's commit adding %s has no Welcome: %w", joiner.name, errDemo)
		}
		if err := joiner.join(sc.Welcome); err != nil {
			return err
		}
		notes[w.name(ev.EventID())] = "alice adds " + joiner.name
		w.logf("alice claims a key package of %s (%s) and commits %s adding %s; once a.example accepts it, she sends the Welcome to %s's device, which joins the group at epoch %d, at commit %s.",
			joiner.name, joiner.userID, w.name(ev.EventID()), joiner.name, joiner.name, joiner.group.Epoch(), w.name(joiner.commitID))
		if err := w.wait(5, 30); err != nil {
			return err
		}
	}

	// 4. Messages.
	var said []string
	for _, m := range []struct {
		who   *demoClient
		texts []string
	}{
		{alice, []string{"Welcome, both of you.", "Good morning, team.", "Hello from a.example!"}},
		{bob, []string{"Hi alice, hi carol.", "Morning! Reading you fine.", "Hello from b.example."}},
		{carol, []string{"Hello! Shall we name the room?", "Hi all. This room needs a name.", "Morning. Can I name the room?"}},
	} {
		msg, err := m.who.say(w.pick(m.texts...))
		if err != nil {
			return err
		}
		said = append(said, fmt.Sprintf("%s %s %q", msg.label, m.who.name, msg.text))
		if err := w.wait(3, 20); err != nil {
			return err
		}
	}
	w.logf("Messages in epoch %d, each an m.room.encrypted event sent to the other two servers, which pass it to their users: %s", alice.group.Epoch(), strings.Join(said, "; "))

	// 5. A pending commit from c, applied by a in its window.
	name1 := w.pick("Field notes", "Project Kestrel", "Harbour team")
	prop, err := carol.roomNameProposal(name1)
	if err != nil {
		return err
	}
	p3, _, err := carol.commit([]*mls.Proposal{prop})
	if err != nil {
		return err
	}
	w.logf("carol names the room %q: her client commits the change to the room state (GroupContext extension 0xF6D0) and, as c.example is not in powers, sends it as the pending commit %s to all three servers; each queues it with its windows (a.example: index 0, b.example: index 1).",
		name1, w.name(p3.EventID()))
	if err := w.tick(); err != nil {
		return err
	}
	ap, err := w.appliedOf(p3)
	if err != nil {
		return err
	}
	notes[w.name(ap.commit.EventID())] = fmt.Sprintf("carol names the room %q (pending commit %s, applied by %s)", name1, w.name(p3.EventID()), ap.server.name)
	w.logf("a.example's window for %s is open (%s): it applies it at once, sending m.mls.commit %s with the same ciphertext. carol merges her commit when it comes back; alice and bob process it. Everyone is at epoch %d and sees the room name %q.",
		w.name(p3.EventID()), ap.window(ap.windowIndex), w.name(ap.commit.EventID()), carol.group.Epoch(), carol.roomName())
	if bob.roomName() != name1 || alice.roomName() != name1 {
		return fmt.Errorf("the room name did not reach every member: %w", errDemo)
	}
	if err := w.wait(10, 40); err != nil {
		return err
	}

	// 6. The partition.
	w.partition(map[string]int{"a.example": 1, "b.example": 2, "c.example": 2})
	w.logf("The network splits: a.example can no longer reach b.example and c.example (b and c still reach each other). Nothing tells the servers; events for the other side wait in the senders' queues.")
	if err := w.wait(5, 20); err != nil {
		return err
	}
	c4a, _, err := alice.commit(nil)
	if err != nil {
		return err
	}
	notes[w.name(c4a.EventID())] = "alice updates her keys"
	w.logf("alice updates her keys: commit %s for epoch %d. a.example is powers[0], so it accepts the commit directly; alice merges it and is at epoch %d.",
		w.name(c4a.EventID()), c4a.Epoch(), alice.group.Epoch())
	if err := w.wait(5, 20); err != nil {
		return err
	}
	m4, err := alice.say(w.pick("Is anyone still there?", "Hello? It has gone quiet.", "Anyone around?"))
	if err != nil {
		return err
	}
	if err := w.wait(5, 20); err != nil {
		return err
	}
	m5, err := bob.say(w.pick("a.example seems to be down.", "I cannot reach alice's server.", "Is a.example offline?"))
	if err != nil {
		return err
	}
	w.logf("alice writes %s %q in epoch %d; on the other side bob writes %s %q, still in epoch %d, which carol reads.",
		m4.label, m4.text, m4.epoch, m5.label, m5.text, m5.epoch)
	if err := w.wait(5, 20); err != nil {
		return err
	}
	name2 := w.pick("Plan B", "Kestrel (b-side)", "Harbour backup")
	prop, err = bob.roomNameProposal(name2)
	if err != nil {
		return err
	}
	p4, _, err := bob.commit([]*mls.Proposal{prop})
	if err != nil {
		return err
	}
	w.logf("bob renames the room %q: pending commit %s for epoch %d, to b.example and c.example; a.example does not get it.",
		name2, w.name(p4.EventID()), p4.Epoch())
	// The virtual clock moves in steps of 15 s through a.example's window
	// (which passes unseen: a.example never got P4b) into b.example's.
	for end := w.clock.Now().Add(15 * time.Minute); w.clock.Now().Before(end); {
		if _, err := w.appliedOf(p4); err == nil {
			break
		}
		if err := w.run(15*time.Second, 15*time.Second); err != nil {
			return err
		}
	}
	bp, err := w.appliedOf(p4)
	if err != nil {
		return err
	}
	notes[w.name(bp.commit.EventID())] = fmt.Sprintf("bob renames the room %q (pending commit %s, applied by %s)", name2, w.name(p4.EventID()), bp.server.name)
	w.logf("a.example's window for %s (%s) and the grace period after it pass with no commit from a.example. At %s, in its own window (powers index %d, %s), b.example applies it as %s, for the same epoch %d as alice's %s. bob merges it, carol processes it: both are at epoch %d, with room name %q.",
		w.name(p4.EventID()), bp.window(0), bp.at.Format("15:04:05"), bp.windowIndex, bp.window(bp.windowIndex),
		w.name(bp.commit.EventID()), bp.commit.Epoch(), w.name(c4a.EventID()), bob.group.Epoch(), bob.roomName())
	if err := w.wait(5, 30); err != nil {
		return err
	}
	m6, err := carol.say(w.pick("Carrying on without a.example.", "We are on our own for now.", "Let's keep going here."))
	if err != nil {
		return err
	}
	if err := w.wait(5, 30); err != nil {
		return err
	}
	m7, err := bob.say(w.pick("Agreed, b-side notes go here.", "Fine by me.", "Noted."))
	if err != nil {
		return err
	}
	w.logf("On the b side, carol writes %s %q and bob %s %q, both in epoch %d after %s.", m6.label, m6.text, m7.label, m7.text, m6.epoch, w.name(bp.commit.EventID()))
	if err := w.wait(30, 150); err != nil {
		return err
	}

	// 7. The healing.
	nSoft := map[*demoServer]int{}
	for _, s := range w.servers {
		nSoft[s] = len(s.softFailed)
	}
	if err := w.heal(); err != nil {
		return err
	}
	var parts []string
	for _, s := range w.servers {
		var sf []string
		for _, x := range s.softFailed[nSoft[s]:] {
			sf = append(sf, fmt.Sprintf("%s (case %s)", w.name(x.ev.EventID()), x.kase))
		}
		part := fmt.Sprintf("%s is at %s", s.name, w.name(s.current().EventID()))
		if len(sf) > 0 {
			part += ", soft-failing " + strings.Join(sf, ", ")
		}
		parts = append(parts, part)
	}
	w.logf("The network heals and the held events flow both ways. State resolution picks %s (a.example, powers index 0) over %s (b.example, powers index 1) at the fork after %s: %s.",
		w.name(c4a.EventID()), w.name(bp.commit.EventID()), w.name(ap.commit.EventID()), strings.Join(parts, "; "))
	for _, s := range w.servers {
		if s.current().EventID() != c4a.EventID() {
			return fmt.Errorf("%s resolved to %s, not %s: %w", s.name, w.name(s.current().EventID()), w.name(c4a.EventID()), errDemo)
		}
	}
	for _, cl := range []*demoClient{bob, carol} {
		switch {
		case len(cl.rollbacks) > 0:
			rb := cl.rollbacks[len(cl.rollbacks)-1]
			w.logf("%s's client gets %s, which builds on %s, not on its %s. It left %s %s ago, within security.window %ds, so it kept that state: it rolls back to it and processes %s (epoch %d, room name %q).",
				cl.name, rb.To, rb.Back, rb.From, rb.Back, rb.Elapsed, rb.Window, rb.To, cl.group.Epoch(), cl.roomName())
		case cl.stuck != "":
			w.logf("%s's client gets %s but cannot follow: %s.", cl.name, w.name(c4a.EventID()), cl.stuck)
		default:
			return fmt.Errorf("%s neither rolled back nor lost the room: %w", cl.name, errDemo)
		}
	}
	if err := w.wait(5, 20); err != nil {
		return err
	}
	m8, err := alice.say(w.pick("Back online. What did I miss?", "Sorry, my server was cut off.", "I'm back."))
	if err != nil {
		return err
	}
	var readers []string
	for _, cl := range []*demoClient{bob, carol} {
		if cl.results[m8.label].decrypted {
			readers = append(readers, cl.name)
		}
	}
	who := "nobody else can read it"
	if len(readers) > 0 {
		who = strings.Join(readers, " and ") + " read it"
	}
	w.logf("alice writes %s %q in epoch %d on %s: %s.", m8.label, m8.text, m8.epoch, w.name(c4a.EventID()), who)
	// Let the queues settle (stale and expired pending commits).
	return w.run(15*time.Minute, time.Minute)
}

// appliedOf returns the record of the server that applied a pending
// commit.
func (w *demoWorld) appliedOf(p *roomversion.Event) (demoApplied, error) {
	for _, ap := range w.applied {
		if ap.pending.EventID() == p.EventID() {
			return ap, nil
		}
	}
	return demoApplied{}, fmt.Errorf("no server applied %s: %w", w.name(p.EventID()), errDemo)
}

// demoList formats a server list.
func demoList(l []string) string { return "[" + strings.Join(l, ", ") + "]" }
