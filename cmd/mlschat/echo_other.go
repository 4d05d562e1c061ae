//go:build !linux

package main

import "io"

// noEcho does nothing here: the password typed is echoed (use
// --password or $MLSCHAT_PASSWORD instead).
func noEcho(io.Reader) (restore func()) { return func() {} }
