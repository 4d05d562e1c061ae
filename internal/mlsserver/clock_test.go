package mlsserver

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/commitqueue"
	"github.com/mlsmode/mlsmode/internal/testclient"
)

func TestNewClockDefaultIsReal(t *testing.T) {
	if _, ok := newClock(clockConfig{Speed: 1}).(scaledClock); ok {
		t.Error("the default clock settings give a scaled clock, want the system clock")
	}
	if c := newClock(clockConfig{Speed: 1, Start: "2026-01-01T00:00:00Z", start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}); c != commitqueue.RealClock() {
		t.Errorf("a start alone gives %T, want the system clock", c)
	}
}

func TestScaledClockNow(t *testing.T) {
	// Started 10 real seconds ago at speed 60 with an offset of an hour:
	// 10 virtual minutes and an hour ahead of the real time at start.
	start := time.Now().Add(-10 * time.Second)
	c := newClock(clockConfig{Offset: time.Hour, Speed: 60, start: start})
	got := c.Now()
	want := start.Add(time.Hour + 10*time.Minute)
	if d := got.Sub(want); d < 0 || d > 5*time.Second {
		t.Errorf("Now() = %v, want %v (+ at most 5 s of test time x 60)", got, want)
	}
	// Two clocks with the same settings agree (servers sharing a start).
	other := newClock(clockConfig{Offset: time.Hour, Speed: 60, start: start})
	first := c.Now()
	if d := other.Now().Sub(first); d < 0 || d > 5*time.Second {
		t.Errorf("clocks with the same start differ by %v", d)
	}
	// Offset alone: the real time shifted.
	c = newClock(clockConfig{Offset: -48 * time.Hour, Speed: 1})
	if d := time.Since(c.Now()) - 48*time.Hour; d < 0 || d > time.Second {
		t.Errorf("offset -48h: Now() is %v behind, want 48h", time.Since(c.Now()))
	}
	// A zero start means the server's start: the clock reads about
	// real time + offset at first.
	c = newClock(clockConfig{Speed: 1000})
	if d := time.Until(c.Now()); d < -time.Second || d > 5*time.Second {
		t.Errorf("speed 1000 from now: Now() is %v off the real time", d)
	}
}

func TestScaledClockAfter(t *testing.T) {
	c := newClock(clockConfig{Speed: 600})
	begin := time.Now()
	v0 := c.Now()
	// A virtual minute at speed 600 is 100 ms of real time.
	at := <-c.After(time.Minute)
	took := time.Since(begin)
	if took < 90*time.Millisecond || took > 2*time.Second {
		t.Errorf("After(1 min) at speed 600 took %v of real time, want about 100 ms", took)
	}
	if at.Sub(v0) < time.Minute {
		t.Errorf("After(1 min) sent %v, less than a virtual minute after %v", at, v0)
	}
	select {
	case <-c.After(0):
	case <-time.After(time.Second):
		t.Error("After(0) did not fire at once")
	}
	select {
	case <-c.After(-time.Hour):
	case <-time.After(time.Second):
		t.Error("After(-1h) did not fire at once")
	}
	// A long virtual wait does not fire early.
	select {
	case <-c.After(time.Hour): // 6 real seconds
		t.Error("After(1 h) at speed 600 fired within 200 ms")
	case <-time.After(200 * time.Millisecond):
	}
}

// The clock settings reach the room server: the events of a room created
// on a server 48 hours ahead carry timestamps 48 hours ahead; the server
// warns that its clock is changed.
func TestServeClockOffset(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "data"), "--server-name", "clock.test", "--clock-offset", "48h")
	if !strings.Contains(s.logs.String(), "clock changed by the clock settings") {
		t.Errorf("no warning about the changed clock in the logs:\n%s", s.logs)
	}
	alice := testclient.New(t, s.url, s.client, "alice")
	r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{
		"room_version": string(alice.Version), "creation_content": map[string]any{"algorithm": alice.Alg}}).Must(t, 200, "createRoom")
	roomID := r.Str("room_id")
	r = alice.Do("GET", testclient.RoomPath(roomID, "/state"), nil).Must(t, 200, "room state")
	var evs []map[string]any
	if err := json.Unmarshal(r.Raw, &evs); err != nil {
		t.Fatalf("room state: %v: %s", err, r.Raw)
	}
	found := false
	for _, ev := range evs {
		if ev["type"] != "m.room.create" {
			continue
		}
		found = true
		ts, _ := ev["origin_server_ts"].(float64)
		ahead := time.Until(time.UnixMilli(int64(ts)))
		if ahead < 47*time.Hour || ahead > 49*time.Hour {
			t.Errorf("m.room.create origin_server_ts is %v ahead of the real time, want 48h", ahead)
		}
	}
	if !found {
		t.Fatalf("no m.room.create in the room state: %s", r.Raw)
	}
}
