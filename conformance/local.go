package conformance

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
	"github.com/mlsmode/mlsmode/internal/mlsserver"
)

// LocalServerName is the server name of our mlsserver when the suite
// starts it.
const LocalServerName = "mlsserver.conformance.localhost"

// Local is our mlsserver running in this process for the suite.
type Local struct {
	// Target is how the suite reaches it.
	Target Target
	cancel context.CancelFunc
	done   chan error
}

// StartLocal starts our mlsserver in this process: SQLite in dir, the
// client API on a loopback port, federation on another with a
// certificate for LocalServerName, trusting suite's certificate and
// resolving the suite's names to its listener; no rate limit (the suite
// sends many requests from one device). opts change the server (the
// suite's own tests make it misbehave). The MLS room versions must be
// registered (roomversion.Register).
//
// database is the server's storage connection string ("" for SQLite in
// dir).
func StartLocal(dir, database string, suite *SuiteServer, opts mlsserver.Options, logs io.Writer) (*Local, error) {
	certFile, keyFile, err := selfSignedCert(dir, "server", LocalServerName)
	if err != nil {
		return nil, fmt.Errorf("conformance: the server's certificate: %w", err)
	}
	args := []string{"--server-name", LocalServerName, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn", "--rate-limit=false", "--shutdown-timeout", "2s",
		"--federation", "--federation-listen", "127.0.0.1:0", "--federation-tls-cert", certFile, "--federation-tls-key", keyFile}
	if database != "" {
		args = append(args, "--database", database)
	}
	if suite != nil {
		args = append(args, "--federation-trust-ca", suite.CertFile)
		for _, n := range suite.Names {
			args = append(args, "--federation-resolve", n+"="+suite.Addr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Local{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan mlsserver.Addresses, 1)
	go func() { l.done <- mlsserver.RunOptions(ctx, args, io.Discard, logs, ready, opts) }()
	select {
	case a := <-ready:
		ca, err := os.ReadFile(certFile)
		if err != nil {
			cancel()
			return nil, err
		}
		l.Target = Target{ClientURL: "http://" + a.Client, FederationURL: "https://" + a.Federation, ServerName: LocalServerName, FederationCA: ca}
		return l, nil
	case err := <-l.done:
		cancel()
		return nil, fmt.Errorf("conformance: mlsserver did not start: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		return nil, fmt.Errorf("conformance: mlsserver did not start in 60s")
	}
}

// Stop shuts the server down and returns what it returned.
func (l *Local) Stop() error {
	l.cancel()
	select {
	case err := <-l.done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("conformance: mlsserver did not stop in 30s")
	}
}

// Setup returns the environment of a run: the server the environment
// variables name (FromEnvironment), or else our mlsserver started in this
// process with opts (SetupLocal); in both cases with the suite's
// homeserver started (on EnvSuiteListen, certificate in EnvSuiteTLS).
// Everything stops when tb's test ends. It also returns a description of
// the target for the summary.
func Setup(tb testing.TB, opts mlsserver.Options) (*Env, string) {
	tb.Helper()
	target, external, err := FromEnvironment()
	if err != nil {
		tb.Fatal(err)
	}
	if !external {
		return SetupLocal(tb, opts)
	}
	suite := startSuite(tb)
	if target.FederationURL == "" {
		tb.Logf("%s not set: the federation checks will fail", EnvFederationURL)
	}
	env, err := NewEnv(target, suite)
	if err != nil {
		tb.Fatal(err)
	}
	return env, target.ServerName + " at " + target.ClientURL
}

// SetupLocal is Setup with our mlsserver in this process whatever the
// environment variables say (the suite's own tests).
func SetupLocal(tb testing.TB, opts mlsserver.Options) (*Env, string) {
	tb.Helper()
	return SetupLocalDatabase(tb, opts, "")
}

// SetupLocalDatabase is SetupLocal with the server's storage at database
// ("" for SQLite in a temporary directory).
func SetupLocalDatabase(tb testing.TB, opts mlsserver.Options, database string) (*Env, string) {
	tb.Helper()
	suite := startSuite(tb)
	logs := &loopback.LogBuffer{}
	local, err := StartLocal(tb.TempDir(), database, suite, opts, logs)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := local.Stop(); err != nil {
			tb.Errorf("stopping mlsserver: %v", err)
		}
		if tb.Failed() {
			tb.Logf("mlsserver logs (warnings and errors):\n%s", logs)
		}
	})
	env, err := NewEnv(local.Target, suite)
	if err != nil {
		tb.Fatal(err)
	}
	backend := "SQLite"
	if database != "" {
		backend = "PostgreSQL"
	}
	return env, "our mlsserver in-process (" + local.Target.ServerName + ", " + backend + ")"
}

// startSuite starts the suite's homeserver for tb's test.
func startSuite(tb testing.TB) *SuiteServer {
	tb.Helper()
	listen := os.Getenv(EnvSuiteListen)
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	tlsDir := os.Getenv(EnvSuiteTLS)
	if tlsDir == "" {
		tlsDir = tb.TempDir()
	}
	suite, err := StartSuiteServer(listen, tlsDir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = suite.Close() })
	return suite
}

// All returns every check of the suite.
func All() []Check {
	return append(ClientChecks(), FederationChecks()...)
}
