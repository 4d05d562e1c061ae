package clientapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// suite is the tests' MLS cipher suite.
const suite = mls.X25519AES128GCMSHA256Ed25519

// mlsUser is a real MLS client of one device, talking to a roomEnv over
// HTTP.
type mlsUser struct {
	t        testing.TB
	e        *roomEnv
	userID   string
	deviceID string
	token    string
	signer   *mls.Signer
	cred     mls.Credential
	v        roomversion.Version
	alg      string
	// kps are the uploaded key packages by key ID, with their secrets.
	kps   map[string]*keyPackage
	group *mls.Group
	// commitID is the commit the group is at ("" before epoch 0).
	commitID string
	// since is the last /sync token.
	since string
	// kept is a copy of the group kept at commit keptAt (keep).
	kept   *mls.Group
	keptAt string
}

// keep copies the group's current state, as a client keeps past states.
func (u *mlsUser) keep() {
	u.t.Helper()
	b, err := u.group.MarshalState()
	if err != nil {
		u.t.Fatal(err)
	}
	if u.kept, err = mls.LoadGroup(b, mls.GroupConfig{}); err != nil {
		u.t.Fatal(err)
	}
	u.keptAt = u.commitID
}

type keyPackage struct {
	kp  *mls.KeyPackage
	sec *mls.KeyPackageSecrets
}

// newMLSUser registers name and makes its MLS signer and credential.
func newMLSUser(e *roomEnv, name string) *mlsUser {
	e.t.Helper()
	u := &mlsUser{t: e.t, e: e, v: roomversion.V1, kps: map[string]*keyPackage{}}
	u.userID, u.deviceID, u.token = e.register(name)
	var err error
	if u.signer, err = mls.GenerateSigner(suite); err != nil {
		e.t.Fatal(err)
	}
	if u.cred, err = mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: u.userID, DeviceID: u.deviceID, SignatureKey: u.signer.PublicKey()}); err != nil {
		e.t.Fatal(err)
	}
	if u.alg, err = u.v.Algorithm(suite); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// newKeyPackage makes a key package and returns its key ID and value.
func (u *mlsUser) newKeyPackage() (string, string) {
	u.t.Helper()
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: u.signer, Credential: u.cred, Capabilities: client.Capabilities()})
	if err != nil {
		u.t.Fatal(err)
	}
	ref, err := kp.Ref()
	if err != nil {
		u.t.Fatal(err)
	}
	wire, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp}).MarshalMLS()
	if err != nil {
		u.t.Fatal(err)
	}
	id := u.alg + ":" + base64.RawStdEncoding.EncodeToString(ref)
	u.kps[id] = &keyPackage{kp, sec}
	return id, base64.RawStdEncoding.EncodeToString(wire)
}

// uploadKeys uploads the device keys with the credential, n one-time key
// packages and, if fallback, a fallback one; it returns the counts.
func (u *mlsUser) uploadKeys(n int, fallback bool) map[string]any {
	u.t.Helper()
	credBytes, err := u.cred.MarshalMLS()
	if err != nil {
		u.t.Fatal(err)
	}
	otks := map[string]string{}
	for range n {
		id, val := u.newKeyPackage()
		otks[id] = val
	}
	body := map[string]any{"one_time_keys": otks}
	if u.since == "" {
		body["device_keys"] = map[string]any{
			"user_id": u.userID, "device_id": u.deviceID, "algorithms": []string{u.alg},
			"keys": map[string]string{u.alg + ":" + u.deviceID: base64.RawStdEncoding.EncodeToString(credBytes)},
		}
	}
	if fallback {
		id, val := u.newKeyPackage()
		body["fallback_keys"] = map[string]string{id: val}
	}
	r := u.e.do("POST", "/_matrix/client/v3/keys/upload", u.token, body).must(u.t, 200, "keys/upload")
	counts, _ := r.body["one_time_key_counts"].(map[string]any)
	return counts
}

// createRoom creates a room and the MLS group, and sends the epoch-0
// commit with the federation map.
func (u *mlsUser) createRoom(fm *fedmap.Map) string {
	u.t.Helper()
	r := u.e.do("POST", "/_matrix/client/v3/createRoom", u.token, map[string]any{
		"room_version": string(u.v), "creation_content": map[string]any{"algorithm": u.alg}}).must(u.t, 200, "createRoom")
	roomID := r.str("room_id")
	rc, err := client.RequiredCapabilities()
	if err != nil {
		u.t.Fatal(err)
	}
	u.group, err = mls.CreateGroup(mls.CreateParams{GroupID: []byte(roomID), Signer: u.signer, Credential: u.cred,
		Capabilities: client.Capabilities(), Extensions: mls.Extensions{rc}})
	if err != nil {
		u.t.Fatal(err)
	}
	sc := u.stage(fm, nil)
	id := u.putCommit(roomID, sc).must(u.t, 200, "epoch-0 commit").str("event_id")
	u.awaitCommit(roomID, id, sc)
	return roomID
}

