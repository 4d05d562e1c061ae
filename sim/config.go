package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits of a Config.
const (
	MaxServers          = 100
	MaxClientsPerServer = 64
	// MaxDuration is the longest simulated run.
	MaxDuration = 31 * 24 * time.Hour
	// maxWindow is the clamp clients apply to security.window (SPEC-NOTES §3).
	maxWindow = 7 * 24 * time.Hour
)

// Duration is a time.Duration written in JSON as a Go duration string
// ("90s", "10m", "1h30m").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string; numbers are refused (their unit
// would be a guess).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"10m\", got %s", truncate(string(b), 40))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", truncate(s, 40), err)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Config is one simulated run. The zero values of optional fields are
// documented per field; Validate checks the whole.
type Config struct {
	// Seed makes the run: the same Config gives byte-identical reports.
	Seed int64 `json:"seed"`
	// Servers is the number of homeservers, s00.example, s01.example...;
	// s00 creates the room. 1 to MaxServers.
	Servers int `json:"servers"`
	// ClientsPerServer is the number of clients (users' devices) on each
	// server; all of them are members after the epoch-0 commit. 1 to
	// MaxClientsPerServer.
	ClientsPerServer int `json:"clients_per_server"`
	// Powers is the length of powers, 1 to Servers.
	Powers int `json:"powers"`
	// PowersOrder picks which servers are in powers and in which order:
	// "index" (s00, s01, ...; the default), "reverse" (the last Powers
	// servers, highest index first) or "random" (a seeded draw).
	PowersOrder string `json:"powers_order,omitempty"`
	// CanPropose is "all" (every server's users may send pending commits;
	// the default) or "powers" (only servers in powers).
	CanPropose string `json:"can_propose,omitempty"`
	// SecurityWindow is security.window of every commit (clients clamp it
	// to 7 days).
	SecurityWindow Duration `json:"security_window"`
	// Duration is the simulated time during which clients act; the run
	// then heals every partition and outage and runs until nothing is in
	// flight.
	Duration Duration `json:"duration"`
	// MembershipPerHour and MessagesPerHour are each server's rates of
	// membership changes (commits adding or removing a member) and
	// messages, as Poisson processes.
	MembershipPerHour float64 `json:"membership_per_hour"`
	MessagesPerHour   float64 `json:"messages_per_hour"`
	// Network is the links between the servers.
	Network Network `json:"network"`
	// Actions are scripted client actions, on top of the random workload
	// (set both rates to 0 for a fully scripted run).
	Actions []Action `json:"actions,omitempty"`
	// Mode is "model" (the default; MLS epochs and keys are modelled, MLS
	// messages carry a valid header and random bytes) or "mls" (every
	// client is a real MLS group member: commits, Welcomes, rollbacks to
	// kept states and decryption are real; at most MaxMLSClients clients).
	// Both draw the same workload from the seed; event IDs differ, since
	// real MLS messages hash fresh randomness.
	Mode string `json:"mode,omitempty"`
}

// Network describes latency, loss, partitions, outages and clock skew.
type Network struct {
	// Each link (ordered pair of servers) gets a base latency drawn
	// uniformly from [LatencyMin, LatencyMax]; each transmission adds an
	// exponentially distributed jitter of mean Jitter. Deliveries on one
	// link keep their order (federation transactions are sequential).
	LatencyMin Duration `json:"latency_min"`
	LatencyMax Duration `json:"latency_max"`
	Jitter     Duration `json:"jitter"`
	// Loss is the probability that a transmission is lost; the sender
	// retries after RetryAfter (default 10 s), as federation retries a
	// transaction.
	Loss       float64  `json:"loss"`
	RetryAfter Duration `json:"retry_after,omitempty"`
	// Partitions are scheduled network splits.
	Partitions []Partition `json:"partitions,omitempty"`
	// RandomPartitions adds partitions at random times.
	RandomPartitions *RandomEvents `json:"random_partitions,omitempty"`
	// Outages are scheduled server outages.
	Outages []Outage `json:"outages,omitempty"`
	// RandomOutages adds outages at random times; PerDay is per server.
	RandomOutages *RandomEvents `json:"random_outages,omitempty"`
	// ClockSkew is each server's clock error, by server index; servers not
	// listed get a skew drawn uniformly from [-ClockSkewMax, ClockSkewMax].
	ClockSkew    map[string]Duration `json:"clock_skew,omitempty"`
	ClockSkewMax Duration            `json:"clock_skew_max,omitempty"`
}

