//go:build interop

package interop

import (
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// ourMember is a member of the room on our own client: the story needs
// only these operations, so that the client behind them can change.
type ourMember interface {
	UserID() string
	DeviceID() string
	// UploadKeys uploads the credential and n key packages.
	UploadKeys(n int)
	// InitialSync runs the first /sync, before any invite.
	InitialSync()
	// CreateRoom creates a room and sends its epoch-0 commit with fm.
	CreateRoom(fm *fedmap.Map) (roomID string)
	// Add claims a key package of the device, commits adding it with fm,
	// waits for the commit to come back, sends the Welcome and invites the
	// user. It returns the commit's event ID and the Matrix identity in the
	// claimed key package's credential.
	Add(roomID string, fm *fedmap.Map, userID, deviceID string) (commitID string, added *mls.MatrixIdentity)
	// Commit commits no proposals, only the federation map fm, and waits
	// for it to come back.
	Commit(roomID string, fm *fedmap.Map) (commitID string)
	// JoinInvited waits for the invite and the Welcome of the commit
	// commitID and joins.
	JoinInvited(roomID, commitID string)
	// Send encrypts and sends an m.text message.
	Send(roomID, text string) (eventID string)
	// Await processes the room's events in order up to eventID and says
	// what that one was.
	Await(roomID, eventID string) received
	Epoch() uint64
	// Members lists the user IDs of the group's members in leaf order.
	Members() []string
	// Removed says whether a commit removed this member.
	Removed() bool
	// Credential reads the Matrix identity in the credential of a device
	// from /keys/query.
	Credential(userID, deviceID string) *mls.MatrixIdentity
}

// received is what a member made of one event.
type received struct {
	// Kind is "message", "commit", "own message", "own commit" or
	// "pending commit".
	Kind string
	// Text is a message's body.
	Text string
	// AuthenticatedData is the MLS authenticated data of a commit.
	AuthenticatedData []byte
}

// tcMember is ourMember on internal/testclient. It keeps the room's
// timeline events it synced but has not processed yet, in order.
type tcMember struct {
	t     *testing.T
	c     *testclient.Client
	queue []map[string]any
	seen  map[string]bool
	// own are the member's own events not processed yet: staged commits
	// (merged when they come back) and messages (nil).
	own map[string]*mls.StagedCommit
}

func newTCMember(t *testing.T, baseURL, name string, cs mls.CipherSuite) *tcMember {
	t.Helper()
	return &tcMember{t: t, c: testclient.NewWithSuite(t, baseURL, nil, name, cs), seen: map[string]bool{}, own: map[string]*mls.StagedCommit{}}
}

func (m *tcMember) UserID() string   { return m.c.UserID }
func (m *tcMember) DeviceID() string { return m.c.DeviceID }
func (m *tcMember) UploadKeys(n int) { m.c.UploadKeys(n, false) }
func (m *tcMember) InitialSync()     { m.c.Sync(0) }
func (m *tcMember) Epoch() uint64    { return m.c.Group.Epoch() }
func (m *tcMember) Removed() bool    { return m.c.Group.Removed() }
func (m *tcMember) Send(roomID, text string) string {
	m.t.Helper()
	id := m.c.SendMessage(roomID, text).Must(m.t, 200, m.c.UserID+" sending a message").Str("event_id")
	m.own[id] = nil
	return id
}

func (m *tcMember) Members() []string {
	m.t.Helper()
	var out []string
	for _, mem := range m.c.Group.Members() {
		id, err := mls.ParseMatrixIdentity(mem.LeafNode.Credential.Identity)
		if err != nil {
			m.t.Fatalf("%s: leaf %d: %v", m.c.UserID, mem.LeafIndex, err)
		}
		out = append(out, id.UserID)
	}
	return out
}

func (m *tcMember) CreateRoom(fm *fedmap.Map) string {
	m.t.Helper()
	return m.c.CreateRoom(fm)
}

// commit sends a staged commit and merges it when it comes back.
func (m *tcMember) commit(roomID string, sc *mls.StagedCommit, what string) string {
	m.t.Helper()
	id := m.c.PutCommit(roomID, sc).Must(m.t, 200, m.c.UserID+" "+what).Str("event_id")
	m.own[id] = sc
	if r := m.Await(roomID, id); r.Kind != "own commit" {
		m.t.Fatalf("%s: %s came back as %q", m.c.UserID, what, r.Kind)
	}
	return id
}

func (m *tcMember) Add(roomID string, fm *fedmap.Map, userID, deviceID string) (string, *mls.MatrixIdentity) {
	m.t.Helper()
	kp := m.c.ClaimKeyPackage(userID, deviceID)
	if kp.CipherSuite != m.c.CipherSuite {
		m.t.Fatalf("claimed key package of %s has suite %v, want %v", userID, kp.CipherSuite, m.c.CipherSuite)
	}
	id, err := mls.ParseMatrixIdentity(kp.LeafNode.Credential.Identity)
	if err != nil {
		m.t.Fatalf("claimed key package of %s: %v", userID, err)
	}
	sc := m.c.Stage(fm, []*mls.Proposal{{ProposalType: mls.ProposalTypeAdd, Add: &mls.Add{KeyPackage: *kp}}})
	if sc.Welcome == nil {
		m.t.Fatal("the add commit has no Welcome")
	}
	commitID := m.commit(roomID, sc, "adding "+userID)
	m.c.Invite(roomID, userID, deviceID, sc.Welcome)
	return commitID, id
}

func (m *tcMember) Commit(roomID string, fm *fedmap.Map) string {
	m.t.Helper()
	return m.commit(roomID, m.c.Stage(fm, nil), "commit")
}

func (m *tcMember) JoinInvited(roomID, commitID string) {
	m.t.Helper()
	m.c.JoinInvited(roomID, commitID)
}

// next returns the room's next timeline event, syncing for it.
func (m *tcMember) next(roomID string) map[string]any {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(m.queue) == 0 {
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: no further event in %s within 30 s", m.c.UserID, roomID)
		}
		for _, ev := range testclient.Timeline(m.c.Sync(1000), roomID) {
			id, _ := ev["event_id"].(string)
			if !m.seen[id] {
				m.seen[id] = true
				m.queue = append(m.queue, ev)
			}
		}
	}
	ev := m.queue[0]
	m.queue = m.queue[1:]
	return ev
}

