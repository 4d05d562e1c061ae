package sim

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/storage"
)

// Reasons a member cannot decrypt a message.
const (
	// ReasonLostFork: the message was sent on a branch that lost state
	// resolution, and the member was not on that branch.
	ReasonLostFork = "lost_fork"
	// ReasonOutsideWindow: the member merged a commit that lost and its
	// security.window did not reach back to the fork, so it lost the room
	// until a new Welcome; the message is in an epoch it has no keys for.
	ReasonOutsideWindow = "outside_window"
	// ReasonLate: the member held the keys of the message's epoch but had
	// dropped them (clients keep the last 4 past epochs' keys, as the mls
	// package does) when the message reached it, typically after a
	// partition healed.
	ReasonLate = "late"
	// ReasonNoKeys: any other epoch the member holds no keys for (it never
	// received the commit).
	ReasonNoKeys = "no_keys"
)

// Report is what one run measured.
type Report struct {
	Config Config `json:"config"`
	// Powers are the servers in powers, in order.
	Powers []string `json:"powers"`
	// SettledAfter is the virtual time from the room's creation until the
	// network and every queue were empty (Duration plus the drain).
	SettledAfter Duration `json:"settled_after"`
	Events       struct {
		Built          int            `json:"built"`
		Rejected       int            `json:"rejected"`
		RejectedSample []string       `json:"rejected_sample"`
		SoftFailed     map[string]int `json:"soft_failed"` // by case a, b, c, per receiving server
		OwnSoftFailed  int            `json:"own_soft_failed"`
		QueueErrors    []string       `json:"queue_errors"`
	} `json:"events"`
	// Proposals counts the commits clients sent (not the room's creation).
	Proposals struct {
		Proposed int `json:"proposed"`
		Direct   int `json:"direct"` // m.mls.commit from powers[0]
		Pending  int `json:"pending"`
		// Rewelcome are the commits that added a member that lost its
		// state again (included in Proposed).
		Rewelcome int `json:"rewelcome"`
		Applied   int `json:"applied"` // on the final chain
		// LostFork were applied but on a branch that lost; Stale pending
		// commits were never applied because another commit took their
		// epoch first; Expired ones found no server of powers in its
		// window.
		LostFork int `json:"lost_fork"`
		Stale    int `json:"stale"`
		Expired  int `json:"expired"`
		// Refused: the client's commit was not the server's current one
		// (409 WRONG_EPOCH); NotPermitted: the server is neither powers[0]
		// nor in can_propose; Busy: every client of the server had its own
		// commit in flight.
		Refused      int `json:"refused"`
		NotPermitted int `json:"not_permitted"`
		Busy         int `json:"busy"`
		// AppliedInWindow counts the pending commits on the final chain by
		// the power index whose window applied them (-1: outside every
		// window, by a skewed clock).
		AppliedInWindow map[string]int `json:"applied_in_window"`
	} `json:"proposals"`
	// ConflictRate is (LostFork + Stale + Expired) / Proposed.
	ConflictRate float64 `json:"conflict_rate"`
	// Acceptance is the time from a pending commit's sending to the
	// application of the commit that made the final chain, in seconds.
	Acceptance struct {
		Count  int     `json:"count"`
		Median float64 `json:"median_s"`
		P95    float64 `json:"p95_s"`
		Max    float64 `json:"max_s"`
	} `json:"acceptance"`
	Forks struct {
		// Count is the branches that lost state resolution; Commits the
		// distinct MLS commits on them; MaxLength the most commits on one.
		Count     int     `json:"count"`
		Commits   int     `json:"commits"`
		MaxLength int     `json:"max_length"`
		MeanLen   float64 `json:"mean_length"`
	} `json:"forks"`
	Messages struct {
		Sent int `json:"sent"`
		// Refused: the client's epoch was no longer on the server's
		// mainline. OnLosingBranch were sent on a branch that lost.
		Refused        int `json:"refused"`
		OnLosingBranch int `json:"on_losing_branch"`
		// Undecryptable counts messages at least one member (of the group
		// at the message's epoch) cannot decrypt; ByReason counts them per
		// reason (a message may count under several); Pairs counts
		// (message, member) pairs per reason.
		Undecryptable int            `json:"undecryptable"`
		ByReason      map[string]int `json:"by_reason"`
		Pairs         map[string]int `json:"pairs"`
		// Rate is Undecryptable / Sent.
		Rate float64 `json:"rate"`
	} `json:"messages"`
	Clients struct {
		Clients int `json:"clients"`
		// Rollbacks are returns to a kept state within security.window.
		Rollbacks int `json:"rollbacks"`
		// NeededWelcome is the distinct clients that lost their state at
		// least once; Welcomes the times it happened; Rewelcomed the times
		// a new Welcome brought one back; StillLost at the end.
		NeededWelcome int `json:"needed_welcome"`
		Welcomes      int `json:"welcomes"`
		Rewelcomed    int `json:"rewelcomed"`
		StillLost     int `json:"still_lost"`
	} `json:"clients"`
	Convergence struct {
		Checks   int                `json:"checks"`
		Failures int                `json:"failures"`
		Log      []ConvergenceCheck `json:"log"`
	} `json:"convergence"`
	FinalEpoch  uint64 `json:"final_epoch"`
	FinalCommit string `json:"final_commit"`
}

