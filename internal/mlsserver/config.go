package mlsserver

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// Defaults of the settings (docs/mlsserver.md lists them).
const (
	defaultServerName       = "localhost"
	defaultListen           = "localhost:8008"
	defaultDataDir          = "mlsserver-data"
	defaultDBFile           = "mlsserver.db"
	defaultKeyFile          = "signing.key"
	defaultLogLevel         = "info"
	defaultRatePerSecond    = 20
	defaultRateBurst        = 100
	defaultShutdownTimeout  = 10 * time.Second
	defaultFederationListen = ":8448"
)

// config is every setting of the server. The YAML file (--config) and the
// flags set the same fields; flags win.
type config struct {
	ServerName      string           `yaml:"server_name"`
	Listen          string           `yaml:"listen"`
	DataDir         string           `yaml:"data_dir"`
	Database        string           `yaml:"database"`
	SigningKey      string           `yaml:"signing_key"`
	TLSCert         string           `yaml:"tls_cert"`
	TLSKey          string           `yaml:"tls_key"`
	Registration    bool             `yaml:"registration"`
	LogLevel        string           `yaml:"log_level"`
	BaseURL         string           `yaml:"base_url"`
	RateLimit       rateLimitConfig  `yaml:"rate_limit"`
	ShutdownTimeout time.Duration    `yaml:"shutdown_timeout"`
	Federation      federationConfig `yaml:"federation"`
	// Clock changes the server's time, for tests only.
	Clock clockConfig `yaml:"clock"`

	// level is LogLevel parsed by validate.
	level slog.Level
}

// rateLimitConfig is the per-device request limit of the client API.
type rateLimitConfig struct {
	Enabled   bool    `yaml:"enabled"`
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// federationConfig is the server-server API: its own HTTPS listener and
// the outbound requests to other servers.
type federationConfig struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Resolve pins server names to "host:port" Addresses (tests, private
	// networks); other names are resolved as the Matrix spec says.
	Resolve map[string]string `yaml:"resolve"`
	// TrustCA is a PEM file of CA certificates trusted for outbound
	// requests besides the system roots.
	TrustCA string `yaml:"trust_ca"`
}

// clockConfig sets the server's clock, for tests only (docs/mlsserver.md):
// the time the server reads is Offset plus the real time, running Speed
// times as fast from Start.
type clockConfig struct {
	// Offset is added to the real time.
	Offset time.Duration `yaml:"offset"`
	// Speed is how many seconds of server time pass in a real second
	// (default 1).
	Speed float64 `yaml:"speed"`
	// Start (RFC 3339) is the real instant the speed counts from; empty
	// means when the server starts. Processes that must agree on the
	// time (several servers, or one restarted) need the same Start.
	Start string `yaml:"start"`

	// start is Start parsed by validate.
	start time.Time
}

// maxClockSpeed bounds clock.speed: one real second is at most a virtual
// day.
const maxClockSpeed = 86400

// changed reports whether the clock settings differ from the system
// clock.
func (c clockConfig) changed() bool { return c.Offset != 0 || c.Speed != 1 }

// validate checks the clock section and parses Start.
func (c *clockConfig) validate() error {
	if !(c.Speed > 0) || c.Speed > maxClockSpeed {
		return fmt.Errorf("clock.speed %v: must be above 0 and at most %d", c.Speed, maxClockSpeed)
	}
	c.start = time.Time{}
	if c.Start != "" {
		t, err := time.Parse(time.RFC3339Nano, c.Start)
		if err != nil {
			return fmt.Errorf("clock.start %q: not an RFC 3339 time: %w", c.Start, err)
		}
		c.start = t
	}
	return nil
}

// defaultConfig returns the settings used when neither file nor flag sets
// them. Database and SigningKey stay empty: they default to files in
// DataDir (see databaseDSN and signingKeyPath).
func defaultConfig() config {
	return config{
		ServerName:      defaultServerName,
		Listen:          defaultListen,
		DataDir:         defaultDataDir,
		Registration:    true,
		LogLevel:        defaultLogLevel,
		RateLimit:       rateLimitConfig{Enabled: true, PerSecond: defaultRatePerSecond, Burst: defaultRateBurst},
		ShutdownTimeout: defaultShutdownTimeout,
		Federation:      federationConfig{Listen: defaultFederationListen},
		Clock:           clockConfig{Speed: 1},
	}
}

// databaseDSN is the storage connection string: Database, or the SQLite
// file in DataDir.
func (c *config) databaseDSN() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, defaultDBFile)
}

