package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// dataRoot is where accounts named with --as live.
const dataRoot = "mlschat-data"

// config is the account's config.json.
type config struct {
	// Server is the homeserver's client-server API URL.
	Server string `json:"server"`
	UserID string `json:"user_id"`
	Device string `json:"device_id"`
	// OwnMaster is the user's master key as it was right after this
	// device set up or found it: the anchor mlschat checks the server's
	// copy of the user's own cross-signing keys against.
	OwnMaster string `json:"own_master_key"`
}

const (
	configFile = "config.json"
	storeFile  = "client.db"
	lockFile   = "lock"
)

// account is an open account: its directory, config and client.
type account struct {
	dir    string
	cfg    config
	c      *client.Client
	unlock func()
}

func (a *account) close() {
	_ = a.c.Close()
	a.unlock()
}

// accountDir picks the account's directory from --data, --as, or the
// only account under ./mlschat-data.
func (e *env) accountDir() (string, error) {
	if e.data != "" {
		return e.data, nil
	}
	if e.as != "" {
		if strings.ContainsAny(e.as, `/\`) || e.as == "." || e.as == ".." {
			return "", usagef("--as %q: a name, not a path (use --data DIR for a path)", e.as)
		}
		return filepath.Join(dataRoot, e.as), nil
	}
	entries, err := os.ReadDir(dataRoot)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var names []string
	for _, en := range entries {
		if _, err := os.Stat(filepath.Join(dataRoot, en.Name(), configFile)); err == nil {
			names = append(names, en.Name())
		}
	}
	sort.Strings(names)
	switch len(names) {
	case 0:
		return "", usagef("no account here: run mlschat register first, or give --data DIR")
	case 1:
		return filepath.Join(dataRoot, names[0]), nil
	}
	return "", usagef("which account? give --as NAME (one of %s) or --data DIR", strings.Join(names, ", "))
}

// open opens the account: it locks the directory (one mlschat per
// account at a time: two would reuse each other's keys) and resumes the
// client from its store.
// openRoom opens the account and resolves room, a room it knows (by ID,
// alias of this tool or name); the caller closes the account.
func (e *env) openRoom(room string) (*account, string, error) {
	a, err := e.open()
	if err != nil {
		return nil, "", err
	}
	id, err := a.knownRoom(room)
	if err != nil {
		a.close()
		return nil, "", err
	}
	return a, id, nil
}

func (e *env) open() (*account, error) {
	dir, err := e.accountDir()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no account (run mlschat register or login)", dir)
	}
	if err != nil {
		return nil, err
	}
	a := &account{dir: dir}
	if err := json.Unmarshal(raw, &a.cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, configFile), err)
	}
	if a.unlock, err = lockDir(dir); err != nil {
		return nil, err
	}
	store, err := client.OpenSQLiteStore(e.ctx, filepath.Join(dir, storeFile))
	if err != nil {
		a.unlock()
		return nil, err
	}
	a.c, err = client.Open(e.ctx, client.Config{BaseURL: a.cfg.Server, Store: store})
	if err != nil {
		_ = store.Close()
		a.unlock()
		return nil, err
	}
	return a, nil
}

// newAccount prepares a new account directory for register and login.
func (e *env) newAccount(name, server string) (string, *account, error) {
	if e.data == "" && e.as == "" {
		e.as = strings.TrimPrefix(strings.SplitN(name, ":", 2)[0], "@")
	}
	dir, err := e.accountDir()
	if err != nil {
		return "", nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		return "", nil, fmt.Errorf("%s already holds an account; choose another --as or --data", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, usagef("--server %q: want the homeserver's URL, like http://localhost:8008", server)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", nil, err
	}
	if err := os.Remove(filepath.Join(dir, storeFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		unlock()
		return "", nil, err
	}
	return dir, &account{dir: dir, cfg: config{Server: strings.TrimRight(server, "/")}, unlock: unlock}, nil
}

// password takes the password from --password, $MLSCHAT_PASSWORD or the
// first line of stdin.
func (e *env) password(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := os.Getenv("MLSCHAT_PASSWORD"); p != "" {
		return p, nil
	}
	fmt.Fprint(e.stderr, "password: ")
	restore := noEcho(e.stdin)
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	restore()
	fmt.Fprintln(e.stderr)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password: give --password, set MLSCHAT_PASSWORD or type it")
	}
	return line, nil
}

func cmdRegister(e *env, args []string) error {
	return setUpAccount(e, "register", args)
}

func cmdLogin(e *env, args []string) error {
	return setUpAccount(e, "login", args)
}

func setUpAccount(e *env, what string, args []string) error {
	fs := e.flags(what, "--server URL [--password PW] NAME")
	server := fs.String("server", "", "homeserver URL, e.g. http://localhost:8008")
	pw := fs.String("password", "", "password (default: $MLSCHAT_PASSWORD, else read from stdin)")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *server == "" {
		return usagef("--server URL is required")
	}
	name := rest[0]
	dir, a, err := e.newAccount(name, *server)
	if err != nil {
		return err
	}
	defer a.unlock()
	password, err := e.password(*pw)
	if err != nil {
		return err
	}
	store, err := client.OpenSQLiteStore(e.ctx, filepath.Join(dir, storeFile))
	if err != nil {
		return err
	}
	ccfg := client.Config{BaseURL: a.cfg.Server, Store: store}
	localpart := strings.TrimPrefix(strings.SplitN(name, ":", 2)[0], "@")
	if what == "register" {
		a.c, err = client.Register(e.ctx, ccfg, localpart, password)
	} else {
		a.c, err = client.Login(e.ctx, ccfg, localpart, password)
	}
	if err != nil {
		_ = store.Close()
		_ = os.Remove(filepath.Join(dir, storeFile))
		return err
	}
	defer a.c.Close()
	a.cfg.UserID, a.cfg.Device = a.c.UserID(), a.c.DeviceID()
	if a.cfg.OwnMaster, err = a.c.MasterKey(e.ctx, a.c.UserID()); err != nil {
		return fmt.Errorf("reading your own master key: %w", err)
	}
	if err := writeConfig(dir, a.cfg); err != nil {
		return err
	}
	// The first sync takes in what is already there (invites) and sets
	// the sync position.
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	if what == "register" {
		fmt.Fprintf(e.stdout, "registered %s, device %s, on %s; its state is in %s\n", a.c.UserID(), a.c.DeviceID(), a.cfg.Server, dir)
		fmt.Fprintf(e.stdout, "your fingerprint: %s\n", a.cfg.OwnMaster)
		fmt.Fprintln(e.stdout, "others compare it with what they see (mlschat fingerprint YOU) before they verify you.")
		return nil
	}
	fmt.Fprintf(e.stdout, "logged in as %s with a new device %s; its state is in %s\n", a.c.UserID(), a.c.DeviceID(), dir)
	fmt.Fprintf(e.stdout, "this device is not cross-signed yet: rooms that require verification refuse it until\nyour first device runs: mlschat cross-sign %s\n", a.c.DeviceID())
	return nil
}

func writeConfig(dir string, cfg config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, configFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, configFile))
}

func cmdWhoami(e *env, args []string) error {
	fs := e.flags("whoami", "")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	fmt.Fprintf(e.stdout, "%s, device %s, on %s (state in %s)\n", a.c.UserID(), a.c.DeviceID(), a.cfg.Server, a.dir)
	fp, err := a.c.MasterKey(e.ctx, a.c.UserID())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "your fingerprint: %s\n", fp)
	if fp != a.cfg.OwnMaster {
		fmt.Fprintf(e.stdout, "WARNING: the server now shows a different master key for you than when this device was set up (%s)\n", a.cfg.OwnMaster)
	}
	return nil
}

func cmdCrossSign(e *env, args []string) error {
	fs := e.flags("cross-sign", "DEVICE")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.c.CrossSignDevice(e.ctx, rest[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "device %s of %s is now cross-signed: whoever verified you trusts it too\n", rest[0], a.c.UserID())
	return nil
}

// userID completes a user argument: "bob" and "@bob" are on the
// account's own server.
func (a *account) userID(arg string) (string, error) {
	u := strings.TrimSpace(arg)
	if u == "" {
		return "", usagef("empty user")
	}
	if !strings.HasPrefix(u, "@") {
		u = "@" + u
	}
	if !strings.Contains(u, ":") {
		u += ":" + a.c.ServerName()
	}
	if strings.ContainsAny(u, " \t\n") {
		return "", usagef("%q is not a user ID", arg)
	}
	return u, nil
}

// ctxTimeout is a context for one command that may wait.
func (e *env) ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(e.ctx)
	}
	return context.WithTimeout(e.ctx, d)
}
