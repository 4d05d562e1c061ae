package authrulestest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// Server is one homeserver of the cases: its name and ed25519 signing key.
type Server struct {
	// Name is the server name.
	Name string
	// KeyID is the signing key's ID, "ed25519:<version>".
	KeyID string
	// Seed is the 32-byte ed25519 seed of the signing key.
	Seed []byte
}

// PrivateKey returns the signing key.
func (s Server) PrivateKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(s.Seed) }

// PublicKey returns the public signing key.
func (s Server) PublicKey() ed25519.PublicKey { return s.PrivateKey().Public().(ed25519.PublicKey) }

// Params are what the cases are made of. The same cases can be generated
// for any servers, keys, clock and room version.
type Params struct {
	// Version is the room version.
	Version roomversion.Version
	// Suite is the MLS cipher suite of the room's algorithm. Rule 8's cases
	// use another one of roomversion.Suites().
	Suite mls.CipherSuite
	// RoomID is the room's ID; its domain (after the first ':') must be
	// A.Name.
	RoomID string
	// NoFederateRoomID is the ID of the second room some cases use, one
	// with m.federate false; "" means "!nofederate:" + A.Name. Its domain
	// must be A.Name. (The conformance suite plays every case in a room of
	// its own.)
	NoFederateRoomID string
	// A creates the room and is the most powerful server; B is the second
	// server in powers; C takes part and may propose commits but not
	// commit; D is never in the room's servers (unless a case adds it). The
	// four names must differ.
	A, B, C, D Server
	// Clock is the origin_server_ts of the first event; every further event
	// is one second later, in the order the cases make them.
	Clock time.Time
	// MLSSeed seeds the MLS epoch secrets, reuse guards and signature keys.
	MLSSeed []byte
}

// DefaultParams returns the fixed parameters of the language-neutral vectors
// in testdata/authrules: servers a.example, b.example, c.example and
// d.example with ed25519 seeds of 32 bytes 0x01, 0x02, 0x03 and 0x04 under key
// ID ed25519:auth, room !authrules:a.example of m.mls.1 with suite 1, clock
// 2025-01-01T00:00:00Z.
func DefaultParams() Params {
	srv := func(name string, b byte) Server {
		return Server{Name: name, KeyID: "ed25519:auth", Seed: bytes.Repeat([]byte{b}, ed25519.SeedSize)}
	}
	return Params{
		Version: roomversion.V1,
		Suite:   mls.X25519AES128GCMSHA256Ed25519,
		RoomID:  "!authrules:a.example",
		A:       srv("a.example", 1),
		B:       srv("b.example", 2),
		C:       srv("c.example", 3),
		D:       srv("d.example", 4),
		Clock:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		MLSSeed: []byte("mlsmode authrules vectors"),
	}
}

// Servers returns A, B, C and D.
func (p Params) Servers() []Server { return []Server{p.A, p.B, p.C, p.D} }

