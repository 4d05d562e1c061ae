package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run mlschat itself: the tests start
// it as a child process, one per command or chat session, exactly as a
// user's shell would start mlschat.
const runMainEnv = "MLSCHAT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// mlschatCmd is the command line mlschat ARGS run in dir.
func mlschatCmd(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "MLSCHAT_PASSWORD=")
	return cmd
}

type result struct {
	stdout, stderr string
	code           int
}

// mlschat runs one mlschat command to its end.
func mlschat(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := mlschatCmd(t, dir, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mlschat %q: %v", args, err)
	}
	return r
}

// ok runs a command that must succeed and returns its output.
func ok(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := mlschat(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("mlschat %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// session is an interactive mlschat chat with its stdin and output.
type session struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   []string
	done  chan struct{}
	next  int
}

func startChat(t *testing.T, dir, name string, args ...string) *session {
	t.Helper()
	return startProc(t, dir, name, append([]string{"--as", name, "chat", "--poll", "200ms"}, args...)...)
}

// startProc starts mlschat ARGS with stdin and output (stdout and stderr
// together) connected to the test.
func startProc(t *testing.T, dir, name string, args ...string) *session {
	t.Helper()
	s := &session{t: t, name: name, done: make(chan struct{})}
	s.cmd = mlschatCmd(t, dir, args...)
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.out = append(s.out, sc.Text())
			s.mu.Unlock()
		}
	}()
	go func() {
		_ = s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *session) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		s.t.Fatalf("%s: writing %q: %v", s.name, line, err)
	}
}

// waitFor waits for a line after the last one waited for that contains
// want, and returns it.
func (s *session) waitFor(want string) string {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for i := s.next; i < len(s.out); i++ {
			if strings.Contains(s.out[i], want) {
				s.next = i + 1
				line := s.out[i]
				s.mu.Unlock()
				return line
			}
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s's chat never printed %q; it printed:\n%s", s.name, want, s.all())
	return ""
}

func (s *session) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.out, "\n")
}

// quit ends the session with /quit and checks that it exits 0.
func (s *session) quit() {
	s.t.Helper()
	s.send("/quit")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("%s's chat did not end after /quit:\n%s", s.name, s.all())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("%s's chat exited %d:\n%s", s.name, code, s.all())
	}
}

var (
	deviceRe      = regexp.MustCompile(`device ([A-Z]+)`)
	fingerprintRe = regexp.MustCompile(`fingerprint of (@\S+): (\S+)`)
)