// ConvergenceCheck is one check that every server is on the same commit
// chain, the chain is linear and each of its commits passes the auth rules.
type ConvergenceCheck struct {
	At      Duration `json:"at"`
	Trigger string   `json:"trigger"`
	OK      bool     `json:"ok"`
	Problem string   `json:"problem,omitempty"`
}

// converge checks that the servers agree (called when nothing is in
// flight).
func (w *World) converge(trigger string) {
	chk := ConvergenceCheck{At: Duration(w.now.Sub(start)), Trigger: trigger, OK: true}
	defer func() { w.checks = append(w.checks, chk) }()
	if p := w.divergence(); p != "" {
		chk.OK, chk.Problem = false, p
	}
}

func (w *World) divergence() string {
	s0 := w.servers[0]
	cur := s0.current()
	if cur == nil {
		return "s00 has no commit"
	}
	for _, s := range w.servers[1:] {
		if s.currentID() != cur.EventID() {
			return fmt.Sprintf("%s is at %s (epoch %d), %s at %s (epoch %d)", s.name, s.currentID(), s.current().Epoch(), s0.name, cur.EventID(), cur.Epoch())
		}
	}
	for _, s := range w.servers {
		ml := s.rp.Room().Mainline(cur)
		if ml == nil {
			return fmt.Sprintf("%s: the chain of %s is not linear down to epoch 0", s.name, cur.EventID())
		}
		for i, c := range ml {
			var parent *rvEvent
			if i > 0 {
				parent = ml[i-1]
			}
			if err := authrules.Check(c, parent, s.rp.Room().State(parent)); err != nil {
				return fmt.Sprintf("%s: commit %s of epoch %d fails the auth rules: %v", s.name, c.EventID(), c.Epoch(), err)
			}
		}
	}
	return ""
}