// check validates the parameters.
func (p Params) check() error {
	if !p.Version.Known() {
		return fmt.Errorf("authrulestest: %q is not an MLS room version", string(p.Version))
	}
	if _, err := p.Version.Algorithm(p.Suite); err != nil {
		return fmt.Errorf("authrulestest: suite: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range p.Servers() {
		if err := fedmap.ValidServerName(s.Name); err != nil {
			return fmt.Errorf("authrulestest: server %q: %w", s.Name, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("authrulestest: server %q twice", s.Name)
		}
		seen[s.Name] = true
		if v, ok := strings.CutPrefix(s.KeyID, "ed25519:"); !ok || v == "" || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			return fmt.Errorf("authrulestest: server %s: key ID %q is not ed25519:<version>", s.Name, s.KeyID)
		}
		if len(s.Seed) != ed25519.SeedSize {
			return fmt.Errorf("authrulestest: server %s: seed of %d bytes, want %d", s.Name, len(s.Seed), ed25519.SeedSize)
		}
	}
	if _, d, _ := strings.Cut(p.RoomID, ":"); !strings.HasPrefix(p.RoomID, "!") || d != p.A.Name {
		return fmt.Errorf("authrulestest: room ID %q must be !<opaque>:%s", p.RoomID, p.A.Name)
	}
	if _, d, _ := strings.Cut(p.NoFederateRoomID, ":"); p.NoFederateRoomID != "" && (!strings.HasPrefix(p.NoFederateRoomID, "!") || d != p.A.Name || p.NoFederateRoomID == p.RoomID) {
		return fmt.Errorf("authrulestest: no-federate room ID %q must be !<opaque>:%s, not the room's", p.NoFederateRoomID, p.A.Name)
	}
	return nil
}

// otherSuite returns a suite of the version other than p.Suite, preferring
// Ed25519 suites (deterministic signatures, so reproducible vectors).
func (p Params) otherSuite() mls.CipherSuite {
	for _, cs := range []mls.CipherSuite{mls.X25519ChaCha20Poly1305SHA256Ed25519, mls.X25519AES128GCMSHA256Ed25519,
		mls.XWingAES256GCMSHA512Ed25519, mls.P256AES128GCMSHA256P256} {
		if cs != p.Suite {
			return cs
		}
	}
	panic("authrulestest: no other suite")
}

// gen makes the events of the cases. It panics on failure: the cases are
// built from checked parameters, so a failure is a bug in the package.
type gen struct {
	p      Params
	tag    string // tells apart the MLS keys of separate generators
	n      int
	keys   map[string]*mls.EpochKeys // suite/room/epoch -> keys
	all    map[string]*roomversion.Event
	order  map[string]int // event ID -> generation order
	leaves map[string]uint32
}

func newGen(p Params) *gen {
	return &gen{p: p, keys: map[string]*mls.EpochKeys{}, all: map[string]*roomversion.Event{}, order: map[string]int{},
		leaves: map[string]uint32{p.A.Name: 0, p.B.Name: 1, p.C.Name: 2, p.D.Name: 3}}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("authrulestest: %v", err))
	}
	return v
}

// ts returns the next timestamp.
func (g *gen) ts() time.Time {
	g.n++
	return g.p.Clock.Add(time.Duration(g.n) * time.Second)
}

// derive returns hash-length bytes derived from the MLS seed and labels.
func (g *gen) derive(n int, labels ...string) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.New()
		h.Write(g.p.MLSSeed)
		for _, l := range labels {
			fmt.Fprintf(h, "|%s", l)
		}
		fmt.Fprintf(h, "|%d", i)
		out = h.Sum(out)
	}
	return out[:n]
}

