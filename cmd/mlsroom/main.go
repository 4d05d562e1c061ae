// Command mlsroom is a tool for operators and client developers of MLS mode
// Matrix rooms (MSC4256, room versions m.mls.1 and de.bwi.mls.v1).
//
// Usage:
//
//	mlsroom inspect [--room-version V] [FILE|-]
//	mlsroom check ...
//	mlsroom resolve [FILE|-]
//	mlsroom demo [--json] [--seed N] [--security-window SECONDS]
//	mlsroom demo --http [--server-bin PATH] [--clock-speed N] [--keep] [--json] [--seed N] [--security-window SECONDS]
//	mlsroom help [COMMAND]
//
// inspect decodes one base64 MLSMessage or one event in federation JSON and
// prints what it holds as one JSON object; see docs/mlsroom.md. check is
// described by "mlsroom check -h". demo runs a room on three simulated
// servers through a fork and its healing and tells what happened; with
// --http it tells the same story over three mlsserver processes it starts.
//
// Exit status: 0 on success, 1 when the input is invalid or cannot be read,
// 2 for usage errors.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses of every subcommand.
const (
	exitOK      = 0
	exitInvalid = 1 // invalid or unreadable input
	exitUsage   = 2 // bad command line
)

const usage = `usage: mlsroom COMMAND [ARGS]

Tools for MLS mode Matrix rooms (MSC4256, room versions m.mls.1 and
de.bwi.mls.v1).

Commands:
  inspect [--room-version V] [FILE|-]
          decode one base64 MLSMessage (any base64 alphabet, padded or not)
          or one event in federation JSON, and print what it holds as a JSON
          object; key packages are validated (RFC 9420 and the Matrix upload
          checks); event signatures are NOT verified
  check   see "mlsroom check -h"
  resolve [FILE|-]
          resolve a room's state from its events (JSON lines) and print the
          commit chain, losing commits and lost messages; see "mlsroom resolve -h"
  demo [--json] [--seed N] [--security-window SECONDS]
          run one room on three simulated servers (real MLS clients, auth
          rules, state resolution, pending-commit queue) through a fork and
          its healing, and tell what happened; see "mlsroom demo -h"
  simulate [--config FILE] [--json] [FLAGS] | --sweep FILE --out DIR
          simulate a room on up to 100 servers and measure conflicts, forks
          and undecryptable messages; see "mlsroom simulate -h"
  demo --http [--server-bin PATH] [--clock-speed N] [...]
          the same story over HTTP: three mlsserver processes on 127.0.0.1
          with their own SQLite databases, users on package client
  help [COMMAND]
          show this text, or the usage of COMMAND

Exit status: 0 success, 1 invalid or unreadable input, 2 usage error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args (without the program name) and returns
// the exit status. main only connects it to the process; tests call it
// directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "inspect":
		return runInspect(rest, stdin, stdout, stderr)
	case "check":
		return runCheck(rest, stdin, stdout, stderr)
	case "resolve":
		return runResolve(rest, stdin, stdout, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	case "simulate":
		return runSimulate(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		return runHelp(rest, stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "mlsroom: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// runHelp prints the usage of mlsroom, or of the command named in args.
func runHelp(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage)
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "mlsroom help: want at most one command, got %d arguments\n", len(args))
		return exitUsage
	}
	switch args[0] {
	case "inspect":
		fmt.Fprint(stdout, inspectUsage)
		return exitOK
	case "check":
		return runCheck([]string{"-h"}, stdin, stdout, stderr)
	case "resolve":
		return runResolve([]string{"-h"}, stdin, stdout, stderr)
	case "demo":
		return runDemo([]string{"-h"}, stdout, stderr)
	case "simulate":
		return runSimulate([]string{"-h"}, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mlsroom help: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
