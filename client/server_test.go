package client_test

import (
	"testing"

	"github.com/mlsmode/mlsmode/internal/testserver"
)

// newServer starts one in-process homeserver named name and returns its
// client-server URL.
func newServer(t *testing.T, name string) string { return testserver.New(t, name) }
