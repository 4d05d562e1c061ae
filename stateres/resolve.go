package stateres

import (
	"bytes"
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Store gives access to a room's events. It holds at least the commits of
// every state set and their auth chains.
type Store interface {
	// Event returns the event with that ID, or nil when it is not known.
	Event(id string) *roomversion.Event
}

// MapStore is a Store held in a map from event ID to event.
type MapStore map[string]*roomversion.Event

// Event returns s[id].
func (s MapStore) Event(id string) *roomversion.Event { return s[id] }

// Add adds events to s.
func (s MapStore) Add(events ...*roomversion.Event) {
	for _, e := range events {
		s[e.EventID()] = e
	}
}

// StateSet is the state of an MLS room at some point: its create event and
// its commit (nil before the epoch-0 commit).
type StateSet struct {
	Create *roomversion.Event
	Commit *roomversion.Event
}

// ErrNoStates is returned by Resolve for an empty input.
var ErrNoStates = errors.New("stateres: no state sets to resolve")

// Absent is the power of an origin that is not in powers: below everyone.
const Absent = math.MaxInt

// Power returns ev's power: the index of its origin in powers of
// authCommit, the commit in its auth events (0 for the epoch-0 commit, whose
// authCommit is nil), or Absent. A smaller number is more power.
func Power(ev, authCommit *roomversion.Event) int {
	if authCommit == nil {
		return 0
	}
	fm, err := authCommit.FederationMap()
	if err != nil {
		return Absent
	}
	if i := slices.Index(fm.Federation.Powers, ev.Origin()); i >= 0 {
		return i
	}
	return Absent
}

// Equivalent reports whether two commits are the same for state
// resolution: the same event, or byte-identical ciphertext (SPEC-NOTES §4).
// Two nils are equivalent.
func Equivalent(a, b *roomversion.Event) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || a.EventID() == b.EventID() || bytes.Equal(a.Ciphertext(), b.Ciphertext())
}

// AuthCommitID returns the ID in ev's auth events that is not createID,
// "" when there is none (the create event and the epoch-0 commit).
func AuthCommitID(ev *roomversion.Event, createID string) string {
	for _, id := range ev.AuthEventIDs() {
		if id != createID {
			return id
		}
	}
	return ""
}

// resolver holds one resolution's lookups.
type resolver struct {
	store  Store
	create *roomversion.Event
	parent map[string]*roomversion.Event // event ID -> auth commit (nil: none)
}

func newResolver(store Store, create *roomversion.Event) *resolver {
	return &resolver{store: store, create: create, parent: map[string]*roomversion.Event{}}
}

// authCommit returns ev's auth commit, nil for none; an error when the store
// does not hold it.
func (r *resolver) authCommit(ev *roomversion.Event) (*roomversion.Event, error) {
	if p, ok := r.parent[ev.EventID()]; ok {
		return p, nil
	}
	var p *roomversion.Event
	if id := AuthCommitID(ev, r.create.EventID()); id != "" {
		if p = r.store.Event(id); p == nil {
			return nil, fmt.Errorf("stateres: the store does not hold %s, the auth commit of %s", id, ev.EventID())
		}
		if p.Kind() != roomversion.EventCommit {
			return nil, fmt.Errorf("stateres: auth event %s of %s is a %s event, not a commit", id, ev.EventID(), p.Type())
		}
		if ev.Kind() == roomversion.EventCommit && p.Epoch()+1 != ev.Epoch() {
			return nil, fmt.Errorf("stateres: commit %s of epoch %d names auth commit %s of epoch %d", ev.EventID(), ev.Epoch(), id, p.Epoch())
		}
	} else if ev.Kind() == roomversion.EventCommit && ev.Epoch() != 0 {
		return nil, fmt.Errorf("stateres: commit %s of epoch %d names no auth commit", ev.EventID(), ev.Epoch())
	}
	r.parent[ev.EventID()] = p
	return p, nil
}

// key is the power ordering's sort key.
type key struct {
	power int
	ts    int64
	id    string
}

