// Package secrettree is the MLS secret tree (RFC 9420 §9): from an epoch's
// encryption secret it derives, per leaf, a handshake and an application hash
// ratchet whose generations give the AEAD keys and nonces of that sender's
// messages, and it derives the key and nonce that protect sender data.
//
// Secrets are deleted as soon as they are no longer needed (§9.2): a tree
// node's secret once both children are derived, a leaf's secret once its two
// ratchets exist, a ratchet secret once the next one exists, and a message key
// once it has been handed out. Keys for generations skipped over are kept
// only within a configurable window, so messages may arrive out of order.
package secrettree

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	"github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// Kind selects one of a leaf's two ratchets.
type Kind uint8

// The two ratchets of each leaf.
const (
	Handshake Kind = iota
	Application
)

func (k Kind) String() string {
	if k == Handshake {
		return "handshake"
	}
	return "application"
}

// Config bounds how out of order a sender's messages may arrive.
type Config struct {
	// OutOfOrder is how many generations below the newest one received keep
	// their keys when skipped over. Zero keeps none: messages must then
	// arrive in order, gaps allowed.
	OutOfOrder uint32
	// MaxForward is how far beyond the next expected generation a received
	// generation may be. Zero means DefaultMaxForward.
	MaxForward uint32
}

// Defaults for Config.
const (
	DefaultOutOfOrder = 32
	DefaultMaxForward = 1024
)

// DefaultConfig is the configuration used when none is given.
var DefaultConfig = Config{OutOfOrder: DefaultOutOfOrder, MaxForward: DefaultMaxForward}

// Errors for keys that cannot be handed out.
var (
	ErrGenerationUsed = errors.New("mls: generation already used, or too old for the out-of-order window")
	ErrTooFarAhead    = errors.New("mls: generation too far ahead")
	ErrLeaf           = errors.New("mls: leaf index outside the tree")
)

// KeyNonce is one generation's AEAD key and nonce.
type KeyNonce struct {
	Generation uint32
	Key, Nonce []byte
}

type ratchet struct {
	secret []byte // ratchet secret of generation next
	next   uint32
	kept   map[uint32]KeyNonce // skipped generations inside the window
}

// Tree is one epoch's secret tree. It is not safe for concurrent use.
type Tree struct {
	s        *suite.Suite
	cfg      Config
	leaves   uint32
	nodes    [][]byte // tree node secrets still held, by node index
	ratchets [2]map[treemath.LeafIndex]*ratchet
}

// New returns the secret tree of a ratchet tree with the given number of
// leaves (a power of two, RFC 9420 §7.8) whose root secret is
// encryptionSecret. The tree keeps its own copy.
func New(s *suite.Suite, encryptionSecret []byte, leaves uint32, cfg Config) (*Tree, error) {
	if leaves == 0 || leaves&(leaves-1) != 0 {
		return nil, fmt.Errorf("mls: secret tree with %d leaves: a ratchet tree has a power of two", leaves)
	}
	if cfg.MaxForward == 0 {
		cfg.MaxForward = DefaultMaxForward
	}
	t := &Tree{
		s:      s,
		cfg:    cfg,
		leaves: leaves,
		nodes:  make([][]byte, treemath.Width(leaves)),
		ratchets: [2]map[treemath.LeafIndex]*ratchet{
			{}, {},
		},
	}
	t.nodes[treemath.Root(leaves)] = append([]byte(nil), encryptionSecret...)
	return t, nil
}