// TestTwoChatSessions drives alice and bob, each an mlschat process on
// its own account directory, through a shared room on one homeserver:
// registration, a refused invite of an unverified user, verification by
// fingerprint, invite and join, both in interactive chat seeing each
// other's messages and a rename live, what show tells each of them
// (members and verification, room name), the account lock, and finally
// bob removed and told in words what he cannot read.
func TestTwoChatSessions(t *testing.T) {
	url := newServer(t, "a.test")
	dir := t.TempDir()

	// Usage errors exit 2 and say what is wrong.
	for _, args := range [][]string{{}, {"frobnicate"}, {"--as", "alice", "send", "!room:a.test"}, {"create", "--verification", "m.trust-me"}} {
		r := mlschat(t, dir, args...)
		if r.code != 2 || r.stderr == "" {
			t.Fatalf("mlschat %q: exit %d, stderr %q; want 2 and a message", args, r.code, r.stderr)
		}
	}
	if r := mlschat(t, dir, "--as", "alice", "send", "!room:a.test"); !strings.Contains(r.stderr, "too few arguments") {
		t.Fatalf("usage error message: %q", r.stderr)
	}
	// A runtime failure exits 1: there is no account yet.
	if r := mlschat(t, dir, "--as", "alice", "rooms"); r.code != 1 || !strings.Contains(r.stderr, "holds no account") {
		t.Fatalf("rooms without an account: %+v", r)
	}

	out := ok(t, dir, "register", "--server", url, "--password", "pw-alice", "alice")
	if !strings.Contains(out, "registered @alice:a.test") {
		t.Fatalf("alice's register: %q", out)
	}
	out = ok(t, dir, "register", "--server", url, "--password", "pw-bob", "bob")
	m := deviceRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("bob's register names no device: %q", out)
	}
	bobDevice := m[1]

	roomID := strings.TrimSpace(ok(t, dir, "--as", "alice", "create", "-q", "--name", "Plans", "--topic", "Where to meet"))
	if !strings.HasPrefix(roomID, "!") || !strings.HasSuffix(roomID, ":a.test") {
		t.Fatalf("create -q printed %q, want a room ID", roomID)
	}

	// m.cross: bob is not verified; the invite says which device and why.
	r := mlschat(t, dir, "--as", "alice", "invite", "Plans", "bob")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot add device "+bobDevice+" of @bob:a.test") ||
		!strings.Contains(r.stderr, "requires m.cross") || !strings.Contains(r.stderr, "not signed by @alice:a.test's user-signing key") ||
		!strings.Contains(r.stderr, "Nothing was changed") {
		t.Fatalf("invite of unverified bob: %+v", r)
	}
	if r := mlschat(t, dir, "--as", "alice", "verify", "bob", "AAAA"); r.code != 1 || !strings.Contains(r.stderr, "not the fingerprint checked") {
		t.Fatalf("verify with a wrong fingerprint: %+v", r)
	}
	// Alice reads bob's fingerprint; bob reads his own; they match.
	out = ok(t, dir, "--as", "alice", "fingerprint", "bob")
	m = fingerprintRe.FindStringSubmatch(out)
	if m == nil || m[1] != "@bob:a.test" || !strings.Contains(out, "you have not verified @bob:a.test") {
		t.Fatalf("alice's fingerprint of bob: %q", out)
	}
	fp := m[2]
	if own := strings.TrimSpace(ok(t, dir, "--as", "bob", "fingerprint", "-q")); own != fp {
		t.Fatalf("bob's own fingerprint %q, alice sees %q", own, fp)
	}
	ok(t, dir, "--as", "alice", "verify", "bob", fp)
	if out := ok(t, dir, "--as", "alice", "fingerprint", "bob"); !strings.Contains(out, "you have verified @bob:a.test") {
		t.Fatalf("after verifying: %q", out)
	}
	if out := ok(t, dir, "--as", "alice", "invite", "Plans", "bob"); !strings.Contains(out, "invited") {
		t.Fatalf("invite: %q", out)
	}
	out = ok(t, dir, "--as", "bob", "rooms")
	if !strings.Contains(out, roomID+": invited by @alice:a.test") {
		t.Fatalf("bob's rooms before joining: %q", out)
	}
	if out := ok(t, dir, "--as", "bob", "join", roomID); !strings.Contains(out, `joined "Plans" (invited by @alice:a.test): 2 devices`) {
		t.Fatalf("bob's join: %q", out)
	}

	// Both chat.
	alice := startChat(t, dir, "alice", "Plans")
	alice.waitFor(`Room "Plans"`)
	alice.waitFor("Topic: Where to meet")
	alice.waitFor("-- type a message")
	// The account is locked while its chat runs.
	if r := mlschat(t, dir, "--as", "alice", "show", "Plans"); r.code != 1 || !strings.Contains(r.stderr, "in use by another mlschat") {
		t.Fatalf("show while alice chats: %+v", r)
	}
	// A live view of bob's: what arrives, until Ctrl-C. (It holds
	// bob's account; it ends before bob's chat starts.)
	watch := startProc(t, dir, "bob-watch", "--as", "bob", "watch", "--poll", "200ms", roomID)
	watch.waitFor("-- watching; Ctrl-C ends")
	alice.send("hello bob")
	watch.waitFor("alice: hello bob")
	if err := watch.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	watch.waitFor("* bye")
	<-watch.done
	if code := watch.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("watch exited %d after Ctrl-C:\n%s", code, watch.all())
	}

	bob := startChat(t, dir, "bob", roomID)
	bob.waitFor(`Room "Plans"`)
	if line := bob.waitFor("@alice:a.test"); !strings.Contains(line, "not verified: you have not checked their fingerprint") {
		t.Fatalf("bob's view of alice: %q", line)
	}
	bob.waitFor("alice: hello bob")
	bob.send("hi alice")
	alice.waitFor("bob: hi alice")
	alice.send("/name Plans v2")
	bob.waitFor(`* the room is now called "Plans v2"`)
	alice.send("/members")
	alice.waitFor("members, as the MLS group has them at epoch 3")
	if line := alice.waitFor("@bob:a.test"); !strings.Contains(line, "device "+bobDevice+"  verified") {
		t.Fatalf("alice's /members line of bob: %q", line)
	}
	alice.send("/frob")
	alice.waitFor("unknown command /frob")
	alice.quit()
	bob.quit()

	// show --json for scripts: bob's view.
	var v roomView
	if err := json.Unmarshal([]byte(ok(t, dir, "--as", "bob", "show", "--json", roomID)), &v); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, m := range v.Messages {
		lines = append(lines, m.Sender+": "+m.Body)
	}
	if v.Name != "Plans v2" || v.Topic != "Where to meet" || len(v.Members) != 2 || v.Verification != "m.cross" ||
		strings.Join(lines, "|") != "@alice:a.test: hello bob|@bob:a.test: hi alice" {
		t.Fatalf("bob's show --json: %+v", v)
	}

	// Alice removes bob and speaks on; bob is told, in words, why he
	// cannot read it.
	if out := ok(t, dir, "--as", "alice", "remove", "Plans v2", "bob"); !strings.Contains(out, "removed @bob:a.test's devices") {
		t.Fatalf("remove: %q", out)
	}
	ok(t, dir, "--as", "alice", "send", "Plans v2", "bob", "is", "gone")
	out = ok(t, dir, "--as", "bob", "show", roomID)
	for _, want := range []string{
		`Room "Plans v2"`,
		"! you need to be invited again: commit $",
		"removed this device from the group",
		"! you cannot read 1 message: sent while this device was not in the group (not_member)",
		"alice: hello bob",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("bob's show after removal lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "bob is gone") {
		t.Fatalf("bob reads a message sent after his removal:\n%s", out)
	}
	out = ok(t, dir, "--as", "alice", "show", "Plans v2")
	if !strings.Contains(out, "bob: hi alice") || strings.Contains(out, "@bob:a.test  device") {
		t.Fatalf("alice's show after removing bob:\n%s", out)
	}
}

