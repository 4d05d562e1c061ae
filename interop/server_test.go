//go:build interop

package interop

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
)

// serverBin is the mlsserver binary TestMain builds once for all tests.
var serverBin string

func TestMain(m *testing.M) {
	os.Exit(loopback.WithServerBinary("mlsmode-interop-", &serverBin, m.Run))
}

// clockSpeed runs the servers 60 times as fast as real time, so that a
// pending commit's 5-minute window offset passes in 5 real seconds.
const clockSpeed = 60

// startServer runs mlsserver for serverName on 127.0.0.1 with a SQLite
// data dir in a temporary directory, no federation, and the clock at
// clockSpeed; it returns the client API's base URL. t.Cleanup stops it and
// logs its output if the test failed.
func startServer(t *testing.T, serverName string) string {
	t.Helper()
	return startServerArgs(t, serverName, "--clock-speed", strconv.Itoa(clockSpeed))
}

// startServerArgs is startServer with the real clock and the extra command
// line args.
func startServerArgs(t *testing.T, serverName string, args ...string) string {
	t.Helper()
	cmd := exec.Command(serverBin, append([]string{"--server-name", serverName, "--listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-level", "debug", "--rate-limit=false"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &loopback.LogBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting mlsserver: %v", err)
	}
	serving := regexp.MustCompile(`msg=serving .*address=(\S+)`)
	addr := make(chan string, 1)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := serving.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(logs, stderr)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mlsserver %s logs:\n%s", serverName, logs)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-exited:
		t.Fatalf("mlsserver exited before serving: %v\n%s", waitErr, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("mlsserver did not serve within 60 s\n%s", logs)
	}
	return ""
}
