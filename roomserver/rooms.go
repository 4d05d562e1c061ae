package roomserver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/storage"
)

// room is the in-memory view of one room: every event it holds (accepted
// and soft-failed) and its current state, refreshed from storage by NID.
// mu serialises the process's writes to the room and guards the view.
type room struct {
	mu      sync.Mutex
	id      string
	info    storage.Room
	mem     *authrules.MemRoom
	lastNID int64
	current storage.RoomState
}

// room returns the room's view, loading it on first use and refreshing it
// from storage. The caller holds r.mu on return and must unlock it. An
// unknown room is 404 M_NOT_FOUND.
func (s *Server) lockRoom(ctx context.Context, roomID string) (*room, error) {
	s.mu.Lock()
	r := s.rooms[roomID]
	if r == nil {
		r = &room{id: roomID}
		s.rooms[roomID] = r
	}
	s.mu.Unlock()
	r.mu.Lock()
	if err := s.refresh(ctx, r); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// refresh adds the events stored since the last refresh (by this process or
// another) and reads the current state. r.mu is held.
func (s *Server) refresh(ctx context.Context, r *room) error {
	if r.mem == nil {
		info, err := s.st.Room(ctx, r.id)
		if errors.Is(err, storage.ErrNotFound) {
			return matrixerr.NotFound("unknown room %s", r.id)
		}
		if err != nil {
			return fmt.Errorf("loading room %s: %w", r.id, err)
		}
		cur, err := s.st.CurrentState(ctx, r.id)
		if errors.Is(err, storage.ErrNotFound) {
			return matrixerr.NotFound("room %s has no create event here", r.id)
		}
		if err != nil {
			return fmt.Errorf("loading room %s: %w", r.id, err)
		}
		create, err := s.st.Event(ctx, cur.CreateID)
		if err != nil {
			return fmt.Errorf("loading room %s: create event: %w", r.id, err)
		}
		r.info, r.mem = info, authrules.NewMemRoom(create.Event)
	}
	evs, err := s.st.RoomEvents(ctx, r.id, r.lastNID, 0, 0, false)
	if err != nil {
		return fmt.Errorf("refreshing room %s: %w", r.id, err)
	}
	for _, ev := range evs {
		r.mem.Add(ev.Event)
		r.lastNID = ev.NID
	}
	cur, err := s.st.CurrentState(ctx, r.id)
	if err != nil {
		return fmt.Errorf("refreshing room %s: current state: %w", r.id, err)
	}
	r.current = cur
	if cur.CommitID == "" {
		r.mem.SetCurrent(nil)
		return nil
	}
	c := r.mem.Event(cur.CommitID)
	if c == nil {
		se, err := s.st.Event(ctx, cur.CommitID)
		if err != nil {
			return fmt.Errorf("refreshing room %s: current commit: %w", r.id, err)
		}
		c = se.Event
	}
	r.mem.SetCurrent(c)
	return nil
}

// currentEpoch is the MLS epoch the room's group is in: the epoch the next
// commit carries (0 before the epoch-0 commit).
func (r *room) currentEpoch() int64 {
	if c := r.mem.Commit(); c != nil {
		return int64(c.Epoch()) + 1
	}
	return 0
}

// wrongEpoch is the 409 of SPEC-NOTES §11 for r's current commit.
func (r *room) wrongEpoch(format string, args ...any) error {
	id := ""
	if c := r.mem.Commit(); c != nil {
		id = c.EventID()
	}
	return matrixerr.WrongEpoch(r.currentEpoch(), id, format, args...)
}

// federation returns the federation map of the current commit, or the
// virtual genesis map (powers and servers [room ID domain]) before the
// epoch-0 commit (SPEC-NOTES §4).
func (r *room) federation() (fedmap.Federation, error) {
	c := r.mem.Commit()
	if c == nil {
		d := roomversion.Domain(r.id)
		return fedmap.Federation{Powers: []string{d}, Servers: []string{d}}, nil
	}
	m, err := c.FederationMap()
	if err != nil {
		return fedmap.Federation{}, fmt.Errorf("room %s: current commit's federation map: %w", r.id, err)
	}
	return m.Federation, nil
}

// onMainline returns the current mainline's commit that c is or is
// equivalent to (SPEC-NOTES §4), or nil.
func (r *room) onMainline(c *roomversion.Event) *roomversion.Event {
	return authrules.OnMainline(r.mem, c)
}