// TestScriptCommands covers the subcommands scripts use around the chat:
// a second device by login and its cross-signing, --data directories,
// rooms --json, sync's news, state and topic, and join giving up.
func TestScriptCommands(t *testing.T) {
	url := newServer(t, "a.test")
	dir := t.TempDir()
	ok(t, dir, "register", "--server", url, "--password", "pw-dan", "dan")
	ok(t, dir, "--data", "erin-home", "register", "--server", url, "--password", "pw-erin", "erin")
	// Erin's second device: not cross-signed until her first device
	// vouches for it.
	out := ok(t, dir, "--data", "erin-laptop", "login", "--server", url, "--password", "pw-erin", "erin")
	m := regexp.MustCompile(`new device ([A-Z]+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "not cross-signed yet") {
		t.Fatalf("login: %q", out)
	}
	laptop := m[1]
	out = ok(t, dir, "--data", "erin-phone", "login", "--server", url, "--password", "pw-erin", "erin")
	phone := regexp.MustCompile(`new device ([A-Z]+)`).FindStringSubmatch(out)[1]
	ok(t, dir, "--data", "erin-home", "cross-sign", phone)
	if r := mlschat(t, dir, "login", "--server", url, "--password", "wrong", "--data", "x", "erin"); r.code != 1 || !strings.Contains(r.stderr, "M_FORBIDDEN") {
		t.Fatalf("login with a wrong password: %+v", r)
	}

	room := strings.TrimSpace(ok(t, dir, "--as", "dan", "create", "-q", "--name", "Ops"))
	fp := strings.TrimSpace(ok(t, dir, "--data", "erin-home", "fingerprint", "-q"))
	ok(t, dir, "--as", "dan", "verify", "erin", fp[:10]+" "+fp[10:]) // spaces are allowed
	r := mlschat(t, dir, "--as", "dan", "invite", room, "@erin:a.test")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot add device "+laptop+" of @erin:a.test") ||
		!strings.Contains(r.stderr, "not cross-signed by its user's self-signing key") {
		t.Fatalf("invite with erin's laptop not cross-signed: %+v", r)
	}
	if out := ok(t, dir, "--data", "erin-home", "cross-sign", laptop); !strings.Contains(out, "now cross-signed") {
		t.Fatalf("cross-sign: %q", out)
	}
	ok(t, dir, "--as", "dan", "invite", "Ops", "erin")

	// Each of erin's devices sees the invite, then joins.
	for _, d := range []string{"erin-home", "erin-laptop"} {
		out := ok(t, dir, "--data", d, "sync")
		if !strings.Contains(out, "* @dan:a.test invited you; join with: mlschat join "+room) {
			t.Fatalf("%s's sync: %q", d, out)
		}
	}
	for _, d := range []string{"erin-home", "erin-laptop"} {
		ok(t, dir, "--data", d, "join", room)
	}
	// The phone did not sync before erin joined: the server lists the room
	// as joined for it, and mlschat says the device still has to join.
	if out := ok(t, dir, "--data", "erin-phone", "rooms"); !strings.Contains(out, room+": your account is in this room from another device; join this device with: mlschat join "+room) {
		t.Fatalf("erin-phone's rooms: %q", out)
	}
	if out := ok(t, dir, "--data", "erin-phone", "join", room); !strings.Contains(out, "joined") {
		t.Fatalf("erin-phone's join: %q", out)
	}
	ok(t, dir, "--as", "dan", "topic", "Ops", "On call this week")
	ok(t, dir, "--as", "dan", "state", "Ops", "org.example.rota", "", `{"who":"erin"}`)
	ok(t, dir, "--as", "dan", "send", "Ops", "handing over")
	out = ok(t, dir, "--data", "erin-laptop", "sync")
	for _, want := range []string{`"Ops" ` + room + ":", `* the topic is now "On call this week"`, "dan: handing over"} {
		if !strings.Contains(out, want) {
			t.Fatalf("erin-laptop's sync lacks %q:\n%s", want, out)
		}
	}
	if out := ok(t, dir, "--data", "erin-laptop", "sync"); strings.TrimSpace(out) != "nothing new" {
		t.Fatalf("a second sync: %q", out)
	}
	out = ok(t, dir, "--data", "erin-home", "state", "Ops")
	for _, want := range []string{`m.room.name "" {"name":"Ops"}`, `m.room.topic "" {"topic":"On call this week"}`, `org.example.rota "" {"who":"erin"}`} {
		if !strings.Contains(out, want) {
			t.Fatalf("state lacks %q:\n%s", want, out)
		}
	}
	if r := mlschat(t, dir, "--as", "dan", "state", "Ops", "org.example.rota", "", `[1]`); r.code != 2 {
		t.Fatalf("state with a non-object content: %+v", r)
	}

	var rooms []struct {
		RoomID     string `json:"room_id"`
		Membership string `json:"membership"`
		Name       string `json:"name"`
		Members    int    `json:"members"`
		Messages   int    `json:"messages"`
	}
	if err := json.Unmarshal([]byte(ok(t, dir, "--as", "dan", "rooms", "--json")), &rooms); err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].RoomID != room || rooms[0].Name != "Ops" || rooms[0].Members != 4 || rooms[0].Messages != 1 {
		t.Fatalf("rooms --json: %+v", rooms)
	}
	// With one account in ./mlschat-data, it is the default; with two,
	// mlschat asks which.
	if out := ok(t, dir, "rooms", "--no-sync"); !strings.Contains(out, `"Ops" `+room+": 4 member devices, 1 message") {
		t.Fatalf("rooms of the only account: %q", out)
	}
	ok(t, dir, "register", "--server", url, "--password", "pw-fred", "fred")
	if r := mlschat(t, dir, "rooms"); r.code != 2 || !strings.Contains(r.stderr, "which account? give --as NAME (one of dan, fred)") {
		t.Fatalf("rooms without --as: %+v", r)
	}
	// A successor room for Ops' members: erin's devices are invited.
	out = ok(t, dir, "--as", "dan", "successor", "Ops")
	sm := regexp.MustCompile(`started (!\S+) for the members of ` + regexp.QuoteMeta(room)).FindStringSubmatch(out)
	if sm == nil {
		t.Fatalf("successor: %q", out)
	}
	if out := ok(t, dir, "--data", "erin-home", "sync"); !strings.Contains(out, "* @dan:a.test invited you; join with: mlschat join "+sm[1]) {
		t.Fatalf("erin's sync after the successor: %q", out)
	}

	// m.direct: each device is checked by its signature key.
	direct := strings.TrimSpace(ok(t, dir, "--as", "dan", "create", "-q", "--verification", "m.direct"))
	if r := mlschat(t, dir, "--as", "dan", "invite", direct, "fred"); r.code != 1 || !strings.Contains(r.stderr, "requires m.direct and it has not been verified directly") {
		t.Fatalf("m.direct invite of an unchecked device: %+v", r)
	}
	out = ok(t, dir, "--as", "dan", "devices", "fred")
	dm := regexp.MustCompile(`device ([A-Z]+): signature key (\S+); cross-signed by @fred:a.test`).FindStringSubmatch(out)
	if dm == nil {
		t.Fatalf("dan's devices of fred: %q", out)
	}
	if r := mlschat(t, dir, "--as", "dan", "verify-device", "fred", dm[1], "AAAA"); r.code != 1 || !strings.Contains(r.stderr, "not the one checked") {
		t.Fatalf("verify-device with a wrong key: %+v", r)
	}
	ok(t, dir, "--as", "dan", "verify-device", "fred", dm[1], dm[2])
	ok(t, dir, "--as", "dan", "invite", direct, "fred")

	// If the server shows dan other cross-signing keys than his own,
	// mlschat adds no one to an m.cross room, and show trusts no one.
	cfgPath := filepath.Join(dir, "mlschat-data", "dan", "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	realMaster := cfg.OwnMaster
	cfg.OwnMaster = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	if err := writeConfig(filepath.Dir(cfgPath), cfg); err != nil {
		t.Fatal(err)
	}
	if r := mlschat(t, dir, "--as", "dan", "show", "Ops"); r.code != 1 || !strings.Contains(r.stderr, `2 rooms are named "Ops": give the room ID`) {
		t.Fatalf("show of an ambiguous name: %+v", r)
	}
	r = mlschat(t, dir, "--as", "dan", "invite", room, "fred")
	if r.code != 1 || !strings.Contains(r.stderr, "not adding anyone to "+room+": the homeserver shows cross-signing keys for you that this device cannot vouch for (the server shows a master key for you ("+realMaster+") other than yours (AAAA") {
		t.Fatalf("invite with dan's own keys not his: %+v", r)
	}
	if out := ok(t, dir, "--as", "dan", "show", room); !strings.Contains(out, "@erin:a.test  device "+laptop+"  not verified: the server shows a master key for you") {
		t.Fatalf("show with dan's own keys not his:\n%s", out)
	}
	cfg.OwnMaster = realMaster
	if err := writeConfig(filepath.Dir(cfgPath), cfg); err != nil {
		t.Fatal(err)
	}

	// whoami; leave.
	if out := ok(t, dir, "--data", "erin-laptop", "whoami"); !strings.Contains(out, "@erin:a.test, device "+laptop) || !strings.Contains(out, "your fingerprint: "+fp) {
		t.Fatalf("whoami: %q", out)
	}
	if out := ok(t, dir, "--data", "erin-laptop", "leave", room); !strings.Contains(out, `left "Ops" and forgot its keys`) {
		t.Fatalf("leave: %q", out)
	}
	if out := ok(t, dir, "--data", "erin-laptop", "rooms"); !strings.Contains(out, room+": you left") {
		t.Fatalf("rooms after leaving: %q", out)
	}
	if r := mlschat(t, dir, "--data", "erin-laptop", "send", room, "still here?"); r.code != 1 || !strings.Contains(r.stderr, "this client is not in room "+room) {
		t.Fatalf("send after leaving: %+v", r)
	}

	// Join of a room without an invite gives up and says what to do.
	r = mlschat(t, dir, "--as", "dan", "join", "--timeout", "1s", "!nowhere:a.test")
	if r.code != 1 || !strings.Contains(r.stderr, "no invite with its Welcome for !nowhere:a.test arrived within 1s") {
		t.Fatalf("join without an invite: %+v", r)
	}
}

// TestPendingCommit shows a pending commit in words: alice's server is
// second in powers, so her rename goes as a pending commit that waits for
// b.test's window; she stops waiting with Ctrl-C, and show tells where
// the change is.
func TestPendingCommit(t *testing.T) {
	url := newServer(t, "a.test")
	dir := t.TempDir()
	ok(t, dir, "register", "--server", url, "--password", "pw-alice", "alice")
	room := strings.TrimSpace(ok(t, dir, "--as", "alice", "create", "-q", "--name", "Far",
		"--powers", "b.test,a.test", "--servers", "a.test,b.test", "--can-propose", "a.test"))
	p := startProc(t, dir, "alice", "--as", "alice", "name", room, "Far away")
	p.waitFor("your server a.test is not the first of the servers that order this room's changes (b.test, then a.test): the change goes as a pending commit for them to apply, which can take up to 11m0s")
	// The pending commit is sent within milliseconds; the wait is for
	// a.test's window, five minutes away.
	time.Sleep(3 * time.Second)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("name did not stop at Ctrl-C:\n%s", p.all())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(p.all(), "mlschat name: interrupted") {
		t.Fatalf("interrupted name: exit %d\n%s", code, p.all())
	}
	out := ok(t, dir, "--as", "alice", "show", room)
	if !strings.Contains(out, "! your pending change is waiting for b.test, then a.test to apply it (gives up at ") ||
		!strings.Contains(out, `Room "Far"`) {
		t.Fatalf("show with a pending commit:\n%s", out)
	}
	var v roomView
	if err := json.Unmarshal([]byte(ok(t, dir, "--as", "alice", "show", "--json", room)), &v); err != nil {
		t.Fatal(err)
	}
	if v.Pending == nil || !v.Pending.Pending || !strings.HasPrefix(v.Pending.EventID, "$") || v.Pending.Expires.Sub(v.Pending.SentAt) != 11*time.Minute {
		t.Fatalf("show --json pending_commit: %+v", v.Pending)
	}
}
