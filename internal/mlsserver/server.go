package mlsserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/federation/sender"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// healthTimeout bounds the storage check of GET /health.
const healthTimeout = 5 * time.Second

// Addresses are the bound addresses ("host:port") of a running server.
type Addresses struct {
	// Client is the client API's listener.
	Client string
	// Federation is the federation listener's, "" when federation is off.
	Federation string
}

// outboundRescanInterval is how often the federation queue looks for
// destinations with items it has no worker for.
const outboundRescanInterval = 30 * time.Second

// Options change the assembled server beyond what its settings can, for
// the tests of tools that must tell a misbehaving server apart (the
// conformance suite's own tests). The zero Options is the server as
// configured.
type Options struct {
	// Users, if not nil, is called with the userapi settings before the
	// user service is made, and may change them (userapi.Config's
	// CheckKeyPackage, for example).
	Users func(*userapi.Config)
}

// Run is the whole server: it reads the settings from args (flags, and the
// YAML file of --config), opens storage, loads or creates the signing key,
// serves the client API (and, with federation.enabled, the federation API
// on its own HTTPS listener) until ctx ends, then shuts down gracefully:
// the listeners close, requests in flight get up to shutdown_timeout to
// finish, the room server and the federation sender stop and storage
// closes. The bound addresses are sent on ready (if not nil) once the
// server accepts connections. It returns nil after a clean shutdown. -h
// prints the usage to stdout and returns flag.ErrHelp; command-line
// mistakes are usageErrors.
//
// The caller must have registered the MLS room versions
// (roomversion.Register) before, with no concurrent gomatrixserverlib use.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- Addresses) error {
	return RunOptions(ctx, args, stdout, stderr, ready, Options{})
}

