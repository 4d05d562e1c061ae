package clientapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// benchRoom is a room with alice as its MLS creator and epoch-0 commit.
func benchRoom(b *testing.B, be testdb.Backend) (*roomEnv, *mlsUser, string) {
	e := newRoomEnv(b, be, roomEnvOptions{})
	alice := newMLSUser(e, "alice")
	roomID := alice.createRoom(fedMap([]string{"a.test"}, []string{"a.test"}, nil))
	return e, alice, roomID
}

// BenchmarkSend measures PUT /send of m.room.encrypted, sequentially, per
// backend (ns/op; req/s).
func BenchmarkSend(b *testing.B) {
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e, alice, roomID := benchRoom(b, be)
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = mustJSONB(b, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessageB(b, alice.group)))
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				r := e.do("PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.encrypted/b%d", i)), alice.token, bodies[i])
				if r.status != 200 {
					b.Fatalf("send: %d %s", r.status, r.raw)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkSyncDelivery measures the time from a PUT /send until each of
// 100 clients long-polling /sync has the message (median and p99 over
// every delivery).
func BenchmarkSyncDelivery(b *testing.B) {
	const pollers = 100
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e, alice, roomID := benchRoom(b, be)
			type poller struct{ token, since string }
			ps := make([]*poller, pollers)
			for i := range ps {
				_, _, tok := e.register(fmt.Sprintf("p%d", i))
				e.do("POST", roomPath(roomID, "/invite"), alice.token, map[string]string{"user_id": fmt.Sprintf("@p%d:a.test", i)}).must(b, 200, "invite")
				e.do("POST", roomPath(roomID, "/join"), tok, nil).must(b, 200, "join")
				r := e.do("GET", "/_matrix/client/v3/sync", tok, nil).must(b, 200, "initial sync")
				ps[i] = &poller{token: tok, since: r.str("next_batch")}
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = mustJSONB(b, mlsContent(alice.v, roomversion.EventTypeEncrypted, alice.alg, appMessageB(b, alice.group)))
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers + 10}}
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				var wg sync.WaitGroup
				got := make([]time.Time, pollers)
				ready := make(chan struct{}, pollers)
				for j, p := range ps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ready <- struct{}{}
						for {
							req, _ := http.NewRequest("GET", e.url+"/_matrix/client/v3/sync?timeout=30000&since="+url.QueryEscape(p.since), nil)
							req.Header.Set("Authorization", "Bearer "+p.token)
							res, err := client.Do(req)
							if err != nil {
								b.Error(err)
								return
							}
							var body map[string]any
							err = json.NewDecoder(res.Body).Decode(&body)
							res.Body.Close()
							if err != nil {
								b.Error(err)
								return
							}
							p.since, _ = body["next_batch"].(string)
							if len(timeline(body, roomID)) > 0 {
								got[j] = time.Now()
								return
							}
						}
					}()
				}
				for range pollers {
					<-ready
				}
				// Measure delivery to polls that are waiting.
				for e.rooms.LongPolls() < pollers {
					time.Sleep(time.Millisecond)
				}
				sent := time.Now()
				r := e.do("PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.encrypted/d%d", i)), alice.token, bodies[i])
				if r.status != 200 {
					b.Fatalf("send: %d %s", r.status, r.raw)
				}
				wg.Wait()
				for _, g := range got {
					lat = append(lat, g.Sub(sent))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkKeysUpload100 measures POST /keys/upload of 100 key packages
// (every one parsed and checked).
func BenchmarkKeysUpload100(b *testing.B) {
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e := newRoomEnv(b, be, roomEnvOptions{})
			u := newMLSUser(e, "kim")
			u.uploadKeys(0, false)
			bodies := make([]map[string]any, b.N)
			for i := range bodies {
				otks := map[string]string{}
				for range 100 {
					id, val := u.newKeyPackage()
					otks[id] = val
				}
				bodies[i] = map[string]any{"one_time_keys": otks}
			}
			b.ResetTimer()
			for i := range b.N {
				r := e.do("POST", "/_matrix/client/v3/keys/upload", u.token, bodies[i])
				if r.status != 200 {
					b.Fatalf("upload: %d %s", r.status, r.raw)
				}
			}
		})
	}
}

func mustJSONB(b *testing.B, v any) []byte {
	js, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

func appMessageB(b *testing.B, g *mls.Group) []byte {
	m, err := g.Encrypt([]byte(`{"type":"m.room.message","content":{"body":"x"}}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	w, err := m.MarshalMLS()
	if err != nil {
		b.Fatal(err)
	}
	return w
}
