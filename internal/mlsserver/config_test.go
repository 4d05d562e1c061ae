package mlsserver

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		ServerName: "localhost", Listen: "localhost:8008", DataDir: "mlsserver-data", Registration: true,
		LogLevel: "info", RateLimit: rateLimitConfig{Enabled: true, PerSecond: 20, Burst: 100},
		ShutdownTimeout: 10 * time.Second, level: slog.LevelInfo,
		Federation: federationConfig{Enabled: false, Listen: ":8448"},
		Clock:      clockConfig{Speed: 1},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if got, want := cfg.databaseDSN(), filepath.Join("mlsserver-data", "mlsserver.db"); got != want {
		t.Errorf("database DSN %q, want %q", got, want)
	}
	if got, want := cfg.signingKeyPath(), filepath.Join("mlsserver-data", "signing.key"); got != want {
		t.Errorf("signing key path %q, want %q", got, want)
	}
}

const fullYAML = `
server_name: example.org
listen: "0.0.0.0:8448"
data_dir: /var/lib/mlsserver
database: "postgres://mls@db/mls?sslmode=disable"
signing_key: /etc/mlsserver/signing.key
tls_cert: /etc/mlsserver/cert.pem
tls_key: /etc/mlsserver/key.pem
registration: false
log_level: debug
base_url: https://matrix.example.org
rate_limit:
  enabled: true
  per_second: 5.5
  burst: 7
shutdown_timeout: 45s
federation:
  enabled: true
  listen: "0.0.0.0:8449"
  tls_cert: /etc/mlsserver/fed-cert.pem
  tls_key: /etc/mlsserver/fed-key.pem
  resolve:
    b.test: "127.0.0.1:9001"
    c.test: "10.0.0.3:8448"
  trust_ca: /etc/mlsserver/ca.pem
clock:
  offset: -90m
  speed: 60
  start: "2026-11-22T10:00:00.5Z"
`

