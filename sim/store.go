package sim

import (
	"context"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/storage"
)

// memStore is the in-memory storage a simulated server's pending-commit
// queue runs on (commitqueue.Store). Events come from the server's room
// (the events it accepted and rejected); the current state is the room's
// current commit; only the queue itself is kept here. The simulator is
// single-threaded, so claiming needs no lock.
type memStore struct {
	srv     *server
	pending map[string]*storage.PendingCommit
	order   []string            // pending commit IDs in (receipt time, event ID) order
	refs    map[string][]string // event ID -> commits naming it as a prev event
	waiting int                 // pending commits in status waiting
}

var _ commitqueue.Store = (*memStore)(nil)

func newMemStore(srv *server) *memStore {
	return &memStore{srv: srv, pending: map[string]*storage.PendingCommit{}, refs: map[string][]string{}}
}

func (m *memStore) setStatus(pc *storage.PendingCommit, st storage.PendingStatus) {
	if pc.Status == storage.PendingWaiting && st != storage.PendingWaiting {
		m.waiting--
		m.srv.w.waiting--
	}
	pc.Status = st
}

// AddPendingCommit queues a pending commit.
func (m *memStore) AddPendingCommit(_ context.Context, pc storage.PendingCommit) (bool, error) {
	if _, ok := m.pending[pc.EventID]; ok {
		return false, nil
	}
	pc.Status = storage.PendingWaiting
	pc.Windows = slices.Clone(pc.Windows)
	m.pending[pc.EventID] = &pc
	i, _ := slices.BinarySearchFunc(m.order, pc.EventID, func(id, target string) int {
		a := m.pending[id]
		if a.ReceivedTS != pc.ReceivedTS {
			if a.ReceivedTS < pc.ReceivedTS {
				return -1
			}
			return 1
		}
		switch {
		case id < target:
			return -1
		case id > target:
			return 1
		}
		return 0
	})
	m.order = slices.Insert(m.order, i, pc.EventID)
	m.waiting++
	m.srv.w.waiting++
	m.srv.queued(pc)
	return true, nil
}

// PendingCommit returns a queued pending commit.
func (m *memStore) PendingCommit(_ context.Context, eventID string) (storage.PendingCommit, error) {
	pc, ok := m.pending[eventID]
	if !ok {
		return storage.PendingCommit{}, fmt.Errorf("pending commit %s: %w", eventID, storage.ErrNotFound)
	}
	out := *pc
	out.Windows = slices.Clone(pc.Windows)
	return out, nil
}

// PendingCommits lists the room's pending commits in a status.
func (m *memStore) PendingCommits(_ context.Context, roomID string, status storage.PendingStatus) ([]storage.PendingCommit, error) {
	var out []storage.PendingCommit
	if status == storage.PendingWaiting && m.waiting == 0 {
		return nil, nil
	}
	for _, id := range m.order {
		pc := m.pending[id]
		if pc.RoomID == roomID && pc.Status == status {
			c := *pc
			c.Windows = slices.Clone(pc.Windows)
			out = append(out, c)
		}
	}
	return out, nil
}

// PendingCommitRooms lists the rooms with a pending commit in status.
func (m *memStore) PendingCommitRooms(_ context.Context, status storage.PendingStatus) ([]string, error) {
	if status == storage.PendingWaiting {
		if m.waiting > 0 {
			return []string{m.srv.w.roomID}, nil
		}
		return nil, nil
	}
	for _, id := range m.order {
		if m.pending[id].Status == status {
			return []string{m.srv.w.roomID}, nil
		}
	}
	return nil, nil
}

// claim is ClaimPendingCommit and the claiming half of ApplyPendingCommit.
func (m *memStore) claim(eventID, appliedCommitID string) (storage.ClaimResult, error) {
	pc, ok := m.pending[eventID]
	if !ok {
		return 0, fmt.Errorf("claiming pending commit %s: %w", eventID, storage.ErrNotFound)
	}
	if pc.Status != storage.PendingWaiting {
		return storage.ClaimTaken, nil
	}
	cur := m.srv.currentID()
	if pc.CommitID != cur {
		m.setStatus(pc, storage.PendingStale)
		return storage.ClaimStale, nil
	}
	m.setStatus(pc, storage.PendingApplied)
	pc.AppliedCommitID = appliedCommitID
	return storage.ClaimWon, nil
}

// ClaimPendingCommit claims a waiting pending commit.
func (m *memStore) ClaimPendingCommit(_ context.Context, eventID, appliedCommitID string) (storage.ClaimResult, error) {
	return m.claim(eventID, appliedCommitID)
}

// ApplyPendingCommit claims a pending commit; the commit itself is taken
// into the server's room by the Applier's Apply, which runs next.
func (m *memStore) ApplyPendingCommit(_ context.Context, eventID string, commit *rvEvent, _ storage.StoreEventOptions) (storage.ClaimResult, error) {
	return m.claim(eventID, commit.EventID())
}

// SetPendingCommitStatus moves a waiting pending commit to stale or expired.
func (m *memStore) SetPendingCommitStatus(_ context.Context, eventID string, status storage.PendingStatus) (bool, error) {
	pc, ok := m.pending[eventID]
	if !ok {
		return false, fmt.Errorf("pending commit %s: %w", eventID, storage.ErrNotFound)
	}
	if pc.Status != storage.PendingWaiting {
		return false, nil
	}
	m.setStatus(pc, status)
	return true, nil
}

// Event returns an event the server holds (accepted, soft-failed or
// rejected).
func (m *memStore) Event(_ context.Context, eventID string) (*storage.StoredEvent, error) {
	s := m.srv
	if s.rp.Room() != nil {
		if ev := s.rp.Room().Event(eventID); ev != nil {
			_, sf := s.softFailed[eventID]
			return &storage.StoredEvent{Event: ev, SoftFailed: sf}, nil
		}
	}
	if ev := s.rp.Rejected(eventID); ev != nil {
		return &storage.StoredEvent{Event: ev, Rejected: true}, nil
	}
	return nil, fmt.Errorf("event %s: %w", eventID, storage.ErrNotFound)
}

// CurrentState returns the room's current state.
func (m *memStore) CurrentState(_ context.Context, roomID string) (storage.RoomState, error) {
	s := m.srv
	if s.rp.Room() == nil || roomID != s.w.roomID {
		return storage.RoomState{}, fmt.Errorf("current state of %s: %w", roomID, storage.ErrNotFound)
	}
	return storage.RoomState{CreateID: s.rp.Room().Create().EventID(), CommitID: s.currentID()}, nil
}

// EventReferences returns the commits naming eventID as a prev event (the
// only references the queue reads).
func (m *memStore) EventReferences(_ context.Context, eventID string) ([]string, error) {
	return slices.Clone(m.refs[eventID]), nil
}
