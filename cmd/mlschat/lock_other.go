//go:build !unix

package main

// lockDir does not lock on systems without flock: run one mlschat per
// account at a time.
func lockDir(dir string) (func(), error) { return func() {}, nil }