// Report gathers the run's measurements; call it after Run.
func (w *World) Report() (*Report, error) {
	r := &Report{Config: w.cfg, Powers: slices.Clone(w.powers), SettledAfter: Duration(w.settled.Sub(start))}
	s0 := w.servers[0]
	cur := s0.current()
	create := s0.rp.Room().Create()
	r.FinalEpoch, r.FinalCommit = cur.Epoch(), cur.EventID()

	r.Events.Built = len(w.order)
	r.Events.Rejected = w.stats.rejected
	r.Events.RejectedSample = append([]string{}, w.stats.rejectReasons...)
	r.Events.SoftFailed = map[string]int{"a": 0, "b": 0, "c": 0}
	for k, v := range w.stats.softFailed {
		r.Events.SoftFailed[k] = v
	}
	r.Events.OwnSoftFailed = w.stats.ownSoftFailed
	r.Events.QueueErrors = append([]string{}, w.stats.queueErrSamples...)

	ml, err := stateres.Mainline(cur, create, s0.rp.Room())
	if err != nil {
		return nil, fmt.Errorf("sim: the final chain: %w", err)
	}
	onChain := map[int]*rvEvent{}
	for _, c := range ml {
		onChain[w.ctOf(c)] = c
	}
	applied := map[int]bool{} // model commits some commit event carries
	for _, ev := range w.order {
		if ev.Kind() == roomversion.EventCommit {
			applied[w.ctOf(ev)] = true
		}
	}

	// Proposals.
	p := &r.Proposals
	p.AppliedInWindow = map[string]int{}
	var lat []float64
	for _, pr := range w.proposals[1:] {
		p.Proposed++
		switch pr.kind {
		case "commit":
			p.Direct++
		case "pending":
			p.Pending++
		case "rewelcome":
			p.Rewelcome++
		}
		c, ok := onChain[pr.ct]
		switch {
		case ok:
			p.Applied++
			if pr.pending != nil {
				if at, ok := w.appliedAt[c.EventID()]; ok {
					lat = append(lat, at.Sub(pr.at).Seconds())
				}
				p.AppliedInWindow[fmt.Sprint(w.winIndex[c.EventID()])]++
			}
		case applied[pr.ct]:
			p.LostFork++
		case pr.pending != nil && w.expired(pr.pending.EventID()):
			p.Expired++
		default:
			p.Stale++
		}
	}
	p.Refused, p.NotPermitted, p.Busy = w.stats.refusedCommit, w.stats.notPermitted, w.stats.busy
	if p.Proposed > 0 {
		r.ConflictRate = float64(p.LostFork+p.Stale+p.Expired) / float64(p.Proposed)
	}
	sort.Float64s(lat)
	r.Acceptance.Count = len(lat)
	if len(lat) > 0 {
		r.Acceptance.Median, r.Acceptance.P95, r.Acceptance.Max = percentile(lat, 50), percentile(lat, 95), lat[len(lat)-1]
	}

	// Forks: the branches that lost, as state resolution names them.
	var events []*rvEvent
	for _, ev := range w.order {
		if s0.rp.Room().Event(ev.EventID()) != nil {
			events = append(events, ev)
		}
	}
	losses, err := stateres.Losers(events, stateres.StateSet{Create: create, Commit: cur}, s0.rp.Room())
	if err != nil {
		return nil, fmt.Errorf("sim: the losers: %w", err)
	}
	branches := map[string]map[int]bool{}
	var branchOrder []string
	for _, l := range losses {
		if l.Kind != stateres.LostFork || l.Event.Kind() != roomversion.EventCommit || l.Branch == nil {
			continue
		}
		id := l.Branch.EventID()
		if branches[id] == nil {
			branches[id] = map[int]bool{}
			branchOrder = append(branchOrder, id)
		}
		branches[id][w.ctOf(l.Event)] = true
	}
	// Equivalent branch commits (one pending commit applied by two
	// servers) are one fork.
	seenBranch := map[int]bool{}
	for _, id := range branchOrder {
		ct := w.ctOf(s0.rp.Room().Event(id))
		if seenBranch[ct] {
			continue
		}
		seenBranch[ct] = true
		n := len(branches[id])
		r.Forks.Count++
		r.Forks.Commits += n
		r.Forks.MaxLength = max(r.Forks.MaxLength, n)
	}
	if r.Forks.Count > 0 {
		r.Forks.MeanLen = float64(r.Forks.Commits) / float64(r.Forks.Count)
	}

	// Messages: who holds the keys of each message's epoch.
	m := &r.Messages
	m.ByReason = map[string]int{ReasonLostFork: 0, ReasonOutsideWindow: 0, ReasonLate: 0, ReasonNoKeys: 0}
	m.Pairs = map[string]int{ReasonLostFork: 0, ReasonOutsideWindow: 0, ReasonLate: 0, ReasonNoKeys: 0}
	m.Refused = w.stats.refusedEpoch
	for mi, msg := range w.msgs {
		m.Sent++
		_, main := onChain[msg.ct]
		if !main {
			m.OnLosingBranch++
		}
		mc := w.commits[msg.ct]
		reasons := map[string]bool{}
		for i, c := range w.clients {
			if i == msg.sender || !mc.has(i) {
				continue
			}
			if w.isRead(mi, i) {
				continue
			}
			why := ReasonNoKeys
			switch {
			case !main:
				why = ReasonLostFork
			case c.neededWelcome > 0 && !c.history[msg.ct]:
				why = ReasonOutsideWindow
			case c.history[msg.ct]:
				why = ReasonLate
			}
			reasons[why] = true
			m.Pairs[why]++
		}
		if len(reasons) > 0 {
			m.Undecryptable++
		}
		for k := range reasons {
			m.ByReason[k]++
		}
	}
	if m.Sent > 0 {
		m.Rate = float64(m.Undecryptable) / float64(m.Sent)
	}

	cl := &r.Clients
	cl.Clients = len(w.clients)
	cl.Rollbacks, cl.Welcomes, cl.Rewelcomed = w.stats.rollbacks, w.stats.welcomesNeeded, w.stats.rewelcomed
	for _, c := range w.clients {
		if c.neededWelcome > 0 {
			cl.NeededWelcome++
		}
		if c.stuck {
			cl.StillLost++
		}
	}

	r.Convergence.Log = append([]ConvergenceCheck{}, w.checks...)
	r.Convergence.Checks = len(w.checks)
	for _, c := range w.checks {
		if !c.OK {
			r.Convergence.Failures++
		}
	}
	return r, nil
}

// expired reports whether some server of powers marked a pending commit
// expired and none applied it.
func (w *World) expired(id string) bool {
	exp := false
	for _, s := range w.servers {
		pc, ok := s.store.pending[id]
		if !ok {
			continue
		}
		switch pc.Status {
		case storage.PendingApplied:
			return false
		case storage.PendingExpired:
			exp = true
		}
	}
	return exp
}

