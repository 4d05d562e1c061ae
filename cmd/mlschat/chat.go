package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

const chatHelp = `Type a line and press Enter to send it. Commands:
  /members              who is in the group, and whether you verified them
  /show                 the room's whole status
  /invite USER          add USER's devices and invite them
  /remove USER          remove USER's devices from the group
  /name TEXT            rename the room
  /topic TEXT           change the topic
  /fingerprint [USER]   a fingerprint (default: yours)
  /verify USER FP       record that you checked USER's fingerprint FP
  /leave                leave the room and quit
  /quit                 quit (also Ctrl-D)
A line starting with // sends the text after the first /.
`

// syncWriter serialises the writes of the reader and the sync loop.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func cmdChat(e *env, args []string) error {
	return chat(e, "chat", args)
}

// cmdWatch is a live view of a room: chat without input, until Ctrl-C.
func cmdWatch(e *env, args []string) error {
	return chat(e, "watch", args)
}

func chat(e *env, name string, args []string) error {
	watch := name == "watch"
	fs := e.flags(name, "[--poll D] ROOM")
	poll := fs.Duration("poll", time.Second, "how long each sync waits for news (the client runs one call at a time: sends wait for the sync in flight)")
	rest, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *poll <= 0 || *poll > 30*time.Second {
		return usagef("--poll %s: from 1ms to 30s", *poll)
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	// The client's work is never cut off in the middle (a store write
	// half done); Ctrl-C and /quit stop the loops between calls.
	work := context.WithoutCancel(e.ctx)
	if err := a.c.Sync(work, 0); err != nil {
		return err
	}
	id, err := a.knownRoom(rest[0])
	if err != nil {
		return err
	}
	out := &syncWriter{w: e.stdout}
	v, err := a.view(work, id, true)
	if err != nil {
		return err
	}
	if v.Membership != "join" {
		a.printView(out, v, 10)
		return fmt.Errorf("you are not in %s (join it first)", id)
	}
	a.printView(out, v, 10)
	if watch {
		fmt.Fprintln(out, "-- watching; Ctrl-C ends")
	} else {
		fmt.Fprintln(out, "-- type a message and press Enter; /help lists the commands, /quit ends")
	}

	snap := a.snap(id)
	var snapMu sync.Mutex
	report := func() {
		snapMu.Lock()
		defer snapMu.Unlock()
		for _, l := range a.news(id, snap) {
			fmt.Fprintln(out, l)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		failing := false
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.c.Sync(work, *poll); err != nil {
				if !failing {
					fmt.Fprintf(out, "* cannot fetch news: %s (retrying)\n", explain(err))
				}
				failing = true
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Second):
				}
				continue
			}
			if failing {
				fmt.Fprintln(out, "* fetching news again")
				failing = false
			}
			report()
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	lines := make(chan string)
	if watch {
		<-e.ctx.Done()
		fmt.Fprintln(out, "* bye")
		return nil
	}
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case <-e.ctx.Done():
			fmt.Fprintln(out, "* bye")
			return nil
		case line, ok = <-lines:
		}
		if !ok {
			return nil
		}
		// A command stops when the session is interrupted (a pending
		// commit can wait for minutes, holding the client).
		quit, err := a.chatLine(e.ctx, out, id, line)
		if err != nil && e.ctx.Err() != nil {
			fmt.Fprintf(out, "* interrupted (%s); a change already sent may still be applied\n", explain(err))
			return nil
		}
		if err != nil {
			fmt.Fprintf(out, "* %s\n", explain(err))
		}
		report()
		if quit {
			return nil
		}
	}
}

// chatLine handles one line of chat: a message or a /command. It reports
// whether the session ends.
func (a *account) chatLine(ctx context.Context, out io.Writer, id, line string) (bool, error) {
	if strings.TrimSpace(line) == "" {
		return false, nil
	}
	if !strings.HasPrefix(line, "/") || strings.HasPrefix(line, "//") {
		text := strings.TrimPrefix(line, "/")
		if !strings.HasPrefix(line, "//") {
			text = line
		}
		_, err := a.c.Send(ctx, id, text)
		return false, err
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line[1:]), " ")
	arg = strings.TrimSpace(arg)
	need := func(what string) error {
		if arg == "" {
			return fmt.Errorf("/%s needs %s", cmd, what)
		}
		return nil
	}
	switch cmd {
	case "quit", "exit", "q":
		return true, nil
	case "help", "?":
		fmt.Fprint(out, chatHelp)
	case "members":
		v, err := a.view(ctx, id, true)
		if err != nil {
			return false, err
		}
		fmt.Fprintf(out, "* members, as the MLS group has them at epoch %d:\n", v.Epoch)
		a.printMembers(out, v.Members)
	case "show":
		v, err := a.view(ctx, id, true)
		if err != nil {
			return false, err
		}
		a.printView(out, v, 10)
	case "invite", "remove":
		if err := need("a user"); err != nil {
			return false, err
		}
		user, err := a.userID(arg)
		if err != nil {
			return false, err
		}
		if cmd == "invite" {
			if err := a.checkBeforeAdding(ctx, id); err != nil {
				return false, err
			}
			if n := a.commitNotice(id); n != "" {
				fmt.Fprintf(out, "* %s\n", n)
			}
			if err := a.c.Invite(ctx, id, user); err != nil {
				return false, err
			}
			fmt.Fprintf(out, "* added %s's devices and invited them; they join with: mlschat join %s\n", user, id)
		} else {
			if n := a.commitNotice(id); n != "" {
				fmt.Fprintf(out, "* %s\n", n)
			}
			if err := a.c.Remove(ctx, id, user); err != nil {
				return false, err
			}
			fmt.Fprintf(out, "* removed %s's devices from the group\n", user)
		}
	case "name", "topic":
		if err := need("some text"); err != nil {
			return false, err
		}
		if n := a.commitNotice(id); n != "" {
			fmt.Fprintf(out, "* %s\n", n)
		}
		if err := a.c.SetState(ctx, id, "m.room."+cmd, "", map[string]string{cmd: arg}); err != nil {
			return false, err
		}
	case "fingerprint":
		user := a.c.UserID()
		if arg != "" {
			var err error
			if user, err = a.userID(arg); err != nil {
				return false, err
			}
		}
		fp, err := a.c.MasterKey(ctx, user)
		if err != nil {
			return false, err
		}
		fmt.Fprintf(out, "* fingerprint of %s: %s\n", user, fp)
	case "verify":
		u, fp, _ := strings.Cut(arg, " ")
		if u == "" || strings.TrimSpace(fp) == "" {
			return false, fmt.Errorf("/verify needs a user and their fingerprint")
		}
		user, err := a.userID(u)
		if err != nil {
			return false, err
		}
		if err := a.c.VerifyUser(ctx, user, strings.Join(strings.Fields(fp), "")); err != nil {
			return false, err
		}
		fmt.Fprintf(out, "* verified %s\n", user)
	case "leave":
		if err := a.c.Leave(ctx, id); err != nil {
			return false, err
		}
		fmt.Fprintln(out, "* you left the room")
		return true, nil
	default:
		return false, fmt.Errorf("unknown command /%s (/help lists them; // sends a line starting with /)", cmd)
	}
	return false, nil
}
