// Command mlsserver is the mlsmode reference homeserver: the Matrix
// client-server API of MLS rooms (package clientapi over roomserver and
// userapi) on embedded SQLite or PostgreSQL and, with --federation, the
// server-server API (package federation) on its own HTTPS listener. With
// no flags it serves http://localhost:8008 with its database and signing
// key in ./mlsserver-data/. The server itself is package
// internal/mlsserver. docs/mlsserver.md describes every setting (flags or a
// YAML file), TLS, federation, running two processes on one PostgreSQL
// database, signals, GET /health and the logs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mlsmode/mlsmode/internal/mlsserver"
	"github.com/mlsmode/mlsmode/roomversion"
)

func main() {
	roomversion.Register()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	go func() {
		// After the first signal, a second one ends the process at once
		// (the default behaviour) instead of waiting for the shutdown.
		<-ctx.Done()
		stop()
	}()
	err := mlsserver.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case mlsserver.IsUsageError(err):
		fmt.Fprintf(os.Stderr, "mlsserver: %v (mlsserver -h lists the flags)\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "mlsserver: %v\n", err)
		os.Exit(1)
	}
}
