// Package roomserver owns the room logic of an mlsmode homeserver, below
// the HTTP layers: creating MLS rooms, building the events local clients
// send (choosing their auth commit, SPEC-NOTES §4 and §11), running the
// auth rules and soft-fail on them, storing them, waking /sync, handing
// pending commits to the commit queue and applying them (SPEC-NOTES §6),
// out-of-band network membership (SPEC-NOTES §7), and reading rooms for
// clients: state, single events with their soft-fail marking, /messages
// and /sync.
//
// A Server keeps, per room, an in-memory authrules.MemRoom refreshed from
// storage by event NID, so several processes sharing one database see each
// other's events; writes that depend on the room's current commit are
// conditional in storage (ExpectCurrent), so two processes never both
// accept a commit for one epoch. Within a process, writes to one room are
// taken one at a time.
//
// The client API (clientapi) calls it; federation will reuse it.
package roomserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// Remote reaches other servers; the federation layer implements it. A nil
// Remote means this server does not federate: events stay local and remote
// invitees and rooms are refused with a clear error.
type Remote interface {
	// SendEvent queues ev for the destination servers.
	SendEvent(ctx context.Context, ev *roomversion.Event, destinations []string) error
	// Invite sends a remote invite (SPEC-NOTES §12).
	Invite(ctx context.Context, inv RemoteInvite) error
}

// RemoteInvite is an invite for a user on another server.
type RemoteInvite struct {
	RoomVersion roomversion.Version
	Inviter     string
	Invitee     string
	Create      *roomversion.Event
	Commit      *roomversion.Event
}

// Config configures a Server.
type Config struct {
	// ServerName is this server's name; KeyID ("ed25519:...") and
	// PrivateKey its signing key.
	ServerName string
	KeyID      string
	PrivateKey ed25519.PrivateKey
	// Store is the server's storage.
	Store storage.Database
	// Clock defaults to commitqueue.RealClock(); the commit queue uses it
	// too.
	Clock commitqueue.Clock
	// Rand defaults to crypto/rand.Reader (room IDs).
	Rand io.Reader
	// Remote is nil for a server that does not federate.
	Remote Remote
	// QueuePollInterval is how often the commit queue looks for work
	// queued by other processes; default 1 s.
	QueuePollInterval time.Duration
	// MaxPrevEvents caps the prev events of a new event; default 20.
	MaxPrevEvents int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Keys finds other servers' signing keys, to verify the origin
	// signatures of received events (ReceivePDUs needs it).
	Keys roomversion.KeyFetcher
	// Fetcher fetches missing events from other servers while receiving
	// events; nil means none are fetched (an event whose auth events are
	// missing is then refused; missing prev events leave a gap).
	Fetcher Fetcher
	// MaxFetchPerPDU caps how many missing auth events, and how many
	// missing prev events, receiving one PDU fetches; default 100 each.
	MaxFetchPerPDU int
}

// Server is the room logic of one homeserver process.
type Server struct {
	cfg   Config
	st    storage.Database
	clock commitqueue.Clock
	queue *commitqueue.Scheduler
	hub   *hub

	mu    sync.Mutex
	rooms map[string]*room
	// toDeviceDeleted is how far each device's to-device inbox was
	// emptied by this process (user|device -> position).
	toDeviceDeleted map[string]int64
}

// New returns a Server; Start it to run the commit queue and /sync
// notifications.
func New(cfg Config) (*Server, error) {
	if cfg.ServerName == "" || cfg.KeyID == "" || len(cfg.PrivateKey) != ed25519.PrivateKeySize || cfg.Store == nil {
		return nil, errors.New("roomserver: ServerName, KeyID, PrivateKey and Store are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = commitqueue.RealClock()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.MaxPrevEvents <= 0 {
		cfg.MaxPrevEvents = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxFetchPerPDU <= 0 {
		cfg.MaxFetchPerPDU = 100
	}
	s := &Server{cfg: cfg, st: cfg.Store, clock: cfg.Clock, rooms: map[string]*room{}, toDeviceDeleted: map[string]int64{}}
	s.hub = newHub(cfg.Store, cfg.Logger)
	q, err := commitqueue.New(commitqueue.Config{
		ServerName: cfg.ServerName, Store: cfg.Store, Applier: applier{s}, Clock: cfg.Clock,
		PollInterval: cfg.QueuePollInterval,
		Logf: func(format string, args ...any) {
			cfg.Logger.Error("commit queue", slog.String("error", fmt.Sprintf(format, args...)))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("roomserver: %w", err)
	}
	s.queue = q
	return s, nil
}

// Start runs the commit queue and the /sync notifications until Stop.
func (s *Server) Start(ctx context.Context) error {
	if err := s.hub.start(ctx); err != nil {
		return fmt.Errorf("roomserver: subscribing to changes: %w", err)
	}
	s.queue.Start(ctx)
	return nil
}

// Stop stops what Start started.
func (s *Server) Stop() {
	s.queue.Stop()
	s.hub.stop()
}

// Queue returns the commit queue (tests drive it with Tick).
func (s *Server) Queue() *commitqueue.Scheduler { return s.queue }

// ServerName returns this server's name.
func (s *Server) ServerName() string { return s.cfg.ServerName }

func (s *Server) now() time.Time { return s.clock.Now() }

// notify wakes the /sync long-polls waiting on key; a failure is logged,
// not returned: the write it follows has happened.
func (s *Server) notify(ctx context.Context, keys ...string) {
	for _, k := range keys {
		if err := s.st.NotifyChange(ctx, k); err != nil {
			s.cfg.Logger.Warn("notifying a change", slog.String("key", k), slog.Any("error", err))
		}
	}
}
