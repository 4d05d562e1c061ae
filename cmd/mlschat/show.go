package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// roomView is everything show prints of a room; --json prints it as is.
type roomView struct {
	RoomID       string         `json:"room_id"`
	Membership   string         `json:"membership"`
	Inviter      string         `json:"inviter,omitempty"`
	Name         string         `json:"name,omitempty"`
	Topic        string         `json:"topic,omitempty"`
	Epoch        uint64         `json:"epoch"`
	Verification string         `json:"required_verification,omitempty"`
	Powers       []string       `json:"powers,omitempty"`
	Servers      []string       `json:"servers,omitempty"`
	CanPropose   []string       `json:"can_propose,omitempty"`
	WindowSecs   int64          `json:"security_window_seconds"`
	Members      []memberView   `json:"members"`
	Pending      *pendingView   `json:"pending_commit,omitempty"`
	NeedsWelcome string         `json:"needs_welcome,omitempty"`
	Broken       *client.Broken `json:"broken,omitempty"`
	Rollbacks    int            `json:"rollbacks,omitempty"`
	LostCommits  []string       `json:"lost_commits,omitempty"`
	Waiting      int            `json:"waiting_for_commits,omitempty"`
	// Undecryptable lists the messages this device cannot read.
	Undecryptable []client.Undecryptable `json:"undecryptable,omitempty"`
	Messages      []messageView          `json:"messages"`
	// Words is the status in sentences, as show prints it.
	Words []string `json:"words"`
}

type memberView struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	You      bool   `json:"you,omitempty"`
	// Verified: the user's fingerprint was checked by this user (or is
	// this user) and the device is cross-signed by its user.
	Verified bool   `json:"verified"`
	Why      string `json:"why,omitempty"`
}

type pendingView struct {
	EventID string    `json:"event_id"`
	Pending bool      `json:"pending"`
	SentAt  time.Time `json:"sent_at"`
	Expires time.Time `json:"expires,omitzero"`
	Words   string    `json:"words"`
}

type messageView struct {
	EventID  string `json:"event_id"`
	Sender   string `json:"sender"`
	Device   string `json:"device"`
	Type     string `json:"type"`
	Body     string `json:"body,omitempty"`
	TS       int64  `json:"origin_server_ts"`
	Epoch    uint64 `json:"epoch"`
	LostFork bool   `json:"lost_fork,omitempty"`
}

// reasonWords says an undecryptable reason in words.
func reasonWords(reason string) string {
	switch reason {
	case client.ReasonLostFork:
		return "sent on a fork that lost"
	case client.ReasonEpochGone:
		return "sent in an epoch whose keys this device no longer keeps"
	case client.ReasonNotMember:
		return "sent while this device was not in the group"
	case client.ReasonMalformed:
		return "not a well-formed MLS message of this room"
	}
	return "for a reason this version of mlschat does not know"
}

// view gathers a room's status; with trust (a /keys/query) when
// withTrust.
func (a *account) view(ctx context.Context, id string, withTrust bool) (*roomView, error) {
	st, err := a.c.Status(id)
	if err != nil {
		return nil, err
	}
	v := &roomView{RoomID: id, Membership: st.Membership, Inviter: st.Inviter, Name: st.Name, Topic: st.Topic,
		Epoch: st.Epoch, Verification: st.RequiredVerification, Powers: st.Powers, Servers: st.Servers,
		CanPropose: st.CanPropose, WindowSecs: int64(st.Window / time.Second), NeedsWelcome: st.NeedsWelcome,
		Broken: st.Broken, Rollbacks: st.Rollbacks, LostCommits: st.LostCommits, Waiting: st.Waiting,
		Undecryptable: st.Undecryptable, Members: []memberView{}, Messages: []messageView{}}
	var users []string
	for _, m := range st.Members {
		if !slices.Contains(users, m.UserID) && m.UserID != "" {
			users = append(users, m.UserID)
		}
	}
	var trusts map[string]*trust
	var trustErr error
	if withTrust && len(users) > 0 {
		trusts, trustErr = a.trustAll(ctx, users...)
	}
	for _, m := range st.Members {
		mv := memberView{UserID: m.UserID, DeviceID: m.DeviceID, You: m.UserID == a.c.UserID() && m.DeviceID == a.c.DeviceID()}
		switch t := trusts[m.UserID]; {
		case !withTrust:
		case trustErr != nil:
			mv.Why = "cannot tell: " + trustErr.Error()
		case t == nil:
		case !t.userVerified:
			mv.Why = t.userWhy
		default:
			why, ok := t.devices[m.DeviceID]
			switch {
			case !ok:
				mv.Why = "the server no longer lists this device"
			case why != "":
				mv.Why = why
			default:
				mv.Verified = true
			}
		}
		v.Members = append(v.Members, mv)
	}
	for _, m := range a.c.Messages(id) {
		v.Messages = append(v.Messages, messageView{EventID: m.EventID, Sender: m.Sender, Device: m.Device, Type: m.Type,
			Body: m.Body(), TS: m.TS, Epoch: m.Epoch, LostFork: m.LostFork})
	}
	if p := st.Pending; p != nil {
		v.Pending = &pendingView{EventID: p.EventID, Pending: p.Pending, SentAt: p.SentAt, Expires: p.Expires, Words: a.pendingWords(st)}
	}
	v.Words = a.statusWords(st)
	return v, nil
}

