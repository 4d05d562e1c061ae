package roomserver

import (
	"context"
	"fmt"
	"slices"
)

// roomServers is the union of `servers` of the current commits of rooms
// (the virtual genesis map before a room's epoch-0 commit).
func (s *Server) roomServers(ctx context.Context, rooms []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, id := range rooms {
		r, err := s.lockRoom(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("servers of room %s: %w", id, err)
		}
		f, err := r.federation()
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		for _, srv := range f.Servers {
			out[srv] = true
		}
	}
	return out, nil
}

// ServersSharedWith returns, sorted, the other servers that share a room
// with a user: the union of `servers` of the current commits of the rooms
// the user is joined to, without this server. They are the destinations
// of the user's m.device_list_update EDUs (federation.UserRemote.Servers).
func (s *Server) ServersSharedWith(ctx context.Context, userID string) ([]string, error) {
	rooms, err := s.JoinedRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	set, err := s.roomServers(ctx, rooms)
	if err != nil {
		return nil, err
	}
	delete(set, s.cfg.ServerName)
	out := make([]string, 0, len(set))
	for srv := range set {
		out = append(out, srv)
	}
	slices.Sort(out)
	return out, nil
}