// RunOptions is Run with the server changed by opts.
func RunOptions(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- Addresses, opts Options) (err error) {
	cfg, err := loadConfig(args, stdout)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.level}))
	clock := newClock(cfg.Clock)
	if cfg.Clock.changed() {
		log.Warn("clock changed by the clock settings: for tests only, never in production",
			"offset", cfg.Clock.Offset, "speed", cfg.Clock.Speed, "start", cfg.Clock.Start,
			"now", clock.Now().UTC().Format(time.RFC3339Nano))
	}

	var cert tls.Certificate
	if cfg.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert and tls_key: %w", err)
		}
	}
	var fedTLS fedTLSFiles
	if cfg.Federation.Enabled {
		if fedTLS, err = loadFederationTLS(cfg.Federation); err != nil {
			return err
		}
	}
	if cfg.usesDataDir() {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
	}
	key, created, err := loadOrCreateSigningKey(cfg.signingKeyPath(), rand.Reader)
	if err != nil {
		return err
	}
	pub := base64.RawStdEncoding.EncodeToString(key.Public())
	if created {
		log.Info("created signing key", "path", cfg.signingKeyPath(), "key_id", key.ID, "public_key", pub)
	} else {
		log.Info("loaded signing key", "path", cfg.signingKeyPath(), "key_id", key.ID, "public_key", pub)
	}

	dsn := cfg.databaseDSN()
	backend := "sqlite"
	if isPostgres(dsn) {
		backend = "postgres"
	}
	db, err := storage.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database %s: %w", redactDSN(dsn), err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing storage: %w", cerr))
		} else {
			log.Info("storage closed")
		}
	}()
	version, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("database %s: reading schema version: %w", redactDSN(dsn), err)
	}
	log.Info("storage open", "backend", backend, "database", redactDSN(dsn), "schema_version", version)

	roomsCfg := roomserver.Config{
		ServerName: cfg.ServerName, KeyID: key.ID, PrivateKey: key.Priv, Store: db,
		Logger: log.With("component", "roomserver"), Clock: clock,
	}
	if cfg.Clock.Speed > 1 {
		// The commit queue's full scan stays about once a real second
		// (its default); windows are timed to the due time anyway.
		roomsCfg.QueuePollInterval = time.Duration(cfg.Clock.Speed * float64(time.Second))
	}
	usersCfg := userapi.Config{
		ServerName: cfg.ServerName, Store: db, RegistrationDisabled: !cfg.Registration,
		Logger: log.With("component", "userapi"), Clock: clock.Now,
	}
	// Federation: the API first, the outbound queue on its client, then
	// the room and user logic reach other servers through both.
	var fed *federation.API
	var outbound *sender.Sender
	var userRemote *federation.UserRemote
	if cfg.Federation.Enabled {
		fed, err = federation.New(federation.Config{
			ServerName: cfg.ServerName, KeyID: key.ID, PrivateKey: key.Priv, Store: db,
			Transport: fedTLS.transport, Resolve: cfg.Federation.Resolve,
			Logger: log.With("component", "federation"), Clock: clock.Now,
		})
		if err != nil {
			return err
		}
		outbound, err = sender.New(sender.Config{
			ServerName: cfg.ServerName, Store: db, Transport: fed.Client(),
			Logger: log.With("component", "sender"), Clock: clock,
			// Processes sharing one database send what another queued
			// and could not send (it stopped or crashed).
			RescanInterval: outboundRescanInterval,
		})
		if err != nil {
			return err
		}
		roomsCfg.Keys, roomsCfg.Fetcher = fed.KeyFetcher(), fed.Fetcher()
		roomsCfg.Remote = federation.RoomRemote{Events: outbound, Client: fed.Client()}
		userRemote = federation.NewUserRemote(fed.Client(), outbound)
		usersCfg.Remote = userRemote
	}
	if opts.Users != nil {
		opts.Users(&usersCfg)
	}
	rooms, err := roomserver.New(roomsCfg)
	if err != nil {
		return err
	}
	if userRemote != nil {
		// Device list updates go to the servers sharing a room with the user.
		userRemote.Servers = rooms.ServersSharedWith
	}
	users, err := userapi.New(usersCfg)
	if err != nil {
		return err
	}
	if fed != nil {
		fed.Attach(rooms, users)
	}
	api, err := clientapi.New(clientapi.Config{
		ServerName: cfg.ServerName, Rooms: rooms, Users: users, BaseURL: cfg.BaseURL,
		RateLimit: clientapi.RateLimit{Disabled: !cfg.RateLimit.Enabled, PerSecond: cfg.RateLimit.PerSecond, Burst: cfg.RateLimit.Burst},
		Logger:    log.With("component", "clientapi"), Clock: clock.Now,
	})
	if err != nil {
		return err
	}

	// The room server and the sender outlive the HTTP servers: requests
	// in flight at shutdown still have the commit queue, /sync wake-ups
	// and the outbound queue. The deferred stops run in reverse: the room
	// server stops, then the sender, then storage closes.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	if outbound != nil {
		// Started once the listeners serve (below); stopping a Sender
		// that never started does nothing.
		defer func() {
			outbound.Stop()
			log.Info("federation sender stopped")
		}()
	}
	if err := rooms.Start(bgCtx); err != nil {
		return err
	}
	defer func() {
		stopBackground()
		rooms.Stop()
		log.Info("room server stopped")
	}()

	// The client listener serves the client API only; /_matrix/federation
	// and /_matrix/key are on the federation listener.
	router := mux.NewRouter()
	router.HandleFunc("/health", health(db, log)).Methods(http.MethodGet, http.MethodHead)
	api.Register(router)

	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	client, err := listen(cfg.Listen, "listen", router, tlsCfg, log)
	if err != nil {
		return err
	}
	servers := []*listener{client}
	if fed != nil {
		fedRouter := mux.NewRouter()
		fed.Register(fedRouter)
		fl, err := listen(cfg.Federation.Listen, "federation.listen", fedRouter,
			&tls.Config{Certificates: []tls.Certificate{fedTLS.cert}, MinVersion: tls.VersionTLS12}, log.With("listener", "federation"))
		if err != nil {
			client.close()
			return err
		}
		servers = append(servers, fl)
	}
	addrs := Addresses{Client: client.addr}
	log.Info("serving", "server_name", cfg.ServerName, "address", client.addr, "url", client.url(),
		"registration", cfg.Registration)
	if fed != nil {
		// Queued events go out once this server's key endpoint answers
		// the destinations' key fetches.
		outbound.Start(bgCtx)
		addrs.Federation = servers[1].addr
		log.Info("serving federation", "server_name", cfg.ServerName, "address", addrs.Federation,
			"url", servers[1].url(), "resolve", len(cfg.Federation.Resolve))
	}
	if ready != nil {
		select {
		case ready <- addrs:
		case <-ctx.Done():
		}
	}

	served := make(chan error, len(servers))
	for _, l := range servers {
		go func() { served <- l.wait() }()
	}
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new connections, finishing requests in flight", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-served:
		log.Error("server stopped", "error", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// Both listeners shut down together, sharing shutdown_timeout.
	var wg sync.WaitGroup
	for _, l := range servers {
		wg.Go(func() { l.shutdown(sctx) })
	}
	wg.Wait()
	return serveErr
}

