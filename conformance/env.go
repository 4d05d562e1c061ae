package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
)

// The environment variables that point the suite at another server
// (docs/CONFORMANCE.md).
const (
	// EnvClientURL is the client API's base URL ("http://127.0.0.1:8008").
	EnvClientURL = "MLSMODE_CONFORMANCE_CLIENT_URL"
	// EnvFederationURL is the federation API's base URL
	// ("https://127.0.0.1:8448"); without it the federation checks fail.
	EnvFederationURL = "MLSMODE_CONFORMANCE_FEDERATION_URL"
	// EnvServerName is the server under test's server name.
	EnvServerName = "MLSMODE_CONFORMANCE_SERVER_NAME"
	// EnvFederationCA is a PEM file of CAs the suite trusts for the
	// server's federation listener (besides the system roots).
	EnvFederationCA = "MLSMODE_CONFORMANCE_FEDERATION_CA"
	// EnvSuiteListen is the address the suite's own homeserver listens on
	// ("127.0.0.1:8449"; default a free loopback port, which only the
	// in-process server can be told of).
	EnvSuiteListen = "MLSMODE_CONFORMANCE_SUITE_LISTEN"
	// EnvSuiteTLS is a directory holding the suite's TLS certificate and
	// key (suite-cert.pem, suite-key.pem) and signing keys
	// (suite-keys.json); they are created there if missing, so the server
	// under test can be told once to trust suite-cert.pem and keeps the
	// keys it fetched across runs. Default: new ones in a temporary
	// directory.
	EnvSuiteTLS = "MLSMODE_CONFORMANCE_SUITE_TLS_DIR"
	// EnvReport is a file the JSON report is written to.
	EnvReport = "MLSMODE_CONFORMANCE_REPORT"
)

// The server names of the suite's own homeserver. A is the one the
// invite and key checks use; the auth-rule cases need three servers
// besides the server under test. The server under test must resolve each
// to the suite's listener.
const (
	SuiteNameA = "suite-a.conformance.localhost"
	SuiteNameB = "suite-b.conformance.localhost"
	SuiteNameD = "suite-d.conformance.localhost"
)

// Env is the server under test and the suite's means of reaching it.
type Env struct {
	// ClientURL is the client API's base URL, without a trailing slash.
	ClientURL string
	// FederationURL is the federation API's base URL ("" when the run has
	// no federation: the federation checks then fail saying so).
	FederationURL string
	// ServerName is the server under test's name.
	ServerName string
	// HTTP reaches the client API.
	HTTP *http.Client
	// FedHTTP reaches the federation API (trusting its certificate).
	FedHTTP *http.Client
	// Prefix starts every user name the run registers, so that runs
	// against one server do not collide.
	Prefix string
	// Suite is the suite's own homeserver (nil without federation).
	Suite *SuiteServer

	// seq numbers the users, rooms and transactions of the run.
	seq atomic.Int64

	mu     sync.Mutex
	shared map[string]*testclient.Client
}

// NewPrefix returns a fresh per-run user name prefix ("cf1a2b3c4d-").
func NewPrefix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "cf" + hex.EncodeToString(b) + "-"
}

// User registers a fresh user (m.login.dummy) on the server under test,
// named after name with the run's prefix, as a real MLS client of one
// device.
func (c *C) User(name string) *testclient.Client {
	n := c.Env.seq.Add(1)
	return testclient.New(c, c.Env.ClientURL, c.Env.HTTP, fmt.Sprintf("%s%s%d", c.Env.Prefix, name, n))
}

// SharedUser returns the run's user named name, registered by the first
// check that asks, as a copy bound to c. Checks that only need a user to
// invite into rooms of their own share one (registration costs the server
// a password hash); the copy's MLS state is not shared.
func (c *C) SharedUser(name string) *testclient.Client {
	c.Env.mu.Lock()
	defer c.Env.mu.Unlock()
	if c.Env.shared == nil {
		c.Env.shared = map[string]*testclient.Client{}
	}
	u, ok := c.Env.shared[name]
	if !ok {
		u = c.User(name)
		c.Env.shared[name] = u
	}
	cp := *u
	cp.T = c
	return &cp
}

