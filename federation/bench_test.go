package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/federation"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/internal/testdb"
)

// newBenchStack is newStack for benchmarks, on the backend's storage (a
// fresh SQLite file or PostgreSQL schema per server), logging warnings and
// errors only so the benchmark's output stays readable.
func newBenchStack(tb testing.TB, be testdb.Backend, names ...string) map[string]*homeserver {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return newStackOn(tb, func(tb testing.TB, _ string) string { return be.NewDSN(tb) }, logger, names...)
}

// benchShareRoom makes a room on creator's server whose federation map has
// servers, and joins joiner (a user of another server) to it as
// TestTwoServersShareARoom does; it returns the room ID once a message of
// creator has reached joiner's /sync, so both servers have the room.
func benchShareRoom(tb testing.TB, creator, joiner *testclient.Client, servers []string) string {
	tb.Helper()
	joiner.UploadKeys(2, true)
	joiner.Sync(0)
	creator.Sync(0)
	fm := testclient.FedMap([]string{servers[0]}, servers, nil)
	roomID := creator.CreateRoom(fm)
	kp := creator.ClaimKeyPackage(joiner.UserID, joiner.DeviceID)
	welcome := creator.Add(roomID, fm, kp)
	addID := creator.CommitID
	creator.Invite(roomID, joiner.UserID, joiner.DeviceID, welcome)
	joiner.JoinInvited(roomID, addID)
	sent := creator.SendMessage(roomID, "setup").Must(tb, 200, "setup message").Str("event_id")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		for _, ev := range testclient.Timeline(joiner.Sync(1000), roomID) {
			if ev["event_id"] == sent {
				if got := joiner.MessageText(ev); got != "setup" {
					tb.Fatalf("%s read %q", joiner.UserID, got)
				}
				return roomID
			}
		}
	}
	tb.Fatalf("the setup message %s never reached %s", sent, joiner.UserID)
	return ""
}

