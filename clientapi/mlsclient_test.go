package clientapi_test

import (
	"testing"

	"github.com/mlsmode/mlsmode/internal/testclient"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// mlsUser is a thin wrapper of testclient.Client, a real MLS client of one
// device, talking to a roomEnv over HTTP. It mirrors the client's state in
// unexported fields the tests read and set: every method copies them into
// the client before the call and back after it.
type mlsUser struct {
	t        testing.TB
	e        *roomEnv
	c        *testclient.Client
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

type keyPackage struct {
	kp  *mls.KeyPackage
	sec *mls.KeyPackageSecrets
}

// newMLSUser registers name and makes its MLS signer and credential.
func newMLSUser(e *roomEnv, name string) *mlsUser {
	e.t.Helper()
	c := testclient.New(e.t, e.url, nil, name)
	c.NextTxn = e.nextTxn
	u := &mlsUser{t: e.t, e: e, c: c, userID: c.UserID, deviceID: c.DeviceID, token: c.Token,
		signer: c.Signer, cred: c.Credential, v: c.Version, alg: c.Alg, kps: map[string]*keyPackage{}}
	return u
}

// in copies the mutable state into the client; out copies it back.
func (u *mlsUser) in() {
	u.c.Group, u.c.CommitID, u.c.Since, u.c.Kept, u.c.KeptAt = u.group, u.commitID, u.since, u.kept, u.keptAt
}

func (u *mlsUser) out() {
	u.group, u.commitID, u.since, u.kept, u.keptAt = u.c.Group, u.c.CommitID, u.c.Since, u.c.Kept, u.c.KeptAt
	for id, k := range u.c.KeyPackages {
		if u.kps[id] == nil {
			u.kps[id] = &keyPackage{k.KeyPackage, k.Secrets}
		}
	}
}

func fromResponse(r testclient.Response) resp {
	return resp{status: r.Status, body: r.Body, raw: r.Raw}
}

// keep copies the group's current state, as a client keeps past states.
func (u *mlsUser) keep() { u.t.Helper(); u.in(); defer u.out(); u.c.Keep() }

// newKeyPackage makes a key package and returns its key ID and value.
func (u *mlsUser) newKeyPackage() (string, string) {
	u.t.Helper()
	u.in()
	defer u.out()
	return u.c.NewKeyPackage()
}

// uploadKeys uploads the device keys with the credential, n one-time key
// packages and, if fallback, a fallback one; it returns the counts.
func (u *mlsUser) uploadKeys(n int, fallback bool) map[string]any {
	u.t.Helper()
	u.in()
	defer u.out()
	return u.c.UploadKeys(n, fallback)
}

// createRoom creates a room and the MLS group, and sends the epoch-0
// commit with the federation map.
func (u *mlsUser) createRoom(fm *fedmap.Map) string {
	u.t.Helper()
	u.in()
	defer u.out()
	return u.c.CreateRoom(fm)
}

// stage makes a commit with the federation map and proposals.
func (u *mlsUser) stage(fm *fedmap.Map, proposals []*mls.Proposal) *mls.StagedCommit {
	u.t.Helper()
	u.in()
	defer u.out()
	return u.c.Stage(fm, proposals)
}

// wire encodes an MLS message.
func wire(t testing.TB, m *mls.MLSMessage) []byte { t.Helper(); return testclient.Wire(t, m) }

// putCommit sends a staged commit with PUT /state (naming the commit the
// group is at); awaitCommit merges it.
func (u *mlsUser) putCommit(roomID string, sc *mls.StagedCommit) resp {
	u.t.Helper()
	u.in()
	defer u.out()
	return fromResponse(u.c.PutCommit(roomID, sc))
}

// awaitCommit syncs until the commit eventID comes back in the room's
// timeline, then merges sc.
func (u *mlsUser) awaitCommit(roomID, eventID string, sc *mls.StagedCommit) {
	u.t.Helper()
	u.in()
	defer u.out()
	u.c.AwaitCommit(roomID, eventID, sc)
}

// sendPending sends a staged commit as a pending commit.
func (u *mlsUser) sendPending(roomID string, sc *mls.StagedCommit) resp {
	u.t.Helper()
	u.in()
	defer u.out()
	return fromResponse(u.c.SendPending(roomID, sc))
}

// sendMessage encrypts a message event and sends it.
func (u *mlsUser) sendMessage(roomID, text string) resp {
	u.t.Helper()
	u.in()
	defer u.out()
	return fromResponse(u.c.SendMessage(roomID, text))
}

// decrypt processes one MLS event's ciphertext in the group, merging
// other members' commits.
func (u *mlsUser) decrypt(ev map[string]any) (*mls.Received, error) {
	u.in()
	defer u.out()
	return u.c.Decrypt(ev)
}

// sync runs /sync from the last token and returns the body.
func (u *mlsUser) sync(timeoutMS int) map[string]any {
	u.t.Helper()
	u.in()
	defer u.out()
	return u.c.Sync(timeoutMS)
}

// timeline returns the timeline events of a joined room in a sync body.
func timeline(body map[string]any, roomID string) []map[string]any {
	return testclient.Timeline(body, roomID)
}

// fedMap is a federation map.
func fedMap(powers, servers, canPropose []string) *fedmap.Map {
	return testclient.FedMap(powers, servers, canPropose)
}