// listener is one HTTP server on its listening socket.
type listener struct {
	setting string // the setting of its address, for errors
	addr    string
	https   bool
	srv     *http.Server
	served  chan error
	log     *slog.Logger
}

// listen binds addr and serves h on it (HTTPS if tlsCfg is not nil).
func listen(addr, setting string, h http.Handler, tlsCfg *tls.Config, log *slog.Logger) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	l := &listener{setting: setting, addr: ln.Addr().String(), https: tlsCfg != nil, served: make(chan error, 1), log: log,
		srv: &http.Server{
			Handler:           logRequests(h, log),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			TLSConfig:         tlsCfg,
		}}
	go func() {
		if l.https {
			l.served <- l.srv.ServeTLS(ln, "", "")
		} else {
			l.served <- l.srv.Serve(ln)
		}
	}()
	return l, nil
}

func (l *listener) url() string {
	if l.https {
		return "https://" + l.addr
	}
	return "http://" + l.addr
}

// wait returns when the server stops serving on its own (an error).
func (l *listener) wait() error {
	err := <-l.served
	return fmt.Errorf("serving %s %s: %w", l.setting, l.addr, err)
}

// shutdown stops the server gracefully, closing the connections still
// busy when ctx ends.
func (l *listener) shutdown(ctx context.Context) {
	if err := l.srv.Shutdown(ctx); err != nil {
		l.log.Warn("requests still in flight at shutdown_timeout: closing their connections", "error", err)
		_ = l.srv.Close()
	} else {
		l.log.Info("http server stopped")
	}
}

// close stops the server at once (a startup error after it was bound).
func (l *listener) close() { _ = l.srv.Close() }

// fedTLSFiles are the federation settings' files, read at start.
type fedTLSFiles struct {
	// cert is the federation listener's certificate.
	cert tls.Certificate
	// transport carries outbound federation requests: it trusts the
	// system roots plus federation.trust_ca.
	transport *http.Transport
}

// loadFederationTLS reads federation.tls_cert, tls_key and trust_ca.
func loadFederationTLS(f federationConfig) (fedTLSFiles, error) {
	var out fedTLSFiles
	cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
	if err != nil {
		return out, fmt.Errorf("federation.tls_cert and federation.tls_key: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if f.TrustCA != "" {
		pem, err := os.ReadFile(f.TrustCA)
		if err != nil {
			return out, fmt.Errorf("federation.trust_ca: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return out, fmt.Errorf("federation.trust_ca %s: no PEM certificate in it", f.TrustCA)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	out.cert, out.transport = cert, tr
	return out, nil
}

// health answers GET /health: 200 {"status":"ok"} if storage answers
// within healthTimeout, else 503 {"status":"unavailable"}.
func health(db storage.Database, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		status, body := http.StatusOK, map[string]string{"status": "ok"}
		if _, err := db.SchemaVersion(ctx); err != nil {
			log.Warn("health check: storage does not answer", "error", err)
			status, body = http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "storage does not answer"}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs one line per request: method, path (never the query
// string, which may carry an access token), status and duration; at info,
// and at debug for /health.
func logRequests(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		level := slog.LevelInfo
		if r.URL.Path == "/health" {
			level = slog.LevelDebug
		}
		log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr))
	})
}
