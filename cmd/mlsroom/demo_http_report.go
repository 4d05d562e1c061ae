package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
	"github.com/mlsmode/mlsmode/stateres"
)

// demoReportHTTP says how demo --http ran.
type demoReportHTTP struct {
	ClockSpeed  float64  `json:"clock_speed"`
	Server      string   `json:"server"`
	URLs        []string `json:"urls"`
	WallSeconds int64    `json:"wall_seconds"`
}

// httpEvent is a room event as the servers' client API shows it.
type httpEvent struct {
	id     string
	label  string
	typ    string
	origin string
	ts     time.Time
	epoch  uint64
	fm     *fedmap.Map // commits and pending commits
}

// scan reads every server's timeline (/messages) and labels the events
// it has not seen: create, C<epoch><server letter> for commits,
// P<epoch><server letter> for pending commits; messages are labelled when
// sent.
func (d *httpDemo) scan() error {
	for _, s := range d.servers {
		from := ""
		for {
			var page struct {
				Chunk []struct {
					EventID string          `json:"event_id"`
					Type    string          `json:"type"`
					Origin  string          `json:"origin"`
					TS      int64           `json:"origin_server_ts"`
					Content json.RawMessage `json:"content"`
				} `json:"chunk"`
				End string `json:"end"`
			}
			q := "?dir=f&limit=1000"
			if from != "" {
				q += "&from=" + url.QueryEscape(from)
			}
			code, err := d.get(s, d.roomPath("/messages"+q), &page)
			if err != nil {
				return err
			}
			if code == http.StatusNotFound || code == http.StatusForbidden {
				break // the server, or its user, is not in the room yet
			}
			if code != http.StatusOK {
				return fmt.Errorf("%s: /messages answered %d", s, code)
			}
			for _, e := range page.Chunk {
				if d.events[e.EventID] != nil {
					continue
				}
				ev := &httpEvent{id: e.EventID, typ: e.Type, origin: e.Origin, ts: time.UnixMilli(e.TS).UTC()}
				if e.Type != roomversion.EventTypeCreate {
					m, err := mlsContent(e.Content)
					if err != nil {
						return fmt.Errorf("%s: event %s: %w", s, e.EventID, err)
					}
					ev.epoch = m.PrivateMessage.Epoch
					if e.Type != roomversion.EventTypeEncrypted {
						if ev.fm, err = fedmap.Decode(m.PrivateMessage.AuthenticatedData); err != nil {
							return fmt.Errorf("%s: federation map of %s: %w", s, e.EventID, err)
						}
					}
				}
				switch e.Type {
				case roomversion.EventTypeCreate:
					ev.label = "create"
				case roomversion.V1.CommitType():
					ev.label = fmt.Sprintf("C%d%s", ev.epoch, e.Origin[:1])
				case roomversion.V1.PendingCommitType():
					ev.label = fmt.Sprintf("P%d%s", ev.epoch, e.Origin[:1])
				default:
					ev.label = d.labels[e.EventID]
				}
				if ev.label == "" {
					continue // not one of the demo's messages
				}
				for d.labelTaken(ev.label, e.EventID) {
					ev.label += "'"
				}
				d.labels[e.EventID] = ev.label
				d.events[e.EventID] = ev
			}
			if page.End == "" || len(page.Chunk) == 0 {
				break
			}
			from = page.End
		}
	}
	return nil
}

// labelTaken reports whether another event than id has the label.
func (d *httpDemo) labelTaken(label, id string) bool {
	for other, l := range d.labels {
		if l == label && other != id {
			return true
		}
	}
	return false
}

// mlsContent decodes the MLS PrivateMessage of an event's content
// (base64, standard or URL alphabet, padded or not).
func mlsContent(content json.RawMessage) (*mls.MLSMessage, error) {
	var c struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return nil, fmt.Errorf("content: %w", err)
	}
	s := strings.TrimRight(c.Ciphertext, "=")
	wire, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		if wire, err = base64.RawURLEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("ciphertext is not base64")
		}
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(wire); err != nil {
		return nil, err
	}
	if m.PrivateMessage == nil {
		return nil, fmt.Errorf("not an MLS PrivateMessage")
	}
	return &m, nil
}