// pendingWords says where this device's commit in flight is.
func (a *account) pendingWords(st client.RoomStatus) string {
	p := st.Pending
	if p == nil {
		return ""
	}
	if !p.Pending {
		return fmt.Sprintf("your change (sent %s) is waiting to come back from the server", clock(p.SentAt))
	}
	if !p.Expires.IsZero() && time.Now().After(p.Expires) {
		return fmt.Sprintf("your pending change was not applied by %s, when the room's ordering servers' windows ended: it is most likely lost (it still counts if it is applied after all)", clock(p.Expires))
	}
	powers := "the room's ordering servers"
	if len(st.Powers) > 0 {
		powers = strings.Join(st.Powers, ", then ")
	}
	return fmt.Sprintf("your pending change is waiting for %s to apply it (gives up at %s)", powers, clock(p.Expires))
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.Local().Format("15:04:05")
}

// statusWords is the room's state in sentences, problems first.
func (a *account) statusWords(st client.RoomStatus) []string {
	var w []string
	switch st.Membership {
	case "invite":
		w = append(w, fmt.Sprintf("you are invited by %s; join with: mlschat join %s", orSomeone(st.Inviter), st.RoomID))
		return w
	case "leave":
		return append(w, "you left this room")
	case "join":
		if !st.InGroup {
			return append(w, fmt.Sprintf("your account is in this room from another device, this device not yet: mlschat join %s", st.RoomID))
		}
	case "":
		return append(w, fmt.Sprintf("a Welcome for this room arrived, but no invite for you: mlschat join %s waits for it", st.RoomID))
	}
	if b := st.Broken; b != nil {
		w = append(w, fmt.Sprintf("this room is broken: the change %s accepted from %s cannot be followed (%s); start a new room for the same people with: mlschat successor %s",
			b.EventID, b.Origin, b.Reason, st.RoomID))
	}
	if st.NeedsWelcome != "" {
		w = append(w, "you need to be invited again: "+st.NeedsWelcome)
	}
	if s := a.pendingWords(st); s != "" {
		w = append(w, s)
	}
	if len(st.Undecryptable) > 0 {
		by := map[string]int{}
		for _, u := range st.Undecryptable {
			by[u.Reason]++
		}
		reasons := make([]string, 0, len(by))
		for r := range by {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			words := reasonWords(r)
			w = append(w, fmt.Sprintf("you cannot read %s: %s (%s)", plural(by[r], "message"), words, r))
		}
	}
	if st.Waiting > 0 {
		w = append(w, fmt.Sprintf("%s are for a later epoch; they are read once the changes before them arrive", plural(st.Waiting, "message")))
	}
	if n := len(st.LostCommits); n > 0 {
		w = append(w, fmt.Sprintf("%s of yours were never accepted: another change won", plural(n, "change")))
	}
	if st.Rollbacks > 0 {
		w = append(w, fmt.Sprintf("this device went back to a kept state %s to follow a change that won over the one it had applied", times(st.Rollbacks)))
	}
	return w
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// display is how a user ID is shown: the localpart for users of this
// account's server, the whole ID for others.
func (a *account) display(userID string) string {
	if userID == "" {
		return "(unknown sender)"
	}
	if i := strings.IndexByte(userID, ':'); i > 0 && userID[i+1:] == a.c.ServerName() {
		return strings.TrimPrefix(userID[:i], "@")
	}
	return userID
}

// messageLine is one message as show and chat print it.
func (a *account) messageLine(m messageView) string {
	t := time.UnixMilli(m.TS).Local().Format("15:04")
	body := m.Body
	if m.Type != "m.room.message" {
		body = fmt.Sprintf("(%s event)", m.Type)
	}
	line := fmt.Sprintf("[%s] %s: %s", t, a.display(m.Sender), body)
	if m.LostFork {
		line += "  (sent on a fork that lost)"
	}
	return line
}

func (a *account) printView(w io.Writer, v *roomView, nMessages int) {
	title := v.RoomID
	if v.Name != "" {
		title = fmt.Sprintf("%q  %s", v.Name, v.RoomID)
	}
	fmt.Fprintf(w, "Room %s\n", title)
	if v.Topic != "" {
		fmt.Fprintf(w, "Topic: %s\n", v.Topic)
	}
	for _, s := range v.Words {
		fmt.Fprintf(w, "! %s\n", s)
	}
	if v.Membership != "join" {
		return
	}
	fmt.Fprintf(w, "Members, as the MLS group has them at epoch %d:\n", v.Epoch)
	a.printMembers(w, v.Members)
	rule := verificationRule(v.Verification)
	fmt.Fprintf(w, "Adding people: %s\n", rule)
	if len(v.Powers) > 0 {
		fmt.Fprintf(w, "Changes are ordered by %s; servers in the room: %s", strings.Join(v.Powers, ", then "), strings.Join(v.Servers, ", "))
		if v.WindowSecs > 0 {
			fmt.Fprintf(w, "; past states kept %s to recover from forks", time.Duration(v.WindowSecs)*time.Second)
		}
		fmt.Fprintln(w)
	}
	msgs := v.Messages
	if nMessages >= 0 && len(msgs) > nMessages {
		fmt.Fprintf(w, "Messages (last %d of %d):\n", nMessages, len(msgs))
		msgs = msgs[len(msgs)-nMessages:]
	} else if len(msgs) > 0 {
		fmt.Fprintln(w, "Messages:")
	} else {
		fmt.Fprintln(w, "No messages yet.")
	}
	for _, m := range msgs {
		fmt.Fprintf(w, "  %s\n", a.messageLine(m))
	}
	if len(v.Undecryptable) > 0 {
		fmt.Fprintln(w, "Messages you cannot read:")
		for _, u := range v.Undecryptable {
			fmt.Fprintf(w, "  %s from %s, epoch %d: %s\n", u.EventID, u.Origin, u.Epoch, u.Detail)
		}
	}
}

func (a *account) printMembers(w io.Writer, ms []memberView) {
	width := 0
	for _, m := range ms {
		width = max(width, len(m.UserID))
	}
	for _, m := range ms {
		state := "verified"
		switch {
		case m.You:
			state = "this device"
		case m.Why != "":
			state = "not verified: " + m.Why
		case !m.Verified:
			state = "verification not checked"
		}
		fmt.Fprintf(w, "  %-*s  device %s  %s\n", width, m.UserID, m.DeviceID, state)
	}
}

func cmdShow(e *env, args []string) error {
	fs := e.flags("show", "[--json] [--messages N] [--no-sync] ROOM")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("messages", 20, "how many of the last messages to print (-1: all)")
	noSync := fs.Bool("no-sync", false, "do not fetch news first")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	if !*noSync {
		if err := a.c.Sync(e.ctx, 0); err != nil {
			return err
		}
	}
	id, err := a.knownRoom(rest[0])
	if err != nil {
		return err
	}
	v, err := a.view(e.ctx, id, true)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, v)
	}
	a.printView(e.stdout, v, *n)
	return nil
}