// ratchet returns leaf's ratchet of kind k, deriving the leaf's ratchets from
// the tree on first use.
func (t *Tree) ratchet(k Kind, leaf treemath.LeafIndex) (*ratchet, error) {
	if uint32(leaf) >= t.leaves {
		return nil, fmt.Errorf("%w: leaf %d of %d", ErrLeaf, leaf, t.leaves)
	}
	if r, ok := t.ratchets[k][leaf]; ok {
		return r, nil
	}
	x := leaf.Node()
	// The lowest node on the leaf's path that still holds a secret.
	path := append([]treemath.NodeIndex{x}, treemath.DirectPath(x, t.leaves)...)
	top := -1
	for i, n := range path {
		if t.nodes[n] != nil {
			top = i
			break
		}
	}
	if top < 0 {
		return nil, fmt.Errorf("mls: secret tree: no secret left on the path of leaf %d", leaf)
	}
	nh := uint16(t.s.HashSize())
	for i := top; i > 0; i-- {
		n := path[i]
		l, _ := treemath.Left(n)
		r, _ := treemath.Right(n)
		var err error
		if t.nodes[l], err = t.s.ExpandWithLabel(t.nodes[n], "tree", []byte("left"), nh); err != nil {
			return nil, err
		}
		if t.nodes[r], err = t.s.ExpandWithLabel(t.nodes[n], "tree", []byte("right"), nh); err != nil {
			return nil, err
		}
		wipe(t.nodes[n])
		t.nodes[n] = nil
	}
	leafSecret := t.nodes[x]
	for _, kind := range []Kind{Handshake, Application} {
		sec, err := t.s.ExpandWithLabel(leafSecret, kind.String(), nil, nh)
		if err != nil {
			return nil, err
		}
		t.ratchets[kind][leaf] = &ratchet{secret: sec, kept: map[uint32]KeyNonce{}}
	}
	wipe(leafSecret)
	t.nodes[x] = nil
	return t.ratchets[k][leaf], nil
}

// derive returns generation r.next's key and nonce and moves the ratchet on.
func (t *Tree) derive(r *ratchet) (KeyNonce, error) {
	g := r.next
	key, err := t.s.DeriveTreeSecret(r.secret, "key", g, uint16(t.s.AEADKeySize()))
	if err != nil {
		return KeyNonce{}, err
	}
	nonce, err := t.s.DeriveTreeSecret(r.secret, "nonce", g, uint16(t.s.AEADNonceSize()))
	if err != nil {
		return KeyNonce{}, err
	}
	next, err := t.s.DeriveTreeSecret(r.secret, "secret", g, uint16(t.s.HashSize()))
	if err != nil {
		return KeyNonce{}, err
	}
	wipe(r.secret)
	r.secret = next
	r.next = g + 1
	return KeyNonce{Generation: g, Key: key, Nonce: nonce}, nil
}

// Next hands out the next unused generation of leaf's ratchet of kind k, as a
// sender does. The key is forgotten by the tree.
func (t *Tree) Next(k Kind, leaf treemath.LeafIndex) (KeyNonce, error) {
	r, err := t.ratchet(k, leaf)
	if err != nil {
		return KeyNonce{}, err
	}
	return t.derive(r)
}

// Get hands out generation g of leaf's ratchet of kind k, as a receiver does.
// Keys of generations skipped over are kept within the out-of-order window;
// a key handed out is forgotten, so a second Get of the same generation
// fails with ErrGenerationUsed.
func (t *Tree) Get(k Kind, leaf treemath.LeafIndex, g uint32) (KeyNonce, error) {
	r, err := t.ratchet(k, leaf)
	if err != nil {
		return KeyNonce{}, err
	}
	if g < r.next {
		kn, ok := r.kept[g]
		if !ok {
			return KeyNonce{}, fmt.Errorf("%w: %s generation %d of leaf %d", ErrGenerationUsed, k, g, leaf)
		}
		delete(r.kept, g)
		return kn, nil
	}
	if g-r.next > t.cfg.MaxForward {
		return KeyNonce{}, fmt.Errorf("%w: %s generation %d of leaf %d, next expected %d, limit %d ahead",
			ErrTooFarAhead, k, g, leaf, r.next, t.cfg.MaxForward)
	}
	for r.next < g {
		kn, err := t.derive(r)
		if err != nil {
			return KeyNonce{}, err
		}
		if g-kn.Generation <= t.cfg.OutOfOrder {
			r.kept[kn.Generation] = kn
		}
	}
	kn, err := t.derive(r)
	if err != nil {
		return KeyNonce{}, err
	}
	for old := range r.kept {
		if g-old > t.cfg.OutOfOrder {
			delete(r.kept, old)
		}
	}
	return kn, nil
}

// Restore gives back a key that Get handed out but that did not decrypt its
// message, so that a forged message cannot burn the key of the genuine one.
// It is kept like a skipped key: only inside the out-of-order window.
func (t *Tree) Restore(k Kind, leaf treemath.LeafIndex, kn KeyNonce) {
	r, ok := t.ratchets[k][leaf]
	if !ok || kn.Generation >= r.next || r.next-1-kn.Generation > t.cfg.OutOfOrder {
		return
	}
	r.kept[kn.Generation] = kn
}

