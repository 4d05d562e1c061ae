package sim

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/mls"
)

// MaxMLSClients bounds the clients of a run in the "mls" mode (real MLS
// groups are slow to simulate in bulk).
const MaxMLSClients = 32

// realClient is a client's real MLS state in the "mls" mode: its keys, its
// group, and its own commit in flight. The model's bookkeeping (which
// commit the client is at, the kept states, being stuck) drives it; the
// MLS operations do the work and decide what decrypts.
type realClient struct {
	signer *mls.Signer
	cred   mls.Credential
	kp     *mls.KeyPackage
	kpSec  *mls.KeyPackageSecrets
	// old are its earlier key packages: a Welcome may be for one that
	// an add commit took before a later join replaced it.
	old    []keyPackage
	group  *mls.Group
	staged *mls.StagedCommit
}

func (w *World) groupConfig() mls.GroupConfig {
	return mls.GroupConfig{Now: func() time.Time { return w.now }}
}

// newRealClient makes a client's signature key, credential and first key
// package.
func (w *World) newRealClient(c *client) error {
	rc := &realClient{}
	var err error
	if rc.signer, err = mls.NewSigner(w.suite, w.derive("mls signature key", fmt.Sprint(c.idx))); err != nil {
		return err
	}
	if rc.cred, err = mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: fmt.Sprintf("@u%d:%s", c.idx, c.srv.name), DeviceID: "SIM", SignatureKey: rc.signer.PublicKey()}); err != nil {
		return err
	}
	c.real = rc
	return w.freshKeyPackage(c)
}

type keyPackage struct {
	kp  *mls.KeyPackage
	sec *mls.KeyPackageSecrets
}

func (w *World) freshKeyPackage(c *client) error {
	rc := c.real
	if rc.kp != nil {
		rc.old = append(rc.old, keyPackage{rc.kp, rc.kpSec})
	}
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: rc.signer, Credential: rc.cred, Now: func() time.Time { return w.now }})
	if err != nil {
		return fmt.Errorf("sim: key package of client %d: %w", c.idx, err)
	}
	rc.kp, rc.kpSec = kp, sec
	return nil
}

// skipRand consumes what the model's fake MLS message takes from the
// run's random stream, so that both modes draw the same workload.
func (w *World) skipRand() {
	w.randBytes(28)
	w.randBytes(48)
}

// realCreate makes client 0's group and the epoch-0 commit adding every
// other client; it returns the commit's MLSMessage.
func (w *World) realCreate(c0 *client) ([]byte, error) {
	rc := c0.real
	g, err := mls.CreateGroup(mls.CreateParams{GroupID: []byte(w.roomID), Signer: rc.signer, Credential: rc.cred, Config: w.groupConfig()})
	if err != nil {
		return nil, fmt.Errorf("sim: creating the MLS group: %w", err)
	}
	rc.group = g
	var props []*mls.Proposal
	for _, c := range w.clients[1:] {
		props = append(props, &mls.Proposal{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *c.real.kp}})
	}
	return w.realCommit(c0, props)
}

// realCommit stages a commit of props by c carrying the federation map
// and returns its MLSMessage; the Welcome is kept for the joiners.
func (w *World) realCommit(c *client, props []*mls.Proposal) ([]byte, error) {
	rc := c.real
	sc, err := rc.group.Commit(mls.CommitOptions{Proposals: props, AuthenticatedData: w.fedAD})
	if err != nil {
		return nil, fmt.Errorf("sim: client %d committing: %w", c.idx, err)
	}
	wire, err := sc.Message.MarshalMLS()
	if err != nil {
		return nil, err
	}
	rc.staged = sc
	w.skipRand()
	if sc.Welcome != nil {
		w.pendingWelcome = sc.Welcome
	}
	return wire, nil
}

// realProposals are the proposals of change ch in c's group: a new key
// package of the client added (after removing its old leaf when it is
// still in the group: a new Welcome), the removed client's leaf.
func (w *World) realProposals(c *client, ch change) []*mls.Proposal {
	leafOf := func(t *client) (uint32, bool) {
		for _, m := range c.real.group.Members() {
			if bytes.Equal(m.LeafNode.SignatureKey, t.real.signer.PublicKey()) {
				return m.LeafIndex, true
			}
		}
		return 0, false
	}
	var props []*mls.Proposal
	if ch.remove >= 0 {
		if leaf, ok := leafOf(w.clients[ch.remove]); ok {
			props = append(props, &mls.Proposal{ProposalType: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: leaf}})
		}
	}
	if ch.add >= 0 {
		t := w.clients[ch.add]
		if leaf, ok := leafOf(t); ok {
			props = append(props, &mls.Proposal{ProposalType: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: leaf}})
		}
		props = append(props, &mls.Proposal{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *t.real.kp}})
	}
	return props
}