func TestConfigFile(t *testing.T) {
	p := writeFile(t, "c.yaml", fullYAML)
	cfg, err := loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		ServerName: "example.org", Listen: "0.0.0.0:8448", DataDir: "/var/lib/mlsserver",
		Database: "postgres://mls@db/mls?sslmode=disable", SigningKey: "/etc/mlsserver/signing.key",
		TLSCert: "/etc/mlsserver/cert.pem", TLSKey: "/etc/mlsserver/key.pem", Registration: false,
		LogLevel: "debug", BaseURL: "https://matrix.example.org",
		RateLimit:       rateLimitConfig{Enabled: true, PerSecond: 5.5, Burst: 7},
		ShutdownTimeout: 45 * time.Second, level: slog.LevelDebug,
		Federation: federationConfig{Enabled: true, Listen: "0.0.0.0:8449",
			TLSCert: "/etc/mlsserver/fed-cert.pem", TLSKey: "/etc/mlsserver/fed-key.pem",
			Resolve: map[string]string{"b.test": "127.0.0.1:9001", "c.test": "10.0.0.3:8448"},
			TrustCA: "/etc/mlsserver/ca.pem"},
		Clock: clockConfig{Offset: -90 * time.Minute, Speed: 60, Start: "2026-11-22T10:00:00.5Z",
			start: time.Date(2026, 11, 22, 10, 0, 0, 5e8, time.UTC)},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("from file:\n got %+v\nwant %+v", cfg, want)
	}
	if cfg.usesDataDir() {
		t.Error("database and signing key are set, yet usesDataDir is true")
	}

	// A file setting only some keys keeps the defaults of the others.
	p = writeFile(t, "partial.yaml", "server_name: a.test\n")
	cfg, err = loadConfig([]string{"--config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "a.test" || cfg.Listen != defaultListen || !cfg.Registration || !cfg.RateLimit.Enabled ||
		cfg.Federation.Enabled || cfg.Federation.Listen != defaultFederationListen || cfg.Clock != (clockConfig{Speed: 1}) {
		t.Errorf("partial file: %+v", cfg)
	}

	// The example in docs/ is a valid file.
	if _, err := loadConfig([]string{"--config", filepath.Join("..", "..", "docs", "mlsserver.example.yaml")}, &bytes.Buffer{}); err != nil {
		t.Errorf("docs/mlsserver.example.yaml: %v", err)
	}
}

func TestConfigFlagsOverrideFile(t *testing.T) {
	p := writeFile(t, "c.yaml", fullYAML)
	cfg, err := loadConfig([]string{
		"--config", p, "--server-name", "flag.test", "-listen=127.0.0.1:9", "--registration=true",
		"--log-level", "warn", "--rate-limit=false", "--database", "/tmp/x.db", "--shutdown-timeout", "1s",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "flag.test" || cfg.Listen != "127.0.0.1:9" || !cfg.Registration ||
		cfg.level != slog.LevelWarn || cfg.RateLimit.Enabled || cfg.Database != "/tmp/x.db" || cfg.ShutdownTimeout != time.Second {
		t.Errorf("flags did not override the file: %+v", cfg)
	}
	// Settings no flag named keep the file's value, not the flag default.
	if cfg.DataDir != "/var/lib/mlsserver" || cfg.BaseURL != "https://matrix.example.org" || cfg.RateLimit.Burst != 7 {
		t.Errorf("file settings lost: %+v", cfg)
	}

	// The federation flags: each overrides its key; --federation-resolve
	// entries lay over the file's, name by name.
	cfg, err = loadConfig([]string{
		"--config", p, "--federation=false", "--federation-listen", "127.0.0.1:0",
		"--federation-tls-cert", "c.pem", "--federation-tls-key", "k.pem", "--federation-trust-ca", "ca.pem",
		"--federation-resolve", "b.test=127.0.0.1:9002", "--federation-resolve", "d.test=[::1]:9003",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := federationConfig{Enabled: false, Listen: "127.0.0.1:0", TLSCert: "c.pem", TLSKey: "k.pem", TrustCA: "ca.pem",
		Resolve: map[string]string{"b.test": "127.0.0.1:9002", "c.test": "10.0.0.3:8448", "d.test": "[::1]:9003"}}
	if !reflect.DeepEqual(cfg.Federation, want) {
		t.Errorf("federation flags:\n got %+v\nwant %+v", cfg.Federation, want)
	}
	// Flags alone turn federation on.
	cfg, err = loadConfig([]string{"--federation", "--federation-tls-cert", "c.pem", "--federation-tls-key", "k.pem",
		"--federation-resolve", "a.test=localhost:8448"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want = federationConfig{Enabled: true, Listen: ":8448", TLSCert: "c.pem", TLSKey: "k.pem",
		Resolve: map[string]string{"a.test": "localhost:8448"}}
	if !reflect.DeepEqual(cfg.Federation, want) {
		t.Errorf("federation flags without a file:\n got %+v\nwant %+v", cfg.Federation, want)
	}
}

func TestConfigClockFlags(t *testing.T) {
	p := writeFile(t, "c.yaml", fullYAML)
	// Each clock flag overrides its key; the others keep the file's.
	cfg, err := loadConfig([]string{"--config", p, "--clock-speed", "120"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := clockConfig{Offset: -90 * time.Minute, Speed: 120, Start: "2026-11-22T10:00:00.5Z",
		start: time.Date(2026, 11, 22, 10, 0, 0, 5e8, time.UTC)}
	if cfg.Clock != want {
		t.Errorf("--clock-speed over the file:\n got %+v\nwant %+v", cfg.Clock, want)
	}
	cfg, err = loadConfig([]string{"--clock-offset", "2h30m", "--clock-start", "2026-11-23T00:00:00+01:00"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want = clockConfig{Offset: 150 * time.Minute, Speed: 1, Start: "2026-11-23T00:00:00+01:00",
		start: time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)}
	if cfg.Clock.Offset != want.Offset || cfg.Clock.Speed != 1 || !cfg.Clock.start.Equal(want.start) {
		t.Errorf("clock flags without a file:\n got %+v\nwant %+v", cfg.Clock, want)
	}
	if !cfg.Clock.changed() {
		t.Error("an offset of 2h30m does not count as a changed clock")
	}
	// A start alone does not change the clock.
	cfg, err = loadConfig([]string{"--clock-start", "2026-11-23T00:00:00Z"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clock.changed() {
		t.Errorf("clock %+v counts as changed", cfg.Clock)
	}
}

func TestConfigRefused(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string // written to a file given with --config, if not empty
		args  []string
		want  string // in the error
		usage bool
	}{
		{name: "unknown key", yaml: "server_name: a.test\nlisten_address: x\n", want: "listen_address"},
		{name: "unknown nested key", yaml: "rate_limit:\n  per_minute: 3\n", want: "per_minute"},
		{name: "wrong type", yaml: "registration: maybe\n", want: "registration"},
		{name: "cert without key", args: []string{"--tls-cert", "c.pem"}, want: "tls_key"},
		{name: "key without cert", yaml: "tls_key: k.pem\n", want: "tls_cert"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: "log_level"},
		{name: "bad log level in file", yaml: "log_level: verbose\n", want: "log_level"},
		{name: "bad server name", args: []string{"--server-name", "a b"}, want: "server_name"},
		{name: "bad listen", args: []string{"--listen", "8008"}, want: "listen"},
		{name: "bad base url", args: []string{"--base-url", "matrix.example.org"}, want: "base_url"},
		{name: "bad burst", args: []string{"--rate-limit-burst", "0"}, want: "rate_limit.burst"},
		{name: "wrong nested type", yaml: "rate_limit:\n  enabled: true\n  burst: lots\n", want: "rate_limit.burst"},
		{name: "bad rate", yaml: "rate_limit:\n  per_second: -1\n", want: "rate_limit.per_second"},
		{name: "bad shutdown timeout", args: []string{"--shutdown-timeout", "0s"}, want: "shutdown_timeout"},
		{name: "other URL scheme", args: []string{"--database", "mysql://x/y"}, want: "database"},
		{name: "empty data dir", args: []string{"--data-dir", ""}, want: "data_dir"},
		{name: "missing config file", args: []string{"--config", "/nonexistent/mlsserver.yaml"}, want: "config file"},
		{name: "unknown flag", args: []string{"--colour"}, want: "colour", usage: true},
		{name: "argument", args: []string{"serve"}, want: "serve", usage: true},
		{name: "federation without cert and key", args: []string{"--federation"}, want: "federation.tls_cert"},
		{name: "federation without key", yaml: "federation:\n  enabled: true\n  tls_cert: c.pem\n", want: "federation.tls_key"},
		{name: "bad federation listen", args: []string{"--federation", "--federation-tls-cert", "c", "--federation-tls-key", "k",
			"--federation-listen", "8448"}, want: "federation.listen"},
		{name: "resolve flag without =", args: []string{"--federation-resolve", "b.test"}, want: "federation.resolve", usage: true},
		{name: "resolve flag without port", args: []string{"--federation-resolve", "b.test=127.0.0.1"}, want: "federation.resolve", usage: true},
		{name: "resolve flag bad name", args: []string{"--federation-resolve", "b test=127.0.0.1:1"}, want: "federation.resolve", usage: true},
		{name: "resolve in file bad port", yaml: "federation:\n  resolve:\n    b.test: \"127.0.0.1:0\"\n", want: "federation.resolve b.test"},
		{name: "resolve in file not a map", yaml: "federation:\n  resolve: b.test\n", want: "federation.resolve"},
		{name: "unknown federation key", yaml: "federation:\n  port: 8448\n", want: "port"},
		{name: "zero clock speed", args: []string{"--clock-speed", "0"}, want: "clock.speed"},
		{name: "negative clock speed", yaml: "clock:\n  speed: -2\n", want: "clock.speed"},
		{name: "clock speed NaN", args: []string{"--clock-speed", "NaN"}, want: "clock.speed"},
		{name: "clock speed too high", args: []string{"--clock-speed", "1e6"}, want: "clock.speed"},
		{name: "clock offset not a duration", yaml: "clock:\n  offset: 5\n", want: "clock.offset"},
		{name: "clock offset flag not a duration", args: []string{"--clock-offset", "soon"}, want: "clock-offset", usage: true},
		{name: "clock start not RFC 3339", args: []string{"--clock-start", "yesterday"}, want: "clock.start"},
		{name: "unknown clock key", yaml: "clock:\n  rate: 2\n", want: "rate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.yaml != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", c.yaml)}, args...)
			}
			_, err := loadConfig(args, &bytes.Buffer{})
			if err == nil {
				t.Fatalf("accepted %v", args)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
			if IsUsageError(err) != c.usage {
				t.Errorf("usage error %v, want %v (%v)", IsUsageError(err), c.usage, err)
			}
		})
	}
}

func TestConfigHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-server-name", "-listen", "-data-dir", "-database", "-signing-key", "-tls-cert",
		"-tls-key", "-registration", "-log-level", "-base-url", "-rate-limit", "-rate-limit-per-second",
		"-rate-limit-burst", "-shutdown-timeout", "-config", "-federation", "-federation-listen", "-federation-tls-cert",
		"-federation-tls-key", "-federation-resolve", "-federation-trust-ca", "-clock-offset", "-clock-speed", "-clock-start"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage does not list %s", f)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":                "postgres://u:xxxxx@h/db",
		"postgresql://u@h/db?password=secret&x=1": "postgresql://u@h/db?password=xxxxx&x=1",
		"mlsserver-data/mlsserver.db":             "mlsserver-data/mlsserver.db",
		"postgres://u@h/db?sslmode=disable":       "postgres://u@h/db?sslmode=disable",
		"postgres://u:secret@h:port/db":           "(unparsable URL)",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
