package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/mlsmode/mlsmode/client"
)

func cmdFingerprint(e *env, args []string) error {
	fs := e.flags("fingerprint", "[-q] [USER]")
	quiet := fs.Bool("q", false, "print only the fingerprint")
	rest, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userOrSelf(rest)
	if err != nil {
		return err
	}
	fp, err := a.c.MasterKey(e.ctx, user)
	if err != nil {
		return err
	}
	if *quiet {
		fmt.Fprintln(e.stdout, fp)
		return nil
	}
	fmt.Fprintf(e.stdout, "fingerprint of %s: %s\n", user, fp)
	if user == a.c.UserID() {
		fmt.Fprintln(e.stdout, "this is you: tell it to the people who want to verify you, by a channel you trust")
		return nil
	}
	tr, err := a.trust(e.ctx, user)
	if err != nil {
		return err
	}
	if tr.userVerified {
		fmt.Fprintf(e.stdout, "you have verified %s\n", user)
	} else {
		fmt.Fprintf(e.stdout, "you have not verified %s (%s); compare the fingerprint with them, then run: mlschat verify %s %s\n", user, tr.userWhy, user, fp)
	}
	return nil
}

func cmdVerify(e *env, args []string) error {
	fs := e.flags("verify", "USER FINGERPRINT")
	rest, err := parse(fs, args, 2, -1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userID(rest[0])
	if err != nil {
		return err
	}
	if user == a.c.UserID() {
		return usagef("you cannot verify yourself")
	}
	// Spaces are allowed inside the fingerprint (read aloud in groups).
	fp := strings.Join(strings.Fields(strings.Join(rest[1:], "")), "")
	if err := a.c.VerifyUser(e.ctx, user, fp); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "verified %s: their devices that they cross-signed can now be added to rooms that require m.cross\n", user)
	return nil
}

// trust is what mlschat can tell of a user's cross-signing, from this
// user's point of view: whether this user verified them (signed their
// master key with the user-signing key) and which of their devices they
// cross-signed.
type trust struct {
	userVerified bool
	userWhy      string
	// devices maps device ID to "" (cross-signed) or why not.
	devices map[string]string
}

// keysQuery is the part of a /keys/query answer mlschat reads.
type keysQuery struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
}

func (a *account) queryKeys(ctx context.Context, users ...string) (*keysQuery, error) {
	q := map[string][]string{}
	for _, u := range users {
		q[u] = []string{}
	}
	body, _ := json.Marshal(map[string]any{"device_keys": q})
	req, err := http.NewRequestWithContext(ctx, "POST", a.cfg.Server+"/_matrix/client/v3/keys/query", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.c.AccessToken())
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying keys: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("querying keys: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("querying keys: the homeserver answered %d: %s", res.StatusCode, bytes.TrimSpace(raw))
	}
	var out keysQuery
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("querying keys: %w", err)
	}
	return &out, nil
}

// trust works out the verification state of users (one query for all).
// The user's own master key must still be the one recorded when this
// device was set up, or nothing the server shows is trusted.
func (a *account) trust(ctx context.Context, users ...string) (*trust, error) {
	m, err := a.trustAll(ctx, users...)
	if err != nil {
		return nil, err
	}
	return m[users[0]], nil
}

// anchor checks the user's own cross-signing keys in a /keys/query
// answer: the master key must be the one recorded when this device was
// set up, and the user-signing key must be signed by it. Every m.cross
// verification rests on them.
func (a *account) anchor(q *keysQuery) error {
	me := a.c.UserID()
	myMaster := q.MasterKeys[me]
	pub, _, err := singleKey(myMaster)
	switch {
	case err != nil:
		return fmt.Errorf("your own master key: %v", err)
	case a.cfg.OwnMaster != "" && pub != a.cfg.OwnMaster:
		return fmt.Errorf("the server shows a master key for you (%s) other than yours (%s)", pub, a.cfg.OwnMaster)
	}
	if err := signedBy(q.UserSigningKeys[me], me, myMaster); err != nil {
		return fmt.Errorf("your user-signing key is not signed by your master key: %v", err)
	}
	return nil
}

// checkBeforeAdding refuses to add anyone to a room that requires m.cross
// when the server's copy of this user's own cross-signing keys fails the
// anchor: package client takes the user-signing key the server returns
// for the user as it is, so a substituted one would vouch for anyone.
func (a *account) checkBeforeAdding(ctx context.Context, roomID string) error {
	st, err := a.c.Status(roomID)
	if err != nil || st.RequiredVerification != client.VerifyCross {
		return nil
	}
	q, err := a.queryKeys(ctx, a.c.UserID())
	if err != nil {
		return err
	}
	if err := a.anchor(q); err != nil {
		return fmt.Errorf("not adding anyone to %s: the homeserver shows cross-signing keys for you that this device cannot vouch for (%v); nothing was changed", roomID, err)
	}
	return nil
}