// realMerge applies commit ev on c's group: its own staged commit, or the
// commit processed. keep returns the state before it (nil: not kept).
func (c *client) realMerge(ev *rvEvent, ct int, keep bool) ([]byte, error) {
	rc := c.real
	var before []byte
	if keep {
		var err error
		if before, err = rc.group.MarshalState(); err != nil {
			return nil, err
		}
	}
	sc := rc.staged
	if sc == nil || c.staged != ct {
		var msg mls.MLSMessage
		if err := msg.UnmarshalMLS(ev.Ciphertext()); err != nil {
			return nil, err
		}
		r, err := rc.group.Process(&msg)
		if err != nil || r.Commit == nil {
			return nil, fmt.Errorf("sim: client %d processing the commit of epoch %d: %v", c.idx, ev.Epoch(), err)
		}
		sc = r.Commit
	}
	if err := rc.group.Merge(sc); err != nil {
		return nil, fmt.Errorf("sim: client %d merging the commit of epoch %d: %w", c.idx, ev.Epoch(), err)
	}
	rc.staged = nil
	return before, nil
}

// realRollback loads a kept state.
func (c *client) realRollback(state []byte) error {
	g, err := mls.LoadGroup(state, c.w.groupConfig())
	if err != nil {
		return fmt.Errorf("sim: client %d loading a kept state: %w", c.idx, err)
	}
	c.real.group, c.real.staged = g, nil
	return nil
}

// realJoin joins from the Welcome of commit ct (or merges its own commit
// for the room's creator).
func (c *client) realJoin(ev *rvEvent, ct int) error {
	w, rc := c.w, c.real
	if rc.staged != nil && c.staged == ct {
		_, err := c.realMerge(ev, ct, false)
		return err
	}
	wel := w.welcomes[ct]
	if wel == nil {
		return fmt.Errorf("sim: client %d: no Welcome for the commit of epoch %d", c.idx, ev.Epoch())
	}
	g, err := mls.JoinFromWelcome(wel.Welcome, mls.JoinParams{KeyPackage: rc.kp, Secrets: rc.kpSec, Signer: rc.signer, Config: w.groupConfig()})
	for i := len(rc.old) - 1; err != nil && i >= 0; i-- {
		g, err = mls.JoinFromWelcome(wel.Welcome, mls.JoinParams{KeyPackage: rc.old[i].kp, Secrets: rc.old[i].sec, Signer: rc.signer, Config: w.groupConfig()})
	}
	if err != nil {
		return fmt.Errorf("sim: client %d joining from the Welcome of epoch %d: %w", c.idx, ev.Epoch(), err)
	}
	rc.group, rc.staged = g, nil
	return w.freshKeyPackage(c)
}

// realEncrypt encrypts a message in c's group.
func (c *client) realEncrypt() ([]byte, error) {
	msg, err := c.real.group.Encrypt([]byte(`{"type":"m.room.message","content":{"msgtype":"m.text","body":"sim"}}`), nil)
	if err != nil {
		return nil, fmt.Errorf("sim: client %d encrypting: %w", c.idx, err)
	}
	c.w.skipRand()
	return msg.MarshalMLS()
}

// onMessage tries to decrypt a message the server delivered: in the mls
// mode with the client's group, in the model when the client holds the
// keys of the message's epoch (one of the last epochHistory+1 epochs its
// group went through).
func (c *client) onMessage(ev *rvEvent) {
	w := c.w
	i, ok := w.msgIndex[ev.EventID()]
	if !ok || w.msgs[i].sender == c.idx || !c.joined {
		return
	}
	if c.real == nil {
		if slices.Contains(c.recent, w.msgs[i].ct) {
			w.markRead(i, c.idx)
		}
		return
	}
	var msg mls.MLSMessage
	if err := msg.UnmarshalMLS(ev.Ciphertext()); err != nil {
		return
	}
	if r, err := c.real.group.Process(&msg); err == nil && r.ContentType == mls.ContentTypeApplication {
		w.markRead(i, c.idx)
	}
}

// markRead records that client c decrypted message i.
func (w *World) markRead(i, c int) {
	for len(w.readBits) <= i {
		w.readBits = append(w.readBits, nil)
	}
	if w.readBits[i] == nil {
		w.readBits[i] = make([]uint64, (len(w.clients)+63)/64)
	}
	w.readBits[i][c/64] |= 1 << (c % 64)
}

// isRead reports whether client c decrypted message i.
func (w *World) isRead(i, c int) bool {
	return i < len(w.readBits) && w.readBits[i] != nil && w.readBits[i][c/64]&(1<<(c%64)) != 0
}