// httpPending is a pending commit and what the servers say of it.
type httpPending struct {
	*httpEvent
	status map[string]demoReportStatus
	commit string // the commit that applied it ("" if none)
}

// pendingStatus asks every server about a pending commit.
func (d *httpDemo) pendingStatus(ev *httpEvent) (*httpPending, error) {
	p := &httpPending{httpEvent: ev, status: map[string]demoReportStatus{}}
	for _, s := range d.servers {
		var st struct {
			Status string `json:"status"`
			Commit string `json:"commit_event_id"`
			Lost   bool   `json:"lost"`
		}
		code, err := d.get(s, "/_matrix/client/unstable/de.bwi.mls/rooms/"+url.PathEscape(d.roomID)+"/pending_commit/"+url.PathEscape(ev.id), &st)
		if err != nil {
			return nil, err
		}
		if code == http.StatusNotFound {
			continue
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("%s: pending commit status of %s: %d", s, ev.label, code)
		}
		rs := demoReportStatus{Status: st.Status, Lost: st.Lost}
		if st.Commit != "" {
			rs.Commit = d.name(st.Commit)
			p.commit = st.Commit
		}
		p.status[s] = rs
	}
	return p, nil
}

// pendingFor returns the pending commit that commit applied (by
// ciphertext epoch and the servers' status), nil if none.
func (d *httpDemo) pendingFor(commitID string) *httpEvent {
	for _, ev := range d.sortedEvents() {
		if ev.typ != roomversion.V1.PendingCommitType() {
			continue
		}
		p, err := d.pendingStatus(ev)
		if err == nil && p.commit == commitID {
			return ev
		}
	}
	return nil
}

// sortedEvents returns the labelled events by timestamp, then label.
func (d *httpDemo) sortedEvents() []*httpEvent {
	var out []*httpEvent
	for _, ev := range d.events {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ts.Equal(out[j].ts) {
			return out[i].ts.Before(out[j].ts)
		}
		return out[i].label < out[j].label
	})
	return out
}

// softFailed returns the labelled events a server holds soft-failed.
func (d *httpDemo) softFailed(server string) ([]demoReportSoftFailed, error) {
	out := []demoReportSoftFailed{}
	for _, ev := range d.sortedEvents() {
		var got struct {
			Unsigned struct {
				SoftFailed *struct {
					Case   string `json:"case"`
					Reason string `json:"reason"`
				} `json:"de.bwi.mls.soft_failed"`
			} `json:"unsigned"`
		}
		code, err := d.get(server, d.roomPath("/event/"+url.PathEscape(ev.id)), &got)
		if err != nil {
			return nil, err
		}
		if code == http.StatusOK && got.Unsigned.SoftFailed != nil {
			out = append(out, demoReportSoftFailed{Event: ev.label, Case: got.Unsigned.SoftFailed.Case, Reason: d.relabel(got.Unsigned.SoftFailed.Reason)})
		}
	}
	return out, nil
}

