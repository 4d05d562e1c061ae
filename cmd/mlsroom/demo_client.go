package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
)

// maxWindow is the clamp clients apply to security.window (SPEC-NOTES §3).
const maxWindow = 7 * 24 * 60 * 60

// demoClient is one user's device: a real MLS group member that sends
// through its homeserver and gets the room's events from it.
type demoClient struct {
	w      *demoWorld
	name   string
	userID string
	srv    *demoServer
	signer *mls.Signer
	kp     *mls.KeyPackage
	kpSec  *mls.KeyPackageSecrets
	group  *mls.Group // nil until joined
	// commitID is the commit event the MLS state is at; window the
	// security.window of that commit.
	commitID string
	window   uint64
	// staged is this client's own commit, sent and not yet back.
	staged     *mls.StagedCommit
	stagedWire []byte
	sent       map[string]bool // ciphertexts of its own messages
	// kept holds the states from before each commit merged within the
	// security window, oldest first, for rolling back.
	kept []demoKept
	// stuck says why the client lost the room (it needs a new Welcome).
	stuck      string
	rollbacks  []demoRollback
	results    map[string]demoResult // by message label
	lastCommit string                // label of the last commit the client applied
}

type demoKept struct {
	commitID string
	state    []byte
	since    time.Time // when the client left commitID
}

type demoRollback struct {
	From, To, Back string
	Elapsed        time.Duration
	Window         uint64
	At             time.Time
}

// demoResult is what a client made of one message.
type demoResult struct {
	decrypted bool
	lostFork  bool // delivered flagged as lost to a fork
}

func newDemoClient(w *demoWorld, name string, srv *demoServer) (*demoClient, error) {
	c := &demoClient{w: w, name: name, userID: "@" + name + ":" + srv.name, srv: srv, sent: map[string]bool{}, results: map[string]demoResult{}}
	var err error
	if c.signer, err = mls.NewSigner(w.suite, w.derive("mls signature key", name)); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: c.userID, DeviceID: "DEMO", SignatureKey: c.signer.PublicKey()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.kp, c.kpSec, err = mls.NewKeyPackage(mls.KeyPackageParams{Signer: c.signer, Credential: cred, Capabilities: client.Capabilities(), Now: w.clock.Now})
	if err != nil {
		return nil, fmt.Errorf("%s: key package: %w", name, err)
	}
	srv.clients = append(srv.clients, c)
	w.clients = append(w.clients, c)
	return c, nil
}

func (c *demoClient) config() mls.GroupConfig { return mls.GroupConfig{Now: c.w.clock.Now} }

// create makes the MLS group of the room (epoch 0), with the room-state
// capability required of every member.
func (c *demoClient) create() error {
	rc, err := client.RequiredCapabilities()
	if err != nil {
		return err
	}
	cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: c.userID, DeviceID: "DEMO", SignatureKey: c.signer.PublicKey()})
	if err != nil {
		return err
	}
	c.group, err = mls.CreateGroup(mls.CreateParams{GroupID: []byte(c.w.roomID), Signer: c.signer, Credential: cred,
		Capabilities: client.Capabilities(), Extensions: mls.Extensions{rc}, Config: c.config()})
	if err != nil {
		return fmt.Errorf("%s: creating the MLS group: %w", c.name, err)
	}
	return nil
}

// join joins from a Welcome at the commit its server holds as current.
func (c *demoClient) join(welcome *mls.MLSMessage) error {
	g, err := mls.JoinFromWelcome(welcome.Welcome, mls.JoinParams{KeyPackage: c.kp, Secrets: c.kpSec, Signer: c.signer, Config: c.config()})
	if err != nil {
		return fmt.Errorf("%s: joining from the Welcome: %w", c.name, err)
	}
	cur := c.srv.current()
	if cur == nil || cur.Epoch()+1 != g.Epoch() {
		return fmt.Errorf("%s: joined epoch %d, but %s's current commit does not lead there: %w", c.name, g.Epoch(), c.srv.name, errDemo)
	}
	c.group, c.commitID, c.lastCommit = g, cur.EventID(), c.w.name(cur.EventID())
	c.window = windowOf(cur)
	return nil
}

