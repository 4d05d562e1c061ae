package mlsserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

func TestMain(m *testing.M) {
	roomversion.Register()
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is Run() in this process.
type testServer struct {
	t    *testing.T
	addr string
	// fedAddr is the federation listener's address, "" without federation.
	fedAddr string
	// dir is the server's data dir.
	dir    string
	url    string
	client *http.Client
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	// stopped is set once the server's return was taken from done.
	stopped bool
}

// startServer runs the server on 127.0.0.1:0 with args after the test's
// defaults (a data dir in dataDir, debug logs, no rate limit).
func startServer(t *testing.T, dataDir string, args ...string) *testServer {
	t.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "debug", "--rate-limit=false"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{t: t, dir: dataDir, logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1),
		client: &http.Client{Timeout: 30 * time.Second}}
	ready := make(chan Addresses, 1)
	go func() { s.done <- Run(ctx, all, io.Discard, s.logs, ready) }()
	select {
	case a := <-ready:
		s.addr, s.fedAddr = a.Client, a.Federation
	case err := <-s.done:
		cancel()
		t.Fatalf("server did not start: %v\nlogs:\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("server did not start in 30s; logs:\n%s", s.logs)
	}
	s.url = "http://" + s.addr
	t.Cleanup(func() {
		if !s.stopped {
			if err := s.stop(); err != nil {
				t.Errorf("server stopped with %v", err)
			}
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs)
		}
	})
	return s
}

// stop cancels the server's context and returns what run returned.
func (s *testServer) stop() error {
	s.t.Helper()
	s.cancel()
	s.stopped = true
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatal("server did not stop in 30s")
		return nil
	}
}

// reply is a decoded response.
type reply struct {
	status int
	body   map[string]any
}

func (r reply) str(k string) string { s, _ := r.body[k].(string); return s }

func (s *testServer) do(method, path, token string, body any) reply {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	r := reply{status: resp.StatusCode}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			s.t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return r
}

// expect fails the test unless r has status.
func (s *testServer) expect(r reply, status int, what string) reply {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("%s: status %d, want %d; body %v", what, r.status, status, r.body)
	}
	return r
}

// register creates an account and returns its user ID and access token.
func (s *testServer) register(name, password string) (string, string) {
	s.t.Helper()
	r := s.expect(s.do("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": name, "password": password, "auth": map[string]string{"type": "m.login.dummy"}}),
		http.StatusOK, "register "+name)
	if r.str("user_id") == "" || r.str("access_token") == "" || r.str("device_id") == "" {
		s.t.Fatalf("register %s: answer %v lacks user_id, access_token or device_id", name, r.body)
	}
	return r.str("user_id"), r.str("access_token")
}

func TestServeFirstStartAndRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir, "--server-name", "a.test")

	// The data dir, database and key were created.
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", st.Mode().Perm())
	}
	for _, f := range []string{"mlsserver.db", "signing.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("first start did not create %s: %v", f, err)
		}
	}
	key1, err := readSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.logs.String(), "created signing key") {
		t.Errorf("first start did not log the key's creation")
	}

	r := s.expect(s.do("GET", "/health", "", nil), http.StatusOK, "GET /health")
	if r.str("status") != "ok" {
		t.Errorf("GET /health: %v", r.body)
	}
	r = s.expect(s.do("GET", "/_matrix/client/versions", "", nil), http.StatusOK, "GET /versions")
	if _, ok := r.body["versions"].([]any); !ok {
		t.Errorf("GET /versions: %v", r.body)
	}

	userID, token := s.register("alice", "correct horse")
	if userID != "@alice:a.test" {
		t.Errorf("registered %s, want @alice:a.test", userID)
	}
	r = s.expect(s.do("GET", "/_matrix/client/v3/account/whoami", token, nil), http.StatusOK, "whoami")
	if r.str("user_id") != userID {
		t.Errorf("whoami: %v, want %s", r.body, userID)
	}
	// A token in the query string works and is not logged.
	r = s.expect(s.do("GET", "/_matrix/client/v3/account/whoami?access_token="+token, "", nil), http.StatusOK, "whoami ?access_token")
	if r.str("user_id") != userID {
		t.Errorf("whoami: %v, want %s", r.body, userID)
	}
	s.expect(s.do("GET", "/_matrix/client/v3/account/whoami", "", nil), http.StatusUnauthorized, "whoami without token")
	r = s.expect(s.do("POST", "/_matrix/client/v3/createRoom", token, map[string]any{
		"creation_content": map[string]string{"algorithm": "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"}}),
		http.StatusOK, "createRoom")
	roomID := r.str("room_id")
	if !strings.HasPrefix(roomID, "!") {
		t.Fatalf("createRoom: %v", r.body)
	}

	logs := s.logs.String()
	if strings.Contains(logs, token) {
		t.Errorf("the logs contain the access token:\n%s", logs)
	}
	for _, want := range []string{
		`msg=request method=GET path=/health status=200`,
		`msg=request method=GET path=/_matrix/client/v3/account/whoami status=200`,
		`msg=request method=GET path=/_matrix/client/v3/account/whoami status=401`,
		`msg=request method=POST path=/_matrix/client/v3/register status=200`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line with %q", want)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}

	// A second start reuses the key and the database.
	s = startServer(t, dir, "--server-name", "a.test")
	key2, err := readSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if key2.ID != key1.ID || !key2.Public().Equal(key1.Public()) {
		t.Errorf("restart changed the signing key: %s -> %s", key1.ID, key2.ID)
	}
	if !strings.Contains(s.logs.String(), "loaded signing key") || strings.Contains(s.logs.String(), "created signing key") {
		t.Errorf("restart did not load the existing key")
	}
	r = s.expect(s.do("GET", "/_matrix/client/v3/account/whoami", token, nil), http.StatusOK, "whoami after restart")
	if r.str("user_id") != userID {
		t.Errorf("whoami after restart: %v", r.body)
	}
	r = s.expect(s.do("GET", "/_matrix/client/v3/joined_rooms", token, nil), http.StatusOK, "joined_rooms after restart")
	if rooms, _ := r.body["joined_rooms"].([]any); len(rooms) != 1 || rooms[0] != roomID {
		t.Errorf("joined_rooms after restart: %v, want [%s]", r.body, roomID)
	}
	r = s.expect(s.do("POST", "/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "alice"},
		"password": "correct horse"}), http.StatusOK, "login after restart")
	if r.str("user_id") != userID || r.str("access_token") == "" {
		t.Errorf("login after restart: %v", r.body)
	}
}

func TestServeMalformedKeyRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(key, []byte("ed25519 a_1 not-a-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan Addresses, 1)
	err := Run(context.Background(), []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, io.Discard, io.Discard, ready)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("run with a malformed key: %v, want an error naming %s", err, key)
	}
	if len(ready) != 0 {
		t.Error("the server started with a malformed key")
	}
	if _, err := os.Stat(filepath.Join(dir, "mlsserver.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a database was created before the key was checked: %v", err)
	}
}

func TestServeRegistrationDisabled(t *testing.T) {
	s := startServer(t, t.TempDir(), "--registration=false")
	r := s.expect(s.do("POST", "/_matrix/client/v3/register", "", map[string]any{
		"username": "bob", "password": "pw", "auth": map[string]string{"type": "m.login.dummy"}}),
		http.StatusForbidden, "register with registration off")
	if r.str("errcode") != "M_FORBIDDEN" {
		t.Errorf("register with registration off: %v", r.body)
	}
}

func TestServeStartupErrors(t *testing.T) {
	dir := t.TempDir()
	// A port in use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), []string{"--listen", ln.Addr().String(), "--data-dir", dir}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("listening on a used port: %v", err)
	}
	// Certificate files that do not exist.
	err = Run(context.Background(), []string{"--listen", "127.0.0.1:0", "--data-dir", dir,
		"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key")}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "tls_cert") {
		t.Errorf("missing certificate: %v", err)
	}
	// A database that cannot be opened.
	err = Run(context.Background(), []string{"--listen", "127.0.0.1:0", "--data-dir", dir,
		"--database", filepath.Join(dir, "no", "such", "dir", "x.db")}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("unopenable database: %v", err)
	}
}