// report gathers the facts from the servers (their client API) and the
// clients, into the in-process demo's report.
func (d *httpDemo) report() (*demoReport, error) {
	alice := d.users[0]
	ast, err := d.status(alice)
	if err != nil {
		return nil, err
	}
	rep := &demoReport{Seed: d.seed, SecurityWindow: d.window, RoomID: d.roomID, RoomVersion: string(roomversion.V1),
		Algorithm: alice.c.Algorithm(), Start: d.net.start.Format("2006-01-02T15:04:05Z"),
		Steps: d.steps, Losers: []demoReportLoss{}, NeedsWelcome: []string{}, RolledBack: []demoReportRollback{}}

	// Every server ends on the same commit; what each soft-failed.
	var cur string
	lost := map[string]demoReportSoftFailed{} // soft-failed under (c) somewhere: lost to the fork
	for i, s := range d.servers {
		c, err := d.currentCommit(s)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			cur = c
		} else if c != cur {
			return nil, fmt.Errorf("%s ends on %s, %s on %s: %w", s, d.name(c), d.servers[0], d.name(cur), errDemo)
		}
		rs := demoReportServer{Name: s, Users: []string{}, CurrentCommit: d.name(c)}
		if i := slices.Index(ast.Powers, s); i >= 0 {
			rs.PowersIndex = &i
		}
		for _, u := range d.users {
			if u.server == s {
				rs.Users = append(rs.Users, u.c.UserID())
			}
		}
		if rs.SoftFailed, err = d.softFailed(s); err != nil {
			return nil, err
		}
		for _, x := range rs.SoftFailed {
			if _, seen := lost[x.Event]; x.Case == "c" && !seen {
				lost[x.Event] = x
			}
		}
		rep.Servers = append(rep.Servers, rs)
	}

	// The chain: the commits no server soft-failed as lost, one per
	// epoch, ending at the current commit.
	byLabel := map[string]*httpEvent{}
	var chain []*httpEvent
	for _, ev := range d.sortedEvents() {
		byLabel[ev.label] = ev
		if ev.typ == roomversion.V1.CommitType() {
			if _, ok := lost[ev.label]; !ok {
				chain = append(chain, ev)
			}
		}
	}
	sort.SliceStable(chain, func(i, j int) bool { return chain[i].epoch < chain[j].epoch })
	for i, c := range chain {
		if c.epoch != uint64(i) {
			return nil, fmt.Errorf("the commits not lost are %s: not one per epoch from 0: %w", labelsOf(chain), errDemo)
		}
		rep.Chain = append(rep.Chain, demoReportCommit{Commit: c.label, Epoch: c.epoch, Origin: c.origin, Time: c.ts.Format("15:04:05"),
			Powers: c.fm.Federation.Powers, Servers: c.fm.Federation.Servers, CanPropose: c.fm.Federation.CanPropose, Window: c.fm.Window(),
			What: d.notes[c.label]})
	}
	if len(chain) == 0 || chain[len(chain)-1].id != cur {
		return nil, fmt.Errorf("the commits not lost, %s, do not end at the servers' current commit %s: %w", labelsOf(chain), d.name(cur), errDemo)
	}

	// The fork and what lost.
	for _, ev := range d.sortedEvents() {
		x, ok := lost[ev.label]
		if !ok {
			continue
		}
		rl := demoReportLoss{Event: ev.label, Type: ev.typ, Epoch: ev.epoch, Origin: ev.origin, Kind: stateres.LostFork, Reason: x.Reason}
		if ev.typ == roomversion.V1.CommitType() && ev.epoch >= 1 && int(ev.epoch) < len(chain) {
			fp, win := chain[ev.epoch-1], chain[ev.epoch]
			rl.ForkPoint, rl.Winner = fp.label, win.label
			if rep.Fork == nil {
				rep.Fork = &demoReportFork{Epoch: ev.epoch, ForkPoint: fp.label,
					Winner: demoReportSide{Commit: win.label, Origin: win.origin, PowersIndex: slices.Index(fp.fm.Federation.Powers, win.origin), Time: win.ts.Format("15:04:05")},
					Loser:  demoReportSide{Commit: ev.label, Origin: ev.origin, PowersIndex: slices.Index(fp.fm.Federation.Powers, ev.origin), Time: ev.ts.Format("15:04:05")},
					Reason: x.Reason}
			}
		}
		rep.Losers = append(rep.Losers, rl)
	}
	if rep.Fork == nil {
		return nil, fmt.Errorf("no commit lost a fork: %w", errDemo)
	}
	for i := range rep.Losers {
		if rep.Losers[i].Winner == "" {
			rep.Losers[i].ForkPoint, rep.Losers[i].Winner = rep.Fork.ForkPoint, rep.Fork.Winner.Commit
		}
	}

	// Pending commits.
	for _, ev := range d.sortedEvents() {
		if ev.typ != roomversion.V1.PendingCommitType() {
			continue
		}
		p, err := d.pendingStatus(ev)
		if err != nil {
			return nil, err
		}
		rp := demoReportPending{Event: ev.label, Epoch: ev.epoch, Origin: ev.origin, Status: p.status, WindowIndex: -1}
		if ap := d.events[p.commit]; ap != nil {
			rp.AppliedBy, rp.Commit, rp.AppliedAt = ap.origin, ap.label, ap.ts.Format("15:04:05")
			if int(ev.epoch) >= 1 && int(ev.epoch) <= len(chain) {
				rp.WindowIndex = slices.Index(chain[ev.epoch-1].fm.Federation.Powers, ap.origin)
			}
		}
		rep.PendingCommits = append(rep.PendingCommits, rp)
	}

	// Members.
	statuses := map[string]client.RoomStatus{}
	for _, u := range d.users {
		st, err := d.status(u)
		if err != nil {
			return nil, err
		}
		statuses[u.name] = st
		rm := demoReportMember{Name: u.name, UserID: u.c.UserID(), Server: u.server, Commit: d.name(st.CommitID), Epoch: st.Epoch,
			RoomName: st.Name, NeedsWelcome: st.NeedsWelcome != "", Reason: d.relabel(st.NeedsWelcome), RolledBack: st.Rollbacks > 0}
		if st.NeedsWelcome != "" {
			rep.NeedsWelcome = append(rep.NeedsWelcome, u.name)
		}
		rep.Members = append(rep.Members, rm)
		if rb, ok := d.rollbacks[u.name]; ok {
			rep.RolledBack = append(rep.RolledBack, rb)
		}
	}

	// Messages, as the clients report them.
	for _, m := range d.msgs {
		ev := d.events[m.eventID]
		if ev == nil {
			return nil, fmt.Errorf("no server's timeline holds %s: %w", m.label, errDemo)
		}
		rm := demoReportMessage{Message: m.label, Sender: m.sender.name, Server: m.sender.server, Text: m.text, Epoch: ev.epoch,
			Time: ev.ts.Format("15:04:05"), DecryptableBy: []string{}, UndecryptableBy: map[string]string{}}
		_, isLost := lost[m.label]
		// Its commit: the commit of epoch-1 on its branch.
		if ev.epoch >= 1 {
			if int(ev.epoch) <= len(chain) {
				rm.Commit = chain[ev.epoch-1].label
			}
			if isLost && rep.Fork.Epoch == ev.epoch-1 {
				rm.Commit = rep.Fork.Loser.Commit
			}
		}
		switch {
		case isLost:
			rm.Branch = "loser"
		case ev.epoch > rep.Fork.Epoch:
			rm.Branch = "winner"
		}
		for _, u := range d.users {
			if u == m.sender {
				continue
			}
			if reads(u, d.roomID, m.eventID) {
				rm.DecryptableBy = append(rm.DecryptableBy, u.name)
				continue
			}
			i := slices.IndexFunc(statuses[u.name].Undecryptable, func(x client.Undecryptable) bool { return x.EventID == m.eventID })
			if i < 0 {
				rm.UndecryptableBy[u.name] = "never delivered to " + u.name
				continue
			}
			x := statuses[u.name].Undecryptable[i]
			rm.UndecryptableBy[u.name] = fmt.Sprintf("%s's client reports %s: %s", u.name, x.Reason, d.relabel(x.Detail))
		}
		rep.Messages = append(rep.Messages, rm)
	}
	return rep, nil
}

func labelsOf(evs []*httpEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.label)
	}
	return demoList(out)
}
