package conformance

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// suiteRoom is a room made by the suite's servers: events signed by their
// keys, MLS ciphertexts that are header-valid (group ID, epoch, content
// type, the federation map as authenticated data) over random bytes,
// which is all a server reads.
type suiteRoom struct {
	c      *C
	id     string
	create *roomversion.Event
	seq    int
}

// newSuiteRoom makes the create event of a room of SuiteNameA.
func newSuiteRoom(c *C) *suiteRoom {
	r := &suiteRoom{c: c, id: fmt.Sprintf("!%sroom%d:%s", c.Env.Prefix, c.Env.seq.Add(1), SuiteNameA)}
	content, err := roomversion.V1.CreateContentJSON(testclient.Suite, true)
	if err != nil {
		c.Fatal(err)
	}
	r.create = r.build(SuiteNameA, &roomversion.Builder{Type: roomversion.EventTypeCreate, StateKey: new(string), Content: content})
	return r
}

func (r *suiteRoom) build(origin string, b *roomversion.Builder) *roomversion.Event {
	r.seq++
	b.Version, b.RoomID, b.Origin = roomversion.V1, r.id, origin
	b.Timestamp = time.Now().Add(-time.Minute).Add(time.Duration(r.seq) * time.Millisecond)
	ev, err := b.Build(context.Background(), SuiteKeyID, r.c.Env.Suite.Key(origin))
	if err != nil {
		r.c.Fatalf("building an event of the suite: %v", err)
	}
	r.c.Env.Suite.Serve(ev.JSON())
	return ev
}

// mlsContent is the content of an MLS event with a header-valid message.
func (r *suiteRoom) mlsContent(typ string, epoch uint64, ct mls.ContentType, ad []byte) []byte {
	body := make([]byte, 64)
	_, _ = rand.Read(body)
	binary.BigEndian.PutUint64(body, uint64(r.seq))
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(r.id), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: body[:28], Ciphertext: body,
	}}
	msg, err := m.MarshalMLS()
	if err != nil {
		r.c.Fatal(err)
	}
	content, err := roomversion.V1.MLSContent(typ, testclient.Suite, msg)
	if err != nil {
		r.c.Fatal(err)
	}
	return content
}

// commit is a commit by origin on parent (nil: the epoch-0 commit) with
// the federation map's powers and servers.
func (r *suiteRoom) commit(origin string, parent *roomversion.Event, powers, servers []string, prev ...*roomversion.Event) *roomversion.Event {
	ad, err := testclient.FedMap(powers, servers, nil).Encode()
	if err != nil {
		r.c.Fatal(err)
	}
	auth, epoch := []string{r.create.EventID()}, uint64(0)
	if parent != nil {
		auth, epoch = append(auth, parent.EventID()), parent.Epoch()+1
	}
	if len(prev) == 0 {
		prev = []*roomversion.Event{r.create}
		if parent != nil {
			prev = []*roomversion.Event{parent}
		}
	}
	typ := roomversion.V1.CommitType()
	return r.build(origin, &roomversion.Builder{Type: typ, StateKey: new(string), Content: r.mlsContent(typ, epoch, mls.ContentTypeCommit, ad),
		AuthEvents: auth, PrevEvents: eventIDs(prev...)})
}

// message is an m.room.encrypted event by origin on commit.
func (r *suiteRoom) message(origin string, commit *roomversion.Event, prev ...*roomversion.Event) *roomversion.Event {
	if len(prev) == 0 {
		prev = []*roomversion.Event{commit}
	}
	typ := roomversion.EventTypeEncrypted
	return r.build(origin, &roomversion.Builder{Type: typ, Content: r.mlsContent(typ, commit.Epoch()+1, mls.ContentTypeApplication, nil),
		AuthEvents: []string{r.create.EventID(), commit.EventID()}, PrevEvents: eventIDs(prev...)})
}

func eventIDs(evs ...*roomversion.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID()
	}
	return out
}