// reader is an endless deterministic byte stream (for reuse guards).
type reader struct {
	g     *gen
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

func hashLen(cs mls.CipherSuite) int {
	if cs == mls.XWingAES256GCMSHA512Ed25519 {
		return 64
	}
	return 32
}

// epochKeys returns the (fixed) keys of one epoch of a group.
func (g *gen) epochKeys(cs mls.CipherSuite, group string, epoch uint64) *mls.EpochKeys {
	k := fmt.Sprintf("%s%d/%s/%d", g.tag, cs, group, epoch)
	if ek, ok := g.keys[k]; ok {
		return ek
	}
	n := hashLen(cs)
	gc := &mls.GroupContext{Version: mls.MLS10, CipherSuite: cs, GroupID: []byte(group), Epoch: epoch,
		TreeHash: g.derive(n, k, "tree"), ConfirmedTranscriptHash: g.derive(n, k, "transcript")}
	ek := must(mls.NewEpochKeys(gc, 4, g.derive(n, k, "encryption"), g.derive(n, k, "sender data"), g.derive(n, k, "membership"),
		&mls.EpochKeysConfig{Rand: &reader{g: g, label: k}}))
	g.keys[k] = ek
	return ek
}

// mlsMessage returns a real MLSMessage holding a PrivateMessage of the given
// content type, sent in epoch by the client at the origin's leaf. Commits
// carry ad as authenticated data and an empty Commit; application messages
// carry a small m.room.message naming label.
func (g *gen) mlsMessage(cs mls.CipherSuite, group string, epoch uint64, ct mls.ContentType, ad []byte, origin, label string) []byte {
	leaf := g.leaves[origin]
	signer := must(mls.NewSigner(cs, g.signatureKey(cs, leaf)))
	fc := &mls.FramedContent{GroupID: []byte(group), Epoch: epoch, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: leaf},
		AuthenticatedData: ad, ContentType: ct}
	var tag []byte
	switch ct {
	case mls.ContentTypeCommit:
		fc.Commit = &mls.Commit{}
		tag = g.derive(hashLen(cs), "confirmation tag", label)
	case mls.ContentTypeApplication:
		body, _ := json.Marshal(label)
		fc.Application = []byte(`{"content":{"body":` + string(body) + `,"msgtype":"m.text"},"type":"m.room.message"}`)
	default:
		panic("authrulestest: unsupported content type")
	}
	pm := must(g.epochKeys(cs, group, epoch).ProtectPrivate(fc, signer, tag))
	return must((&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: pm}).MarshalMLS())
}

// signatureKey returns the MLS signature private key of a leaf: an Ed25519
// seed, or a P-256 scalar.
func (g *gen) signatureKey(cs mls.CipherSuite, leaf uint32) []byte {
	k := g.derive(32, "signature key", fmt.Sprint(cs), fmt.Sprint(leaf))
	if cs == mls.P256AES128GCMSHA256P256 {
		k[0] &= 0x7f // below the group order
	}
	return k
}

// fm encodes a federation map.
func fm(powers, servers, canPropose []string) []byte {
	m := &fedmap.Map{Federation: fedmap.Federation{Powers: powers, Servers: servers, CanPropose: canPropose}}
	return must(m.Encode())
}

// add records a made event.
func (g *gen) add(ev *roomversion.Event) *roomversion.Event {
	if _, ok := g.all[ev.EventID()]; !ok {
		g.all[ev.EventID()] = ev
		g.order[ev.EventID()] = len(g.order)
	}
	return ev
}

// ids returns the event IDs.
func ids(evs ...*roomversion.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.EventID())
	}
	return out
}

// build builds, signs (by b.Origin's key) and records an event.
func (g *gen) build(b *roomversion.Builder) *roomversion.Event {
	b.Version = g.p.Version
	if b.RoomID == "" {
		b.RoomID = g.p.RoomID
	}
	if b.Timestamp.IsZero() {
		b.Timestamp = g.ts()
	}
	s := g.server(b.Origin)
	return g.add(must(b.Build(context.Background(), s.KeyID, s.PrivateKey())))
}

// server returns the server called name.
func (g *gen) server(name string) Server {
	for _, s := range g.p.Servers() {
		if s.Name == name {
			return s
		}
	}
	panic("authrulestest: unknown server " + name)
}

func sp(s string) *string { return &s }

// createOpts are the create event's variations.
type createOpts struct {
	roomID   string
	origin   string
	federate bool
	content  []byte // overrides everything else in the content
	stateKey *string
	prev     []string
	auth     []string
}

// create makes a create event.
func (g *gen) create(o createOpts) *roomversion.Event {
	if o.origin == "" {
		o.origin = g.p.A.Name
	}
	content := o.content
	if content == nil {
		content = must(g.p.Version.CreateContentJSON(g.p.Suite, o.federate))
	}
	sk := o.stateKey
	if sk == nil {
		sk = sp("")
	}
	return g.build(&roomversion.Builder{RoomID: o.roomID, Type: roomversion.EventTypeCreate, StateKey: sk, Content: content,
		AuthEvents: o.auth, PrevEvents: o.prev, Origin: o.origin})
}

