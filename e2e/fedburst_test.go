//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Burst sizes of TestFedBurstSurvivesSIGKILL.
const (
	burstTotal   = 1000 // messages alice has ready to send
	burstKillAt  = 300  // a.test is killed once this many sends were answered 200
	burstWorkers = 4    // concurrent senders (one device, one MLS group)
)

// burstMsg is one message of the burst: its text, its content (an MLS
// PrivateMessage encrypted before the burst starts, in index order) and
// the outcome of its send.
type burstMsg struct {
	text    string
	content map[string]string
	// started: the PUT was begun; eventID: a.test answered 200 with it.
	started bool
	eventID string
}

// Issue 15: nothing accepted is lost across SIGKILL. alice on a.test sends
// a burst of m.room.encrypted messages (real MLS, 4 concurrent senders) to
// a room of a.test, b.test and c.test; a.test is killed (SIGKILL) once 300
// sends were answered 200, with sends in flight, and restarted on its data
// dir. The link a.test -> c.test is cut during the burst, so c.test's share
// is all in a.test's queue at the kill; b.test gets it live, a
// transaction possibly cut. Within 60 s of the restart every send a.test
// answered 200 is on b.test and c.test exactly once (their /messages,
// paged forward through the whole room), and bob's and carol's /sync
// deliver it exactly once, decryptable; a.test still has it too. Events on
// b.test or c.test beyond those are allowed only if they are sends that
// were in flight at the kill (unanswered) and a.test has them after its
// restart. All of it came from a.test's queue: a.test served no event
// fetches (get_missing_events would heal a lost queue item from a later
// one, out of /messages' sight). Finally alice's next message makes b.test
// and c.test fetch what a.test stored but did not queue before it died:
// the three servers then hold the same events.
func TestFedBurstSurvivesSIGKILL(t *testing.T) {
	begin := time.Now()
	h := newFedHarness(t, 1, "a.test", "b.test", "c.test")
	fm := testclient.FedMap([]string{"a.test"}, []string{"a.test", "b.test", "c.test"}, nil)
	alice, bob, carol, roomID, _ := h.threeServerRoom(t, fm)

	// The room's events on b and c before the burst, and their members'
	// /sync positions there: what comes later is the burst's.
	members := []*testclient.Client{bob, carol}
	servers := []string{"b.test", "c.test"}
	before := map[string]map[string]bool{}
	for i, c := range members {
		syncTimeline(t, c, roomID, 0)
		before[servers[i]] = map[string]bool{}
		for _, ev := range pageMessages(t, c, roomID) {
			before[servers[i]][eventID(ev)] = true
		}
	}
	t.Logf("room %s with alice, bob and carol after %v", roomID, time.Since(begin).Round(time.Millisecond))

	// alice's messages, encrypted in order before the burst.
	msgs := make([]*burstMsg, burstTotal)
	byCiphertext := map[string]int{}
	for i := range msgs {
		text := fmt.Sprintf("burst %d", i)
		pt, err := json.Marshal(map[string]any{"type": "m.room.message", "content": map[string]string{"msgtype": "m.text", "body": text}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := alice.Group.Encrypt(pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		content := testclient.Content(roomversion.EventTypeEncrypted, alice.Alg, testclient.Wire(t, m))
		msgs[i] = &burstMsg{text: text, content: content}
		byCiphertext[content["ciphertext"]] = i
	}

	// The burst: burstWorkers goroutines send the messages in index order
	// until a send fails (a.test is dead) or they run out.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: burstWorkers}}
	defer hc.CloseIdleConnections()
	sendPath := func(txn string) string {
		return alice.BaseURL + testclient.RoomPath(roomID, "/send/m.room.encrypted/"+txn) +
			"?de.bwi.mls.commit_id=" + url.QueryEscape(alice.CommitID)
	}
	var (
		mu         sync.Mutex // guards msgs' outcomes, failures, unexpected
		next       atomic.Int64
		nAccepted  atomic.Int64
		killed     atomic.Bool
		failures   []string // transport errors: a.test died
		unexpected []string // answers other than 200 {"event_id"}
		wg         sync.WaitGroup
	)
	// c.test gets none of the burst before the kill: its share is all in
	// a.test's queue when a.test dies. b.test gets it live.
	h.Block("a.test", "c.test")
	burstStart := time.Now()
	for range burstWorkers {
		wg.Go(func() {
			for !killed.Load() {
				i := int(next.Add(1) - 1)
				if i >= burstTotal {
					return
				}
				body, err := json.Marshal(msgs[i].content)
				if err != nil {
					panic(err)
				}
				req, err := http.NewRequest("PUT", sendPath(alice.NextTxn()), bytes.NewReader(body))
				if err != nil {
					panic(err)
				}
				req.Header.Set("Authorization", "Bearer "+alice.Token)
				mu.Lock()
				msgs[i].started = true
				mu.Unlock()
				status, raw, err := doRaw(hc, req)
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("message %d: %v", i, err))
					mu.Unlock()
					return
				}
				var out struct {
					EventID string `json:"event_id"`
				}
				if status != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.EventID == "" {
					unexpected = append(unexpected, fmt.Sprintf("message %d: %d %s", i, status, raw))
					mu.Unlock()
					return
				}
				msgs[i].eventID = out.EventID
				mu.Unlock()
				nAccepted.Add(1)
			}
		})
	}
	for nAccepted.Load() < burstKillAt && next.Load() < burstTotal {
		time.Sleep(time.Millisecond)
	}
	atKill := nAccepted.Load()
	firstA := h.server("a.test").proc // its logs outlive it
	h.Kill("a.test")
	killed.Store(true)
	killedAt := time.Now()
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("a.test refused sends of the burst before it was killed: %v", unexpected)
	}
	if next.Load() >= burstTotal && len(failures) == 0 {
		t.Fatalf("the whole burst of %d was sent before a.test was killed: no send was cut", burstTotal)
	}
	accepted := map[string]int{} // event ID -> message index
	var inFlight []int           // begun, not answered 200
	for i, m := range msgs {
		switch {
		case m.eventID != "":
			if j, dup := accepted[m.eventID]; dup {
				t.Fatalf("a.test answered messages %d and %d with one event ID %s", j, i, m.eventID)
			}
			accepted[m.eventID] = i
		case m.started:
			inFlight = append(inFlight, i)
		}
	}
	t.Logf("burst: %d sends answered 200 in %v (%d when the kill was decided), %d begun and unanswered at the kill: %v",
		len(accepted), killedAt.Sub(burstStart).Round(time.Millisecond), atKill, len(inFlight), inFlight)
	if len(accepted) < burstKillAt {
		t.Fatalf("only %d sends answered 200, want at least %d", len(accepted), burstKillAt)
	}

	// What b and c lack while a.test is down: the restarted a.test must
	// send it from its queue.
	missingOn := func(evs []map[string]any) int {
		have := map[string]bool{}
		for _, ev := range evs {
			have[eventID(ev)] = true
		}
		n := 0
		for id := range accepted {
			if !have[id] {
				n++
			}
		}
		return n
	}
	missing := map[string]int{}
	for k, c := range members {
		missing[servers[k]] = missingOn(pageMessages(t, c, roomID))
	}
	t.Logf("accepted events missing while a.test is down: %v", missing)
	if missing["c.test"] != len(accepted) {
		t.Fatalf("c.test has %d of the %d accepted events although a.test -> c.test was blocked", len(accepted)-missing["c.test"], len(accepted))
	}
	h.Unblock("a.test", "c.test")

	h.Restart("a.test")
	restarted := time.Now()
	t.Logf("a.test down for %v", restarted.Sub(killedAt).Round(time.Millisecond))

	// Catch-up: poll b's and c's /messages until every accepted event is
	// there; bob and carol sync meanwhile.
	synced := map[string]map[string]int{"b.test": {}, "c.test": {}}
	var syncOrder [2][]map[string]any // burst events in /sync order
	pollSync := func() {
		for k, c := range members {
			evs, limited := syncTimeline(t, c, roomID, 0)
			if limited {
				t.Fatalf("%s: a /sync timeline of %d events is limited: events were skipped", c.UserID, len(evs))
			}
			for _, ev := range evs {
				id := eventID(ev)
				synced[servers[k]][id]++
				if _, ok := accepted[id]; ok || !before[servers[k]][id] {
					syncOrder[k] = append(syncOrder[k], ev)
				}
			}
		}
	}
	var caughtUp time.Duration
	for deadline := restarted.Add(60 * time.Second); ; {
		pollSync()
		done := true
		for k, c := range members {
			missing[servers[k]] = missingOn(pageMessages(t, c, roomID))
			done = done && missing[servers[k]] == 0
		}
		if done {
			caughtUp = time.Since(restarted)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after a.test's restart, accepted events still missing (of %d): %v", len(accepted), missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("b.test and c.test have all %d accepted events %v after a.test's restart (%v after the kill)",
		len(accepted), caughtUp.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))

	// Anything still to come (a retried transaction, a duplicate) has a
	// few seconds to show.
	time.Sleep(3 * time.Second)
	pollSync()

	// a.test itself kept every event it answered 200 for.
	onA := map[string]map[string]any{}
	aCount := map[string]int{}
	for _, ev := range pageMessages(t, alice, roomID) {
		onA[eventID(ev)] = ev
		aCount[eventID(ev)]++
	}
	for id, i := range accepted {
		if aCount[id] != 1 {
			t.Errorf("a.test's /messages after its restart has accepted message %d (%s) %d times, want once", i, id, aCount[id])
		}
	}
	// Where the sends in flight at the kill ended up (for the log: either
	// outcome is allowed).
	inFlightOn := func(evs []map[string]any) []int {
		var out []int
		for _, ev := range evs {
			content, _ := ev["content"].(map[string]any)
			ct, _ := content["ciphertext"].(string)
			if i, ok := byCiphertext[ct]; ok && msgs[i].eventID == "" {
				out = append(out, i)
			}
		}
		sort.Ints(out)
		return out
	}
	aEvents := make([]map[string]any, 0, len(onA))
	for _, ev := range onA {
		aEvents = append(aEvents, ev)
	}
	t.Logf("of the sends in flight at the kill, a.test stored %v; b.test has %v, c.test %v",
		inFlightOn(aEvents), inFlightOn(pageMessages(t, bob, roomID)), inFlightOn(pageMessages(t, carol, roomID)))
	// extraOK reports whether an event on b or c beyond the accepted ones
	// is a send that was in flight at the kill, stored by a.test.
	extraOK := func(ev map[string]any) (int, bool) {
		content, _ := ev["content"].(map[string]any)
		ct, _ := content["ciphertext"].(string)
		i, ok := byCiphertext[ct]
		if !ok || ev["type"] != roomversion.EventTypeEncrypted || ev["origin"] != "a.test" ||
			msgs[i].eventID != "" || !msgs[i].started || onA[eventID(ev)] == nil {
			return -1, false
		}
		return i, true
	}

	for k, c := range members {
		server := servers[k]
		count := map[string]int{}
		evs := pageMessages(t, c, roomID)
		for _, ev := range evs {
			count[eventID(ev)]++
		}
		for id, i := range accepted {
			if count[id] != 1 {
				t.Errorf("%s /messages: accepted message %d (%s) %d times, want once", server, i, id, count[id])
			}
		}
		var extras []int
		for _, ev := range evs {
			id := eventID(ev)
			if _, ok := accepted[id]; ok || before[server][id] {
				continue
			}
			i, ok := extraOK(ev)
			if !ok {
				t.Errorf("%s /messages: event %s (%v of %v) was not accepted by a.test, nor is it a send in flight at the kill that a.test stored", server, id, ev["type"], ev["origin"])
				continue
			}
			if count[id] != 1 {
				t.Errorf("%s /messages: the unanswered message %d (%s) %d times", server, i, id, count[id])
			}
			extras = append(extras, i)
		}
		sort.Ints(extras)
		if len(extras) > 0 {
			t.Logf("%s also has %d sends unanswered at the kill that a.test had stored: %v", server, len(extras), extras)
		}
		if got, want := len(evs), len(before[server])+len(accepted)+len(extras); got != want {
			t.Errorf("%s /messages: %d events, want %d (%d before the burst, %d accepted, %d unanswered but stored)",
				server, got, want, len(before[server]), len(accepted), len(extras))
		}

		// /sync delivered each accepted event once; the member decrypts
		// all of the burst's events in /sync order.
		for id, i := range accepted {
			if n := synced[server][id]; n != 1 {
				t.Errorf("%s: accepted message %d (%s) came %d times in /sync, want once", c.UserID, i, id, n)
			}
		}
		decrypted := 0
		for _, ev := range syncOrder[k] {
			id := eventID(ev)
			if synced[server][id] != 1 {
				continue // reported above, or an extra reported through /messages
			}
			i, ok := accepted[id]
			if !ok {
				if i, ok = extraOK(ev); !ok {
					t.Errorf("%s: /sync has event %s (%v of %v), neither accepted nor in flight at the kill", c.UserID, id, ev["type"], ev["origin"])
					continue
				}
			}
			rec, err := c.Decrypt(ev)
			if err != nil {
				t.Errorf("%s decrypting message %d (%s): %v", c.UserID, i, id, err)
				continue
			}
			var pt struct {
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			}
			if err := json.Unmarshal(rec.Application, &pt); err != nil || pt.Content.Body != msgs[i].text {
				t.Errorf("%s: %s decrypts to %q (%v), want %q", c.UserID, id, rec.Application, err, msgs[i].text)
				continue
			}
			decrypted++
		}
		t.Logf("%s decrypted %d burst messages from /sync", c.UserID, decrypted)
	}

	// b and c got the burst from a.test's queue, in order: neither had to
	// fetch an event from a.test (a lost queue item would be healed that
	// way, hidden from /messages, when a later one arrives).
	if n := fetchesServed(firstA.logs.String()) + fetchesServed(h.server("a.test").proc.logs.String()); n > 0 {
		t.Errorf("a.test served %d event fetches (get_missing_events, event, backfill) before alice's next message: the burst did not all come from its queue", n)
	}

	// alice's next message names a.test's forward extremities, so b.test
	// and c.test fetch any unanswered send a.test stored but did not
	// queue for them: then the three servers hold the same events.
	afterID := alice.SendMessage(roomID, "after the restart").Must(t, 200, "alice's message after the restart").Str("event_id")
	for _, c := range members {
		awaitFiltered(t, c, roomID, afterID, 20*time.Second, func(ev map[string]any) {
			if got := c.MessageText(ev); got != "after the restart" {
				t.Errorf("%s decrypted %q", c.UserID, got)
			}
		})
	}
	idSet := func(c *testclient.Client) map[string]bool {
		out := map[string]bool{}
		for _, ev := range pageMessages(t, c, roomID) {
			out[eventID(ev)] = true
		}
		return out
	}
	onServer := map[string]map[string]bool{"a.test": idSet(alice), "b.test": idSet(bob), "c.test": idSet(carol)}
	for _, server := range servers {
		for id := range onServer["a.test"] {
			if !onServer[server][id] {
				t.Errorf("after alice's next message, %s lacks %s, which a.test has", server, id)
			}
		}
		for id := range onServer[server] {
			if !onServer["a.test"][id] {
				t.Errorf("after alice's next message, %s has %s, which a.test lacks", server, id)
			}
		}
	}
	t.Logf("after alice's next message a.test, b.test and c.test hold %d, %d, %d events", len(onServer["a.test"]), len(onServer["b.test"]), len(onServer["c.test"]))

	t.Logf("whole scenario: %v", time.Since(begin).Round(time.Millisecond))
	if el := time.Since(begin); el > 120*time.Second {
		t.Fatalf("took %v, want at most 120 s", el)
	}
}