// NeedFederation ends the check, failed, when the run has no federation
// API to test.
func (c *C) NeedFederation() {
	if c.Env.FederationURL == "" || c.Env.Suite == nil {
		c.Fatalf("cannot run: no federation API (set %s and %s)", EnvFederationURL, EnvServerName)
	}
}

// FromEnvironment returns the target named by the environment variables,
// or ok false when EnvClientURL is not set (the caller then starts a
// server in its process).
func FromEnvironment() (t Target, ok bool, err error) {
	t.ClientURL = strings.TrimRight(os.Getenv(EnvClientURL), "/")
	if t.ClientURL == "" {
		return t, false, nil
	}
	t.FederationURL = strings.TrimRight(os.Getenv(EnvFederationURL), "/")
	t.ServerName = os.Getenv(EnvServerName)
	if t.ServerName == "" {
		return t, true, fmt.Errorf("%s is set but %s is not", EnvClientURL, EnvServerName)
	}
	if f := os.Getenv(EnvFederationCA); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return t, true, fmt.Errorf("%s: %w", EnvFederationCA, err)
		}
		t.FederationCA = pem
	}
	return t, true, nil
}

// Target is the server under test as the suite is told of it.
type Target struct {
	ClientURL, FederationURL, ServerName string
	// FederationCA is PEM of CAs trusted for the federation listener.
	FederationCA []byte
}

// NewEnv returns the environment for target, with the suite's homeserver
// suite (nil: no federation checks can run).
func NewEnv(target Target, suite *SuiteServer) (*Env, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(target.FederationCA) > 0 && !roots.AppendCertsFromPEM(target.FederationCA) {
		return nil, errors.New("conformance: no PEM certificate in the federation CA")
	}
	fedTransport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	env := &Env{
		ClientURL: target.ClientURL, FederationURL: target.FederationURL, ServerName: target.ServerName,
		HTTP:    &http.Client{Timeout: 60 * time.Second},
		FedHTTP: &http.Client{Timeout: 60 * time.Second, Transport: fedTransport},
		Prefix:  NewPrefix(), Suite: suite,
	}
	return env, nil
}

// WithClientURL returns a copy of e reaching the client API at u (a
// proxy in front of the server), with a fresh user prefix.
func (e *Env) WithClientURL(u string) *Env {
	return &Env{ClientURL: strings.TrimRight(u, "/"), FederationURL: e.FederationURL, ServerName: e.ServerName,
		HTTP: e.HTTP, FedHTTP: e.FedHTTP, Prefix: NewPrefix(), Suite: e.Suite}
}

// WithFederationURL returns a copy of e reaching the federation API at u
// through hc (a proxy in front of the server), with a fresh user prefix.
func (e *Env) WithFederationURL(u string, hc *http.Client) *Env {
	return &Env{ClientURL: e.ClientURL, FederationURL: strings.TrimRight(u, "/"), ServerName: e.ServerName,
		HTTP: e.HTTP, FedHTTP: hc, Prefix: NewPrefix(), Suite: e.Suite}
}

// selfSignedCert writes a self-signed certificate (its own CA) for names
// and 127.0.0.1 with its key into dir as <base>-cert.pem and
// <base>-key.pem, unless both exist already, and returns their paths.
func selfSignedCert(dir, base string, names ...string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, base+"-cert.pem"), filepath.Join(dir, base+"-key.pem")
	if _, err1 := os.Stat(certFile); err1 == nil {
		if _, err2 := os.Stat(keyFile); err2 == nil {
			return certFile, keyFile, nil
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "mlsmode conformance " + base},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
