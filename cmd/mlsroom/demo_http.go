package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Defaults and bounds of demo --http.
const (
	demoHTTPSpeed    = 60  // server seconds per real second
	demoHTTPMaxSpeed = 600 // above this a request's own latency spans a window
)

// demoHTTPOptions are the flags only demo --http takes.
type demoHTTPOptions struct {
	serverBin string
	speed     float64
	keep      bool // keep the servers' directory after a successful run
}

// demoHTTPFlags checks the flags of demo that belong to --http: they
// need --http, and the clock speed must be in range. It returns the
// options, or the usage error to print.
func demoHTTPFlags(fs *flag.FlagSet, httpMode bool, serverBin string, speed float64, keep bool) (demoHTTPOptions, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !httpMode {
		for _, name := range []string{"server-bin", "clock-speed", "keep"} {
			if set[name] {
				return demoHTTPOptions{}, fmt.Errorf("--%s needs --http", name)
			}
		}
		return demoHTTPOptions{}, nil
	}
	if set["server-bin"] && serverBin == "" {
		return demoHTTPOptions{}, errors.New("--server-bin: empty path")
	}
	if !(speed >= 1 && speed <= demoHTTPMaxSpeed) {
		return demoHTTPOptions{}, fmt.Errorf("--clock-speed %v: must be from 1 to %d", speed, demoHTTPMaxSpeed)
	}
	return demoHTTPOptions{serverBin: serverBin, speed: speed, keep: keep}, nil
}

// httpDemo is one run of the story over three mlsserver processes.
type httpDemo struct {
	ctx    context.Context
	net    *httpNet
	stderr io.Writer // progress while the story runs
	seed   int64
	window uint64
	rng    *rand.Rand
	roomID string
	hc     *http.Client
	// servers and clients, in the order a, b, c.
	servers []string
	users   []*httpUser
	steps   []demoStep
	notes   demoNotes
	// labels names events; events lists every labelled event.
	labels map[string]string
	events map[string]*httpEvent
	msgs   []*httpMessage
	// rollbacks are the rollbacks the demo saw, by member.
	rollbacks map[string]demoReportRollback
}

// httpUser is one user's client and the server it is on.
type httpUser struct {
	name   string
	server string
	c      *client.Client
}

// httpMessage is one message a user sent.
type httpMessage struct {
	label, text, eventID string
	sender               *httpUser
}

