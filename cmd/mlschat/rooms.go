package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
)

// room resolves a ROOM argument: a room ID this device knows, or the name
// of exactly one room it knows. Unknown room IDs are returned as given
// (join waits for their invite).
func (a *account) room(arg string) (string, error) {
	if arg == "" {
		return "", usagef("empty room")
	}
	known := a.c.Rooms()
	if strings.HasPrefix(arg, "!") {
		return arg, nil
	}
	var hits []string
	for _, id := range known {
		if st, err := a.c.Status(id); err == nil && strings.EqualFold(st.Name, arg) {
			hits = append(hits, id)
		}
	}
	switch len(hits) {
	case 0:
		return "", fmt.Errorf("no room named %q here (mlschat rooms lists them; a room ID starts with !)", arg)
	case 1:
		return hits[0], nil
	}
	return "", fmt.Errorf("%d rooms are named %q: give the room ID (%s)", len(hits), arg, strings.Join(hits, ", "))
}

// knownRoom is room for commands that need the device to know the room.
func (a *account) knownRoom(arg string) (string, error) {
	id, err := a.room(arg)
	if err != nil {
		return "", err
	}
	if !slices.Contains(a.c.Rooms(), id) {
		return "", fmt.Errorf("this device does not know room %s (mlschat rooms lists the rooms it knows)", id)
	}
	return id, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func cmdCreate(e *env, args []string) error {
	fs := e.flags("create", "[-q] [--name N] [--topic T] [--verification LEVEL] [--window D] [--powers S,..] [--servers S,..] [--can-propose S,..]")
	quiet := fs.Bool("q", false, "print only the room ID")
	asJSON := fs.Bool("json", false, "print the new room as JSON")
	name := fs.String("name", "", "room name (kept encrypted in the group)")
	topic := fs.String("topic", "", "room topic (kept encrypted in the group)")
	verification := fs.String("verification", client.VerifyCross, "who may be added: m.cross (users whose fingerprint was checked), m.direct, m.tofu or m.none")
	window := fs.Duration("window", 0, "security.window: how long past states are kept to recover from forks (at most 168h)")
	powers := fs.String("powers", "", "servers that order commits, first first (default: your server)")
	servers := fs.String("servers", "", "servers in the room (default: the powers)")
	canPropose := fs.String("can-propose", "", "servers that may send pending commits")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	switch *verification {
	case client.VerifyCross, client.VerifyDirect, client.VerifyTOFU, client.VerifyNone:
	default:
		return usagef("--verification %q: one of m.cross, m.direct, m.tofu, m.none", *verification)
	}
	if *window < 0 || *window > client.MaxWindow {
		return usagef("--window %s: from 0 to %s", *window, client.MaxWindow)
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	opts := client.RoomOptions{Name: *name, Topic: *topic, RequiredVerification: *verification, Window: *window,
		Powers: splitList(*powers), Servers: splitList(*servers), CanPropose: splitList(*canPropose)}
	id, err := a.c.CreateRoom(e.ctx, opts)
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return writeJSON(e.stdout, map[string]string{"room_id": id, "name": *name, "topic": *topic})
	case *quiet:
		fmt.Fprintln(e.stdout, id)
	default:
		label := id
		if *name != "" {
			label = fmt.Sprintf("%q (%s)", *name, id)
		}
		fmt.Fprintf(e.stdout, "created room %s; you are its only member.\n", label)
		fmt.Fprintf(e.stdout, "%s\n", verificationRule(*verification))
		fmt.Fprintf(e.stdout, "invite someone: mlschat invite %s USER\n", id)
	}
	return nil
}

// verificationRule says a room's required verification in words.
func verificationRule(level string) string {
	switch level {
	case client.VerifyCross:
		return "only users whose fingerprint the inviter has checked (mlschat verify) can be added, with devices they cross-signed (m.cross)"
	case client.VerifyDirect:
		return "only devices the inviter has checked one by one can be added (m.direct)"
	case client.VerifyTOFU:
		return "users are trusted the first time they are seen; a later change of their keys is refused (m.tofu)"
	case client.VerifyNone:
		return "anyone's devices can be added without checks (m.none)"
	}
	return "required verification: " + level
}

func cmdRooms(e *env, args []string) error {
	fs := e.flags("rooms", "[--json] [--no-sync]")
	asJSON := fs.Bool("json", false, "print JSON")
	noSync := fs.Bool("no-sync", false, "do not fetch news first")
	if _, err := parse(fs, args, 0, 0); err != nil {
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
	type roomJSON struct {
		RoomID     string `json:"room_id"`
		Membership string `json:"membership"`
		Name       string `json:"name,omitempty"`
		Topic      string `json:"topic,omitempty"`
		Inviter    string `json:"inviter,omitempty"`
		InGroup    bool   `json:"in_group"`
		Members    int    `json:"members"`
		Messages   int    `json:"messages"`
		Problem    string `json:"problem,omitempty"`
	}
	var out []roomJSON
	for _, id := range a.c.Rooms() {
		st, err := a.c.Status(id)
		if err != nil {
			continue
		}
		r := roomJSON{RoomID: id, Membership: st.Membership, Name: st.Name, Topic: st.Topic, Inviter: st.Inviter,
			InGroup: st.InGroup, Members: len(st.Members), Messages: len(a.c.Messages(id))}
		switch {
		case st.Broken != nil:
			r.Problem = "broken: " + st.Broken.Reason
		case st.NeedsWelcome != "":
			r.Problem = "needs to be invited again: " + st.NeedsWelcome
		}
		out = append(out, r)
	}
	if *asJSON {
		if out == nil {
			out = []roomJSON{}
		}
		return writeJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no rooms yet: mlschat create, or wait for an invite")
		return nil
	}
	for _, r := range out {
		label := r.RoomID
		if r.Name != "" {
			label = fmt.Sprintf("%q %s", r.Name, r.RoomID)
		}
		switch r.Membership {
		case "invite":
			fmt.Fprintf(e.stdout, "%s: invited by %s; join with: mlschat join %s\n", label, orSomeone(r.Inviter), r.RoomID)
		case "leave":
			fmt.Fprintf(e.stdout, "%s: you left\n", label)
		case "":
			fmt.Fprintf(e.stdout, "%s: a Welcome arrived, but no invite for you\n", label)
		case "join":
			if !r.InGroup {
				fmt.Fprintf(e.stdout, "%s: your account is in this room from another device; join this device with: mlschat join %s\n", label, r.RoomID)
				continue
			}
			fallthrough
		default:
			fmt.Fprintf(e.stdout, "%s: %s, %s", label, plural(r.Members, "member device"), plural(r.Messages, "message"))
			if r.Problem != "" {
				fmt.Fprintf(e.stdout, "; %s", r.Problem)
			}
			fmt.Fprintln(e.stdout)
		}
	}
	return nil
}

func orSomeone(s string) string {
	if s == "" {
		return "someone"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func cmdInvite(e *env, args []string) error {
	fs := e.flags("invite", "ROOM USER")
	rest, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userID(rest[1])
	if err != nil {
		return err
	}
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	if err := a.checkBeforeAdding(e.ctx, id); err != nil {
		return err
	}
	e.notice(a.commitNotice(id))
	if err := a.c.Invite(e.ctx, id, user); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added %s's devices to %s and invited them; they join with: mlschat join %s\n", user, roomLabel(a, id), id)
	return nil
}

func roomLabel(a *account, id string) string {
	if st, err := a.c.Status(id); err == nil && st.Name != "" {
		return fmt.Sprintf("%q", st.Name)
	}
	return id
}

func cmdJoin(e *env, args []string) error {
	fs := e.flags("join", "[--timeout D] ROOM")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the invite and the Welcome")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	id, err := a.room(rest[0])
	if err != nil {
		return err
	}
	ctx, cancel := e.ctxTimeout(*timeout)
	defer cancel()
	if err := a.c.Join(ctx, id); err != nil {
		if errors.Is(err, ctx.Err()) && e.ctx.Err() == nil {
			return fmt.Errorf("no invite with its Welcome for %s arrived within %s: ask a member to invite you (mlschat invite %s %s)", id, *timeout, id, a.c.UserID())
		}
		return err
	}
	st, err := a.c.Status(id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "joined %s", roomLabel(a, id))
	if st.Inviter != "" {
		fmt.Fprintf(e.stdout, " (invited by %s)", st.Inviter)
	}
	fmt.Fprintf(e.stdout, ": %s in the group\n", plural(len(st.Members), "device"))
	return nil
}

func cmdSend(e *env, args []string) error {
	fs := e.flags("send", "ROOM TEXT...")
	rest, err := parse(fs, args, 2, -1)
	if err != nil {
		return err
	}
	text := strings.Join(rest[1:], " ")
	if strings.TrimSpace(text) == "" {
		return usagef("nothing to send")
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	if _, err := a.c.Send(e.ctx, id, text); err != nil {
		return err
	}
	return nil
}

func cmdName(e *env, args []string) error {
	return setStringState(e, "name", "m.room.name", args)
}

func cmdTopic(e *env, args []string) error {
	return setStringState(e, "topic", "m.room.topic", args)
}

func setStringState(e *env, field, typ string, args []string) error {
	fs := e.flags(field, "ROOM TEXT...")
	rest, err := parse(fs, args, 2, -1)
	if err != nil {
		return err
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	text := strings.Join(rest[1:], " ")
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	e.notice(a.commitNotice(id))
	if err := a.c.SetState(e.ctx, id, typ, "", map[string]string{field: text}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "the room's %s is now %q\n", field, text)
	return nil
}

func cmdState(e *env, args []string) error {
	fs := e.flags("state", "ROOM [TYPE KEY JSON]   (JSON null deletes the event)")
	rest, err := parse(fs, args, 1, 4)
	if err != nil {
		return err
	}
	if len(rest) != 1 && len(rest) != 4 {
		return usagef("give ROOM alone to print the state, or ROOM TYPE KEY JSON to set one event")
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	if len(rest) == 4 {
		var content any
		if err := json.Unmarshal([]byte(rest[3]), &content); err != nil {
			return usagef("JSON: %v", err)
		}
		if _, isObj := content.(map[string]any); content != nil && !isObj {
			return usagef("JSON: an event's content is an object (or null to delete it)")
		}
		e.notice(a.commitNotice(id))
		if err := a.c.SetState(e.ctx, id, rest[1], rest[2], content); err != nil {
			return err
		}
		if content == nil {
			fmt.Fprintf(e.stdout, "deleted %s/%q\n", rest[1], rest[2])
		} else {
			fmt.Fprintf(e.stdout, "set %s/%q\n", rest[1], rest[2])
		}
		return nil
	}
	st, err := a.c.State(id)
	if err != nil {
		return err
	}
	types := make([]string, 0, len(st))
	for t := range st {
		types = append(types, t)
	}
	sort.Strings(types)
	if len(types) == 0 {
		fmt.Fprintln(e.stdout, "the room has no encrypted state events")
	}
	for _, t := range types {
		keys := make([]string, 0, len(st[t]))
		for k := range st[t] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "%s %q %s\n", t, k, st[t][k])
		}
	}
	return nil
}

func cmdRemove(e *env, args []string) error {
	fs := e.flags("remove", "ROOM USER")
	rest, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userID(rest[1])
	if err != nil {
		return err
	}
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	e.notice(a.commitNotice(id))
	if err := a.c.Remove(e.ctx, id, user); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed %s's devices from %s: they cannot read what is sent from now on\n", user, roomLabel(a, id))
	return nil
}

func cmdLeave(e *env, args []string) error {
	fs := e.flags("leave", "ROOM")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	label := roomLabel(a, id)
	if err := a.c.Leave(e.ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "left %s and forgot its keys; your device asked the group to remove it, which a remaining member commits when it next syncs\n", label)
	return nil
}

func cmdSuccessor(e *env, args []string) error {
	fs := e.flags("successor", "[--name N] ROOM")
	name := fs.String("name", "", "name of the new room (default: the old room's)")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, id, err := e.openRoom(rest[0])
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.c.Sync(e.ctx, 0); err != nil {
		return err
	}
	st, err := a.c.Status(id)
	if err != nil {
		return err
	}
	if err := a.checkBeforeAdding(e.ctx, id); err != nil {
		return err
	}
	opts := client.RoomOptions{Name: *name, Topic: st.Topic}
	if opts.Name == "" {
		opts.Name = st.Name
	}
	newID, failed, err := a.c.StartSuccessor(e.ctx, id, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "started %s for the members of %s\n", newID, id)
	users := make([]string, 0, len(failed))
	for u := range failed {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		fmt.Fprintf(e.stdout, "could not invite %s: %s\n", u, explain(failed[u]))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s of the old room could not be invited", plural(len(failed), "user"))
	}
	return nil
}
