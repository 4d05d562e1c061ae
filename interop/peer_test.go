//go:build interop

package interop

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
)

// tsPeer is the ts-mls member: a node process running
// ts-mls/peer.mjs, one JSON command a line on its stdin and one JSON
// answer a line on its stdout.
type tsPeer struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   *json.Encoder
	out  *bufio.Scanner
	logs *loopback.LogBuffer
}

// startTSPeer starts the Node peer. ts-mls/node_modules must exist (make
// interop runs npm ci first); without node or the packages the test fails
// and says what is missing.
func startTSPeer(t *testing.T) *tsPeer {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: the ts-mls interop test needs Node.js 20 or later: %v", err)
	}
	dir, err := filepath.Abs("ts-mls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ts-mls", "package.json")); err != nil {
		t.Fatalf("ts-mls is not installed in %s: run npm ci there (make interop does): %v", dir, err)
	}
	cmd := exec.Command(node, "peer.mjs")
	cmd.Dir = dir
	p := &tsPeer{t: t, cmd: cmd, logs: &loopback.LogBuffer{}}
	cmd.Stderr = p.logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node peer.mjs: %v", err)
	}
	p.in = json.NewEncoder(stdin)
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(make([]byte, 64*1024), 16<<20)
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ts-mls peer log:\n%s", p.logs)
		}
	})
	return p
}

// tryCall sends one command and returns the peer's answer (ok or not).
func (p *tsPeer) tryCall(cmd string, args map[string]any) map[string]any {
	p.t.Helper()
	msg := map[string]any{"cmd": cmd}
	for k, v := range args {
		msg[k] = v
	}
	if err := p.in.Encode(msg); err != nil {
		p.t.Fatalf("ts-mls peer: sending %s: %v\n%s", cmd, err, p.logs)
	}
	line := make(chan bool, 1)
	go func() { line <- p.out.Scan() }()
	select {
	case ok := <-line:
		if !ok {
			p.t.Fatalf("ts-mls peer: no answer to %s (exited?): %v\n%s", cmd, p.out.Err(), p.logs)
		}
	case <-time.After(90 * time.Second):
		p.t.Fatalf("ts-mls peer: no answer to %s within 90 s\n%s", cmd, p.logs)
	}
	var res map[string]any
	if err := json.Unmarshal(p.out.Bytes(), &res); err != nil {
		p.t.Fatalf("ts-mls peer: answer to %s is not JSON: %v: %q", cmd, err, p.out.Bytes())
	}
	return res
}

// call sends one command and fails the test unless the peer reports ok.
func (p *tsPeer) call(cmd string, args map[string]any) map[string]any {
	p.t.Helper()
	res := p.tryCall(cmd, args)
	if res["ok"] != true {
		p.t.Fatalf("ts-mls peer: %s failed: %v", cmd, res["error"])
	}
	return res
}
