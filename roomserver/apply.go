package roomserver

import (
	"context"
	"fmt"
	"slices"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/roomversion"
)

// applier turns pending commits into commits for the commit queue
// (SPEC-NOTES §6).
type applier struct{ s *Server }

var _ commitqueue.Applier = applier{}

// Build makes the m.mls.commit applying pending on current: pending's
// content unchanged, auth events [create, current], pending first among its
// prev events (then the other forward extremities).
func (a applier) Build(ctx context.Context, pending, current *roomversion.Event) (*roomversion.Event, error) {
	s := a.s
	r, err := s.lockRoom(ctx, pending.RoomID().String())
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	v := r.info.Version
	prev, err := s.prevEvents(ctx, r.id)
	if err != nil {
		return nil, err
	}
	prev = slices.DeleteFunc(prev, func(id string) bool { return id == pending.EventID() })
	prev = append([]string{pending.EventID()}, prev...)
	if len(prev) > s.cfg.MaxPrevEvents {
		prev = prev[:s.cfg.MaxPrevEvents]
	}
	empty := ""
	b := &roomversion.Builder{Version: v, RoomID: r.id, Type: v.CommitType(), StateKey: &empty,
		Content: pending.Content(), AuthEvents: []string{r.mem.Create().EventID(), current.EventID()}, PrevEvents: prev,
		Origin: s.cfg.ServerName, Timestamp: s.now()}
	ev, err := authrules.BuildEvent(ctx, b, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("building the commit of pending commit %s: %w", pending.EventID(), err)
	}
	if err := authrules.Check(ev, current, r.mem.State(current)); err != nil {
		return nil, fmt.Errorf("the commit of pending commit %s fails the auth rules: %w", pending.EventID(), err)
	}
	return ev, nil
}

// Apply is called once the queue has stored commit as the room's current
// commit: it refreshes the room's view, wakes /sync and sends the commit.
func (a applier) Apply(ctx context.Context, pending, commit *roomversion.Event) error {
	s := a.s
	r, err := s.lockRoom(ctx, commit.RoomID().String())
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	return s.afterStore(ctx, r, commit, r.mem.AuthCommit(commit))
}