// mlsOpts describe an MLS event.
type mlsOpts struct {
	typ      string // event type; "" means by kind
	origin   string
	auth     []*roomversion.Event
	prev     []*roomversion.Event
	epoch    uint64
	ad       []byte // commits and pending commits
	suite    mls.CipherSuite
	group    string // MLS group; "" means the room ID
	roomID   string // "" means the room ID
	stateKey *string
	label    string
	content  []byte // an MLSMessage to carry instead of a new one
}

// commit makes a commit (state key "") carrying a real PrivateMessage commit.
func (g *gen) commit(o mlsOpts) *roomversion.Event {
	if o.typ == "" {
		o.typ = g.p.Version.CommitType()
	}
	if o.stateKey == nil {
		o.stateKey = sp("")
	}
	return g.mlsEvent(o, mls.ContentTypeCommit)
}

// pending makes a pending commit.
func (g *gen) pending(o mlsOpts) *roomversion.Event {
	o.typ = g.p.Version.PendingCommitType()
	return g.mlsEvent(o, mls.ContentTypeCommit)
}

// message makes an m.room.encrypted application message.
func (g *gen) message(o mlsOpts) *roomversion.Event {
	o.typ = roomversion.EventTypeEncrypted
	return g.mlsEvent(o, mls.ContentTypeApplication)
}

func (g *gen) mlsEvent(o mlsOpts, ct mls.ContentType) *roomversion.Event {
	b := g.mlsBuilder(o, ct)
	return g.build(b)
}

// mlsBuilder returns the builder of an MLS event (timestamp set).
func (g *gen) mlsBuilder(o mlsOpts, ct mls.ContentType) *roomversion.Builder {
	if o.suite == 0 {
		o.suite = g.p.Suite
	}
	if o.roomID == "" {
		o.roomID = g.p.RoomID
	}
	if o.group == "" {
		o.group = o.roomID
	}
	ts := g.ts()
	msg := o.content
	if msg == nil {
		label := o.label
		if label == "" {
			label = fmt.Sprintf("%s %s %d", o.typ, o.origin, ts.UnixMilli())
		}
		msg = g.mlsMessage(o.suite, o.group, o.epoch, ct, o.ad, o.origin, label)
	}
	return &roomversion.Builder{RoomID: o.roomID, Type: o.typ, StateKey: o.stateKey,
		Content: must(g.p.Version.MLSContent(o.typ, o.suite, msg)), AuthEvents: ids(o.auth...), PrevEvents: ids(o.prev...),
		Origin: o.origin, Timestamp: ts}
}

// forge returns the JSON of an event that Parse may refuse: the members of
// base's JSON with edit applied, content hash and origin signature
// recomputed (so that only the edit is wrong).
func (g *gen) forge(base *roomversion.Event, edit func(m map[string]json.RawMessage)) []byte {
	var m map[string]json.RawMessage
	must(0, json.Unmarshal(base.JSON(), &m))
	delete(m, "hashes")
	delete(m, "signatures")
	delete(m, "unsigned")
	edit(m)
	sum := sha256.Sum256(encode(m))
	m["hashes"] = encode(map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])})
	var origin string
	must(0, json.Unmarshal(m["origin"], &origin))
	s := g.server(origin)
	redacted := must(roomversion.RedactJSON(encode(m)))
	sig := ed25519.Sign(s.PrivateKey(), redacted)
	m["signatures"] = encode(map[string]map[string]string{origin: {s.KeyID: base64.RawStdEncoding.EncodeToString(sig)}})
	return encode(m)
}

// encode writes v as compact JSON with sorted keys and no HTML escaping:
// canonical JSON for the values the cases use.
func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	must(0, enc.Encode(v))
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	var c bytes.Buffer
	must(0, json.Compact(&c, out))
	return c.Bytes()
}

// raw encodes v as a JSON member value.
func raw(v any) json.RawMessage { return encode(v) }
