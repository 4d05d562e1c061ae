package mls

import (
	"bytes"
	"maps"
	"slices"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	"github.com/mlsmode/mlsmode/mls/internal/secrettree"
	tm "github.com/mlsmode/mlsmode/mls/internal/treemath"
)

// stateVersion numbers the encoding of MarshalState.
const stateVersion = 1

// MarshalState encodes the whole group state: the current epoch (context,
// tree, private keys, secrets, message ratchets, transcript hash), cached
// proposals, the kept past epochs, the signature key and the group's
// status. LoadGroup restores it, so a client can keep the state from before
// a commit and return to it if another commit wins (MSC4256's security
// window). The encoding holds every secret of the group: store it as such.
func (g *Group) MarshalState() ([]byte, error) {
	return codec.Marshal(func(w *codec.Writer) {
		w.Uint16(stateVersion)
		w.Opaque(g.signer.PrivateKey())
		marshalEpoch(w, g.st)
		w.Vector(func(w *codec.Writer) {
			for _, cp := range g.proposals {
				cp.proposal.encode(w)
				w.Opaque(cp.ref)
				cp.sender.encode(w)
			}
		})
		w.Vector(func(w *codec.Writer) {
			for _, p := range g.past {
				w.Uint64(p.epoch)
				marshalKeys(w, p.keys)
				marshalTree(w, p.tree)
				w.Opaque(p.resumption)
			}
		})
		w.Vector(func(w *codec.Writer) {
			for _, pub := range slices.Sorted(maps.Keys(g.updates)) {
				w.Opaque([]byte(pub))
				w.Opaque(g.updates[pub])
			}
		})
		w.Optional(g.reinit != nil, func(w *codec.Writer) { g.reinit.encode(w) })
		w.Bool(g.removed)
	})
}

func marshalTree(w *codec.Writer, t *tree) {
	b, err := t.export().MarshalMLS()
	if err != nil {
		w.SetError(err)
		return
	}
	w.Opaque(b)
}

func marshalKeys(w *codec.Writer, k *EpochKeys) {
	k.ctx.encode(w)
	w.Opaque(k.senderDataSecret)
	w.Opaque(k.membershipKey)
	k.tree.Marshal(w)
}

func marshalEpoch(w *codec.Writer, st *epochState) {
	marshalTree(w, st.tree)
	w.Uint32(uint32(st.priv.leaf))
	w.Vector(func(w *codec.Writer) {
		for _, n := range slices.Sorted(maps.Keys(st.priv.keys)) {
			w.Uint32(uint32(n))
			w.Opaque(st.priv.keys[n])
		}
	})
	for _, s := range epochSecretFields(st.secrets) {
		w.Opaque(*s)
	}
	marshalKeys(w, st.keys)
	w.Opaque(st.interim)
}

func epochSecretFields(e *keyschedule.Epoch) []*[]byte {
	return []*[]byte{&e.JoinerSecret, &e.WelcomeSecret, &e.EpochSecret, &e.SenderDataSecret, &e.EncryptionSecret,
		&e.ExporterSecret, &e.ExternalSecret, &e.ConfirmationKey, &e.MembershipKey, &e.ResumptionPSK,
		&e.EpochAuthenticator, &e.InitSecret}
}

