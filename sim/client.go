package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/mlsmode/mlsmode/mls"
)

// client is one user's device in the model: the MLS commit its state is at,
// the states it kept from before each commit within security.window (to
// roll back to), the commits whose epochs it holds keys for, and whether it
// lost the room (it needs a new Welcome).
type client struct {
	w       *World
	idx     int
	srv     *server
	real    *realClient // "mls" mode only
	joined  bool        // has a usable MLS state
	removed bool
	stuck   bool // lost its state: needs a new Welcome
	at      int  // model commit its state is at; -1 none
	atID    string
	kept    []kept
	history map[int]bool // model commits whose epoch keys it ever held
	// recent are the model commits whose epochs' keys it holds now: the
	// current one and the epochHistory before it on its group's path.
	recent []int
	staged int // its own commit, sent and not yet resolved; -1 none
	// neededWelcome counts the times it lost its state.
	neededWelcome int
}

type kept struct {
	ct     int
	since  time.Time // when the client left that commit
	state  []byte    // the MLS state ("mls" mode)
	recent []int     // recent at that commit
}

// epochHistory is how many past epochs' keys a client keeps for late
// messages (the mls package's default, which the mls mode uses).
const epochHistory = mls.DefaultEpochHistory

// ready reports whether the client can send.
func (c *client) ready() bool { return c.joined && !c.stuck }

// propose sends a commit applying ch on the client's current commit: an
// m.mls.commit from powers[0], a pending commit from elsewhere.
func (c *client) propose(ch change, kind string) error {
	s, w := c.srv, c.w
	cur := s.current()
	ct := w.newCommit(c.at, ch)
	var msg []byte
	var err error
	if w.real {
		msg, err = w.realCommit(c, w.realProposals(c, ch))
	} else {
		msg, err = w.mlsMessage(cur.Epoch()+1, mls.ContentTypeCommit, w.fedAD)
	}
	if err != nil {
		return err
	}
	w.cts[string(msg)] = ct
	w.takeWelcome(ct)
	typ, sk, k := w.version.PendingCommitType(), (*string)(nil), "pending"
	if w.powers[0] == s.name {
		typ, sk, k = w.version.CommitType(), new(string), "commit"
	}
	if kind != "" {
		k = kind
	}
	ev, err := s.submit(typ, sk, msg, cur.EventID())
	if err != nil {
		return err
	}
	c.staged = ct
	p := &proposal{ct: ct, kind: k, client: c.idx, at: w.now}
	if typ == w.version.PendingCommitType() {
		p.pending = ev
	}
	w.proposals = append(w.proposals, p)
	return s.accept(ev)
}

// onCommit handles a commit the client's server accepted (not soft-failed).
func (c *client) onCommit(ev *rvEvent, ct int) {
	w := c.w
	if ct < 0 {
		return
	}
	mc := w.commits[ct]
	welcome := mc.change.all || mc.change.add == c.idx
	switch {
	case ct == c.at || c.history[ct]:
		return // an equivalent commit: the same MLS commit applied twice
	case c.joined && mc.parent == c.at:
		if mc.change.add == c.idx {
			// Added again while it still has the room (two members
			// answered its loss): its old leaf goes, and it joins from
			// the commit's Welcome.
			c.join(ev, ct)
			return
		}
		c.merge(ev, ct)
		return
	case !c.stuck && c.at >= 0:
		// A commit on another branch: roll back to the state kept at its
		// parent if that is within the security window.
		for i := len(c.kept) - 1; i >= 0; i-- {
			k := c.kept[i]
			if k.ct != mc.parent {
				continue
			}
			if w.now.Sub(k.since) <= w.window {
				if w.real {
					if err := c.realRollback(k.state); err != nil {
						w.fail(err)
						return
					}
				}
				c.kept = c.kept[:i]
				c.recent = k.recent
				c.at, c.joined, c.removed = k.ct, true, false
				w.stats.rollbacks++
				c.merge(ev, ct)
				return
			}
			break
		}
	}
	if welcome {
		c.join(ev, ct)
		return
	}
	// A member whose state is on another branch (it merged a commit that
	// lost, its removal included) and could not roll back has lost the
	// room: it needs a new Welcome.
	if !c.stuck && (c.joined || c.removed) && mc.has(c.idx) {
		c.stuck, c.joined, c.removed = true, false, false
		if c.real != nil {
			c.real.group, c.real.staged = nil, nil
		}
		c.kept = nil
		c.neededWelcome++
		w.stats.welcomesNeeded++
		w.push(w.now.Add(time.Minute), kRewelcome, c.idx, 0, nil)
	}
}

// join takes the state a Welcome gives at commit ct.
func (c *client) join(ev *rvEvent, ct int) {
	if c.real != nil {
		if err := c.realJoin(ev, ct); err != nil {
			c.w.fail(err)
			return
		}
	}
	if c.stuck {
		c.w.stats.rewelcomed++
	}
	c.joined, c.stuck, c.removed = true, false, false
	c.at, c.atID, c.kept = ct, ev.EventID(), nil
	c.history[ct] = true
	c.recent = []int{ct}
	c.dropStaged()
}

// merge applies commit ct on the client's state.
func (c *client) merge(ev *rvEvent, ct int) {
	w := c.w
	var state []byte
	if c.real != nil {
		var err error
		if state, err = c.realMerge(ev, ct, w.window > 0); err != nil {
			w.fail(err)
			return
		}
	}
	if w.window > 0 {
		c.kept = append(c.kept, kept{ct: c.at, since: w.now, state: state, recent: slices.Clone(c.recent)})
	}
	c.at, c.atID = ct, ev.EventID()
	c.history[ct] = true
	c.recent = append(c.recent, ct)
	if len(c.recent) > epochHistory+1 {
		c.recent = slices.Delete(c.recent, 0, len(c.recent)-epochHistory-1)
	}
	i := 0
	for i < len(c.kept) && w.now.Sub(c.kept[i].since) > w.window {
		i++
	}
	c.kept = c.kept[i:]
	if w.commits[ct].change.remove == c.idx {
		c.joined, c.removed = false, true
	}
	c.dropStaged()
}

// dropStaged forgets the client's own commit once the group moved past its
// parent (merged or lost).
func (c *client) dropStaged() {
	if c.staged >= 0 && (c.staged == c.at || c.w.commits[c.staged].parent != c.at) {
		c.staged = -1
	}
}

func (c *client) String() string { return fmt.Sprintf("client %d on %s", c.idx, c.srv.name) }
