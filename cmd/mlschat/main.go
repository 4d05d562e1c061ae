// Command mlschat is a terminal chat client for MLS mode Matrix rooms
// (MSC4256) built on package client: line-oriented, scriptable
// subcommands plus an interactive mode (chat).
//
// Each account lives in its own directory (--data DIR, or
// ./mlschat-data/NAME with --as NAME): the client's SQLite store and a
// small config.json naming the homeserver. See docs/mlschat.md.
//
// Exit status: 0 on success, 1 when something failed (the reason is on
// stderr), 2 for usage errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses of every subcommand.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad command line
)

const usage = `usage: mlschat [--as NAME | --data DIR] COMMAND [ARGS]

A terminal client for MLS mode Matrix rooms (MSC4256). Each account keeps
its state in a directory: --data DIR, or ./mlschat-data/NAME with --as NAME
(with neither, the one account under ./mlschat-data).

Accounts:
  register --server URL [--password PW] NAME   make an account and its device
  login --server URL [--password PW] NAME      a new device of an account
  whoami                                       this device and its fingerprint
  fingerprint [-q] [USER]                      a user's fingerprint (default: yours)
  verify USER FINGERPRINT                      record that you checked USER's fingerprint
  cross-sign DEVICE                            vouch for another device of yours
  devices [USER]                               a user's devices, signature keys, cross-signing
  verify-device USER DEVICE KEY                record that you checked one device (m.direct)

Rooms:
  create [-q] [--name N] [--topic T] [--verification LEVEL] [--window D]
         [--powers S,..] [--servers S,..] [--can-propose S,..]
  rooms [--json]                               the rooms this device knows
  invite ROOM USER                             add USER's devices and invite them
  join [--timeout D] ROOM                      join from the invite and its Welcome
  send ROOM TEXT...                            send a message
  show [--json] [--messages N] [--no-sync] ROOM   messages, members, state in words
  sync [--timeout D]                           fetch news once and print what is new
  chat ROOM                                    interactive: lines are sent, /help lists commands
  watch ROOM                                   a live view of the room until Ctrl-C
  name ROOM TEXT / topic ROOM TEXT             change the room's name or topic
  state ROOM [TYPE KEY JSON]                   print the encrypted room state, or set one event
  remove ROOM USER                             remove every device of USER from the group
  leave ROOM                                   leave the room and forget its keys
  successor ROOM                               start a new room for the members of ROOM

ROOM is a room ID (!…) or the name of a room this device is in. USER is a
user ID (@bob:example.org), or a name on your own server (bob).

Exit status: 0 success, 1 failure (reason on stderr), 2 usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// env is what every subcommand gets.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// as and data select the account (global flags; a subcommand's own
	// flags of the same names override them).
	as, data string
}

// command returns the subcommand called name, or nil.
func command(name string) func(e *env, args []string) error {
	switch name {
	case "register":
		return cmdRegister
	case "login":
		return cmdLogin
	case "whoami":
		return cmdWhoami
	case "fingerprint":
		return cmdFingerprint
	case "verify":
		return cmdVerify
	case "cross-sign":
		return cmdCrossSign
	case "devices":
		return cmdDevices
	case "verify-device":
		return cmdVerifyDevice
	case "create":
		return cmdCreate
	case "rooms":
		return cmdRooms
	case "invite":
		return cmdInvite
	case "join":
		return cmdJoin
	case "send":
		return cmdSend
	case "show":
		return cmdShow
	case "sync":
		return cmdSync
	case "chat":
		return cmdChat
	case "watch":
		return cmdWatch
	case "name":
		return cmdName
	case "topic":
		return cmdTopic
	case "state":
		return cmdState
	case "remove":
		return cmdRemove
	case "leave":
		return cmdLeave
	case "successor":
		return cmdSuccessor
	}
	return nil
}

// run executes the command line args (without the program name) and
// returns the exit status; tests call it in a child process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("mlschat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.as, "as", "", "account name under ./mlschat-data")
	fs.StringVar(&e.data, "data", "", "account directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "mlschat: %v\n\n%s", err, usage)
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name := rest[0]
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd := command(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "mlschat: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	err := cmd(e, rest[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mlschat %s: %s\n(mlschat help lists the commands)\n", name, ue.msg)
		return exitUsage
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "mlschat %s: interrupted (%s); a change already sent may still be applied: mlschat show ROOM tells\n", name, explain(err))
		return exitFailure
	default:
		fmt.Fprintf(stderr, "mlschat %s: %s\n", name, explain(err))
		return exitFailure
	}
}

// notice prints a line about what a command is doing on stderr.
func (e *env) notice(s string) {
	if s != "" {
		fmt.Fprintf(e.stderr, "mlschat: %s\n", s)
	}
}

// flags makes a subcommand's flag set with the account flags; parse
// turns its errors into usage errors.
func (e *env) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.as, "as", e.as, "account name under ./mlschat-data")
	fs.StringVar(&e.data, "data", e.data, "account directory")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: mlschat %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, nargs ...int) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	n := len(fs.Args())
	if len(nargs) > 0 && n < nargs[0] {
		return nil, usagef("too few arguments")
	}
	if len(nargs) > 1 && nargs[1] >= 0 && n > nargs[1] {
		return nil, usagef("too many arguments: %q", fs.Args()[nargs[1]:])
	}
	return fs.Args(), nil
}