// BenchmarkReceiveTransaction measures inbound PUT /send on b.test of
// transactions of 50 m.room.encrypted PDUs from a.test, over HTTPS: the
// X-Matrix check, each PDU's parse and signature check, the auth rules,
// soft-fail and storage. The PDUs are real MLS application messages of
// alice, sent on a.test with its outbound queue stopped (so b.test has none
// of them) and read back from a.test's storage. Reported: PDUs per second
// for the whole process (the sending side's signing and HTTP run in it too)
// and that divided by GOMAXPROCS.
func BenchmarkReceiveTransaction(b *testing.B) {
	const perTxn = federation.MaxPDUsPerTransaction
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			hs := newBenchStack(b, be, "a.test", "b.test")
			a, bs := hs["a.test"], hs["b.test"]
			alice := testclient.New(b, a.url, a.client, "alice")
			bob := testclient.New(b, bs.url, bs.client, "bob")
			roomID := benchShareRoom(b, alice, bob, []string{"a.test", "b.test"})
			// a.test's queue drained (the last transaction answered), then
			// stopped: b.test gets the messages only from the benchmark.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				dests, err := a.db.OutboundDestinations(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(dests) == 0 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("a.test's outbound queue still holds items for %v", dests)
				}
			}
			a.sender.Stop()

			txns := make([]json.RawMessage, b.N)
			ids := make([][]string, b.N)
			for i := range txns {
				pdus := make([]json.RawMessage, perTxn)
				for j := range pdus {
					id := alice.SendMessage(roomID, fmt.Sprintf("message %d.%d", i, j)).Must(b, 200, "alice's message").Str("event_id")
					se, err := a.db.Event(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					pdus[j] = se.Event.JSON()
					ids[i] = append(ids[i], id)
				}
				body, err := json.Marshal(map[string]any{"origin": "a.test", "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus})
				if err != nil {
					b.Fatal(err)
				}
				txns[i] = body
			}
			client := a.fed.Client()
			b.ResetTimer()
			start := time.Now()
			for i, body := range txns {
				status, resp, err := client.Do(ctx, "b.test", http.MethodPut, fmt.Sprintf("/_matrix/federation/v1/send/bench%d", i), body)
				if err != nil {
					b.Fatal(err)
				}
				if status != http.StatusOK {
					b.Fatalf("transaction %d: status %d: %s", i, status, resp)
				}
				var answer struct {
					PDUs map[string]struct {
						Error *string `json:"error"`
					} `json:"pdus"`
				}
				if err := json.Unmarshal(resp, &answer); err != nil {
					b.Fatalf("transaction %d: %v: %s", i, err, resp)
				}
				for _, id := range ids[i] {
					r, ok := answer.PDUs[id]
					if !ok || r.Error != nil {
						b.Fatalf("transaction %d: PDU %s not accepted: %s", i, id, resp)
					}
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			rate := float64(b.N*perTxn) / elapsed.Seconds()
			b.ReportMetric(rate, "pdu/s")
			b.ReportMetric(rate/float64(runtime.GOMAXPROCS(0)), "pdu/s/core")
			// b.test stored them as accepted, not soft-failed.
			for _, i := range []int{0, b.N - 1} {
				se, err := bs.db.Event(ctx, ids[i][perTxn-1])
				if err != nil || se.Rejected || se.SoftFailed {
					b.Fatalf("PDU %s on b.test: %+v, %v", ids[i][perTxn-1], se, err)
				}
			}
		})
	}
}

// BenchmarkFederatedDelivery measures the time from alice's PUT /send on
// a.test to carol's /sync long-poll on c.test answering with the message:
// a.test's outbound queue, the transaction over HTTPS, c.test's ingestion
// and the wake of the poll. The room's servers are a.test, b.test and
// c.test (b.test has no user in it: a.test sends it every event too).
// Reported: median and p99 over b.N messages.
func BenchmarkFederatedDelivery(b *testing.B) {
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			hs := newBenchStack(b, be, "a.test", "b.test", "c.test")
			a, c := hs["a.test"], hs["c.test"]
			alice := testclient.New(b, a.url, a.client, "alice")
			carol := testclient.New(b, c.url, c.client, "carol")
			roomID := benchShareRoom(b, alice, carol, []string{"a.test", "b.test", "c.test"})
			carol.Sync(0)

			type answer struct {
				at     time.Time
				events []map[string]any
				err    error
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				answers := make(chan answer, 1)
				go func() {
					for {
						body, err := carol.TrySync(ctx, 30000)
						if err != nil {
							answers <- answer{err: err}
							return
						}
						if evs := testclient.Timeline(body, roomID); len(evs) > 0 {
							answers <- answer{at: time.Now(), events: evs}
							return
						}
					}
				}()
				// Measure delivery to a poll that is waiting.
				for deadline := time.Now().Add(10 * time.Second); c.rooms.LongPolls() < 1; {
					if time.Now().After(deadline) {
						b.Fatal("carol's /sync never waited")
					}
					time.Sleep(100 * time.Microsecond)
				}
				text := fmt.Sprintf("message %d", i)
				sent := time.Now()
				id := alice.SendMessage(roomID, text).Must(b, 200, "alice's message").Str("event_id")
				var ans answer
				select {
				case ans = <-answers:
				case <-time.After(10 * time.Second):
					b.Fatalf("message %d (%s) never reached carol's /sync on c.test", i, id)
				}
				if ans.err != nil {
					b.Fatal(ans.err)
				}
				k := slices.IndexFunc(ans.events, func(ev map[string]any) bool { return ev["event_id"] == id })
				if k < 0 {
					b.Fatalf("carol's /sync answered without %s: %v", id, ans.events)
				}
				lat = append(lat, ans.at.Sub(sent))
				b.StopTimer()
				if got := carol.MessageText(ans.events[k]); got != text {
					b.Fatalf("carol read %q, want %q", got, text)
				}
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