// stage makes a commit with the federation map and proposals.
func (u *mlsUser) stage(fm *fedmap.Map, proposals []*mls.Proposal) *mls.StagedCommit {
	u.t.Helper()
	opts, err := client.CommitOptions(fm, mls.CommitOptions{Proposals: proposals})
	if err != nil {
		u.t.Fatal(err)
	}
	sc, err := u.group.Commit(opts)
	if err != nil {
		u.t.Fatal(err)
	}
	return sc
}

// wire encodes an MLS message.
func wire(t testing.TB, m *mls.MLSMessage) []byte {
	t.Helper()
	b, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putCommit sends a staged commit with PUT /state (naming the commit the
// group is at) and merges it when accepted.
func (u *mlsUser) putCommit(roomID string, sc *mls.StagedCommit) resp {
	u.t.Helper()
	content := mlsContent(u.v, u.v.CommitType(), u.alg, wire(u.t, sc.Message))
	path := roomPath(roomID, "/state/"+u.v.CommitType()+"/")
	if u.commitID != "" {
		path += "?de.bwi.mls.commit_id=" + url.QueryEscape(u.commitID)
	}
	return u.e.do("PUT", path, u.token, content)
}

// awaitCommit syncs until the commit eventID comes back in the room's
// timeline, then merges sc (SPEC-NOTES §6: a commit is accepted only when
// it comes back in /sync).
func (u *mlsUser) awaitCommit(roomID, eventID string, sc *mls.StagedCommit) {
	u.t.Helper()
	for range 20 {
		for _, ev := range timeline(u.sync(2000), roomID) {
			if ev["event_id"] == eventID {
				if err := u.group.Merge(sc); err != nil {
					u.t.Fatal(err)
				}
				u.commitID = eventID
				return
			}
		}
	}
	u.t.Fatalf("%s: commit %s never came back in /sync", u.userID, eventID)
}

// sendPending sends a staged commit as a pending commit.
func (u *mlsUser) sendPending(roomID string, sc *mls.StagedCommit) resp {
	u.t.Helper()
	content := mlsContent(u.v, u.v.PendingCommitType(), u.alg, wire(u.t, sc.Message))
	path := roomPath(roomID, "/send/"+u.v.PendingCommitType()+"/"+u.e.nextTxn())
	if u.commitID != "" {
		path += "?de.bwi.mls.commit_id=" + url.QueryEscape(u.commitID)
	}
	return u.e.do("PUT", path, u.token, content)
}

// sendMessage encrypts a message event and sends it.
func (u *mlsUser) sendMessage(roomID, text string) resp {
	u.t.Helper()
	pt, err := json.Marshal(map[string]any{"type": "m.room.message", "content": map[string]string{"msgtype": "m.text", "body": text}})
	if err != nil {
		u.t.Fatal(err)
	}
	m, err := u.group.Encrypt(pt, nil)
	if err != nil {
		u.t.Fatal(err)
	}
	content := mlsContent(u.v, roomversion.EventTypeEncrypted, u.alg, wire(u.t, m))
	path := roomPath(roomID, "/send/m.room.encrypted/"+u.e.nextTxn())
	if u.commitID != "" {
		path += "?de.bwi.mls.commit_id=" + url.QueryEscape(u.commitID)
	}
	return u.e.do("PUT", path, u.token, content)
}

// decrypt processes one MLS event's ciphertext in the group, merging
// other members' commits.
func (u *mlsUser) decrypt(ev map[string]any) (*mls.Received, error) {
	content, _ := ev["content"].(map[string]any)
	ct, _ := content["ciphertext"].(string)
	enc := base64.RawURLEncoding
	if ev["type"] == roomversion.EventTypeEncrypted {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(ct)
	if err != nil {
		return nil, err
	}
	var m mls.MLSMessage
	if err := m.UnmarshalMLS(b); err != nil {
		return nil, err
	}
	rec, err := u.group.Process(&m)
	if err == nil && rec.Commit != nil {
		// Another member's commit: the server accepted it (it came back
		// in /sync or /messages), so merge it.
		if err := u.group.Merge(rec.Commit); err != nil {
			return nil, err
		}
		u.commitID, _ = ev["event_id"].(string)
	}
	return rec, err
}

// sync runs /sync from the last token and returns the body.
func (u *mlsUser) sync(timeoutMS int) map[string]any {
	u.t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d", timeoutMS)
	if u.since != "" {
		path += "&since=" + url.QueryEscape(u.since)
	}
	r := u.e.do("GET", path, u.token, nil).must(u.t, 200, "sync")
	u.since = r.str("next_batch")
	return r.body
}

// timeline returns the timeline events of a joined room in a sync body.
func timeline(body map[string]any, roomID string) []map[string]any {
	rooms, _ := body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	room, _ := join[roomID].(map[string]any)
	tl, _ := room["timeline"].(map[string]any)
	evs, _ := tl["events"].([]any)
	var out []map[string]any
	for _, e := range evs {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// fedMap is a federation map.
func fedMap(powers, servers, canPropose []string) *fedmap.Map {
	return &fedmap.Map{Federation: fedmap.Federation{Powers: powers, Servers: servers, CanPropose: canPropose}}
}
