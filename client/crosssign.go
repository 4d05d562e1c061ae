package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
)

// Verification levels of a room's security.required_verification
// (MSC4256). A device meets a level when it meets that level or a
// stronger one: m.direct > m.cross > m.tofu > m.none.
const (
	VerifyNone   = "m.none"
	VerifyTOFU   = "m.tofu"
	VerifyCross  = "m.cross"
	VerifyDirect = "m.direct"
)

// VerificationError says which device failed the room's required
// verification and why; nothing was committed.
type VerificationError struct {
	UserID, DeviceID string
	Required         string
	Reason           string
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("device %s of %s does not meet the room's required verification %s: %s", e.DeviceID, e.UserID, e.Required, e.Reason)
}

// crossKey is a Matrix cross-signing key object.
type crossKey struct {
	UserID string            `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

func keyObject(userID, usage string, pub ed25519.PublicKey) ([]byte, string) {
	id := "ed25519:" + b64.EncodeToString(pub)
	b, _ := json.Marshal(crossKey{UserID: userID, Usage: []string{usage}, Keys: map[string]string{id: b64.EncodeToString(pub)}})
	return b, id
}

// bootstrapCrossSigning makes the user's master, self-signing and
// user-signing keys if the user has none yet, uploads them and signs this
// device with the self-signing key. When the user already has keys (a
// login on a new device), it leaves them alone.
func (c *Client) bootstrapCrossSigning(ctx context.Context, password string) error {
	q, err := c.queryKeys(ctx, c.acct.UserID)
	if err != nil {
		return err
	}
	if _, ok := q.MasterKeys[c.acct.UserID]; ok {
		return nil
	}
	seeds := make([][]byte, 3)
	for i := range seeds {
		seeds[i] = make([]byte, ed25519.SeedSize)
		if _, err := c.cfg.Rand.Read(seeds[i]); err != nil {
			return err
		}
	}
	master := ed25519.NewKeyFromSeed(seeds[0])
	masterObj, masterID := keyObject(c.acct.UserID, "master", master.Public().(ed25519.PublicKey))
	sign := func(usage string, seed []byte) (json.RawMessage, error) {
		k := ed25519.NewKeyFromSeed(seed)
		obj, _ := keyObject(c.acct.UserID, usage, k.Public().(ed25519.PublicKey))
		return gomatrixserverlib.SignJSON(c.acct.UserID, gomatrixserverlib.KeyID(masterID), master, obj)
	}
	self, err := sign("self_signing", seeds[1])
	if err != nil {
		return err
	}
	user, err := sign("user_signing", seeds[2])
	if err != nil {
		return err
	}
	body := map[string]any{"master_key": json.RawMessage(masterObj), "self_signing_key": self, "user_signing_key": user}
	if password != "" {
		body["auth"] = map[string]any{"type": "m.login.password", "password": password,
			"identifier": map[string]any{"type": "m.id.user", "user": c.acct.UserID}}
	}
	c.acct.MasterSeed, c.acct.SelfSeed, c.acct.UserSeed = seeds[0], seeds[1], seeds[2]
	if err := c.saveAccount(ctx); err != nil {
		return err
	}
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/device_signing/upload", body, nil); err != nil {
		return fmt.Errorf("uploading cross-signing keys: %w", err)
	}
	return c.crossSignDevice(ctx, c.acct.DeviceID)
}

// CrossSignDevice signs one of the user's own devices (its device keys as
// the server has them) with the self-signing key; a device that is not
// signed fails m.cross and m.tofu for everyone else.
func (c *Client) CrossSignDevice(ctx context.Context, deviceID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crossSignDevice(ctx, deviceID)
}

func (c *Client) crossSignDevice(ctx context.Context, deviceID string) error {
	if c.acct.SelfSeed == nil {
		return errors.New("this device holds no self-signing key")
	}
	q, err := c.queryKeys(ctx, c.acct.UserID)
	if err != nil {
		return err
	}
	dk, ok := q.DeviceKeys[c.acct.UserID][deviceID]
	if !ok {
		return fmt.Errorf("device %s of %s has no device keys", deviceID, c.acct.UserID)
	}
	k := ed25519.NewKeyFromSeed(c.acct.SelfSeed)
	id := "ed25519:" + b64.EncodeToString(k.Public().(ed25519.PublicKey))
	unsignedObj, err := stripUnsigned(dk)
	if err != nil {
		return err
	}
	signed, err := gomatrixserverlib.SignJSON(c.acct.UserID, gomatrixserverlib.KeyID(id), k, unsignedObj)
	if err != nil {
		return err
	}
	var res struct {
		Failures map[string]map[string]any `json:"failures"`
	}
	body := map[string]any{c.acct.UserID: map[string]json.RawMessage{deviceID: signed}}
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/signatures/upload", body, &res); err != nil {
		return fmt.Errorf("uploading the signature of device %s: %w", deviceID, err)
	}
	if f := res.Failures[c.acct.UserID][deviceID]; f != nil {
		return fmt.Errorf("the server refused the signature of device %s: %v", deviceID, f)
	}
	return nil
}

func stripUnsigned(obj []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "unsigned")
	return json.Marshal(m)
}

// MasterKey returns userID's master cross-signing public key (unpadded
// base64) as the server has it: what people compare out of band before
// VerifyUser.
func (c *Client) MasterKey(ctx context.Context, userID string) (string, error) {
	q, err := c.queryKeys(ctx, userID)
	if err != nil {
		return "", err
	}
	k, _, err := singleKey(q.MasterKeys[userID])
	if err != nil {
		return "", fmt.Errorf("master key of %s: %w", userID, err)
	}
	return k, nil
}

// VerifyUser records that the user has checked userID's master key
// (fingerprint, unpadded base64, compared out of band) by signing it with
// the user-signing key: from then on userID's cross-signed devices meet
// m.cross for this user.
func (c *Client) VerifyUser(ctx context.Context, userID, fingerprint string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acct.UserSeed == nil {
		return errors.New("this device holds no user-signing key")
	}
	q, err := c.queryKeys(ctx, userID)
	if err != nil {
		return err
	}
	raw := q.MasterKeys[userID]
	pub, id, err := singleKey(raw)
	if err != nil {
		return fmt.Errorf("master key of %s: %w", userID, err)
	}
	if pub != fingerprint {
		return fmt.Errorf("the master key of %s is %s, not the fingerprint checked (%s)", userID, pub, fingerprint)
	}
	k := ed25519.NewKeyFromSeed(c.acct.UserSeed)
	kid := "ed25519:" + b64.EncodeToString(k.Public().(ed25519.PublicKey))
	obj, err := stripUnsigned(raw)
	if err != nil {
		return err
	}
	signed, err := gomatrixserverlib.SignJSON(c.acct.UserID, gomatrixserverlib.KeyID(kid), k, obj)
	if err != nil {
		return err
	}
	var res struct {
		Failures map[string]map[string]any `json:"failures"`
	}
	keyName := id[len("ed25519:"):]
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/signatures/upload",
		map[string]any{userID: map[string]json.RawMessage{keyName: signed}}, &res); err != nil {
		return fmt.Errorf("uploading the signature of %s's master key: %w", userID, err)
	}
	if f := res.Failures[userID][keyName]; f != nil {
		if domainOf(userID) != c.ServerName() {
			// A homeserver that keeps signatures only on its own users'
			// master keys: the verification is recorded on this client.
			c.log.Info("the homeserver did not keep the signature of a remote user's master key; recorded on this client", "user", userID, "failure", f)
			return c.store.Put(ctx, map[string][]byte{"verified-user/" + userID: []byte(pub)})
		}
		return fmt.Errorf("the server refused the signature of %s's master key: %v", userID, f)
	}
	return nil
}

// VerifyDevice records that the user has checked device deviceID of
// userID directly (its MLS signature key, unpadded base64, compared out
// of band): the device then meets m.direct. The record stays on this
// client.
func (c *Client) VerifyDevice(ctx context.Context, userID, deviceID, signatureKey string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, err := c.queryKeys(ctx, userID)
	if err != nil {
		return err
	}
	for _, d := range c.devicesOf(q, userID) {
		if d.DeviceID != deviceID {
			continue
		}
		if d.Identity == nil {
			return fmt.Errorf("device %s of %s has no MLS credential", deviceID, userID)
		}
		if got := b64.EncodeToString(d.Identity.SignatureKey); got != signatureKey {
			return fmt.Errorf("device %s of %s has signature key %s, not the one checked (%s)", deviceID, userID, got, signatureKey)
		}
		return c.store.Put(ctx, map[string][]byte{"verified-device/" + userID + "|" + deviceID: []byte(signatureKey)})
	}
	return fmt.Errorf("%s has no device %s", userID, deviceID)
}

// singleKey returns the one ed25519 key of a cross-signing key object.
func singleKey(raw json.RawMessage) (pub, id string, err error) {
	if raw == nil {
		return "", "", errors.New("none published")
	}
	var k crossKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", "", err
	}
	if len(k.Keys) != 1 {
		return "", "", fmt.Errorf("%d keys, want 1", len(k.Keys))
	}
	for id, v := range k.Keys {
		return v, id, nil
	}
	return "", "", nil
}

// verifySignedBy checks that obj carries a valid signature of signer's
// cross-signing key object (made by signerUser).
func verifySignedBy(obj []byte, signerUser string, signer json.RawMessage) error {
	pub, id, err := singleKey(signer)
	if err != nil {
		return err
	}
	key, err := b64.DecodeString(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s is not an ed25519 key", id)
	}
	stripped, err := stripUnsigned(obj)
	if err != nil {
		return err
	}
	return gomatrixserverlib.VerifyJSON(signerUser, gomatrixserverlib.KeyID(id), ed25519.PublicKey(key), stripped)
}

// checkDevice decides whether device d (with its key package's identity
// already matched) meets level for this user; the reason says what
// failed. TOFU pins the first master key seen in pins (written by the
// caller together with the commit).
func (c *Client) checkDevice(ctx context.Context, q *queryResult, d DeviceInfo, level string, pins map[string][]byte) error {
	fail := func(format string, a ...any) error {
		return &VerificationError{UserID: d.UserID, DeviceID: d.DeviceID, Required: level, Reason: fmt.Sprintf(format, a...)}
	}
	if d.Identity == nil {
		return fail("it has no MLS credential for %s in its device keys", c.alg)
	}
	if err := verifyMLSKeySignature(c.cfg.Suite, d.Identity.SignatureKey, d.UserID, credentialKeyID(d.DeviceID), d.Keys); err != nil {
		return fail("its device keys are not signed by its MLS credential: %v", err)
	}
	if level == VerifyNone {
		return nil
	}
	direct, err := c.store.Get(ctx, "verified-device/"+d.UserID+"|"+d.DeviceID)
	if err == nil && string(direct) == b64.EncodeToString(d.Identity.SignatureKey) {
		return nil // m.direct meets every level
	}
	if level == VerifyDirect {
		return fail("it has not been verified directly on this device (VerifyDevice)")
	}
	master := q.MasterKeys[d.UserID]
	if master == nil {
		return fail("%s has no cross-signing master key", d.UserID)
	}
	self := q.SelfSigningKeys[d.UserID]
	if self == nil {
		return fail("%s has no self-signing key", d.UserID)
	}
	if err := verifySignedBy(self, d.UserID, master); err != nil {
		return fail("the self-signing key is not signed by the master key: %v", err)
	}
	if err := verifySignedBy(d.Keys, d.UserID, self); err != nil {
		return fail("the device is not cross-signed by its user's self-signing key: %v", err)
	}
	masterPub, _, err := singleKey(master)
	if err != nil {
		return fail("master key: %v", err)
	}
	if d.UserID == c.acct.UserID {
		own := ed25519.NewKeyFromSeed(c.acct.MasterSeed)
		if c.acct.MasterSeed != nil && masterPub == b64.EncodeToString(own.Public().(ed25519.PublicKey)) {
			return nil // our own master key: verified by holding it
		}
	}
	switch level {
	case VerifyTOFU:
		pinned, err := c.store.Get(ctx, "tofu/"+d.UserID)
		if errors.Is(err, ErrNotFound) {
			if p, ok := pins[d.UserID]; ok {
				pinned = p
			} else {
				pins[d.UserID] = []byte(masterPub)
				return nil
			}
		} else if err != nil {
			return err
		}
		if string(pinned) != masterPub {
			return fail("the master key of %s changed since it was first seen (was %s, now %s)", d.UserID, pinned, masterPub)
		}
		return nil
	case VerifyCross:
		// A verification recorded on this client (its homeserver would not
		// keep the signature of a remote user's master key).
		if v, err := c.store.Get(ctx, "verified-user/"+d.UserID); err == nil && string(v) == masterPub {
			return nil
		}
		if c.acct.UserSeed == nil {
			return fail("this device holds no user-signing key to have verified %s", d.UserID)
		}
		// The user-signing key is the one this device holds, never the
		// copy the homeserver returns (which it could replace).
		usk := ed25519.NewKeyFromSeed(c.acct.UserSeed)
		own, _ := keyObject(c.acct.UserID, "user_signing", usk.Public().(ed25519.PublicKey))
		if err := verifySignedBy(master, c.acct.UserID, own); err != nil {
			return fail("%s's master key is not signed by %s's user-signing key (the user was not verified): %v", d.UserID, c.acct.UserID, err)
		}
		return nil
	}
	return fail("unknown verification level %q", level)
}

func sortDevices(ds []DeviceInfo) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].UserID != ds[j].UserID {
			return ds[i].UserID < ds[j].UserID
		}
		return ds[i].DeviceID < ds[j].DeviceID
	})
}