// SenderDataKeyNonce derives the key and nonce that protect the sender data
// of a PrivateMessage whose ciphertext is ciphertext (RFC 9420 §6.3.2).
func SenderDataKeyNonce(s *suite.Suite, senderDataSecret, ciphertext []byte) (key, nonce []byte, err error) {
	sample := ciphertext
	if len(sample) > s.HashSize() {
		sample = sample[:s.HashSize()]
	}
	if key, err = s.ExpandWithLabel(senderDataSecret, "key", sample, uint16(s.AEADKeySize())); err != nil {
		return nil, nil, err
	}
	if nonce, err = s.ExpandWithLabel(senderDataSecret, "nonce", sample, uint16(s.AEADNonceSize())); err != nil {
		return nil, nil, err
	}
	return key, nonce, nil
}

func wipe(b []byte) { clear(b) }

// Leaves returns the number of leaves.
func (t *Tree) Leaves() uint32 { return t.leaves }

// Marshal encodes the tree's remaining state (secrets not yet deleted,
// ratchet positions and kept keys) with the codec, for a caller that stores
// group state. The encoding holds secrets.
func (t *Tree) Marshal(w *codec.Writer) {
	w.Uint32(t.leaves)
	w.Uint32(t.cfg.OutOfOrder)
	w.Uint32(t.cfg.MaxForward)
	w.Vector(func(w *codec.Writer) {
		for i, s := range t.nodes {
			if s != nil {
				w.Uint32(uint32(i))
				w.Opaque(s)
			}
		}
	})
	for k := range t.ratchets {
		w.Vector(func(w *codec.Writer) {
			for _, leaf := range slices.Sorted(maps.Keys(t.ratchets[k])) {
				r := t.ratchets[k][leaf]
				w.Uint32(uint32(leaf))
				w.Opaque(r.secret)
				w.Uint32(r.next)
				w.Vector(func(w *codec.Writer) {
					for _, g := range slices.Sorted(maps.Keys(r.kept)) {
						kn := r.kept[g]
						w.Uint32(g)
						w.Opaque(kn.Key)
						w.Opaque(kn.Nonce)
					}
				})
			}
		})
	}
}

// Unmarshal reads a tree written by Marshal.
func Unmarshal(s *suite.Suite, r *codec.Reader) (*Tree, error) {
	var leaves uint32
	var cfg Config
	r.Uint32("secret_tree.leaves", &leaves)
	r.Uint32("secret_tree.out_of_order", &cfg.OutOfOrder)
	r.Uint32("secret_tree.max_forward", &cfg.MaxForward)
	if r.Failed() {
		return nil, r.Err()
	}
	t, err := New(s, nil, leaves, cfg)
	if err != nil {
		return nil, err
	}
	t.nodes[treemath.Root(leaves)] = nil
	r.Vector("secret_tree.nodes", func(r *codec.Reader) {
		for !r.Empty() {
			var i uint32
			var sec []byte
			r.Uint32("index", &i)
			r.Opaque("secret", &sec)
			if !r.Failed() && int(i) >= len(t.nodes) {
				r.Fail("index", "node %d outside a tree of %d leaves", i, leaves)
			}
			if !r.Failed() {
				t.nodes[i] = bytes.Clone(sec)
			}
		}
	})
	for k := range t.ratchets {
		r.Vector("secret_tree.ratchets", func(r *codec.Reader) {
			for !r.Empty() {
				var leaf, next uint32
				var sec []byte
				r.Uint32("leaf", &leaf)
				r.Opaque("secret", &sec)
				r.Uint32("next", &next)
				rt := &ratchet{secret: bytes.Clone(sec), next: next, kept: map[uint32]KeyNonce{}}
				r.Vector("kept", func(r *codec.Reader) {
					for !r.Empty() {
						var kn KeyNonce
						r.Uint32("generation", &kn.Generation)
						r.Opaque("key", &kn.Key)
						r.Opaque("nonce", &kn.Nonce)
						kn.Key, kn.Nonce = bytes.Clone(kn.Key), bytes.Clone(kn.Nonce)
						rt.kept[kn.Generation] = kn
					}
				})
				if !r.Failed() && leaf >= leaves {
					r.Fail("leaf", "leaf %d outside a tree of %d leaves", leaf, leaves)
				}
				if !r.Failed() {
					t.ratchets[k][treemath.LeafIndex(leaf)] = rt
				}
			}
		})
	}
	if r.Failed() {
		return nil, r.Err()
	}
	return t, nil
}
