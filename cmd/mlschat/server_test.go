package main

import (
	"testing"

	"github.com/mlsmode/mlsmode/internal/testserver"
)

// newServer starts one homeserver named name in the test process and
// returns its client-server URL; the mlschat processes talk to it over
// HTTP.
func newServer(t *testing.T, name string) string { return testserver.New(t, name) }
