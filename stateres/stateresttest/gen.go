// Package stateresttest builds MLS rooms for the tests of package stateres:
//
//   - Gen makes the signed events of one room: create, commits, pending
//     commits, conversions of pending commits (Apply: equivalent commits),
//     messages, with chosen origin_server_ts (At).
//   - RandomDAG makes random rooms with forks, random servers, powers,
//     servers and can_propose lists, equivalent commits, commits that fail
//     the auth rules and ties in origin_server_ts, with the state sets of
//     their forward extremities, for property tests.
//   - Scenarios are the named rooms (concurrent commits, a longer weaker
//     fork, commits outside powers, a power transfer, a pending commit
//     applied twice, a three-way partition) and random ones that the
//     vectors of testdata/stateres are made of.
//
// Events are built with roomversion.Builder and signed by their origin
// (ed25519 keys derived from the server names). Their MLS ciphertexts are
// either real RFC 9420 PrivateMessages (Params.Real: encrypted and signed
// with fixed per-epoch keys, as authrulestest makes them) or fake-but-valid
// ones: a PrivateMessage whose header (group, epoch, content type,
// authenticated data) is right and whose encrypted sender data and
// ciphertext are random bytes. The auth rules and state resolution read
// only the header, so both give the same results; fake ones are several
// times faster to make.
package stateresttest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/stateres"
)

// Params are what a Gen's room is made of.
type Params struct {
	// Version is the room version.
	Version roomversion.Version
	// Suite is the MLS cipher suite of the room's algorithm.
	Suite mls.CipherSuite
	// Servers are every server that may send events; Servers[0] creates the
	// room (the room ID's domain). At most 64.
	Servers []string
	// RoomID is the room's ID; "" means "!stateres:" + Servers[0].
	RoomID string
	// Clock is the origin_server_ts of the first event; every further event
	// is Step later unless Gen.At sets its time.
	Clock time.Time
	Step  time.Duration
	// Seed seeds the signing keys, the MLS keys and the fake ciphertexts.
	Seed string
	// Real makes real MLS PrivateMessages; false makes fake-but-valid ones.
	Real bool
}

// DefaultParams returns a room of m.mls.1 (suite 1) with servers
// a.example, b.example, c.example and d.example, real MLS messages, clock
// 2025-01-01T00:00:00Z and one second per event.
func DefaultParams() Params {
	return Params{
		Version: roomversion.V1,
		Suite:   mls.X25519AES128GCMSHA256Ed25519,
		Servers: []string{"a.example", "b.example", "c.example", "d.example"},
		Clock:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Step:    time.Second,
		Seed:    "mlsmode stateres",
		Real:    true,
	}
}

// Fed is a federation map (SPEC-NOTES §3).
type Fed struct {
	Powers, Servers, CanPropose []string
}

// Encode returns the CBOR of the map. It panics on failure.
func (f Fed) Encode() []byte {
	m := &fedmap.Map{Federation: fedmap.Federation{Powers: f.Powers, Servers: f.Servers, CanPropose: f.CanPropose}}
	return must(m.Encode())
}

// Gen makes the events of one room. It is not safe for concurrent use.
type Gen struct {
	p      Params
	create *roomversion.Event
	store  stateres.MapStore
	events []*roomversion.Event
	now    time.Time
	n      int
	keys   map[uint64]*mls.EpochKeys
	leaves map[string]uint32
	signs  map[string]ed25519.PrivateKey
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("stateresttest: %v", err))
	}
	return v
}

// New returns a generator whose room has its create event (made by
// Servers[0]). It panics if p is invalid.
func New(p Params) *Gen {
	if len(p.Servers) == 0 || len(p.Servers) > 64 {
		panic("stateresttest: want 1 to 64 servers")
	}
	if p.RoomID == "" {
		p.RoomID = "!stateres:" + p.Servers[0]
	}
	if p.Step == 0 {
		p.Step = time.Second
	}
	g := &Gen{p: p, store: stateres.MapStore{}, now: p.Clock, keys: map[uint64]*mls.EpochKeys{},
		leaves: map[string]uint32{}, signs: map[string]ed25519.PrivateKey{}}
	for i, s := range p.Servers {
		g.leaves[s] = uint32(i)
		g.signs[s] = ed25519.NewKeyFromSeed(p.SigningSeed(s))
	}
	content := must(p.Version.CreateContentJSON(p.Suite, true))
	g.create = g.build(&roomversion.Builder{Type: roomversion.EventTypeCreate, StateKey: new(string), Content: content, Origin: p.Servers[0]})
	return g
}