// invite sends the remote invite of invitee (a user of the server under
// test) from inviter's server to the server under test.
func invite(c *C, roomID, inviter, invitee string, create, commit json.RawMessage) (int, []byte) {
	path := "/_matrix/federation/unstable/de.bwi.mls/invite/" + url.PathEscape(roomID) + "/" + url.PathEscape(c.Env.Prefix+fmt.Sprint(c.Env.seq.Add(1)))
	status, body, err := c.Env.FedDo(context.Background(), roomversion.Domain(inviter), "PUT", path, map[string]any{
		"room_version": string(roomversion.V1), "inviter": inviter, "invitee": invitee, "create_event": create, "commit_event": commit})
	if err != nil {
		c.Fatalf("PUT invite: %v", err)
	}
	return status, body
}

// sendPDUs sends a /send transaction from origin and returns the status,
// the body and, for a 200, each PDU's error by event ID ("" accepted).
func sendPDUs(c *C, origin string, pdus ...json.RawMessage) (int, []byte, map[string]string) {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	txn := fmt.Sprintf("%stxn%d", c.Env.Prefix, c.Env.seq.Add(1))
	status, body, err := c.Env.FedDo(context.Background(), origin, "PUT", "/_matrix/federation/v1/send/"+txn,
		map[string]any{"origin": origin, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}})
	if err != nil {
		c.Fatalf("PUT /send: %v", err)
	}
	var out struct {
		PDUs map[string]struct {
			Error *string `json:"error"`
		} `json:"pdus"`
	}
	results := map[string]string{}
	if status == 200 {
		if err := json.Unmarshal(body, &out); err != nil {
			c.Fatalf("PUT /send: 200 with a body that is not a transaction answer: %s", clip(body))
		}
		for id, r := range out.PDUs {
			if r.Error != nil {
				results[id] = *r.Error
				if *r.Error == "" {
					results[id] = "(an empty error)"
				}
			} else {
				results[id] = ""
			}
		}
	}
	return status, body, results
}

// joinedSuiteRoom makes a suite room (create, epoch-0 commit of
// SuiteNameA with powers [A] and servers [A, server under test]), invites
// a fresh user of the server under test and has it join.
func joinedSuiteRoom(c *C) (*suiteRoom, *roomversion.Event, *testclient.Client) {
	u := c.User("fed")
	u.Sync(0)
	room := newSuiteRoom(c)
	c0 := room.commit(SuiteNameA, nil, []string{SuiteNameA}, []string{SuiteNameA, c.Env.ServerName})
	status, body := invite(c, room.id, "@inviter:"+SuiteNameA, u.UserID, room.create.JSON(), c0.JSON())
	if status != 200 {
		c.Fatalf("PUT invite of %s to a room whose commit lists the server: %d %s", u.UserID, status, clip(body))
	}
	for range 10 {
		body := u.Sync(1000)
		rooms, _ := body["rooms"].(map[string]any)
		inv, _ := rooms["invite"].(map[string]any)
		if ir, ok := inv[room.id].(map[string]any); ok {
			checkInviteState(c, ir, room, u.UserID)
			r := u.Do("POST", testclient.RoomPath(room.id, "/join"), map[string]any{})
			expect(c, r, "POST /rooms/{roomId}/join of an invited room", 200, "", "")
			return room, c0, u
		}
	}
	c.Fatalf("/sync: the invite to %s never came", room.id)
	return nil, nil, nil
}

// checkInviteState checks an invite in /sync (SPEC-NOTES §11): stripped
// state of the create event and an m.room.member invite of the invitee
// whose sender is the inviter.
func checkInviteState(c *C, ir map[string]any, room *suiteRoom, invitee string) {
	st, _ := ir["invite_state"].(map[string]any)
	evs, _ := st["events"].([]any)
	var create, member bool
	for _, e := range evs {
		ev, _ := e.(map[string]any)
		content, _ := ev["content"].(map[string]any)
		switch ev["type"] {
		case roomversion.EventTypeCreate:
			create = true
		case "m.room.member":
			member = ev["state_key"] == invitee && content["membership"] == "invite" && ev["sender"] == "@inviter:"+SuiteNameA
		}
	}
	if !create || !member {
		c.Errorf("/sync rooms.invite[%s].invite_state: want the create event and an m.room.member invite of %s sent by @inviter:%s: %v", room.id, invitee, SuiteNameA, ir)
	}
}
