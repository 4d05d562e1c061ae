//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// fedHarness runs several federating mlsserver processes on 127.0.0.1,
// each with its own SQLite data dir, sharing one self-signed certificate
// (trusted through --federation-trust-ca) and one virtual clock
// (--clock-speed, --clock-start). Every server reaches every other through
// a TCP proxy of the harness, one per (from, to) link, named in its
// --federation-resolve: Block cuts links. Servers keep their ports and
// data dirs across Stop, Kill and Restart. t.Cleanup kills what runs.
type fedHarness struct {
	t       testing.TB
	bin     string
	dir     string
	cert    string // certificate file, also the trusted CA
	key     string
	speed   float64
	start   string // --clock-start, shared by all servers and restarts
	servers map[string]*fedServer
	names   []string
	links   map[[2]string]*loopback.LinkProxy // by {from, to}
	// hc trusts the certificate (direct requests to federation
	// listeners).
	hc *http.Client
}

// fedServer is one server name of the harness.
type fedServer struct {
	name       string
	dataDir    string
	clientAddr string // 127.0.0.1:port of the client API, kept on restart
	fedAddr    string // 127.0.0.1:port of the federation listener
	// URL is the client API's base URL.
	URL  string
	proc *process // nil while stopped
}

// newFedHarness starts one server per name (names like "a.test") with
// clock speed speed (1: real time).
func newFedHarness(t testing.TB, speed float64, names ...string) *fedHarness {
	t.Helper()
	dir := t.TempDir()
	cert, key := writeFederationCert(t, dir, names...)
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h := &fedHarness{
		t: t, bin: buildServer(t), dir: dir, cert: cert, key: key, speed: speed,
		start:   time.Now().UTC().Format(time.RFC3339Nano),
		servers: map[string]*fedServer{}, names: names, links: map[[2]string]*loopback.LinkProxy{},
		hc: &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}
	for _, n := range names {
		h.servers[n] = &fedServer{name: n, dataDir: filepath.Join(dir, n), clientAddr: freeAddr(t), fedAddr: freeAddr(t)}
		h.servers[n].URL = "http://" + h.servers[n].clientAddr
	}
	for _, from := range names {
		for _, to := range names {
			if from != to {
				h.links[[2]string{from, to}] = startLinkProxy(t, h.servers[to].fedAddr)
			}
		}
	}
	for _, n := range names {
		h.launch(n)
	}
	return h
}

// server returns the named server, failing the test for unknown names.
func (h *fedHarness) server(name string) *fedServer {
	h.t.Helper()
	s := h.servers[name]
	if s == nil {
		h.t.Fatalf("harness: no server %q", name)
	}
	return s
}

// args are name's command line: its ports, data dir, the certificate,
// the clock, and every other server resolved to the link proxy from name.
func (h *fedHarness) args(name string) []string {
	s := h.servers[name]
	args := []string{"--server-name", name, "--listen", s.clientAddr, "--data-dir", s.dataDir,
		"--federation", "--federation-listen", s.fedAddr,
		"--federation-tls-cert", h.cert, "--federation-tls-key", h.key, "--federation-trust-ca", h.cert,
		"--clock-speed", strconv.FormatFloat(h.speed, 'g', -1, 64), "--clock-start", h.start}
	for _, to := range h.names {
		if to != name {
			args = append(args, "--federation-resolve", to+"="+h.links[[2]string{name, to}].Addr())
		}
	}
	return args
}