func cmdSync(e *env, args []string) error {
	fs := e.flags("sync", "[--timeout D]")
	timeout := fs.Duration("timeout", 0, "how long the server may wait for news")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	before := a.snapshot()
	if err := a.c.Sync(e.ctx, *timeout); err != nil {
		return err
	}
	any := false
	for _, id := range a.c.Rooms() {
		lines := a.news(id, before[id])
		if len(lines) == 0 {
			continue
		}
		any = true
		fmt.Fprintf(e.stdout, "%s:\n", roomTitle(a, id))
		for _, l := range lines {
			fmt.Fprintf(e.stdout, "  %s\n", l)
		}
	}
	if !any {
		fmt.Fprintln(e.stdout, "nothing new")
	}
	return nil
}

func roomTitle(a *account, id string) string {
	if st, err := a.c.Status(id); err == nil && st.Name != "" {
		return fmt.Sprintf("%q %s", st.Name, id)
	}
	return id
}

// roomSnap is what news compares against.
type roomSnap struct {
	known         bool
	membership    string
	name, topic   string
	members       []string
	seen          map[string]bool
	undecryptable int
	needsWelcome  string
	broken        bool
	pending       string
}

func (a *account) snapshot() map[string]*roomSnap {
	out := map[string]*roomSnap{}
	for _, id := range a.c.Rooms() {
		out[id] = a.snap(id)
	}
	return out
}