// Action is one scripted action of a random ready client of server Server
// at At: "message" sends a message, "membership" adds or removes a member
// as the random workload does, "update" sends a commit that changes no
// membership (a key update).
type Action struct {
	At     Duration `json:"at"`
	Server int      `json:"server"`
	Kind   string   `json:"kind"`
}

// Partition splits the servers in two from At for Length: the servers in
// Side (indexes) reach only each other, the rest only each other.
type Partition struct {
	At     Duration `json:"at"`
	Length Duration `json:"length"`
	Side   []int    `json:"side"`
}

// Outage takes server Server (an index) down from At for Length: it
// neither sends, receives nor runs its queue, and its clients are idle.
type Outage struct {
	Server int      `json:"server"`
	At     Duration `json:"at"`
	Length Duration `json:"length"`
}

// RandomEvents are partitions or outages drawn at random: PerDay of them
// per simulated day (a Poisson process), each lasting an exponentially
// distributed time of mean MeanLength. A random partition puts each server
// on one side or the other with probability one half (both sides non-empty).
type RandomEvents struct {
	PerDay     float64  `json:"per_day"`
	MeanLength Duration `json:"mean_length"`
}

// DefaultConfig returns a small valid run: 3 servers with 2 clients each,
// powers of 2, one simulated hour, 20-80 ms links.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Servers: 3, ClientsPerServer: 2, Powers: 2, PowersOrder: "index", CanPropose: "all",
		Duration: Duration(time.Hour), MembershipPerHour: 2, MessagesPerHour: 60,
		Network: Network{LatencyMin: Duration(20 * time.Millisecond), LatencyMax: Duration(80 * time.Millisecond), Jitter: Duration(10 * time.Millisecond)},
		Mode:    "model",
	}
}