// windowOf returns a commit's security.window, clamped.
func windowOf(commit *roomversion.Event) uint64 {
	fm, err := commit.FederationMap()
	if err != nil {
		return 0
	}
	return min(fm.Window(), maxWindow)
}

// commit stages a commit of proposals carrying the room's federation map
// and sends it: as m.mls.commit from the server at powers[0], as a pending
// commit from elsewhere. It is merged when it comes back accepted.
func (c *demoClient) commit(props []*mls.Proposal) (*roomversion.Event, *mls.StagedCommit, error) {
	opts, err := client.CommitOptions(&c.w.fed, mls.CommitOptions{Proposals: props})
	if err != nil {
		return nil, nil, err
	}
	sc, err := c.group.Commit(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: committing: %w", c.name, err)
	}
	wire, err := sc.Message.MarshalMLS()
	if err != nil {
		return nil, nil, err
	}
	c.staged, c.stagedWire = sc, wire
	typ, stateKey := c.w.version.PendingCommitType(), (*string)(nil)
	if cur := c.srv.current(); cur == nil && c.srv.name == roomversion.Domain(c.w.roomID) || cur != nil && powerIndex(cur, c.srv.name) == 0 {
		typ, stateKey = c.w.version.CommitType(), new(string)
	}
	ev, err := c.srv.submit(typ, stateKey, wire, c.commitID)
	if err != nil {
		return nil, nil, err
	}
	if typ == c.w.version.CommitType() {
		c.w.label(ev, c.w.commitLabel(ev))
	} else {
		c.w.label(ev, fmt.Sprintf("P%d%s", ev.Epoch(), c.srv.letter))
	}
	return ev, sc, c.srv.accept(ev)
}

// roomNameProposal is a proposal setting the room name in extension 0xF6D0.
func (c *demoClient) roomNameProposal(name string) (*mls.Proposal, error) {
	st, err := client.ParseRoomState(c.group.Extensions())
	if err != nil {
		return nil, err
	}
	if err := st.Set("m.room.name", "", map[string]string{"name": name}); err != nil {
		return nil, err
	}
	return client.RoomStateProposal(c.group.Extensions(), st)
}

// roomName is the room name in the client's MLS state.
func (c *demoClient) roomName() string {
	if c.group == nil {
		return ""
	}
	st, err := client.ParseRoomState(c.group.Extensions())
	if err != nil {
		return ""
	}
	raw, ok := st.Get("m.room.name", "")
	if !ok {
		return ""
	}
	var v struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.Name
}

// say sends a text message in the client's current epoch.
func (c *demoClient) say(text string) (*demoMessage, error) {
	pt, err := json.Marshal(map[string]any{"type": "m.room.message", "content": map[string]string{"body": text, "msgtype": "m.text"}})
	if err != nil {
		return nil, err
	}
	msg, err := c.group.Encrypt(pt, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: encrypting: %w", c.name, err)
	}
	wire, err := msg.MarshalMLS()
	if err != nil {
		return nil, err
	}
	c.sent[string(wire)] = true
	m := &demoMessage{label: fmt.Sprintf("M%d", len(c.w.msgs)+1), sender: c, text: text, epoch: c.group.Epoch(), commit: c.w.name(c.commitID)}
	c.w.msgs = append(c.w.msgs, m)
	ev, err := c.srv.submit(roomversion.EventTypeEncrypted, nil, wire, c.commitID)
	if err != nil {
		return nil, err
	}
	m.ev = ev
	c.w.label(ev, m.label)
	return m, c.srv.accept(ev)
}

// receive handles an event the client's server delivers.
func (c *demoClient) receive(ev *roomversion.Event, lostFork bool) error {
	if c.group == nil || c.stuck != "" && ev.Kind() == roomversion.EventCommit {
		return nil
	}
	wire := ev.Ciphertext()
	var msg mls.MLSMessage
	if err := msg.UnmarshalMLS(wire); err != nil {
		return fmt.Errorf("%s: %s: %w", c.name, c.w.name(ev.EventID()), err)
	}
	switch ev.Kind() {
	case roomversion.EventEncrypted:
		if c.sent[string(wire)] {
			return nil
		}
		res := demoResult{lostFork: lostFork}
		if r, err := c.group.Process(&msg); err == nil && r.ContentType == mls.ContentTypeApplication {
			var pt struct {
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			}
			res.decrypted = json.Unmarshal(r.Application, &pt) == nil && c.w.messageText(ev) == pt.Content.Body
		}
		c.results[c.w.name(ev.EventID())] = res
		return nil
	case roomversion.EventCommit:
		return c.receiveCommit(ev, &msg)
	}
	return nil
}