func (a key) compare(b key) int {
	if c := cmp.Compare(a.power, b.power); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ts, b.ts); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// node is a class of equivalent commits in the full conflicted set.
type node struct {
	key      key
	members  []*roomversion.Event // in key order
	keys     []key
	parents  []*roomversion.Event // members' auth commits, same order
	children []*node
	indeg    int
}

type nodeHeap []*node

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return h[i].key.compare(h[j].key) < 0 }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)        { *h = append(*h, x.(*node)) }
func (h *nodeHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}

// Resolve returns the resolved state of the state sets (see the package
// documentation). Every state set must have the same create event. The
// result is the same whatever the order of states.
func Resolve(states []StateSet, store Store) (StateSet, error) {
	if len(states) == 0 {
		return StateSet{}, ErrNoStates
	}
	create := states[0].Create
	if create == nil {
		return StateSet{}, errors.New("stateres: a state set has no create event")
	}
	conflicted := map[string]*roomversion.Event{}
	hasNil := false
	for _, s := range states {
		if s.Create == nil || s.Create.EventID() != create.EventID() {
			return StateSet{}, errors.New("stateres: the state sets have different create events")
		}
		if s.Commit == nil {
			hasNil = true
			continue
		}
		conflicted[s.Commit.EventID()] = s.Commit
	}
	switch {
	case len(conflicted) == 0:
		return StateSet{Create: create}, nil
	case len(conflicted) == 1 && !hasNil:
		for _, c := range conflicted {
			return StateSet{Create: create, Commit: c}, nil
		}
	}
	r := newResolver(store, create)
	full, err := r.fullConflicted(conflicted, hasNil)
	if err != nil {
		return StateSet{}, err
	}
	order, err := r.powerOrder(full)
	if err != nil {
		return StateSet{}, err
	}
	return StateSet{Create: create, Commit: r.iterate(order)}, nil
}

// fullConflicted returns the conflicted commits plus the auth difference.
func (r *resolver) fullConflicted(conflicted map[string]*roomversion.Event, hasNil bool) ([]*roomversion.Event, error) {
	full := make([]*roomversion.Event, 0, len(conflicted))
	inFull := make(map[string]bool, len(conflicted))
	frontier := make(map[string]*roomversion.Event, len(conflicted))
	for id, c := range conflicted {
		full = append(full, c)
		inFull[id] = true
		frontier[id] = c
	}
	// Walk the frontier down, highest epoch first (ties by ID, for a
	// deterministic walk), until it is one commit (the last common ancestor)
	// or, when a state set has no commit, empty.
	fh := &epochHeap{}
	for _, c := range frontier {
		heap.Push(fh, c)
	}
	for fh.Len() > 0 {
		if !hasNil && len(frontier) == 1 {
			// The last common ancestor: in the full set too, so that a fork
			// whose commits all fail resolves to its fork point.
			if c := (*fh)[0]; !inFull[c.EventID()] {
				inFull[c.EventID()] = true
				full = append(full, c)
			}
			break
		}
		c := heap.Pop(fh).(*roomversion.Event)
		delete(frontier, c.EventID())
		if !inFull[c.EventID()] {
			inFull[c.EventID()] = true
			full = append(full, c)
		}
		p, err := r.authCommit(c)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue
		}
		if _, ok := frontier[p.EventID()]; !ok {
			frontier[p.EventID()] = p
			heap.Push(fh, p)
		}
	}
	return full, nil
}

type epochHeap []*roomversion.Event