// signingKeyPath is SigningKey, or signing.key in DataDir.
func (c *config) signingKeyPath() string {
	if c.SigningKey != "" {
		return c.SigningKey
	}
	return filepath.Join(c.DataDir, defaultKeyFile)
}

// usesDataDir reports whether a file of the server lives in DataDir (the
// directory is then created at start).
func (c *config) usesDataDir() bool {
	return c.Database == "" || c.SigningKey == ""
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// IsUsageError reports whether err is, or wraps, a usageError.
func IsUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// flagValues holds the flags as parsed, before they are laid over the file.
type flagValues struct {
	config                                                                                string
	serverName, listen, dataDir, database, signingKey, tlsCert, tlsKey, logLevel, baseURL string
	registration, rateLimit                                                               bool
	ratePerSecond                                                                         float64
	rateBurst                                                                             int
	shutdownTimeout                                                                       time.Duration
	federation                                                                            bool
	fedListen, fedTLSCert, fedTLSKey, fedTrustCA                                          string
	fedResolve                                                                            resolveFlag
	clockOffset                                                                           time.Duration
	clockSpeed                                                                            float64
	clockStart                                                                            string
}

// resolveFlag is --federation-resolve name=host:port, repeatable.
type resolveFlag map[string]string

func (r resolveFlag) String() string {
	parts := make([]string, 0, len(r))
	for name, addr := range r {
		parts = append(parts, name+"="+addr)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (r resolveFlag) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("federation.resolve %q: want name=host:port", v)
	}
	if err := validResolve(name, addr); err != nil {
		return err
	}
	r[name] = addr
	return nil
}

// newFlagSet declares the flags of mlsserver into fv.
func newFlagSet(fv *flagValues, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mlsserver", flag.ContinueOnError)
	fs.SetOutput(out)
	d := defaultConfig()
	fs.StringVar(&fv.config, "config", "", "YAML configuration `file` (flags override its settings)")
	fs.StringVar(&fv.serverName, "server-name", d.ServerName, "Matrix server `name` (the domain of user IDs)")
	fs.StringVar(&fv.listen, "listen", d.Listen, "`address` (host:port) to serve HTTP or HTTPS on")
	fs.StringVar(&fv.dataDir, "data-dir", d.DataDir, "`directory` for the SQLite database and the signing key (created 0700)")
	fs.StringVar(&fv.database, "database", "", "`dsn`: postgres://... for PostgreSQL, else a SQLite path (default DATA_DIR/mlsserver.db)")
	fs.StringVar(&fv.signingKey, "signing-key", "", "ed25519 signing key `file`, created if missing (default DATA_DIR/signing.key)")
	fs.StringVar(&fv.tlsCert, "tls-cert", "", "PEM certificate chain `file`; with --tls-key, serve HTTPS")
	fs.StringVar(&fv.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.BoolVar(&fv.registration, "registration", d.Registration, "allow POST /register (--registration=false: only existing accounts)")
	fs.StringVar(&fv.logLevel, "log-level", d.LogLevel, "`level`: debug, info, warn or error")
	fs.StringVar(&fv.baseURL, "base-url", "", "public `URL` of the server, advertised by /.well-known/matrix/client")
	fs.BoolVar(&fv.rateLimit, "rate-limit", d.RateLimit.Enabled, "limit requests per device (--rate-limit=false: no limit)")
	fs.Float64Var(&fv.ratePerSecond, "rate-limit-per-second", d.RateLimit.PerSecond, "requests per second per device, sustained")
	fs.IntVar(&fv.rateBurst, "rate-limit-burst", d.RateLimit.Burst, "requests per device in a burst")
	fs.DurationVar(&fv.shutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "how long requests in flight may take to finish at shutdown")
	fs.BoolVar(&fv.federation, "federation", d.Federation.Enabled, "serve the federation API and federate with other servers (needs --federation-tls-cert and --federation-tls-key)")
	fs.StringVar(&fv.fedListen, "federation-listen", d.Federation.Listen, "`address` (host:port) to serve the federation API on, HTTPS only")
	fs.StringVar(&fv.fedTLSCert, "federation-tls-cert", "", "PEM certificate chain `file` of the federation listener")
	fs.StringVar(&fv.fedTLSKey, "federation-tls-key", "", "PEM private key `file` of --federation-tls-cert")
	fv.fedResolve = resolveFlag{}
	fs.Var(fv.fedResolve, "federation-resolve", "`name=host:port`: reach server name at host:port (repeatable; tests and private networks)")
	fs.StringVar(&fv.fedTrustCA, "federation-trust-ca", "", "PEM `file` of CA certificates trusted for outbound federation besides the system roots")
	fs.DurationVar(&fv.clockOffset, "clock-offset", d.Clock.Offset, "tests only: `duration` added to the real time (the server's clock)")
	fs.Float64Var(&fv.clockSpeed, "clock-speed", d.Clock.Speed, "tests only: seconds of server time per real second (60: a real second is a minute)")
	fs.StringVar(&fv.clockStart, "clock-start", "", "tests only: RFC 3339 `time` the clock speed counts from (default: the server's start)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mlsserver [flags]\n\nThe mlsmode reference homeserver (docs/mlsserver.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// loadConfig reads the settings: defaults, then the YAML file of
// --config, then the flags given. It validates the result. -h and --help
// print the usage to out and return flag.ErrHelp.
func loadConfig(args []string, out io.Writer) (config, error) {
	var fv flagValues
	fs := newFlagSet(&fv, io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
			return config{}, err
		}
		return config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Errorf("unexpected argument %q (settings are flags or in --config)", fs.Arg(0))}
	}
	cfg := defaultConfig()
	if fv.config != "" {
		if err := readConfigFile(fv.config, &cfg); err != nil {
			return config{}, err
		}
	}
	set := map[string]func(){
		"server-name":           func() { cfg.ServerName = fv.serverName },
		"listen":                func() { cfg.Listen = fv.listen },
		"data-dir":              func() { cfg.DataDir = fv.dataDir },
		"database":              func() { cfg.Database = fv.database },
		"signing-key":           func() { cfg.SigningKey = fv.signingKey },
		"tls-cert":              func() { cfg.TLSCert = fv.tlsCert },
		"tls-key":               func() { cfg.TLSKey = fv.tlsKey },
		"registration":          func() { cfg.Registration = fv.registration },
		"log-level":             func() { cfg.LogLevel = fv.logLevel },
		"base-url":              func() { cfg.BaseURL = fv.baseURL },
		"rate-limit":            func() { cfg.RateLimit.Enabled = fv.rateLimit },
		"rate-limit-per-second": func() { cfg.RateLimit.PerSecond = fv.ratePerSecond },
		"rate-limit-burst":      func() { cfg.RateLimit.Burst = fv.rateBurst },
		"shutdown-timeout":      func() { cfg.ShutdownTimeout = fv.shutdownTimeout },
		"federation":            func() { cfg.Federation.Enabled = fv.federation },
		"federation-listen":     func() { cfg.Federation.Listen = fv.fedListen },
		"federation-tls-cert":   func() { cfg.Federation.TLSCert = fv.fedTLSCert },
		"federation-tls-key":    func() { cfg.Federation.TLSKey = fv.fedTLSKey },
		"federation-trust-ca":   func() { cfg.Federation.TrustCA = fv.fedTrustCA },
		"clock-offset":          func() { cfg.Clock.Offset = fv.clockOffset },
		"clock-speed":           func() { cfg.Clock.Speed = fv.clockSpeed },
		"clock-start":           func() { cfg.Clock.Start = fv.clockStart },
		"federation-resolve": func() {
			// Flag entries lay over the file's, name by name.
			merged := make(map[string]string, len(cfg.Federation.Resolve)+len(fv.fedResolve))
			for name, addr := range cfg.Federation.Resolve {
				merged[name] = addr
			}
			for name, addr := range fv.fedResolve {
				merged[name] = addr
			}
			cfg.Federation.Resolve = merged
		},
	}
	fs.Visit(func(f *flag.Flag) {
		if apply := set[f.Name]; apply != nil {
			apply()
		}
	})
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// readConfigFile lays the settings of a YAML file over cfg. Unknown keys
// are an error naming them.
func readConfigFile(path string, cfg *config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// Name the settings: yaml.v3 only gives line numbers for
			// values of the wrong type.
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = m
				var line int
				if _, serr := fmt.Sscanf(m, "line %d:", &line); serr == nil {
					if key := keyAtLine(&doc, line, ""); key != "" {
						msgs[i] = key + " (" + m + ")"
					}
				}
			}
			return fmt.Errorf("config file %s: %s", path, strings.Join(msgs, "; "))
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// keyAtLine returns the dotted key ("rate_limit.burst") of the mapping
// entry whose key or value is on line, "" if none.
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k.Value
			if prefix != "" {
				name = prefix + "." + name
			}
			if sub := keyAtLine(v, line, name); sub != "" {
				return sub
			}
			if k.Line == line || v.Line == line {
				return name
			}
		}
	}
	return ""
}