func (c *demoClient) receiveCommit(ev *roomversion.Event, msg *mls.MLSMessage) error {
	w := c.w
	if c.staged != nil && bytes.Equal(ev.Ciphertext(), c.stagedWire) {
		sc := c.staged
		c.staged, c.stagedWire = nil, nil
		return c.merge(ev, sc)
	}
	auth := stateres.AuthCommitID(ev, c.srv.rr.replay.Room().Create().EventID())
	if auth == c.commitID {
		c.staged, c.stagedWire = nil, nil // another commit won the epoch
		r, err := c.group.Process(msg)
		if err != nil || r.Commit == nil {
			return fmt.Errorf("%s: processing %s: %v: %w", c.name, w.name(ev.EventID()), err, errDemo)
		}
		return c.merge(ev, r.Commit)
	}
	// A commit on another branch: roll back to the state kept at its
	// auth commit if it is within the security window.
	now := w.clock.Now()
	i := slices.IndexFunc(c.kept, func(k demoKept) bool { return k.commitID == auth })
	if i < 0 {
		c.stuck = fmt.Sprintf("it merged %s; %s builds on %s, whose state it did not keep (security.window %ds), so it needs a new Welcome",
			c.lastCommit, w.name(ev.EventID()), w.name(auth), c.window)
		return nil
	}
	k := c.kept[i]
	if elapsed := now.Sub(k.since); elapsed > time.Duration(c.window)*time.Second {
		c.stuck = fmt.Sprintf("it left %s %s before %s arrived, longer than security.window %ds, so it needs a new Welcome",
			w.name(auth), elapsed, w.name(ev.EventID()), c.window)
		return nil
	}
	g, err := mls.LoadGroup(k.state, c.config())
	if err != nil {
		return fmt.Errorf("%s: loading the kept state: %w", c.name, err)
	}
	r, err := g.Process(msg)
	if err != nil || r.Commit == nil {
		return fmt.Errorf("%s: processing %s on the kept state: %v: %w", c.name, w.name(ev.EventID()), err, errDemo)
	}
	rb := demoRollback{From: c.lastCommit, To: w.name(ev.EventID()), Back: w.name(auth), Elapsed: now.Sub(k.since), Window: c.window, At: now}
	c.kept = c.kept[:i]
	c.group, c.commitID, c.staged, c.stagedWire = g, auth, nil, nil
	if err := c.merge(ev, r.Commit); err != nil {
		return err
	}
	c.rollbacks = append(c.rollbacks, rb)
	return nil
}

// merge applies a commit, keeping the state before it while the security
// window allows.
func (c *demoClient) merge(ev *roomversion.Event, sc *mls.StagedCommit) error {
	now := c.w.clock.Now()
	var before []byte
	if c.window > 0 {
		var err error
		if before, err = c.group.MarshalState(); err != nil {
			return err
		}
	}
	if err := c.group.Merge(sc); err != nil {
		return fmt.Errorf("%s: merging %s: %w", c.name, c.w.name(ev.EventID()), err)
	}
	if before != nil {
		c.kept = append(c.kept, demoKept{commitID: c.commitID, state: before, since: now})
	}
	c.commitID, c.lastCommit, c.window = ev.EventID(), c.w.name(ev.EventID()), windowOf(ev)
	c.kept = slices.DeleteFunc(c.kept, func(k demoKept) bool { return now.Sub(k.since) > time.Duration(c.window)*time.Second })
	return nil
}

// powerIndex is a server's index in powers of a commit, -1 if absent.
func powerIndex(commit *roomversion.Event, server string) int {
	fm, err := commit.FederationMap()
	if err != nil {
		return -1
	}
	return slices.Index(fm.Federation.Powers, server)
}
