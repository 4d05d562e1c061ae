package storagetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// crashEnv carries the database of the child process of TestCrashSafety.
const crashEnv = "MLSMODE_STORAGE_CRASH_DSN"

const (
	crashRoom   = "!crash:a.example"
	crashEvents = 3000
)

// crashWrites stores the deterministic chain of the crash room, one event
// at a time and in batches of 10 alternately, each write also making the
// newest event the room's current commit, and prints how many events are
// durably stored after each write.
func crashWrites(tb testing.TB, db storage.Database, r *Room, evs []*roomversion.Event) {
	ctx := context.Background()
	st := r.State()
	if _, err := db.StoreEvents(ctx, []storage.EventToStore{
		{Event: r.Create}, {Event: r.Commit, Options: storage.StoreEventOptions{CurrentState: &st}},
	}); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(evs); {
		n := 1
		if (i/11)%2 == 1 {
			n = min(10, len(evs)-i)
		}
		batch := make([]storage.EventToStore, n)
		for j := range batch {
			ev := evs[i+j]
			cur := storage.RoomState{CreateID: r.Create.EventID(), CommitID: ev.EventID()}
			batch[j] = storage.EventToStore{Event: ev, Options: storage.StoreEventOptions{StateBefore: st, CurrentState: &cur}}
		}
		var err error
		if n == 1 {
			_, err = db.StoreEvent(ctx, batch[0].Event, batch[0].Options)
		} else {
			_, err = db.StoreEvents(ctx, batch)
		}
		if err != nil {
			tb.Fatal(err)
		}
		i += n
		fmt.Printf("stored %d\n", i)
	}
	time.Sleep(time.Hour) // until killed
}

// TestCrashSafety re-runs the test binary (test name testName) as a child
// that writes events in a loop, SIGKILLs it mid-write, reopens the
// database and checks that every event is either stored whole (row,
// state, edges, extremities, current state) or absent.
func TestCrashSafety(t *testing.T, b Backend, testName string) {
	if dsn := os.Getenv(crashEnv); dsn != "" {
		db, err := b.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		r := NewRoom(t, crashRoom)
		crashWrites(t, db, r, chain(t, r, crashEvents))
		return
	}
	if !b.Shared {
		t.Skip("needs a database that outlives the process")
	}
	dsn := b.NewDSN(t)
	r := NewRoom(t, crashRoom)
	evs := chain(t, r, crashEvents)
	for round, killAfter := range []int{40, 333, 1200} {
		cmd := exec.Command(os.Args[0], "-test.run=^"+testName+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dsn)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		reported := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "stored "); ok {
				reported, _ = strconv.Atoi(n)
				if reported >= killAfter {
					break
				}
			}
		}
		time.Sleep(time.Duration(round) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if reported < killAfter {
			t.Fatalf("child stopped after %d events", reported)
		}
		checkCrashed(t, b, dsn, r, evs, reported)
	}
}

// checkCrashed checks that the stored events are a prefix of evs, at
// least reported long, each stored whole, and that the extremities and
// current state match the last one.
func checkCrashed(t *testing.T, b Backend, dsn string, r *Room, evs []*roomversion.Event, reported int) {
	t.Helper()
	ctx := context.Background()
	db, err := b.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := 0
	for k < len(evs) {
		if _, err := db.Event(ctx, evs[k].EventID()); errors.Is(err, storage.ErrNotFound) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		k++
	}
	if k < reported {
		t.Fatalf("%d events stored, %d reported durable", k, reported)
	}
	for i := k; i < len(evs); i++ {
		if _, err := db.Event(ctx, evs[i].EventID()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("event %d stored after a gap at %d: %v", i, k, err)
		}
	}
	last := r.Commit.EventID()
	if k > 0 {
		last = evs[k-1].EventID()
	}
	for i := range k {
		if s, err := db.StateAtEvent(ctx, evs[i].EventID()); err != nil || s != r.State() {
			t.Fatalf("state at event %d: %+v, %v", i, s, err)
		}
		refs, err := db.EventReferences(ctx, evs[i].EventID())
		want := []string{}
		if i+1 < k {
			want = []string{evs[i+1].EventID()}
		}
		if err != nil || !slices.Equal(refs, want) {
			t.Fatalf("edges of event %d: %v, %v; want %v", i, refs, err, want)
		}
	}
	if fx, err := db.ForwardExtremities(ctx, r.ID); err != nil || !slices.Equal(fx, []string{last}) {
		t.Fatalf("extremities after crash %v, %v; want [%s] (%d events)", fx, err, last, k)
	}
	if s, err := db.CurrentState(ctx, r.ID); err != nil || s.CommitID != last {
		t.Fatalf("current state after crash %+v, %v; want commit %s", s, err, last)
	}
	t.Logf("%s: %d events stored whole, %d reported", b.Name, k, reported)
}