func (a *account) snap(id string) *roomSnap {
	s := &roomSnap{known: true, seen: map[string]bool{}}
	st, err := a.c.Status(id)
	if err != nil {
		return s
	}
	s.membership, s.name, s.topic = st.Membership, st.Name, st.Topic
	for _, m := range st.Members {
		s.members = append(s.members, m.UserID+" "+m.DeviceID)
	}
	for _, m := range a.c.Messages(id) {
		s.seen[m.EventID] = true
	}
	s.undecryptable, s.needsWelcome, s.broken = len(st.Undecryptable), st.NeedsWelcome, st.Broken != nil
	s.pending = a.pendingWords(st)
	return s
}

// news says what changed in a room since the snapshot before (nil: the
// room is new to this device), and updates before to now.
func (a *account) news(id string, before *roomSnap) []string {
	now := a.snap(id)
	st, err := a.c.Status(id)
	if err != nil {
		return nil
	}
	var out []string
	if before == nil {
		before = &roomSnap{seen: map[string]bool{}}
		if st.Membership == "invite" {
			out = append(out, fmt.Sprintf("* %s invited you; join with: mlschat join %s", orSomeone(st.Inviter), id))
		}
	}
	if before.known && before.name != now.name && now.name != "" {
		out = append(out, fmt.Sprintf("* the room is now called %q", now.name))
	}
	if before.known && before.topic != now.topic {
		out = append(out, fmt.Sprintf("* the topic is now %q", now.topic))
	}
	if before.known {
		for _, m := range now.members {
			if !slices.Contains(before.members, m) {
				u, d, _ := strings.Cut(m, " ")
				out = append(out, fmt.Sprintf("* %s joined the group (device %s)", a.display(u), d))
			}
		}
		for _, m := range before.members {
			if !slices.Contains(now.members, m) {
				u, d, _ := strings.Cut(m, " ")
				out = append(out, fmt.Sprintf("* %s left the group (device %s)", a.display(u), d))
			}
		}
	}
	for _, m := range a.c.Messages(id) {
		if before.seen[m.EventID] || (m.Sender == a.c.UserID() && m.Device == a.c.DeviceID()) {
			continue
		}
		out = append(out, a.messageLine(messageView{Sender: m.Sender, Type: m.Type, Body: m.Body(), TS: m.TS, LostFork: m.LostFork}))
	}
	for _, u := range st.Undecryptable[min(before.undecryptable, len(st.Undecryptable)):] {
		words := reasonWords(u.Reason)
		out = append(out, fmt.Sprintf("* you cannot read a message from %s: %s (%s)", u.Origin, words, u.Reason))
	}
	if now.needsWelcome != "" && now.needsWelcome != before.needsWelcome {
		out = append(out, "* you need to be invited again: "+now.needsWelcome)
	}
	if now.broken && !before.broken {
		out = append(out, fmt.Sprintf("* this room is broken: %s; mlschat successor %s starts a new one", st.Broken.Reason, id))
	}
	if now.pending != before.pending && now.pending != "" {
		out = append(out, "* "+now.pending)
	}
	*before = *now
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// commitNotice warns, before a change to the group, when this device's
// server is not the room's first power: the commit then goes as a
// pending commit that the powers apply in their windows (5 minutes
// apart), and the command waits for it.
func (a *account) commitNotice(id string) string {
	st, err := a.c.Status(id)
	if err != nil || len(st.Powers) == 0 || st.Powers[0] == a.c.ServerName() {
		return ""
	}
	wait := time.Duration(len(st.Powers))*5*time.Minute + time.Minute
	return fmt.Sprintf("your server %s is not the first of the servers that order this room's changes (%s): the change goes as a pending commit for them to apply, which can take up to %s; Ctrl-C stops waiting (the change may still be applied: mlschat show %s tells)",
		a.c.ServerName(), strings.Join(st.Powers, ", then "), wait, id)
}
