//go:build interop

package interop

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// libMember is ourMember on the client library (package client): what a
// Go program built on mlsmode does. Adds go through its checks: the
// room requires m.direct, and the adder verifies each device's MLS
// signature key (read from /keys/query, as a person would compare it) and
// the signature that key made on the device keys, before Invite claims a
// key package, commits, waits for acceptance and sends the Welcome.
type libMember struct {
	t    *testing.T
	ctx  context.Context
	c    *client.Client
	room string
}

func newLibMember(t *testing.T, baseURL, name string, cs mls.CipherSuite, keyPackages int) *libMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	c, err := client.Register(ctx, client.Config{BaseURL: baseURL, Suite: cs, OneTimeKeyPackages: keyPackages}, name, "pw-"+name)
	if err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return &libMember{t: t, ctx: ctx, c: c}
}

func (m *libMember) UserID() string   { return m.c.UserID() }
func (m *libMember) DeviceID() string { return m.c.DeviceID() }

// UploadKeys: the library uploads the credential and its key packages
// when it registers (and refills them from /sync); nothing to do.
func (m *libMember) UploadKeys(int) {}

func (m *libMember) InitialSync() {
	m.t.Helper()
	if err := m.c.Sync(m.ctx, 0); err != nil {
		m.t.Fatal(err)
	}
}

func (m *libMember) status() client.RoomStatus {
	m.t.Helper()
	st, err := m.c.Status(m.room)
	if err != nil {
		m.t.Fatal(err)
	}
	return st
}

func (m *libMember) CreateRoom(fm *fedmap.Map) string {
	m.t.Helper()
	id, err := m.c.CreateRoom(m.ctx, client.RoomOptions{Powers: fm.Federation.Powers, Servers: fm.Federation.Servers,
		CanPropose: fm.Federation.CanPropose, RequiredVerification: client.VerifyDirect})
	if err != nil {
		m.t.Fatalf("%s creating a room: %v", m.UserID(), err)
	}
	m.room = id
	return id
}

func (m *libMember) Add(roomID string, fm *fedmap.Map, userID, deviceID string) (string, *mls.MatrixIdentity) {
	m.t.Helper()
	st := m.status()
	if !slices.Equal(st.Powers, fm.Federation.Powers) || !slices.Equal(st.Servers, fm.Federation.Servers) {
		m.t.Fatalf("%s: the room's federation map is %v %v, the story expects %+v", m.UserID(), st.Powers, st.Servers, fm.Federation)
	}
	id := m.Credential(userID, deviceID)
	if err := m.c.VerifyDevice(m.ctx, userID, deviceID, base64.RawStdEncoding.EncodeToString(id.SignatureKey)); err != nil {
		m.t.Fatalf("%s verifying %s %s: %v", m.UserID(), userID, deviceID, err)
	}
	if err := m.c.Invite(m.ctx, roomID, userID); err != nil {
		m.t.Fatalf("%s inviting %s: %v", m.UserID(), userID, err)
	}
	st = m.status()
	for _, mem := range st.Members {
		if mem.UserID == userID && mem.DeviceID == deviceID {
			return st.CommitID, id
		}
	}
	m.t.Fatalf("%s: %s %s is not in the group after the invite: %+v", m.UserID(), userID, deviceID, st.Members)
	return "", nil
}

func (m *libMember) Commit(roomID string, fm *fedmap.Map) string {
	m.t.Helper()
	if err := m.c.SetFederation(m.ctx, roomID, fm.Federation.Powers, fm.Federation.Servers, fm.Federation.CanPropose); err != nil {
		m.t.Fatalf("%s committing a federation map: %v", m.UserID(), err)
	}
	return m.status().CommitID
}

func (m *libMember) JoinInvited(roomID, commitID string) {
	m.t.Helper()
	if err := m.c.Join(m.ctx, roomID); err != nil {
		m.t.Fatalf("%s joining: %v", m.UserID(), err)
	}
	m.room = roomID
	if st := m.status(); st.CommitID != commitID {
		m.t.Fatalf("%s joined at commit %s, want %s", m.UserID(), st.CommitID, commitID)
	}
}

func (m *libMember) Send(roomID, text string) string {
	m.t.Helper()
	id, err := m.c.Send(m.ctx, roomID, text)
	if err != nil {
		m.t.Fatalf("%s sending: %v", m.UserID(), err)
	}
	return id
}

// Await syncs until the library has processed eventID: a message it
// decrypted, or the commit it is now at.
func (m *libMember) Await(roomID, eventID string) received {
	m.t.Helper()
	m.room = roomID
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, msg := range m.c.Messages(roomID) {
			if msg.EventID == eventID {
				if msg.Sender == m.UserID() && msg.Device == m.DeviceID() {
					return received{Kind: "own message", Text: msg.Body()}
				}
				return received{Kind: "message", Text: msg.Body()}
			}
		}
		st := m.status()
		if st.CommitID == eventID {
			return received{Kind: "commit", AuthenticatedData: st.FederationMap}
		}
		for _, u := range st.Undecryptable {
			if u.EventID == eventID {
				m.t.Fatalf("%s cannot decrypt %s: %s (%s)", m.UserID(), eventID, u.Reason, u.Detail)
			}
		}
		if st.Broken != nil {
			m.t.Fatalf("%s: the room is broken by %s from %s: %s", m.UserID(), st.Broken.EventID, st.Broken.Origin, st.Broken.Reason)
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: %s not processed within 30 s (at commit %s, needs welcome %q)", m.UserID(), eventID, st.CommitID, st.NeedsWelcome)
		}
		if err := m.c.Sync(m.ctx, time.Second); err != nil {
			m.t.Fatal(err)
		}
	}
}

func (m *libMember) Epoch() uint64 { m.t.Helper(); return m.status().Epoch }

func (m *libMember) Members() []string {
	m.t.Helper()
	var out []string
	for _, mem := range m.status().Members {
		out = append(out, mem.UserID)
	}
	return out
}

func (m *libMember) Removed() bool {
	m.t.Helper()
	return strings.Contains(m.status().NeedsWelcome, "removed")
}

func (m *libMember) Credential(userID, deviceID string) *mls.MatrixIdentity {
	m.t.Helper()
	devs, err := m.c.Devices(m.ctx, userID)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, d := range devs {
		if d.DeviceID == deviceID && d.Identity != nil {
			return d.Identity
		}
	}
	m.t.Fatalf("%s: no MLS credential of %s %s in /keys/query", m.UserID(), userID, deviceID)
	return nil
}