// WriteText prints the report for people.
func (r *Report) WriteText(out io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := r.Config
	p("Simulated %v (settled after %v), seed %d, %s mode\n", c.Duration.D(), r.SettledAfter.D().Round(time.Second), c.Seed, modeName(c.Mode))
	p("  %d servers x %d clients; powers %d (%s): %s; can_propose %s; security.window %v\n",
		c.Servers, c.ClientsPerServer, c.Powers, orDefault(c.PowersOrder, "index"), strings.Join(r.Powers, ", "), orDefault(c.CanPropose, "all"), c.SecurityWindow.D())
	p("  per server and hour: %.3g membership changes, %.3g messages\n", c.MembershipPerHour, c.MessagesPerHour)
	n := c.Network
	p("  links %v-%v + jitter %v, loss %.3g; %d scheduled partitions, %d scheduled outages", n.LatencyMin.D(), n.LatencyMax.D(), n.Jitter.D(), n.Loss, len(n.Partitions), len(n.Outages))
	if n.RandomPartitions != nil {
		p("; random partitions %.3g/day of mean %v", n.RandomPartitions.PerDay, n.RandomPartitions.MeanLength.D())
	}
	if n.RandomOutages != nil {
		p("; random outages %.3g/server/day of mean %v", n.RandomOutages.PerDay, n.RandomOutages.MeanLength.D())
	}
	p("\n\nCommits\n")
	pr := r.Proposals
	p("  proposed %d (direct %d, pending %d, of them re-Welcomes %d)\n", pr.Proposed, pr.Direct, pr.Pending, pr.Rewelcome)
	p("  applied %d; lost to conflicts %d (lost fork %d, stale %d, expired %d): conflict rate %.4f\n",
		pr.Applied, pr.LostFork+pr.Stale+pr.Expired, pr.LostFork, pr.Stale, pr.Expired, r.ConflictRate)
	p("  not sent: refused (wrong epoch) %d, not permitted %d, client busy %d\n", pr.Refused, pr.NotPermitted, pr.Busy)
	p("  pending commit to acceptance: %d, median %.1fs, p95 %.1fs, max %.1fs\n", r.Acceptance.Count, r.Acceptance.Median, r.Acceptance.P95, r.Acceptance.Max)
	if len(pr.AppliedInWindow) > 0 {
		keys := sortedKeys(pr.AppliedInWindow)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("index %s: %d", k, pr.AppliedInWindow[k]))
		}
		p("  applied in the window of powers %s\n", strings.Join(parts, ", "))
	}
	p("  forks lost: %d, %d commits on them, longest %d, mean %.2f\n", r.Forks.Count, r.Forks.Commits, r.Forks.MaxLength, r.Forks.MeanLen)
	p("\nMessages\n")
	m := r.Messages
	p("  sent %d (refused %d), on losing branches %d\n", m.Sent, m.Refused, m.OnLosingBranch)
	p("  undecryptable for at least one member: %d (rate %.4f)\n", m.Undecryptable, m.Rate)
	for _, k := range sortedKeys(m.ByReason) {
		p("    %-15s %d messages, %d member-message pairs\n", k, m.ByReason[k], m.Pairs[k])
	}
	p("\nClients\n")
	cl := r.Clients
	p("  %d clients; rollbacks within the window %d; needed a new Welcome %d (%d times, %d re-added, %d still lost)\n",
		cl.Clients, cl.Rollbacks, cl.NeededWelcome, cl.Welcomes, cl.Rewelcomed, cl.StillLost)
	p("\nEvents\n")
	e := r.Events
	p("  built %d; rejected %d; soft-failed a %d, b %d, c %d (per receiving server); own soft-failed %d\n",
		e.Built, e.Rejected, e.SoftFailed["a"], e.SoftFailed["b"], e.SoftFailed["c"], e.OwnSoftFailed)
	for _, s := range e.RejectedSample {
		p("    %s\n", s)
	}
	for _, s := range e.QueueErrors {
		p("    queue error: %s\n", s)
	}
	p("\nConvergence: %d checks, %d failures\n", r.Convergence.Checks, r.Convergence.Failures)
	for _, ck := range r.Convergence.Log {
		st := "ok"
		if !ck.OK {
			st = "FAILED: " + ck.Problem
		}
		p("  %-10v %-18s %s\n", ck.At.D().Round(time.Second), ck.Trigger, st)
	}
	p("Final chain: epoch %d, %s\n", r.FinalEpoch, r.FinalCommit)
	_, err := io.WriteString(out, b.String())
	return err
}

func modeName(m string) string { return orDefault(m, "model") }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
