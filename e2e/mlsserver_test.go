//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
	"github.com/mlsmode/mlsmode/internal/testdb"
)

// serverBin is the mlsserver binary TestMain builds once for all tests.
var serverBin string

func TestMain(m *testing.M) {
	os.Exit(loopback.WithServerBinary("mlsmode-e2e-", &serverBin, m.Run))
}

// buildServer returns the mlsserver binary TestMain built.
func buildServer(t testing.TB) string {
	t.Helper()
	return serverBin
}

// process is one running mlsserver.
type process struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	url  string
	logs *loopback.LogBuffer
	// exited is closed when the process has exited, with waitErr set.
	exited  chan struct{}
	waitErr error
}

// startProcess starts bin with args on 127.0.0.1:0 and waits for the
// address it logs.
func startProcess(t testing.TB, bin, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--log-level", "debug", "--rate-limit=false"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	servingLine := regexp.MustCompile(`msg=serving .*address=(\S+)`)
	p := &process{t: t, name: name, cmd: cmd, logs: &loopback.LogBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(p.logs, stderr)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, p.logs)
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.exited:
		t.Fatalf("%s exited before serving: %v\n%s", name, p.waitErr, p.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not serve within 60s\n%s", name, p.logs)
	}
	return p
}

// stop sends SIGTERM and expects exit status 0.
func (p *process) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.t.Errorf("%s after SIGTERM: %v", p.name, p.waitErr)
		}
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not exit within 30s of SIGTERM", p.name)
	}
	if !strings.Contains(p.logs.String(), "storage closed") {
		p.t.Errorf("%s did not log closing storage", p.name)
	}
}

// do sends a JSON request and decodes the JSON answer.
func (p *process) do(method, path, token string, body any) (int, map[string]any) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s %s: %v", p.name, method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		p.t.Fatalf("%s %s %s: %d, body not JSON: %v", p.name, method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// Two processes serve one server name from one PostgreSQL database with
// one signing key: an account registered on one logs in on the other.
func TestTwoProcessesOneDatabase(t *testing.T) {
	bin := buildServer(t)
	dsn := testdb.PostgresDSN(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.key")
	common := []string{"--server-name", "two.test", "--database", dsn, "--signing-key", key,
		"--data-dir", filepath.Join(dir, "unused")}

	p1 := startProcess(t, bin, "process 1", common...)
	p2 := startProcess(t, bin, "process 2", common...)
	if !strings.Contains(p1.logs.String(), "created signing key") || !strings.Contains(p2.logs.String(), "loaded signing key") {
		t.Errorf("process 1 should create the key and process 2 load it")
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); err == nil {
		t.Errorf("data_dir was created although neither the database nor the key is in it")
	}

	for _, p := range []*process{p1, p2} {
		if st, body := p.do("GET", "/health", "", nil); st != http.StatusOK || body["status"] != "ok" {
			t.Errorf("%s GET /health: %d %v", p.name, st, body)
		}
	}

	st, body := p1.do("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": "alice", "password": "secret pw", "auth": map[string]string{"type": "m.login.dummy"}})
	if st != http.StatusOK || body["user_id"] != "@alice:two.test" {
		t.Fatalf("register on process 1: %d %v", st, body)
	}
	token1, _ := body["access_token"].(string)

	st, body = p2.do("POST", "/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "alice"},
		"password": "secret pw"})
	if st != http.StatusOK || body["user_id"] != "@alice:two.test" {
		t.Fatalf("login on process 2: %d %v", st, body)
	}
	token2, _ := body["access_token"].(string)

	// Each process knows the tokens the other handed out.
	for _, c := range []struct {
		p     *process
		token string
	}{{p2, token1}, {p1, token2}} {
		st, body := c.p.do("GET", "/_matrix/client/v3/account/whoami", c.token, nil)
		if st != http.StatusOK || body["user_id"] != "@alice:two.test" {
			t.Errorf("%s whoami: %d %v", c.p.name, st, body)
		}
	}
	// Registering the same name on the other process is refused.
	st, body = p2.do("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": "alice", "password": "x", "auth": map[string]string{"type": "m.login.dummy"}})
	if st != http.StatusBadRequest || body["errcode"] != "M_USER_IN_USE" {
		t.Errorf("registering alice again on process 2: %d %v", st, body)
	}

	p1.stop()
	// Process 2 serves on after process 1 stopped.
	if st, body := p2.do("GET", "/_matrix/client/v3/account/whoami", token1, nil); st != http.StatusOK {
		t.Errorf("process 2 whoami after process 1 stopped: %d %v", st, body)
	}
	p2.stop()
}
