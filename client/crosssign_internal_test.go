package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/mls"
)

// crossUser is a user with cross-signing keys and one device, built
// locally as a homeserver would return them from /keys/query.
type crossUser struct {
	id                 string
	master, self       ed25519.PrivateKey
	masterObj, selfObj json.RawMessage
	device             DeviceInfo
}

func newCrossUser(t *testing.T, c *Client, userID string) *crossUser {
	t.Helper()
	u := &crossUser{id: userID}
	_, u.master, _ = ed25519.GenerateKey(nil)
	_, u.self, _ = ed25519.GenerateKey(nil)
	var masterID string
	u.masterObj, masterID = keyObject(userID, "master", u.master.Public().(ed25519.PublicKey))
	selfObj, _ := keyObject(userID, "self_signing", u.self.Public().(ed25519.PublicKey))
	var err error
	if u.selfObj, err = gomatrixserverlib.SignJSON(userID, gomatrixserverlib.KeyID(masterID), u.master, selfObj); err != nil {
		t.Fatal(err)
	}
	signer, err := mls.GenerateSigner(c.cfg.Suite)
	if err != nil {
		t.Fatal(err)
	}
	ident := &mls.MatrixIdentity{UserID: userID, DeviceID: "DEV", SignatureKey: signer.PublicKey()}
	cred, err := mls.NewMatrixCredential(ident)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := cred.MarshalMLS()
	dk, _ := json.Marshal(map[string]any{"user_id": userID, "device_id": "DEV", "algorithms": []string{c.alg},
		"keys": map[string]string{c.alg + ":DEV": b64.EncodeToString(cb)}})
	signed, err := signWithMLSKey(signer, userID, credentialKeyID("DEV"), dk)
	if err != nil {
		t.Fatal(err)
	}
	selfID := "ed25519:" + b64.EncodeToString(u.self.Public().(ed25519.PublicKey))
	if signed, err = gomatrixserverlib.SignJSON(userID, gomatrixserverlib.KeyID(selfID), u.self, signed); err != nil {
		t.Fatal(err)
	}
	u.device = DeviceInfo{UserID: userID, DeviceID: "DEV", Keys: signed, Credential: &cred, Identity: ident}
	return u
}

// signMaster returns u's master key signed by key (as userID's
// user-signing key).
func (u *crossUser) signMaster(t *testing.T, userID string, key ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	id := "ed25519:" + b64.EncodeToString(key.Public().(ed25519.PublicKey))
	b, err := gomatrixserverlib.SignJSON(userID, gomatrixserverlib.KeyID(id), key, u.masterObj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCrossCheckTrustsOnlyItsOwnUserSigningKey: m.cross holds when the
// device's user's master key is signed by the user-signing key this
// device holds, not by whatever user-signing key the homeserver returns
// for the user (a homeserver could substitute its own).
func TestCrossCheckTrustsOnlyItsOwnUserSigningKey(t *testing.T) {
	c := newClient(Config{})
	c.acct = account{UserID: "@me:a.test", DeviceID: "ME"}
	c.alg, _ = c.cfg.Version.Algorithm(c.cfg.Suite)
	_, usk, _ := ed25519.GenerateKey(nil)
	c.acct.UserSeed = usk.Seed()
	target := newCrossUser(t, c, "@t:b.test")
	_, forged, _ := ed25519.GenerateKey(nil)
	forgedObj, _ := keyObject(c.acct.UserID, "user_signing", forged.Public().(ed25519.PublicKey))

	q := &queryResult{
		MasterKeys:      map[string]json.RawMessage{target.id: target.signMaster(t, c.acct.UserID, forged)},
		SelfSigningKeys: map[string]json.RawMessage{target.id: target.selfObj},
		UserSigningKeys: map[string]json.RawMessage{c.acct.UserID: forgedObj},
	}
	err := c.checkDevice(context.Background(), q, target.device, VerifyCross, map[string][]byte{})
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.DeviceID != "DEV" {
		t.Fatalf("a master key signed by a user-signing key the server substituted passed m.cross: %v", err)
	}
	q.MasterKeys[target.id] = target.signMaster(t, c.acct.UserID, usk)
	if err := c.checkDevice(context.Background(), q, target.device, VerifyCross, map[string][]byte{}); err != nil {
		t.Fatalf("a master key signed by this device's user-signing key: %v", err)
	}
	// The device must still be cross-signed by its user's self-signing key.
	unsigned := *target
	unsigned.device.Keys, _ = signWithMLSKey(mustSigner(t, c), target.id, credentialKeyID("DEV"), []byte(`{"user_id":"@t:b.test","device_id":"DEV"}`))
	if err := c.checkDevice(context.Background(), q, unsigned.device, VerifyCross, map[string][]byte{}); err == nil {
		t.Fatal("a device not signed by its MLS credential and self-signing key passed m.cross")
	}
}

func mustSigner(t *testing.T, c *Client) *mls.Signer {
	s, err := mls.GenerateSigner(c.cfg.Suite)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