// ParseConfig decodes a Config from JSON strictly (unknown fields are
// refused, naming them) and validates it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := decodeStrict(b, &c); err != nil {
		return Config{}, fmt.Errorf("sim: config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeStrict decodes one JSON value, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// ServerName returns the name of server i.
func ServerName(i int) string { return fmt.Sprintf("s%02d.example", i) }

// Validate checks the config; errors name the field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("sim: config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if c.Servers < 1 || c.Servers > MaxServers {
		return bad("servers", "%d, want 1 to %d", c.Servers, MaxServers)
	}
	if c.ClientsPerServer < 1 || c.ClientsPerServer > MaxClientsPerServer {
		return bad("clients_per_server", "%d, want 1 to %d", c.ClientsPerServer, MaxClientsPerServer)
	}
	if c.Powers < 1 || c.Powers > c.Servers {
		return bad("powers", "%d, want 1 to servers (%d)", c.Powers, c.Servers)
	}
	switch c.PowersOrder {
	case "", "index", "reverse", "random":
	default:
		return bad("powers_order", "%q, want index, reverse or random", c.PowersOrder)
	}
	switch c.CanPropose {
	case "", "all", "powers":
	default:
		return bad("can_propose", "%q, want all or powers", c.CanPropose)
	}
	switch c.Mode {
	case "", "model":
	case "mls":
		if c.Servers*c.ClientsPerServer > MaxMLSClients {
			return bad("mode", "mls mode runs at most %d clients, not %d", MaxMLSClients, c.Servers*c.ClientsPerServer)
		}
	default:
		return bad("mode", "%q, want model or mls", truncate(c.Mode, 20))
	}
	if c.SecurityWindow < 0 {
		return bad("security_window", "negative")
	}
	if c.Duration <= 0 || c.Duration.D() > MaxDuration {
		return bad("duration", "%v, want more than 0 and at most %v", c.Duration.D(), MaxDuration)
	}
	if !(c.MembershipPerHour >= 0 && c.MembershipPerHour <= 3600) {
		return bad("membership_per_hour", "%v, want 0 to 3600", c.MembershipPerHour)
	}
	if !(c.MessagesPerHour >= 0 && c.MessagesPerHour <= 36000) {
		return bad("messages_per_hour", "%v, want 0 to 36000", c.MessagesPerHour)
	}
	for i, a := range c.Actions {
		f := fmt.Sprintf("actions[%d]", i)
		if a.At < 0 || a.At.D() >= c.Duration.D() {
			return bad(f+".at", "%v, want 0 to duration", a.At.D())
		}
		if a.Server < 0 || a.Server >= c.Servers {
			return bad(f+".server", "%d, want 0 to %d", a.Server, c.Servers-1)
		}
		switch a.Kind {
		case "message", "membership", "update":
		default:
			return bad(f+".kind", "%q, want message, membership or update", truncate(a.Kind, 20))
		}
	}
	n := &c.Network
	if n.LatencyMin < 0 || n.LatencyMax < n.LatencyMin || n.LatencyMax.D() > time.Hour {
		return bad("network.latency_min/latency_max", "want 0 <= latency_min <= latency_max <= 1h")
	}
	if n.Jitter < 0 || n.Jitter.D() > time.Hour {
		return bad("network.jitter", "want 0 to 1h")
	}
	if !(n.Loss >= 0 && n.Loss < 1) {
		return bad("network.loss", "%v, want 0 <= loss < 1", n.Loss)
	}
	if n.RetryAfter < 0 || n.RetryAfter.D() > time.Hour {
		return bad("network.retry_after", "want 0 to 1h")
	}
	for i, p := range n.Partitions {
		f := fmt.Sprintf("network.partitions[%d]", i)
		if p.At < 0 || p.Length <= 0 {
			return bad(f, "want at >= 0 and length > 0")
		}
		if len(p.Side) == 0 || len(p.Side) >= c.Servers {
			return bad(f+".side", "want 1 to servers-1 server indexes")
		}
		seen := map[int]bool{}
		for _, s := range p.Side {
			if s < 0 || s >= c.Servers || seen[s] {
				return bad(f+".side", "index %d out of range or repeated", s)
			}
			seen[s] = true
		}
	}
	for i, o := range n.Outages {
		f := fmt.Sprintf("network.outages[%d]", i)
		if o.Server < 0 || o.Server >= c.Servers {
			return bad(f+".server", "%d, want 0 to %d", o.Server, c.Servers-1)
		}
		if o.At < 0 || o.Length <= 0 {
			return bad(f, "want at >= 0 and length > 0")
		}
	}
	for name, r := range map[string]*RandomEvents{"network.random_partitions": n.RandomPartitions, "network.random_outages": n.RandomOutages} {
		if r == nil {
			continue
		}
		if !(r.PerDay >= 0 && r.PerDay <= 1000) {
			return bad(name+".per_day", "%v, want 0 to 1000", r.PerDay)
		}
		if r.MeanLength <= 0 || r.MeanLength.D() > MaxDuration {
			return bad(name+".mean_length", "want more than 0")
		}
	}
	if n.RandomPartitions != nil && n.RandomPartitions.PerDay > 0 && c.Servers < 2 {
		return bad("network.random_partitions", "a partition needs at least 2 servers")
	}
	for k, v := range n.ClockSkew {
		var i int
		if _, err := fmt.Sscanf(k, "%d", &i); err != nil || fmt.Sprint(i) != k || i < 0 || i >= c.Servers {
			return bad("network.clock_skew", "key %q is not a server index 0 to %d", truncate(k, 20), c.Servers-1)
		}
		if v.D() < -time.Hour || v.D() > time.Hour {
			return bad("network.clock_skew."+k, "want -1h to 1h")
		}
	}
	if n.ClockSkewMax < 0 || n.ClockSkewMax.D() > time.Hour {
		return bad("network.clock_skew_max", "want 0 to 1h")
	}
	return nil
}