// LoadGroup restores a group from MarshalState's encoding, with cfg as its
// configuration.
func LoadGroup(b []byte, cfg GroupConfig) (*Group, error) {
	// Decoded values alias their input: keep a private copy.
	r := codec.NewReader(bytes.Clone(b))
	var version uint16
	r.Uint16("group_state.version", &version)
	if !r.Failed() && version != stateVersion {
		r.Fail("group_state.version", "unknown state version %d", version)
	}
	var signerKey []byte
	r.Opaque("group_state.signer", &signerKey)
	if r.Failed() {
		return nil, r.Err()
	}
	g := &Group{cfg: cfg}
	st, err := g.readEpoch(r)
	if err != nil {
		return nil, err
	}
	g.st = st
	if g.signer, err = NewSigner(st.ctx.CipherSuite, signerKey); err != nil {
		return nil, err
	}
	r.Vector("group_state.proposals", func(r *codec.Reader) {
		for !r.Empty() {
			var cp cachedProposal
			cp.proposal = new(Proposal)
			cp.proposal.decode(r)
			r.Opaque("ref", &cp.ref)
			cp.sender.decode(r)
			g.proposals = append(g.proposals, cp)
		}
	})
	r.Vector("group_state.past", func(r *codec.Reader) {
		for !r.Empty() && !r.Failed() {
			p := &pastEpoch{}
			r.Uint64("epoch", &p.epoch)
			if p.keys, err = g.readKeys(r); err != nil {
				r.Fail("keys", "%v", err)
				return
			}
			if p.tree, err = readTree(r, st.ctx.CipherSuite); err != nil {
				r.Fail("tree", "%v", err)
				return
			}
			r.Opaque("resumption", &p.resumption)
			g.past = append(g.past, p)
		}
	})
	r.Vector("group_state.updates", func(r *codec.Reader) {
		for !r.Empty() {
			var pub, priv []byte
			r.Opaque("public", &pub)
			r.Opaque("private", &priv)
			if g.updates == nil {
				g.updates = map[string][]byte{}
			}
			g.updates[string(pub)] = priv
		}
	})
	r.Optional("group_state.reinit", func(r *codec.Reader) {
		g.reinit = new(ReInit)
		g.reinit.decode(r)
	})
	r.Bool("group_state.removed", &g.removed)
	if err := r.Finish("group_state"); err != nil {
		return nil, err
	}
	return g, nil
}

func readTree(r *codec.Reader, cs CipherSuite) (*tree, error) {
	var b []byte
	r.Opaque("tree", &b)
	if r.Failed() {
		return nil, r.Err()
	}
	var nodes RatchetTree
	if err := nodes.UnmarshalMLS(b); err != nil {
		return nil, err
	}
	return newTree(cs, nodes)
}

func (g *Group) readKeys(r *codec.Reader) (*EpochKeys, error) {
	var ctx GroupContext
	ctx.decode(r)
	var sds, mk []byte
	r.Opaque("sender_data_secret", &sds)
	r.Opaque("membership_key", &mk)
	if r.Failed() {
		return nil, r.Err()
	}
	s, err := ctx.CipherSuite.impl()
	if err != nil {
		return nil, err
	}
	st, err := secrettree.Unmarshal(s, r)
	if err != nil {
		return nil, err
	}
	k, err := NewEpochKeys(&ctx, 1, nil, sds, mk, &g.cfg.Keys)
	if err != nil {
		return nil, err
	}
	k.tree = st
	k.leaves = st.Leaves()
	return k, nil
}

func (g *Group) readEpoch(r *codec.Reader) (*epochState, error) {
	st := &epochState{}
	// The tree is read before the keys, whose group context names the
	// suite: keep its bytes until then.
	var treeBytes []byte
	r.Opaque("tree", &treeBytes)
	var leaf uint32
	r.Uint32("leaf", &leaf)
	st.priv = &treePrivate{leaf: tm.LeafIndex(leaf), keys: map[tm.NodeIndex][]byte{}}
	r.Vector("private_keys", func(r *codec.Reader) {
		for !r.Empty() {
			var n uint32
			var k []byte
			r.Uint32("node", &n)
			r.Opaque("key", &k)
			st.priv.keys[tm.NodeIndex(n)] = k
		}
	})
	st.secrets = &keyschedule.Epoch{}
	for _, f := range epochSecretFields(st.secrets) {
		r.Opaque("secret", f)
	}
	if r.Failed() {
		return nil, r.Err()
	}
	keys, err := g.readKeys(r)
	if err != nil {
		return nil, err
	}
	st.keys, st.ctx, st.secrets.Suite = keys, keys.ctx, keys.s
	r.Opaque("interim", &st.interim)
	var nodes RatchetTree
	if err := nodes.UnmarshalMLS(treeBytes); err != nil {
		return nil, err
	}
	if st.tree, err = newTree(st.ctx.CipherSuite, nodes); err != nil {
		return nil, err
	}
	if st.tree.leaf(st.priv.leaf) == nil {
		return nil, errorf("group state: own leaf %d is not in the tree", st.priv.leaf)
	}
	return st, r.Err()
}