// The health check answers 503 when storage does not.
func TestHealthUnavailable(t *testing.T) {
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := health(db, log)
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Errorf("open storage: %d %s", rec.Code, rec.Body)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"unavailable"`) {
		t.Errorf("closed storage: %d %s", rec.Code, rec.Body)
	}
}

// On cancel (SIGTERM in main) the server stops accepting connections,
// lets a /sync long-poll in flight finish with 200, returns nil and leaves
// storage closed cleanly.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--shutdown-timeout", "20s")
	_, token := s.register("carol", "pw")
	r := s.expect(s.do("GET", "/_matrix/client/v3/sync?timeout=0", token, nil), http.StatusOK, "first sync")
	since := r.str("next_batch")
	if since == "" {
		t.Fatalf("first sync: no next_batch in %v", r.body)
	}

	// A long-poll that nothing will wake: it answers after its timeout.
	type result struct {
		status int
		body   map[string]any
		err    error
		at     time.Time
	}
	wrote := make(chan struct{})
	var once sync.Once
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.url+"/_matrix/client/v3/sync?timeout=2000&since="+since, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) }}))
		resp, err := s.client.Do(req)
		if err != nil {
			got <- result{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		got <- result{status: resp.StatusCode, body: body, err: err, at: time.Now()}
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("the /sync request was not sent")
	}
	time.Sleep(200 * time.Millisecond) // let the server read it
	start := time.Now()
	s.cancel()

	// New connections are refused while the long-poll is still running.
	refused := false
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Fatal("the server still accepted connections 1.5s after shutdown began")
	}
	select {
	case res := <-got:
		t.Fatalf("the long-poll ended before the listener closed: %+v", res)
	default:
	}

	res := <-got
	if res.err != nil || res.status != http.StatusOK {
		t.Fatalf("in-flight /sync: status %d, %v", res.status, res.err)
	}
	if res.body["next_batch"] == nil {
		t.Errorf("in-flight /sync answered %v", res.body)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("shutdown took %v", el)
	}
	logs := s.logs.String()
	for _, want := range []string{"shutting down", "http server stopped", "room server stopped", "storage closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the logs", want)
		}
	}

	// The database was closed cleanly: it opens, and holds the account.
	db, err := storage.Open(context.Background(), filepath.Join(dir, "mlsserver.db"))
	if err != nil {
		t.Fatalf("reopening the database: %v", err)
	}
	defer db.Close()
	if _, err := db.User(context.Background(), "@carol:localhost"); err != nil {
		t.Errorf("the account is not in the reopened database: %v", err)
	}
}

// Requests still running at shutdown_timeout have their connections
// closed; run still returns nil.
func TestShutdownTimeout(t *testing.T) {
	s := startServer(t, t.TempDir(), "--shutdown-timeout", "300ms")
	_, token := s.register("dave", "pw")
	since := s.expect(s.do("GET", "/_matrix/client/v3/sync?timeout=0", token, nil), http.StatusOK, "first sync").str("next_batch")
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.url+"/_matrix/client/v3/sync?timeout=60000&since="+since, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := s.client.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown with a 300ms timeout took %v", el)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("the 60s long-poll completed, want its connection closed")
		}
	case <-time.After(5 * time.Second):
		t.Error("the long-poll was still running 5s after shutdown")
	}
	if !strings.Contains(s.logs.String(), "requests still in flight") {
		t.Error("the forced close was not logged")
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mlsserver test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	s := startServer(t, filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	s.url = "https://" + s.addr
	s.client = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	r := s.expect(s.do("GET", "/health", "", nil), http.StatusOK, "GET /health over HTTPS")
	if r.str("status") != "ok" {
		t.Errorf("GET /health over HTTPS: %v", r.body)
	}
	s.expect(s.do("GET", "/_matrix/client/versions", "", nil), http.StatusOK, "GET /versions over HTTPS")

	// A client not trusting the certificate is refused.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get(s.url + "/health"); err == nil {
		resp.Body.Close()
		t.Error("a client without the certificate in its roots connected")
	}
	// Plain HTTP on the HTTPS port does not reach the API.
	if resp, err := plain.Get("http://" + s.addr + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP on the HTTPS port answered 200")
		}
	}
}

// --database postgres://... serves from PostgreSQL; the DSN's password is
// not logged, and no data dir is made when nothing is kept in it.
func TestServePostgres(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const password = "pw-that-must-not-be-logged"
	if _, has := u.User.Password(); !has {
		// The test server may trust local connections; a password it
		// ignores still checks the redaction.
		u.User = url.UserPassword(u.User.Username(), password)
	}
	pw, _ := u.User.Password()
	dir := filepath.Join(t.TempDir(), "data")
	key := filepath.Join(t.TempDir(), "signing.key")
	s := startServer(t, dir, "--database", u.String(), "--signing-key", key, "--server-name", "pg.test")
	s.expect(s.do("GET", "/health", "", nil), http.StatusOK, "GET /health")
	userID, token := s.register("erin", "pw")
	if r := s.expect(s.do("GET", "/_matrix/client/v3/account/whoami", token, nil), http.StatusOK, "whoami"); r.str("user_id") != userID {
		t.Errorf("whoami: %v", r.body)
	}
	if !strings.Contains(s.logs.String(), "backend=postgres") {
		t.Error("the logs do not say the backend is PostgreSQL")
	}
	if strings.Contains(s.logs.String(), pw) {
		t.Error("the logs contain the database password")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir was created although nothing is kept in it: %v", err)
	}
	if _, err := readSigningKey(key); err != nil {
		t.Errorf("signing key: %v", err)
	}
}
