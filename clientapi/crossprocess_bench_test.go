package clientapi_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/internal/testdb"
)

// BenchmarkCrossProcessDelivery measures the time from a message's PUT
// /send on one server stack until a /sync long-poll held on another stack
// returns it: two full stacks (roomserver, userapi, clientapi, each with its
// own storage handle) of one server name and signing key on one PostgreSQL
// schema, as two mlsserver processes behind a load balancer. Each message
// is sent once the poll waits on stack 2, so only PostgreSQL NOTIFY can
// wake it. It reports the median and 99th percentile
// over b.N messages (p50-ms, p99-ms).
func BenchmarkCrossProcessDelivery(b *testing.B) {
	pg := testdb.Backend{Name: "postgres", NewDSN: testdb.PostgresDSN}
	dsn := pg.NewDSN(b)
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	o := roomEnvOptions{serverName: "a.test", dsn: dsn, key: key}
	s1, s2 := newRoomEnv(b, pg, o), newRoomEnv(b, pg, o)
	hc := &http.Client{Timeout: time.Minute}

	alice := testclient.New(b, s1.url, hc, "alice")
	bob := testclient.New(b, s1.url, hc, "bob")
	alice.UploadKeys(1, false)
	bob.UploadKeys(1, false)
	bob.Sync(0)
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test"}, nil)
	roomID := alice.CreateRoom(fm)
	alice.Invite(roomID, bob.UserID, bob.DeviceID, alice.Add(roomID, fm, alice.ClaimKeyPackage(bob.UserID, bob.DeviceID)))
	bob.JoinInvited(roomID, alice.CommitID)
	bob.BaseURL = s2.url
	bob.Sync(0)

	type delivery struct {
		ev  map[string]any
		at  time.Time
		err error
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		got := make(chan delivery, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		go func() {
			for {
				body, err := bob.TrySync(ctx, 30000)
				if err != nil {
					got <- delivery{err: err}
					return
				}
				if evs := testclient.Timeline(body, roomID); len(evs) > 0 {
					got <- delivery{ev: evs[len(evs)-1], at: time.Now()}
					return
				}
			}
		}()
		// Send once the poll waits on stack 2 (not measured).
		b.StopTimer()
		for wait := time.Now(); s2.rooms.LongPolls() == 0; time.Sleep(time.Millisecond) {
			if time.Since(wait) > 10*time.Second {
				b.Fatalf("message %d: bob's /sync never waited on stack 2", i)
			}
		}
		b.StartTimer()
		sent := time.Now()
		id := alice.SendMessage(roomID, "bench").Must(b, 200, "send on stack 1").Str("event_id")
		d := <-got
		cancel()
		if d.err != nil {
			b.Fatal(d.err)
		}
		if d.ev["event_id"] != id {
			b.Fatalf("message %d: the poll on stack 2 returned %v, want %s", i, d.ev["event_id"], id)
		}
		lat = append(lat, d.at.Sub(sent))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
}

// percentile is the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