// launch starts name's process and waits until its federation listener
// answers with its key.
func (h *fedHarness) launch(name string) {
	h.t.Helper()
	s := h.servers[name]
	s.proc = startProcess(h.t, h.bin, name, h.args(name)...)
	if s.proc.url != s.URL {
		h.t.Fatalf("%s serves the client API on %s, want %s", name, s.proc.url, s.URL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := h.hc.Get("https://" + s.fedAddr + "/_matrix/key/v2/server")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: federation listener %s does not serve its key: %v", name, s.fedAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends name SIGTERM and waits for a clean exit (status 0, storage
// closed).
func (h *fedHarness) Stop(name string) {
	h.t.Helper()
	s := h.server(name)
	if s.proc == nil {
		h.t.Fatalf("harness: %s is not running", name)
	}
	s.proc.stop()
	s.proc = nil
}

// Kill sends name SIGKILL and waits for it to exit.
func (h *fedHarness) Kill(name string) {
	h.t.Helper()
	s := h.server(name)
	if s.proc == nil {
		h.t.Fatalf("harness: %s is not running", name)
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatalf("killing %s: %v", name, err)
	}
	select {
	case <-s.proc.exited:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("%s did not exit within 10 s of SIGKILL", name)
	}
	s.proc = nil
}

// Restart starts a stopped or killed server again: same data dir, same
// ports, same clock.
func (h *fedHarness) Restart(name string) {
	h.t.Helper()
	s := h.server(name)
	if s.proc != nil {
		h.t.Fatalf("harness: %s is still running", name)
	}
	h.launch(name)
}

// Block cuts the link from server from to server to: connections from's
// federation requests open to to are closed, new ones are closed at once.
// from "" cuts every link to to.
func (h *fedHarness) Block(from, to string) { h.setBlocked(from, to, true) }

// Unblock restores what Block cut.
func (h *fedHarness) Unblock(from, to string) { h.setBlocked(from, to, false) }

func (h *fedHarness) setBlocked(from, to string, blocked bool) {
	h.t.Helper()
	h.server(to)
	n := 0
	for k, l := range h.links {
		if k[1] == to && (from == "" || k[0] == from) {
			l.SetBlocked(blocked)
			n++
		}
	}
	if n == 0 {
		h.t.Fatalf("harness: no link %q -> %q", from, to)
	}
}

// User registers name on server and returns its MLS client.
func (h *fedHarness) User(server, name string) *testclient.Client {
	h.t.Helper()
	return testclient.New(h.t, h.server(server).URL, httpClient, name)
}

// startLinkProxy starts a link proxy to target, closed when the test ends.
func startLinkProxy(t testing.TB, target string) *loopback.LinkProxy {
	t.Helper()
	l, err := loopback.StartLinkProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// The harness on two real servers: Block of the link a.test -> b.test
// holds alice's message back from bob until Unblock; after b.test is
// killed (SIGKILL) and restarted on its data dir and ports, bob's session
// and room survive and alice's next message reaches him.
func TestFedHarnessBlockKillRestart(t *testing.T) {
	h := newFedHarness(t, 60, "a.test", "b.test")
	alice := h.User("a.test", "alice")
	bob := h.User("b.test", "bob")
	bob.UploadKeys(2, true)
	bob.Sync(0)
	alice.Sync(0)
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test"}, nil)
	roomID := alice.CreateRoom(fm)
	welcome := alice.Add(roomID, fm, alice.ClaimKeyPackage(bob.UserID, bob.DeviceID))
	addID := alice.CommitID
	alice.Invite(roomID, bob.UserID, bob.DeviceID, welcome)
	bob.JoinInvited(roomID, addID)

	h.Block("a.test", "b.test")
	held := alice.SendMessage(roomID, "held back").Must(t, 200, "alice's message while blocked").Str("event_id")
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for _, ev := range testclient.Timeline(bob.Sync(500), roomID) {
			if ev["event_id"] == held {
				t.Fatal("bob got alice's message although the link a.test -> b.test is blocked")
			}
		}
	}
	if _, refused := h.links[[2]string{"a.test", "b.test"}].Counts(); refused == 0 {
		t.Error("a.test never tried the blocked link to b.test")
	}
	h.Unblock("a.test", "b.test")
	awaitTimelineEvent(t, bob, roomID, held, 20*time.Second, func(ev map[string]any) {
		if got := bob.MessageText(ev); got != "held back" {
			t.Fatalf("bob decrypted %q", got)
		}
	})

	h.Kill("b.test")
	h.Restart("b.test")
	after := alice.SendMessage(roomID, "after the crash").Must(t, 200, "alice's message after b's restart").Str("event_id")
	awaitTimelineEvent(t, bob, roomID, after, 20*time.Second, func(ev map[string]any) {
		if got := bob.MessageText(ev); got != "after the crash" {
			t.Fatalf("bob decrypted %q", got)
		}
	})
}

// threeServerRoom is the room the three-server tests start from: alice on
// a.test creates it with federation map fm and, in one commit, adds bob
// (b.test) and carol (c.test) with key packages claimed across servers;
// both join from its Welcome after the invite. It returns the clients, the
// room and the add commit.
func (h *fedHarness) threeServerRoom(t *testing.T, fm *fedmap.Map) (alice, bob, carol *testclient.Client, roomID, addID string) {
	t.Helper()
	alice = h.User("a.test", "alice")
	bob = h.User("b.test", "bob")
	carol = h.User("c.test", "carol")
	bob.UploadKeys(2, true)
	carol.UploadKeys(2, true)
	bob.Sync(0)
	carol.Sync(0)
	alice.Sync(0)

	roomID = alice.CreateRoom(fm)
	kpBob := alice.ClaimKeyPackage(bob.UserID, bob.DeviceID)
	kpCarol := alice.ClaimKeyPackage(carol.UserID, carol.DeviceID)
	add := alice.Stage(fm, []*mls.Proposal{
		{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kpBob}},
		{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kpCarol}},
	})
	addID = alice.PutCommit(roomID, add).Must(t, 200, "add commit").Str("event_id")
	alice.AwaitCommit(roomID, addID, add)
	if add.Welcome == nil {
		t.Fatal("the add commit has no Welcome")
	}
	alice.Invite(roomID, bob.UserID, bob.DeviceID, add.Welcome)
	alice.Invite(roomID, carol.UserID, carol.DeviceID, add.Welcome)
	bob.JoinInvited(roomID, addID)
	carol.JoinInvited(roomID, addID)
	return alice, bob, carol, roomID, addID
}
