package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/mux"

	"github.com/mlsmode/mlsmode/clientapi"
	"github.com/mlsmode/mlsmode/roomserver"
	"github.com/mlsmode/mlsmode/storage"
	"github.com/mlsmode/mlsmode/userapi"
)

// healthTimeout bounds the storage check of GET /health.
const healthTimeout = 5 * time.Second

// run is the whole server: it reads the settings from args (flags, and the
// YAML file of --config), opens storage, loads or creates the signing key,
// serves the client API until ctx ends, then shuts down gracefully: the
// listener closes, requests in flight get up to shutdown_timeout to finish,
// the room server stops and storage closes. The bound address ("host:port")
// is sent on ready (if not nil) once the server accepts connections. It
// returns nil after a clean shutdown. -h prints the usage to stdout and
// returns flag.ErrHelp; command-line mistakes are usageErrors.
//
// The caller must have registered the MLS room versions
// (roomversion.Register) before, with no concurrent gomatrixserverlib use.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) (err error) {
	cfg, err := loadConfig(args, stdout)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.level}))

	var cert tls.Certificate
	if cfg.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert and tls_key: %w", err)
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

	rooms, err := roomserver.New(roomserver.Config{
		ServerName: cfg.ServerName, KeyID: key.ID, PrivateKey: key.Priv, Store: db,
		Logger: log.With("component", "roomserver"),
	})
	if err != nil {
		return err
	}
	users, err := userapi.New(userapi.Config{
		ServerName: cfg.ServerName, Store: db, RegistrationDisabled: !cfg.Registration,
		Logger: log.With("component", "userapi"),
	})
	if err != nil {
		return err
	}
	api, err := clientapi.New(clientapi.Config{
		ServerName: cfg.ServerName, Rooms: rooms, Users: users, BaseURL: cfg.BaseURL,
		RateLimit: clientapi.RateLimit{Disabled: !cfg.RateLimit.Enabled, PerSecond: cfg.RateLimit.PerSecond, Burst: cfg.RateLimit.Burst},
		Logger:    log.With("component", "clientapi"),
	})
	if err != nil {
		return err
	}

	// The room server outlives the HTTP server: requests in flight at
	// shutdown still have the commit queue and /sync wake-ups.
	roomsCtx, stopRooms := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRooms()
	if err := rooms.Start(roomsCtx); err != nil {
		return err
	}
	defer func() {
		stopRooms()
		rooms.Stop()
		log.Info("room server stopped")
	}()

	router := mux.NewRouter()
	router.HandleFunc("/health", health(db, log)).Methods(http.MethodGet, http.MethodHead)
	api.Register(router)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           logRequests(router, log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	served := make(chan error, 1)
	go func() {
		if scheme == "https" {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	addr := ln.Addr().String()
	log.Info("serving", "server_name", cfg.ServerName, "address", addr, "url", scheme+"://"+addr,
		"registration", cfg.Registration)
	if ready != nil {
		select {
		case ready <- addr:
		case <-ctx.Done():
		}
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new connections, finishing requests in flight", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-served:
		log.Error("server stopped", "error", serveErr)
		serveErr = fmt.Errorf("serving: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at shutdown_timeout: closing their connections", "error", err)
		_ = srv.Close()
	} else {
		log.Info("http server stopped")
	}
	return serveErr
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