// KeyID is the signing key ID of every server.
const KeyID = "ed25519:sr"

// PublicKey returns a server's signing key.
func (g *Gen) PublicKey(server string) ed25519.PublicKey {
	return g.signs[server].Public().(ed25519.PublicKey)
}

// Params returns the generator's parameters.
func (g *Gen) Params() Params { return g.p }

// Create returns the room's create event.
func (g *Gen) Create() *roomversion.Event { return g.create }

// Store returns every event made, by ID.
func (g *Gen) Store() stateres.MapStore { return g.store }

// Events returns every event made, in the order made.
func (g *Gen) Events() []*roomversion.Event { return g.events }

// At sets the origin_server_ts of the next event (and Step after it for
// the following ones).
func (g *Gen) At(t time.Time) { g.now = t }

// Now returns the origin_server_ts the next event gets.
func (g *Gen) Now() time.Time { return g.now }

// SigningSeed returns the ed25519 seed of server's signing key (KeyID) in
// the rooms of p: derived from Seed and the name, so that a server that
// must publish the key (the conformance suite playing a room's servers
// over federation) can.
func (p Params) SigningSeed(server string) []byte { return derive(p.Seed, 32, "signing", server) }

func (g *Gen) derive(n int, labels ...string) []byte { return derive(g.p.Seed, n, labels...) }

func derive(seed string, n int, labels ...string) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.New()
		h.Write([]byte(seed))
		for _, l := range labels {
			fmt.Fprintf(h, "|%s", l)
		}
		fmt.Fprintf(h, "|%d", i)
		out = h.Sum(out)
	}
	return out[:n]
}

func (g *Gen) build(b *roomversion.Builder) *roomversion.Event {
	b.Version = g.p.Version
	b.RoomID = g.p.RoomID
	b.Timestamp = g.now
	g.now = g.now.Add(g.p.Step)
	k, ok := g.signs[b.Origin]
	if !ok {
		panic("stateresttest: unknown server " + b.Origin)
	}
	ev := must(b.Build(context.Background(), KeyID, k))
	if _, ok := g.store[ev.EventID()]; !ok {
		g.store[ev.EventID()] = ev
		g.events = append(g.events, ev)
	}
	return ev
}

