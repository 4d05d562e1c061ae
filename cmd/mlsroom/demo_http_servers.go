package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/mlsmode/mlsmode/internal/loopback"
)

// httpNet is what demo --http runs on loopback: one mlsserver process per
// server name, each with its own SQLite data dir under dir, federating
// over HTTPS with one self-signed certificate, through a TCP proxy per
// (from, to) link that the demo cuts to split the network. Every server
// reads the same scaled clock (--clock-speed, --clock-start).
type httpNet struct {
	dir     string
	bin     string
	speed   float64
	start   time.Time
	names   []string
	servers map[string]*httpServer
	links   map[[2]string]*loopback.LinkProxy
	stderr  io.Writer
}

// httpServer is one mlsserver process.
type httpServer struct {
	name    string
	dataDir string
	logPath string
	fedAddr string // 127.0.0.1:port of the federation listener
	url     string // client API base URL, from the server's "serving" log line
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// now is the servers' clock: start + (real now - start) x speed.
func (n *httpNet) now() time.Time {
	return n.start.Add(time.Duration(float64(time.Since(n.start)) * n.speed)).Round(0)
}

// buildMLSServer returns the mlsserver binary: bin if given, else one
// built with "go build" into dir from this module's cmd/mlsserver (the
// working directory must be inside the module, as with "go run").
func buildMLSServer(ctx context.Context, bin, dir string, stderr io.Writer) (string, error) {
	if bin != "" {
		st, err := os.Stat(bin)
		if err != nil {
			return "", fmt.Errorf("--server-bin: %w", err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("--server-bin %s: not an executable file", bin)
		}
		return bin, nil
	}
	fmt.Fprintf(stderr, "mlsroom demo: building mlsserver (go build github.com/mlsmode/mlsmode/cmd/mlsserver) ...\n")
	out, err := loopback.BuildServer(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("building mlsserver (run from inside the mlsmode module, or give --server-bin): %w", err)
	}
	return out, nil
}

// startHTTPNet starts one server per name and waits until each serves
// its client API and its federation key.
func startHTTPNet(ctx context.Context, bin, dir string, speed float64, stderr io.Writer, names ...string) (n *httpNet, err error) {
	n = &httpNet{dir: dir, bin: bin, speed: speed, start: time.Now().UTC(), names: names,
		servers: map[string]*httpServer{}, links: map[[2]string]*loopback.LinkProxy{}, stderr: stderr}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	cert, key, pool, err := loopback.WriteCert(dir, 24*time.Hour, names...)
	if err != nil {
		return n, err
	}
	for _, name := range names {
		fa, err := loopback.FreeAddr()
		if err != nil {
			return n, err
		}
		n.servers[name] = &httpServer{name: name, dataDir: filepath.Join(dir, name), logPath: filepath.Join(dir, name+".log"), fedAddr: fa}
	}
	for _, from := range names {
		for _, to := range names {
			if from != to {
				l, err := loopback.StartLinkProxy(n.servers[to].fedAddr)
				if err != nil {
					return n, err
				}
				n.links[[2]string{from, to}] = l
			}
		}
	}
	for _, name := range names {
		if err := n.launch(ctx, name, cert, key); err != nil {
			return n, err
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for _, name := range names {
		s := n.servers[name]
		for deadline := time.Now().Add(30 * time.Second); ; {
			resp, err := hc.Get("https://" + s.fedAddr + "/_matrix/key/v2/server")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if time.Now().After(deadline) {
				return n, fmt.Errorf("%s: the federation listener %s does not serve its key: %v (log: %s)", name, s.fedAddr, err, s.logPath)
			}
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-s.exited:
				return n, fmt.Errorf("%s exited: %v (log: %s)", name, s.waitErr, s.logPath)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return n, nil
}

// servingLine is the client listener's start line ("serving federation"
// is quoted, so it does not match).
var servingLine = regexp.MustCompile(`msg=serving .*url=(\S+)`)

// launch starts one server and waits for the URL of its client API.
func (n *httpNet) launch(ctx context.Context, name, cert, key string) error {
	s := n.servers[name]
	args := []string{"--server-name", name, "--listen", "127.0.0.1:0", "--data-dir", s.dataDir,
		"--log-level", "info", "--rate-limit=false", "--shutdown-timeout", "2s",
		"--federation", "--federation-listen", s.fedAddr,
		"--federation-tls-cert", cert, "--federation-tls-key", key, "--federation-trust-ca", cert,
		"--clock-speed", strconv.FormatFloat(n.speed, 'g', -1, 64), "--clock-start", n.start.Format(time.RFC3339Nano)}
	for _, to := range n.names {
		if to != name {
			args = append(args, "--federation-resolve", to+"="+n.links[[2]string{name, to}].Addr())
		}
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(n.bin, args...)
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s (%s): %w", name, n.bin, err)
	}
	s.exited = make(chan struct{})
	url := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case url <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(logf, pipe)
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.url = <-url:
		return nil
	case <-s.exited:
		return fmt.Errorf("%s exited at start: %v (log: %s)", name, s.waitErr, s.logPath)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not log its address within 30 s (log: %s)", name, s.logPath)
	}
}

// split cuts every link between a server of one side and one of the
// other, both ways.
func (n *httpNet) split(one, other []string) {
	for _, a := range one {
		for _, b := range other {
			n.links[[2]string{a, b}].SetBlocked(true)
			n.links[[2]string{b, a}].SetBlocked(true)
		}
	}
}

// heal restores every link.
func (n *httpNet) heal() {
	for _, l := range n.links {
		l.SetBlocked(false)
	}
}

// close stops every server (SIGTERM, then SIGKILL after 5 s) and the
// proxies, and returns the servers that did not exit cleanly.
func (n *httpNet) close() error {
	var errs []error
	for _, s := range n.servers {
		if s.cmd == nil || s.cmd.Process == nil || s.exited == nil {
			continue
		}
		select {
		case <-s.exited:
			continue
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range n.servers {
		if s.exited == nil {
			continue
		}
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			errs = append(errs, fmt.Errorf("%s did not stop within 5 s of SIGTERM and was killed", s.name))
		}
	}
	for _, l := range n.links {
		l.Close()
	}
	return errors.Join(errs...)
}