func (h epochHeap) Len() int { return len(h) }
func (h epochHeap) Less(i, j int) bool {
	if h[i].Epoch() != h[j].Epoch() {
		return h[i].Epoch() > h[j].Epoch()
	}
	return h[i].EventID() < h[j].EventID()
}
func (h epochHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *epochHeap) Push(x any)   { *h = append(*h, x.(*roomversion.Event)) }
func (h *epochHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// powerOrder returns the nodes of full in reverse topological power order.
func (r *resolver) powerOrder(full []*roomversion.Event) ([]*node, error) {
	byCT := make(map[string]*node, len(full))
	of := make(map[string]*node, len(full)) // event ID -> node
	nodes := make([]*node, 0, len(full))
	for _, c := range full {
		p, err := r.authCommit(c)
		if err != nil {
			return nil, err
		}
		k := key{power: Power(c, p), ts: int64(c.OriginServerTS()), id: c.EventID()}
		n := byCT[string(c.Ciphertext())]
		if n == nil {
			n = &node{key: k}
			byCT[string(c.Ciphertext())] = n
			nodes = append(nodes, n)
		}
		n.members = append(n.members, c)
		n.keys = append(n.keys, k)
		n.parents = append(n.parents, p)
		if k.compare(n.key) < 0 {
			n.key = k
		}
		of[c.EventID()] = n
	}
	for _, n := range nodes {
		if len(n.members) > 1 {
			idx := make([]int, len(n.members))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(a, b int) int { return n.keys[a].compare(n.keys[b]) })
			m, k, p := make([]*roomversion.Event, len(idx)), make([]key, len(idx)), make([]*roomversion.Event, len(idx))
			for i, j := range idx {
				m[i], k[i], p[i] = n.members[j], n.keys[j], n.parents[j]
			}
			n.members, n.keys, n.parents = m, k, p
		}
		seen := map[*node]bool{}
		for _, p := range n.parents {
			if p == nil {
				continue
			}
			pn := of[p.EventID()]
			if pn == nil || pn == n || seen[pn] {
				continue
			}
			seen[pn] = true
			pn.children = append(pn.children, n)
			n.indeg++
		}
	}
	h := &nodeHeap{}
	for _, n := range nodes {
		if n.indeg == 0 {
			heap.Push(h, n)
		}
	}
	order := make([]*node, 0, len(nodes))
	for h.Len() > 0 {
		n := heap.Pop(h).(*node)
		order = append(order, n)
		for _, c := range n.children {
			if c.indeg--; c.indeg == 0 {
				heap.Push(h, c)
			}
		}
	}
	if len(order) != len(nodes) {
		return nil, errors.New("stateres: the auth events of the conflicted commits form a cycle")
	}
	return order, nil
}

// iterate runs the iterative auth checks and returns the resolved commit.
func (r *resolver) iterate(order []*node) *roomversion.Event {
	var cur *roomversion.Event
	for _, n := range order {
		for i, c := range n.members {
			if r.pass(c, n.parents[i], cur) {
				cur = c
				break
			}
		}
	}
	return cur
}

// pass reports whether c passes the auth rules against the partially
// resolved commit cur (nil: none yet; c's auth commit p stands in).
func (r *resolver) pass(c, p, cur *roomversion.Event) bool {
	state := cur
	if state == nil {
		state = p
	} else if !Equivalent(p, cur) {
		return false // the chain rule
	}
	return authrules.Check(c, p, &authrules.Snapshot{CreateEvent: r.create, CommitEvent: state}) == nil
}

// Mainline returns the mainline of commit indexed by epoch: Mainline[e] is
// the commit of epoch e on commit's chain of auth commits, and the last
// entry is commit. It returns nil for a nil commit.
func Mainline(commit *roomversion.Event, create *roomversion.Event, store Store) ([]*roomversion.Event, error) {
	if commit == nil {
		return nil, nil
	}
	return newResolver(store, create).mainline(commit)
}

func (r *resolver) mainline(commit *roomversion.Event) ([]*roomversion.Event, error) {
	ml := make([]*roomversion.Event, commit.Epoch()+1)
	for c := commit; c != nil; {
		if int(c.Epoch()) >= len(ml) || ml[c.Epoch()] != nil {
			return nil, fmt.Errorf("stateres: the chain of %s is not consecutive at %s", commit.EventID(), c.EventID())
		}
		ml[c.Epoch()] = c
		p, err := r.authCommit(c)
		if err != nil {
			return nil, err
		}
		c = p
	}
	if ml[0] == nil {
		return nil, fmt.Errorf("stateres: the chain of %s does not reach epoch 0", commit.EventID())
	}
	return ml, nil
}