// doRaw runs req and reads the whole answer; any transport error (the
// server died mid-request) is returned.
func doRaw(hc *http.Client, req *http.Request) (int, []byte, error) {
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	return res.StatusCode, raw, nil
}

// eventID is an event's event_id.
func eventID(ev map[string]any) string {
	id, _ := ev["event_id"].(string)
	return id
}

// pageMessages returns every event of the room as the user's server has
// them, paging /messages forward from the start.
func pageMessages(t *testing.T, c *testclient.Client, roomID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	from := ""
	for range 100 {
		path := "/messages?dir=f&limit=200"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := c.Do("GET", testclient.RoomPath(roomID, path), nil).Must(t, 200, c.UserID+" /messages")
		chunk, _ := r.Body["chunk"].([]any)
		for _, e := range chunk {
			if ev, ok := e.(map[string]any); ok {
				out = append(out, ev)
			}
		}
		end := r.Str("end")
		if end == "" {
			return out
		}
		if end == from {
			t.Fatalf("%s /messages: end %q does not move", c.UserID, end)
		}
		from = end
	}
	t.Fatalf("%s /messages: more than 100 pages", c.UserID)
	return nil
}

// syncTimeline runs one /sync of c from c.Since with a timeline limit
// above the burst, and returns the room's timeline events and whether the
// timeline was limited.
func syncTimeline(t *testing.T, c *testclient.Client, roomID string, timeoutMS int) ([]map[string]any, bool) {
	t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d&filter=%s", timeoutMS,
		url.QueryEscape(fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, 2*burstTotal)))
	if c.Since != "" {
		path += "&since=" + url.QueryEscape(c.Since)
	}
	r := c.Do("GET", path, nil).Must(t, 200, c.UserID+" /sync")
	next := r.Str("next_batch")
	if next == "" {
		t.Fatalf("%s /sync: no next_batch: %s", c.UserID, r.Raw)
	}
	c.Since = next
	rooms, _ := r.Body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	room, _ := join[roomID].(map[string]any)
	tl, _ := room["timeline"].(map[string]any)
	limited, _ := tl["limited"].(bool)
	return testclient.Timeline(r.Body, roomID), limited
}

// awaitFiltered syncs c (with syncTimeline) until eventID is in the room's
// timeline and hands it to f.
func awaitFiltered(t *testing.T, c *testclient.Client, roomID, eventID string, within time.Duration, f func(map[string]any)) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		evs, _ := syncTimeline(t, c, roomID, 1000)
		for _, ev := range evs {
			if ev["event_id"] == eventID {
				f(ev)
				return
			}
		}
	}
	t.Fatalf("%s: %s not in the timeline of %s within %v", c.UserID, eventID, roomID, within)
}

// fetchesServed counts the requests for events a server's federation
// listener answered (get_missing_events, event, backfill) in its logs.
func fetchesServed(logs string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "msg=request") {
			continue
		}
		for _, p := range []string{"path=/_matrix/federation/v1/get_missing_events/", "path=/_matrix/federation/v1/event/", "path=/_matrix/federation/v1/backfill/"} {
			if strings.Contains(line, p) {
				n++
			}
		}
	}
	return n
}