// demoHTTP runs the story over three mlsserver processes it starts and
// stops, and reports it as demo does.
func demoHTTP(ctx context.Context, seed int64, window uint64, opts demoHTTPOptions, stderr io.Writer) (rep *demoReport, err error) {
	dir, err := os.MkdirTemp("", "mlsroom-demo-http-")
	if err != nil {
		return nil, err
	}
	keep := opts.keep
	defer func() {
		if keep {
			fmt.Fprintf(stderr, "mlsroom demo: the servers' data dirs and logs are kept in %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	bin, err := buildMLSServer(ctx, opts.serverBin, dir, stderr)
	if err != nil {
		return nil, err
	}
	began := time.Now() // the wall time reported leaves the build out
	names := []string{"a.example", "b.example", "c.example"}
	fmt.Fprintf(stderr, "mlsroom demo: starting %s (mlsserver, SQLite in %s, clock speed %v) ...\n", strings.Join(names, ", "), dir, opts.speed)
	n, err := startHTTPNet(ctx, bin, dir, opts.speed, stderr, names...)
	if err != nil {
		keep = true
		return nil, err
	}
	defer func() {
		if cerr := n.close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			keep = true
		}
	}()
	d := &httpDemo{ctx: ctx, net: n, stderr: stderr, seed: seed, window: window, rng: rand.New(rand.NewPCG(uint64(seed), 0x6d6c73726f6f6d)),
		hc: &http.Client{Timeout: time.Minute}, servers: names, notes: demoNotes{}, labels: map[string]string{},
		events: map[string]*httpEvent{}, rollbacks: map[string]demoReportRollback{}}
	if err := d.story(); err != nil {
		return nil, err
	}
	rep, err = d.report()
	if err != nil {
		return nil, err
	}
	rep.HTTP = &demoReportHTTP{ClockSpeed: opts.speed, Server: bin, WallSeconds: int64(time.Since(began).Seconds())}
	if opts.serverBin == "" {
		rep.HTTP.Server = "built with go build"
	}
	for _, name := range names {
		rep.HTTP.URLs = append(rep.HTTP.URLs, name+" "+n.servers[name].url)
	}
	return rep, nil
}

// logf adds a step to the story at the servers' time.
func (d *httpDemo) logf(format string, args ...any) {
	d.steps = append(d.steps, demoStep{N: len(d.steps) + 1, Time: d.net.now().Format("15:04:05"), Text: d.relabel(fmt.Sprintf(format, args...))})
}

func (d *httpDemo) pick(texts ...string) string { return texts[d.rng.IntN(len(texts))] }

// relabel replaces event IDs by labels.
func (d *httpDemo) relabel(s string) string {
	for id, l := range d.labels {
		s = strings.ReplaceAll(s, id, l)
	}
	return s
}

// name is an event's label ("?" for one the demo has not seen).
func (d *httpDemo) name(id string) string {
	if l, ok := d.labels[id]; ok {
		return l
	}
	return "?"
}

// status is a member's client's view of the room.
func (d *httpDemo) status(u *httpUser) (client.RoomStatus, error) {
	st, err := u.c.Status(d.roomID)
	if err != nil {
		return st, fmt.Errorf("%s: %w", u.name, err)
	}
	return st, nil
}

// syncUntil syncs every client until cond holds, for at most limit of
// real time.
func (d *httpDemo) syncUntil(what string, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %v: %w", what, limit, errDemo)
		}
		if err := d.ctx.Err(); err != nil {
			return err
		}
		for _, u := range d.users {
			if err := u.c.Sync(d.ctx, 100*time.Millisecond); err != nil {
				return fmt.Errorf("%s: %w", u.name, err)
			}
		}
	}
}

// reads reports whether u has decrypted the message with event ID id.
func reads(u *httpUser, roomID, id string) bool {
	return slices.ContainsFunc(u.c.Messages(roomID), func(m client.Message) bool { return m.EventID == id })
}

// verdict reports whether u has decided on a message: read it, or listed
// it as undecryptable.
func (d *httpDemo) verdict(u *httpUser, id string) (bool, error) {
	if reads(u, d.roomID, id) {
		return true, nil
	}
	st, err := d.status(u)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(st.Undecryptable, func(x client.Undecryptable) bool { return x.EventID == id }), nil
}

// say sends a message from u and labels it.
func (d *httpDemo) say(u *httpUser, text string) (*httpMessage, error) {
	id, err := u.c.Send(d.ctx, d.roomID, text)
	if err != nil {
		return nil, fmt.Errorf("%s sending %q: %w", u.name, text, err)
	}
	m := &httpMessage{label: fmt.Sprintf("M%d", len(d.msgs)+1), text: text, eventID: id, sender: u}
	d.msgs = append(d.msgs, m)
	d.labels[id] = m.label
	return m, nil
}

// awaitRead syncs until each reader has read m.
func (d *httpDemo) awaitRead(m *httpMessage, readers ...*httpUser) error {
	return d.syncUntil(fmt.Sprintf("%s reaching %s", m.label, userNames(readers)), 60*time.Second, func() (bool, error) {
		for _, u := range readers {
			if !reads(u, d.roomID, m.eventID) {
				return false, nil
			}
		}
		return true, nil
	})
}

func userNames(us []*httpUser) string {
	var out []string
	for _, u := range us {
		out = append(out, u.name)
	}
	return strings.Join(out, " and ")
}

// awaitCommit syncs until each member's client is at the commit
// commitID.
func (d *httpDemo) awaitCommit(commitID string, us ...*httpUser) error {
	return d.syncUntil(fmt.Sprintf("%s reaching commit %s", userNames(us), d.name(commitID)), 60*time.Second, func() (bool, error) {
		for _, u := range us {
			st, err := d.status(u)
			if err != nil {
				return false, err
			}
			if st.CommitID != commitID {
				return false, nil
			}
		}
		return true, nil
	})
}