func (a *account) trustAll(ctx context.Context, users ...string) (map[string]*trust, error) {
	me := a.c.UserID()
	q, err := a.queryKeys(ctx, append([]string{me}, users...)...)
	if err != nil {
		return nil, err
	}
	anchorErr := a.anchor(q)
	out := map[string]*trust{}
	for _, u := range users {
		t := &trust{devices: map[string]string{}}
		out[u] = t
		master, self := q.MasterKeys[u], q.SelfSigningKeys[u]
		selfErr := errors.New("no self-signing key published")
		if master == nil {
			selfErr = errors.New("no master key published")
		} else if self != nil {
			if err := signedBy(self, u, master); err != nil {
				selfErr = fmt.Errorf("the self-signing key is not signed by the master key: %v", err)
			} else {
				selfErr = nil
			}
		}
		for dev, dk := range q.DeviceKeys[u] {
			switch {
			case selfErr != nil:
				t.devices[dev] = selfErr.Error()
			case signedBy(dk, u, self) != nil:
				t.devices[dev] = fmt.Sprintf("%s has not cross-signed this device", u)
			default:
				t.devices[dev] = ""
			}
		}
		switch {
		case u == me:
			t.userVerified = anchorErr == nil
			if anchorErr != nil {
				t.userWhy = anchorErr.Error()
			}
		case anchorErr != nil:
			t.userWhy = anchorErr.Error()
		case master == nil:
			t.userWhy = "they have no master key"
		case signedBy(master, me, q.UserSigningKeys[me]) != nil:
			t.userWhy = "you have not checked their fingerprint"
		default:
			t.userVerified = true
		}
	}
	return out, nil
}

// singleKey returns the one ed25519 key of a cross-signing key object.
func singleKey(raw json.RawMessage) (pub, id string, err error) {
	if raw == nil {
		return "", "", errors.New("none published")
	}
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", "", err
	}
	if len(k.Keys) != 1 {
		return "", "", fmt.Errorf("%d keys, want 1", len(k.Keys))
	}
	for kid, v := range k.Keys {
		pub, id = v, kid
	}
	return pub, id, nil
}

// signedBy checks that obj carries a valid signature by signerUser's
// cross-signing key object signer.
func signedBy(obj json.RawMessage, signerUser string, signer json.RawMessage) error {
	if obj == nil {
		return errors.New("nothing to check")
	}
	pub, id, err := singleKey(signer)
	if err != nil {
		return err
	}
	key, err := base64.RawStdEncoding.DecodeString(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s is not an ed25519 key", id)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return err
	}
	delete(m, "unsigned")
	stripped, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return gomatrixserverlib.VerifyJSON(signerUser, gomatrixserverlib.KeyID(id), ed25519.PublicKey(key), stripped)
}

func cmdDevices(e *env, args []string) error {
	fs := e.flags("devices", "[USER]")
	rest, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userOrSelf(rest)
	if err != nil {
		return err
	}
	devs, err := a.c.Devices(e.ctx, user)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		return fmt.Errorf("%s has no devices with keys", user)
	}
	tr, err := a.trust(e.ctx, user)
	if err != nil {
		return err
	}
	for _, d := range devs {
		key := "(no MLS credential for this client's cipher suite)"
		if d.Identity != nil {
			key = base64.RawStdEncoding.EncodeToString(d.Identity.SignatureKey)
		}
		state := "cross-signed by " + user
		if why, ok := tr.devices[d.DeviceID]; !ok {
			state = "cross-signing unknown"
		} else if why != "" {
			state = "not cross-signed: " + why
		}
		you := ""
		if user == a.c.UserID() && d.DeviceID == a.c.DeviceID() {
			you = " (this device)"
		}
		fmt.Fprintf(e.stdout, "device %s%s: signature key %s; %s\n", d.DeviceID, you, key, state)
	}
	return nil
}

func cmdVerifyDevice(e *env, args []string) error {
	fs := e.flags("verify-device", "USER DEVICE SIGNATURE_KEY")
	rest, err := parse(fs, args, 3, 3)
	if err != nil {
		return err
	}
	a, err := e.open()
	if err != nil {
		return err
	}
	defer a.close()
	user, err := a.userID(rest[0])
	if err != nil {
		return err
	}
	if err := a.c.VerifyDevice(e.ctx, user, rest[1], rest[2]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "verified device %s of %s directly: it can be added to rooms that require m.direct (this record stays on this device)\n", rest[1], user)
	return nil
}

// userOrSelf is the user named by the optional argument, or the account's
// own user.
func (a *account) userOrSelf(rest []string) (string, error) {
	if len(rest) == 0 {
		return a.c.UserID(), nil
	}
	return a.userID(rest[0])
}
