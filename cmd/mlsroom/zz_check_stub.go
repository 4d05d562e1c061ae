package main

import (
	"fmt"
	"io"
)

// runCheck is a temporary stand-in for the check subcommand, which another
// change provides in check.go. Delete this file when check.go exists.
func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "check: not available in this build")
	return 2
}
