// Package loopback holds what runs several federating homeservers on one
// machine needs: the mlsserver binary, a self-signed certificate for their
// names and 127.0.0.1, free ports to give them before they start, TCP link
// proxies that cut a link to make a network partition, and buffers for
// their logs. The e2e and interop tests, the
// server's own tests and `mlsroom demo --http` use it.
package loopback

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// WriteCert writes dir/fed-cert.pem, a self-signed CA certificate valid
// for the names and 127.0.0.1 for the given time (from an hour ago), and
// dir/fed-key.pem, its key; servers serve it on their federation
// listeners and trust it as their CA. pool holds the certificate, for
// clients of those listeners.
func WriteCert(dir string, validFor time.Duration, names ...string) (certFile, keyFile string, pool *x509.CertPool, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mlsmode loopback federation"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", nil, fmt.Errorf("making the loopback certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "fed-cert.pem"), filepath.Join(dir, "fed-key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", nil, err
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool, nil
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago, for a
// server whose port others must know before it starts. The port is drawn
// below Linux's ephemeral range (32768-60999), from which the kernel
// hands out ports to outgoing connections and ":0" listeners (such as
// the link proxies): a port from that range could be taken again before
// the server binds it.
func FreeAddr() (string, error) {
	var b [2]byte
	for range 200 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		port := 20000 + (int(b[0])<<8|int(b[1]))%12000
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr, nil
	}
	return "", errors.New("no free port found in 127.0.0.1:20000-31999")
}

// LinkProxy forwards TCP connections from its own 127.0.0.1 address to a
// target unless blocked; blocking closes the connections open through it
// and refuses new ones.
type LinkProxy struct {
	addr   string
	target string
	ln     net.Listener
	done   chan struct{}

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]struct{}
	// accepted and refused count connections.
	accepted, refused int
}

// StartLinkProxy listens on 127.0.0.1 and forwards to target until Close.
func StartLinkProxy(target string) (*LinkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &LinkProxy{addr: ln.Addr().String(), target: target, ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go func() {
		defer close(l.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.serve(c)
		}
	}()
	return l, nil
}

// Addr is the proxy's own address (what a server resolves the target's
// name to).
func (l *LinkProxy) Addr() string { return l.addr }

// serve forwards one connection, or closes it if the link is blocked or
// the target does not answer.
func (l *LinkProxy) serve(in net.Conn) {
	if !l.track(in) {
		in.Close()
		return
	}
	defer l.untrack(in)
	out, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !l.track(out) {
		in.Close()
		out.Close()
		return
	}
	defer l.untrack(out)
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Either side ending ends both: a half-closed TLS connection is
		// of no use.
		dst.Close()
		src.Close()
	}
	wg.Go(func() { pipe(out, in) })
	wg.Go(func() { pipe(in, out) })
	wg.Wait()
}

// track registers c as open, false if the link is blocked.
func (l *LinkProxy) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocked {
		l.refused++
		return false
	}
	l.accepted++
	l.conns[c] = struct{}{}
	return true
}

func (l *LinkProxy) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// SetBlocked blocks or unblocks the link; blocking closes the open
// connections.
func (l *LinkProxy) SetBlocked(blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blocked = blocked
	if blocked {
		for c := range l.conns {
			c.Close()
		}
	}
}

// Counts returns how many connections were forwarded and refused.
func (l *LinkProxy) Counts() (accepted, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted, l.refused
}

// Close stops the proxy and closes what is open through it.
func (l *LinkProxy) Close() {
	l.ln.Close()
	<-l.done
	l.SetBlocked(true)
}

// BuildServer builds cmd/mlsserver into dir (with the go command, from
// inside the module) and returns the binary's path.
func BuildServer(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "mlsserver")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/mlsmode/mlsmode/cmd/mlsserver")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build github.com/mlsmode/mlsmode/cmd/mlsserver: %v\n%s", err, msg)
	}
	return out, nil
}

// LogBuffer collects a server process's log (its stderr), safe for the
// goroutine writing and the test reading.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WithServerBinary is for a TestMain: it builds mlsserver into a fresh
// temporary directory (named from prefix), sets *bin to it, runs run (the
// tests) and removes the directory. It returns run's exit code, or 1 with
// the reason on stderr when the build fails.
func WithServerBinary(prefix string, bin *string, run func() int) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildServer(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return run()
}