// story is the demo's story, told through client/ over HTTP.
func (d *httpDemo) story() error {
	ctx := d.ctx
	a, b, c := d.servers[0], d.servers[1], d.servers[2]
	// 1. Users.
	for _, u := range []struct{ name, server string }{{"alice", a}, {"bob", b}, {"carol", c}} {
		cl, err := client.Register(ctx, client.Config{BaseURL: d.net.servers[u.server].url, HTTP: d.hc, Now: d.net.now, OneTimeKeyPackages: 3},
			u.name, "mlsroom-demo-"+u.name)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", u.name, u.server, err)
		}
		d.users = append(d.users, &httpUser{name: u.name, server: u.server, c: cl})
	}
	alice, bob, carol := d.users[0], d.users[1], d.users[2]
	for _, u := range d.users {
		if err := u.c.Sync(ctx, 0); err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
	}
	d.logf("Three mlsserver processes run on loopback, each with its own SQLite database, federating over HTTPS through link proxies of this demo. alice registers on a.example, bob on b.example, carol on c.example; each client (package client) uploads its device keys, key packages and cross-signing keys.")

	// 2. The room and its epoch-0 commit.
	var err error
	d.roomID, err = alice.c.CreateRoom(ctx, client.RoomOptions{Powers: []string{a, b}, Servers: []string{a, b, c},
		CanPropose: []string{a, b, c}, Window: time.Duration(d.window) * time.Second})
	if err != nil {
		return fmt.Errorf("alice creating the room: %w", err)
	}
	if err := d.scan(); err != nil {
		return err
	}
	st, err := d.status(alice)
	if err != nil {
		return err
	}
	d.notes[d.name(st.CommitID)] = "alice's epoch-0 commit: the room's federation map"
	d.logf("alice creates room %s on a.example (room version %s): the server sends only the create event; her client makes the MLS group and sends the epoch-0 commit %s, whose authenticated data holds the federation map: powers %s, servers %s, can_propose %s, security.window %ds, required_verification %s. It returns once the commit is back in /sync.",
		d.roomID, roomversion.V1, st.CommitID, demoList(st.Powers), demoList(st.Servers), demoList(st.CanPropose), d.window, st.RequiredVerification)

	// 3. bob and carol, verified, then added.
	for _, j := range []*httpUser{bob, carol} {
		own, err := j.c.MasterKey(ctx, j.c.UserID())
		if err != nil {
			return fmt.Errorf("%s reading the own master key: %w", j.name, err)
		}
		seen, err := alice.c.MasterKey(ctx, j.c.UserID())
		if err != nil {
			return fmt.Errorf("alice reading %s's master key: %w", j.name, err)
		}
		if err := alice.c.VerifyUser(ctx, j.c.UserID(), own); err != nil {
			return fmt.Errorf("alice verifying %s: %w", j.name, err)
		}
		if err := alice.c.Invite(ctx, d.roomID, j.c.UserID()); err != nil {
			return fmt.Errorf("alice adding %s: %w", j.name, err)
		}
		if err := j.c.Join(ctx, d.roomID); err != nil {
			return fmt.Errorf("%s joining: %w", j.name, err)
		}
		ast, err := d.status(alice)
		if err != nil {
			return err
		}
		jst, err := d.status(j)
		if err != nil {
			return err
		}
		if err := d.scan(); err != nil {
			return err
		}
		d.notes[d.name(ast.CommitID)] = "alice adds " + j.name
		same := "the same"
		if seen != own {
			same = "NOT the same: " + seen
		}
		d.logf("The room is m.cross: alice may add only users she verified. She compares %s's master key %s (as %s's own device shows it) with what a.example fetched from %s: %s. She signs it with her user-signing key, claims %s's key package through %s and commits %s adding %s; once a.example accepts it, she sends the Welcome to %s's device and invites %s. %s's client joins at epoch %d, at commit %s.",
			j.name, fingerprint(own), j.name, j.server, same, j.name, j.server, ast.CommitID, j.name, j.name, j.name, j.name, jst.Epoch, jst.CommitID)
	}

	// 4. Messages.
	var said []string
	for _, m := range []struct {
		who   *httpUser
		texts []string
	}{
		{alice, []string{"Welcome, both of you.", "Good morning, team.", "Hello from a.example!"}},
		{bob, []string{"Hi alice, hi carol.", "Morning! Reading you fine.", "Hello from b.example."}},
		{carol, []string{"Hello! Shall we name the room?", "Hi all. This room needs a name.", "Morning. Can I name the room?"}},
	} {
		msg, err := d.say(m.who, d.pick(m.texts...))
		if err != nil {
			return err
		}
		var others []*httpUser
		for _, u := range d.users {
			if u != m.who {
				others = append(others, u)
			}
		}
		if err := d.awaitRead(msg, others...); err != nil {
			return err
		}
		said = append(said, fmt.Sprintf("%s %s %q", msg.label, m.who.name, msg.text))
	}
	st, err = d.status(alice)
	if err != nil {
		return err
	}
	d.logf("Messages in epoch %d, each an m.room.encrypted event that reaches the other two servers and their users' /sync: %s", st.Epoch, strings.Join(said, "; "))

	// 5. carol's pending commit, applied by a.
	name1 := d.pick("Field notes", "Project Kestrel", "Harbour team")
	if err := carol.c.SetState(ctx, d.roomID, "m.room.name", "", map[string]string{"name": name1}); err != nil {
		return fmt.Errorf("carol naming the room: %w", err)
	}
	cst, err := d.status(carol)
	if err != nil {
		return err
	}
	if err := d.awaitCommit(cst.CommitID, alice, bob); err != nil {
		return err
	}
	if err := d.scan(); err != nil {
		return err
	}
	p3 := d.pendingFor(cst.CommitID)
	if p3 == nil {
		return fmt.Errorf("no pending commit of carol's was applied as %s: %w", d.name(cst.CommitID), errDemo)
	}
	d.notes[d.name(cst.CommitID)] = fmt.Sprintf("carol names the room %q (pending commit %s, applied by %s)", name1, p3.label, d.events[cst.CommitID].origin)
	d.logf("carol names the room %q: her client commits the change to the room state (GroupContext extension 0xF6D0) and, as c.example is not powers[0], sends it as the pending commit %s; c.example sends it to a.example and b.example, and each queues it with its windows. a.example (powers index 0) applies it at once as m.mls.commit %s with the same ciphertext; carol merges her commit when it comes back, alice and bob process it: everyone is at epoch %d with room name %q.",
		name1, p3.label, cst.CommitID, cst.Epoch, cst.Name)

	// 6. The partition.
	d.net.split([]string{a}, []string{b, c})
	d.logf("The network splits: this demo's link proxies cut a.example from b.example and c.example, both ways (b and c still reach each other). Nothing tells the servers; events for the other side wait in their outbound queues.")
	topic := d.pick("Keys rotated", "Weekly notes", "Agenda for Monday")
	if err := alice.c.SetState(ctx, d.roomID, "m.room.topic", "", map[string]string{"topic": topic}); err != nil {
		return fmt.Errorf("alice committing during the partition: %w", err)
	}
	ast, err := d.status(alice)
	if err != nil {
		return err
	}
	c4a := ast.CommitID
	if err := d.scan(); err != nil {
		return err
	}
	d.notes[d.name(c4a)] = fmt.Sprintf("alice sets the topic %q", topic)
	d.logf("alice sets the room topic %q: commit %s for epoch %d. a.example is powers[0], so it accepts the commit directly; alice merges it and is at epoch %d.",
		topic, c4a, ast.Epoch-1, ast.Epoch)
	m4, err := d.say(alice, d.pick("Is anyone still there?", "Hello? It has gone quiet.", "Anyone around?"))
	if err != nil {
		return err
	}
	m5, err := d.say(bob, d.pick("a.example seems to be down.", "I cannot reach alice's server.", "Is a.example offline?"))
	if err != nil {
		return err
	}
	if err := d.awaitRead(m5, carol); err != nil {
		return err
	}
	bst, err := d.status(bob)
	if err != nil {
		return err
	}
	d.logf("alice writes %s %q in epoch %d; on the other side bob writes %s %q, still in epoch %d, which carol reads.",
		m4.label, m4.text, ast.Epoch, m5.label, m5.text, bst.Epoch)
	name2 := d.pick("Plan B", "Kestrel (b-side)", "Harbour backup")
	sent := d.net.now()
	fmt.Fprintf(d.stderr, "mlsroom demo: the network is split; bob's pending commit waits for b.example's window (5 server minutes, %v) ...\n",
		(time.Duration(float64(5*time.Minute) / d.net.speed)).Round(time.Second))
	if err := bob.c.SetState(ctx, d.roomID, "m.room.name", "", map[string]string{"name": name2}); err != nil {
		return fmt.Errorf("bob renaming the room during the partition: %w", err)
	}
	bst, err = d.status(bob)
	if err != nil {
		return err
	}
	c4b := bst.CommitID
	if err := d.awaitCommit(c4b, carol); err != nil {
		return err
	}
	if err := d.scan(); err != nil {
		return err
	}
	p4 := d.pendingFor(c4b)
	if p4 == nil {
		return fmt.Errorf("no pending commit of bob's was applied as %s: %w", d.name(c4b), errDemo)
	}
	for _, id := range []string{p4.id, c4b} {
		var ev struct{}
		if code, err := d.get(a, d.roomPath("/event/"+url.PathEscape(id)), &ev); err != nil || code != http.StatusNotFound {
			return fmt.Errorf("a.example knows %s during the partition (status %d, %v): %w", d.name(id), code, err, errDemo)
		}
	}
	ev4b := d.events[c4b]
	d.notes[d.name(c4b)] = fmt.Sprintf("bob renames the room %q (pending commit %s, applied by %s)", name2, p4.label, ev4b.origin)
	d.logf("bob renames the room %q: his client sends the pending commit %s for epoch %d at %s; b.example sends it to c.example; a.example does not get it (asked now, its /event answers 404 for %s and %s). a.example's window passes with no commit from it; at %s (%s after the pending commit), in its own window (powers index %d), b.example applies it as %s, for the same epoch %d as alice's %s. bob's SetState returns; bob merges it, carol processes it: both are at epoch %d, with room name %q.",
		name2, p4.label, p4.epoch, sent.Format("15:04:05"), p4.label, c4b, ev4b.ts.Format("15:04:05"), ev4b.ts.Sub(p4.ts).Round(time.Second),
		powerIndexIn(st.Powers, ev4b.origin), c4b, ev4b.epoch, c4a, bst.Epoch, bst.Name)
	m6, err := d.say(carol, d.pick("Carrying on without a.example.", "We are on our own for now.", "Let's keep going here."))
	if err != nil {
		return err
	}
	m7, err := d.say(bob, d.pick("Agreed, b-side notes go here.", "Fine by me.", "Noted."))
	if err != nil {
		return err
	}
	if err := d.awaitRead(m6, bob); err != nil {
		return err
	}
	if err := d.awaitRead(m7, carol); err != nil {
		return err
	}
	d.logf("On the b side, carol writes %s %q and bob %s %q, both in epoch %d after %s.", m6.label, m6.text, m7.label, m7.text, bst.Epoch, c4b)

	// 7. The healing.
	d.net.heal()
	healed := d.net.now()
	fmt.Fprintf(d.stderr, "mlsroom demo: the network heals; waiting for the servers' outbound queues and the clients ...\n")
	err = d.syncUntil("the servers and clients settling after the heal", 90*time.Second, func() (bool, error) {
		for _, s := range d.servers {
			cur, err := d.currentCommit(s)
			if err != nil {
				return false, err
			}
			if cur != c4a {
				return false, nil
			}
		}
		for _, u := range []*httpUser{bob, carol} {
			s, err := d.status(u)
			if err != nil {
				return false, err
			}
			if s.NeedsWelcome == "" && s.CommitID != c4a {
				return false, nil
			}
			if s.Rollbacks > 0 {
				if _, ok := d.rollbacks[u.name]; !ok {
					d.rollbacks[u.name] = demoReportRollback{Member: u.name, From: d.name(c4b), Back: d.name(cst.CommitID), To: d.name(c4a),
						ElapsedSeconds: int64(d.net.now().Sub(ev4b.ts).Seconds()), Window: d.window}
				}
			}
		}
		for _, m := range []*httpMessage{m6, m7} {
			if ok, err := d.verdict(alice, m.eventID); err != nil || !ok {
				return false, err
			}
		}
		for _, u := range []*httpUser{bob, carol} {
			if ok, err := d.verdict(u, m4.eventID); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if err := d.scan(); err != nil {
		return err
	}
	var parts []string
	for _, s := range d.servers {
		cur, err := d.currentCommit(s)
		if err != nil {
			return err
		}
		part := fmt.Sprintf("%s is at %s", s, d.name(cur))
		sf, err := d.softFailed(s)
		if err != nil {
			return err
		}
		var l []string
		for _, x := range sf {
			l = append(l, fmt.Sprintf("%s (case %s)", x.Event, x.Case))
		}
		if len(l) > 0 {
			part += ", soft-failing " + strings.Join(l, ", ")
		}
		parts = append(parts, part)
	}
	d.logf("The network heals; the outbound queues send what they held, both ways (%s of server time after the heal until every server and client settled). State resolution picks %s (a.example, powers index 0) over %s (b.example, powers index 1) at the fork after %s: %s.",
		d.net.now().Sub(healed).Round(time.Second), c4a, c4b, cst.CommitID, strings.Join(parts, "; "))
	for _, u := range []*httpUser{bob, carol} {
		s, err := d.status(u)
		if err != nil {
			return err
		}
		switch rb, ok := d.rollbacks[u.name]; {
		case ok:
			d.logf("%s's client gets %s, for epoch %d which it had left on %s. It kept the state of %s, within security.window %ds: it rolls back to it and processes %s (epoch %d, room name %q).",
				u.name, c4a, d.events[c4a].epoch, rb.From, rb.Back, d.window, c4a, s.Epoch, s.Name)
		case s.NeedsWelcome != "":
			d.logf("%s's client gets %s but cannot follow: %s; it needs a new Welcome.", u.name, c4a, s.NeedsWelcome)
		default:
			return fmt.Errorf("%s neither rolled back nor lost the room: %w", u.name, errDemo)
		}
	}
	m8, err := d.say(alice, d.pick("Back online. What did I miss?", "Sorry, my server was cut off.", "I'm back."))
	if err != nil {
		return err
	}
	err = d.syncUntil(m8.label+" reaching bob and carol", 60*time.Second, func() (bool, error) {
		for _, u := range []*httpUser{bob, carol} {
			if ok, err := d.verdict(u, m8.eventID); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	var readers []string
	for _, u := range []*httpUser{bob, carol} {
		if reads(u, d.roomID, m8.eventID) {
			readers = append(readers, u.name)
		}
	}
	who := "nobody else can read it"
	if len(readers) > 0 {
		who = strings.Join(readers, " and ") + " read it"
	}
	d.logf("alice writes %s %q in epoch %d on %s: %s.", m8.label, m8.text, ast.Epoch, c4a, who)
	return d.scan()
}

// fingerprint shortens a master key for the transcript.
func fingerprint(key string) string {
	if len(key) > 12 {
		return key[:12] + "…"
	}
	return key
}

func powerIndexIn(powers []string, server string) int { return slices.Index(powers, server) }

// get is a GET of the client-server API on server as its user.
func (d *httpDemo) get(server, path string, out any) (int, error) {
	var u *httpUser
	for _, x := range d.users {
		if x.server == server {
			u = x
		}
	}
	req, err := http.NewRequestWithContext(d.ctx, "GET", d.net.servers[server].url+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+u.c.AccessToken())
	res, err := d.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: GET %s: %w", server, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return res.StatusCode, fmt.Errorf("%s: GET %s: %w", server, path, err)
	}
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return res.StatusCode, fmt.Errorf("%s: GET %s: %w", server, path, err)
	}
	return res.StatusCode, nil
}

func (d *httpDemo) roomPath(rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(d.roomID) + rest
}

// currentCommit returns a server's current commit.
func (d *httpDemo) currentCommit(server string) (string, error) {
	var ev struct {
		EventID string `json:"event_id"`
	}
	code, err := d.get(server, d.roomPath("/state/"+roomversion.V1.CommitType()+"/?format=event"), &ev)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK || ev.EventID == "" {
		return "", fmt.Errorf("%s: no current commit (status %d)", server, code)
	}
	return ev.EventID, nil
}