// mlsMessage returns an MLSMessage (PrivateMessage) of the room.
func (g *Gen) mlsMessage(epoch uint64, ct mls.ContentType, ad []byte, origin string) []byte {
	g.n++
	label := fmt.Sprintf("%s/%d", origin, g.n)
	group := []byte(g.p.RoomID)
	if !g.p.Real {
		pm := &mls.PrivateMessage{GroupID: group, Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
			EncryptedSenderData: g.derive(28, "sender data", label), Ciphertext: g.derive(48, "ciphertext", label)}
		return must((&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS())
	}
	cs := g.p.Suite
	signer := must(mls.NewSigner(cs, g.derive(32, "mls signature", origin)))
	fc := &mls.FramedContent{GroupID: group, Epoch: epoch, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: g.leaves[origin]},
		AuthenticatedData: ad, ContentType: ct}
	var tag []byte
	if ct == mls.ContentTypeCommit {
		fc.Commit = &mls.Commit{}
		tag = g.derive(32, "confirmation tag", label)
	} else {
		body, _ := json.Marshal(label)
		fc.Application = []byte(`{"content":{"body":` + string(body) + `,"msgtype":"m.text"},"type":"m.room.message"}`)
	}
	pm := must(g.epochKeys(epoch).ProtectPrivate(fc, signer, tag))
	return must((&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS())
}

func (g *Gen) epochKeys(epoch uint64) *mls.EpochKeys {
	if ek, ok := g.keys[epoch]; ok {
		return ek
	}
	k := fmt.Sprint(epoch)
	gc := &mls.GroupContext{Version: mls.MLS10, CipherSuite: g.p.Suite, GroupID: []byte(g.p.RoomID), Epoch: epoch,
		TreeHash: g.derive(32, k, "tree"), ConfirmedTranscriptHash: g.derive(32, k, "transcript")}
	leaves := uint32(1)
	for leaves < uint32(len(g.p.Servers)) {
		leaves *= 2
	}
	ek := must(mls.NewEpochKeys(gc, leaves, g.derive(32, k, "encryption"), g.derive(32, k, "sender data"),
		g.derive(32, k, "membership"), &mls.EpochKeysConfig{Rand: &reader{g: g, label: k}}))
	g.keys[epoch] = ek
	return ek
}

// reader is an endless deterministic byte stream (reuse guards).
type reader struct {
	g     *Gen
	label string
	buf   []byte
	n     int
}

func (r *reader) Read(b []byte) (int, error) {
	for len(r.buf) < len(b) {
		r.n++
		r.buf = append(r.buf, r.g.derive(32, "rand", r.label, fmt.Sprint(r.n))...)
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func ids(evs []*roomversion.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID()
	}
	return out
}

// on returns auth events, default prev events and epoch of an event on
// parent (nil: the create event, epoch 0).
func (g *Gen) on(parent *roomversion.Event, prev []*roomversion.Event) (auth, prevs []string, epoch uint64) {
	if parent == nil {
		auth, prevs = []string{g.create.EventID()}, []string{g.create.EventID()}
	} else {
		auth, prevs, epoch = []string{g.create.EventID(), parent.EventID()}, []string{parent.EventID()}, parent.Epoch()+1
	}
	if len(prev) > 0 {
		prevs = ids(prev)
	}
	return auth, prevs, epoch
}

func (g *Gen) mlsEvent(typ string, stateKey *string, origin string, parent *roomversion.Event, msg []byte, prev []*roomversion.Event) *roomversion.Event {
	auth, prevs, _ := g.on(parent, prev)
	content := must(g.p.Version.MLSContent(typ, g.p.Suite, msg))
	return g.build(&roomversion.Builder{Type: typ, StateKey: stateKey, Content: content, AuthEvents: auth, PrevEvents: prevs, Origin: origin})
}

// Commit makes a commit by origin on parent (nil: the epoch-0 commit)
// carrying f, with prev events prev (default: [parent], or [create]).
func (g *Gen) Commit(origin string, parent *roomversion.Event, f Fed, prev ...*roomversion.Event) *roomversion.Event {
	_, _, epoch := g.on(parent, nil)
	msg := g.mlsMessage(epoch, mls.ContentTypeCommit, f.Encode(), origin)
	return g.mlsEvent(g.p.Version.CommitType(), new(string), origin, parent, msg, prev)
}

// Pending makes a pending commit by origin on commit carrying f.
func (g *Gen) Pending(origin string, commit *roomversion.Event, f Fed, prev ...*roomversion.Event) *roomversion.Event {
	msg := g.mlsMessage(commit.Epoch()+1, mls.ContentTypeCommit, f.Encode(), origin)
	return g.mlsEvent(g.p.Version.PendingCommitType(), nil, origin, commit, msg, prev)
}

// Apply makes origin's commit of a pending commit (or a second copy of a
// commit): a commit on the same auth commit with the same ciphertext, prev
// events prev (default [of]).
func (g *Gen) Apply(origin string, of *roomversion.Event, prev ...*roomversion.Event) *roomversion.Event {
	var parent *roomversion.Event
	if id := stateres.AuthCommitID(of, g.create.EventID()); id != "" {
		parent = g.store[id]
	}
	if len(prev) == 0 {
		prev = []*roomversion.Event{of}
	}
	return g.mlsEvent(g.p.Version.CommitType(), new(string), origin, parent, of.Ciphertext(), prev)
}

// Message makes an m.room.encrypted application message by origin on
// commit.
func (g *Gen) Message(origin string, commit *roomversion.Event, prev ...*roomversion.Event) *roomversion.Event {
	msg := g.mlsMessage(commit.Epoch()+1, mls.ContentTypeApplication, nil, origin)
	return g.mlsEvent(roomversion.EventTypeEncrypted, nil, origin, commit, msg, prev)
}