func (m *tcMember) Await(roomID, eventID string) received {
	m.t.Helper()
	for {
		ev := m.next(roomID)
		r := m.process(ev)
		if ev["event_id"] == eventID {
			return r
		}
		if r.Kind == "commit" || r.Kind == "own commit" {
			m.t.Fatalf("%s: commit %v arrived before %s", m.c.UserID, ev["event_id"], eventID)
		}
	}
}

func (m *tcMember) process(ev map[string]any) received {
	m.t.Helper()
	id, _ := ev["event_id"].(string)
	if sc, ok := m.own[id]; ok {
		delete(m.own, id)
		if sc == nil {
			return received{Kind: "own message"}
		}
		if err := m.c.Group.Merge(sc); err != nil {
			m.t.Fatalf("%s merging its commit: %v", m.c.UserID, err)
		}
		m.c.CommitID = id
		return received{Kind: "own commit", AuthenticatedData: sc.Message.PrivateMessage.AuthenticatedData}
	}
	switch ev["type"] {
	case m.c.Version.PendingCommitType():
		return received{Kind: "pending commit"}
	case m.c.Version.CommitType():
		rec, err := m.c.Decrypt(ev)
		if err != nil {
			m.t.Fatalf("%s processing commit %s: %v", m.c.UserID, id, err)
		}
		if rec.Commit == nil {
			m.t.Fatalf("%s: %s is not a commit", m.c.UserID, id)
		}
		return received{Kind: "commit", AuthenticatedData: rec.AuthenticatedData}
	case "m.room.encrypted":
		return received{Kind: "message", Text: m.c.MessageText(ev)}
	}
	m.t.Fatalf("%s: unexpected event %s of type %v", m.c.UserID, id, ev["type"])
	return received{}
}

func (m *tcMember) Credential(userID, deviceID string) *mls.MatrixIdentity {
	m.t.Helper()
	t, c := m.t, m.c
	r := c.Do("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{userID: []string{}}}).Must(t, 200, "keys/query")
	dk, _ := r.Body["device_keys"].(map[string]any)
	user, _ := dk[userID].(map[string]any)
	dev, _ := user[deviceID].(map[string]any)
	keys, _ := dev["keys"].(map[string]any)
	v, _ := keys[c.Alg+":"+deviceID].(string)
	raw, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil || v == "" {
		t.Fatalf("keys/query: no credential %s:%s of %s: %s", c.Alg, deviceID, userID, r.Raw)
	}
	var cred mls.Credential
	if err := cred.UnmarshalMLS(raw); err != nil {
		t.Fatalf("keys/query: the credential of %s does not parse: %v", userID, err)
	}
	id, err := mls.ParseMatrixIdentity(cred.Identity)
	if err != nil {
		t.Fatalf("keys/query: the identity of %s: %v", userID, err)
	}
	return id
}

// checkFedMap checks that ad is the deterministic CBOR encoding of want,
// as our client decodes and encodes it.
func checkFedMap(ad []byte, want *fedmap.Map) error {
	got, err := client.FederationMap(&mls.Received{AuthenticatedData: ad})
	if err != nil {
		return fmt.Errorf("decoding the authenticated data %x: %w", ad, err)
	}
	f, w := got.Federation, want.Federation
	if !slices.Equal(f.Powers, w.Powers) || !slices.Equal(f.Servers, w.Servers) || !slices.Equal(f.CanPropose, w.CanPropose) {
		return fmt.Errorf("federation map %+v, want %+v", f, w)
	}
	enc, err := want.Encode()
	if err != nil {
		return err
	}
	if string(enc) != string(ad) {
		return fmt.Errorf("authenticated data %x is not the deterministic encoding %x", ad, enc)
	}
	return nil
}

// tryAwaitCommit processes the room's events up to the commit eventID,
// another member's, and returns the error processing it gives.
func (m *tcMember) tryAwaitCommit(roomID, eventID string) error {
	m.t.Helper()
	for {
		ev := m.next(roomID)
		if ev["event_id"] != eventID {
			m.process(ev)
			continue
		}
		_, err := m.c.Decrypt(ev)
		return err
	}
}