// validate checks every setting; errors name the setting (as in the YAML
// file; the flag is the same with "-" for "_").
func (c *config) validate() error {
	if err := fedmap.ValidServerName(c.ServerName); err != nil {
		return fmt.Errorf("server_name %q: %w", c.ServerName, err)
	}
	if err := validListen(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if c.usesDataDir() && c.DataDir == "" {
		return errors.New("data_dir: empty, and the database or the signing key is in it")
	}
	if c.Database != "" && !isPostgres(c.Database) && strings.Contains(c.Database, "://") {
		return fmt.Errorf("database %q: not postgres:// or postgresql://, nor a SQLite path", redactDSN(c.Database))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key: give both (HTTPS) or neither (HTTP)")
	}
	lvl, err := parseLevel(c.LogLevel)
	if err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	c.level = lvl
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil {
			return fmt.Errorf("base_url: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("base_url %q: not an http:// or https:// URL with a host", c.BaseURL)
		}
	}
	if c.RateLimit.Enabled {
		if !(c.RateLimit.PerSecond > 0) {
			return fmt.Errorf("rate_limit.per_second %v: must be above 0", c.RateLimit.PerSecond)
		}
		if c.RateLimit.Burst < 1 {
			return fmt.Errorf("rate_limit.burst %d: must be at least 1", c.RateLimit.Burst)
		}
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout %v: must be above 0", c.ShutdownTimeout)
	}
	if err := c.Clock.validate(); err != nil {
		return err
	}
	return c.Federation.validate()
}

// validate checks the federation section. Resolve entries are checked
// even when federation is off; the listener's settings only when on.
func (f *federationConfig) validate() error {
	names := make([]string, 0, len(f.Resolve))
	for name := range f.Resolve {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := validResolve(name, f.Resolve[name]); err != nil {
			return err
		}
	}
	if !f.Enabled {
		return nil
	}
	if err := validListen(f.Listen); err != nil {
		return fmt.Errorf("federation.listen %q: %w", f.Listen, err)
	}
	if f.TLSCert == "" || f.TLSKey == "" {
		return errors.New("federation.tls_cert and federation.tls_key: both required when federation.enabled (federation is HTTPS only)")
	}
	return nil
}

// validResolve checks one federation.resolve entry: a server name and the
// host:port to reach it at.
func validResolve(name, addr string) error {
	if err := fedmap.ValidServerName(name); err != nil {
		return fmt.Errorf("federation.resolve %q: %w", name, err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("federation.resolve %s=%q: not host:port: %w", name, addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return fmt.Errorf("federation.resolve %s=%q: want host:port with a port in 1-65535", name, addr)
	}
	return nil
}

// validListen checks a host:port listen address.
func validListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 0-65535", port)
	}
	return nil
}

// parseLevel reads debug, info, warn or error.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// isPostgres reports whether a DSN selects PostgreSQL (as storage.Open
// does).
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// redactDSN hides the password of a PostgreSQL DSN (in the user info or
// a password parameter), for logs and errors; SQLite paths are returned
// as they are.
func redactDSN(dsn string) string {
	if !isPostgres(dsn) && !strings.Contains(dsn, "://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
