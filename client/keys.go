package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/mls"
)

var b64 = base64.RawStdEncoding

// storedKeyPackage is a key package of this device with its private keys
// (store key "kp/<key ID>"), deleted once a Welcome has used it.
type storedKeyPackage struct {
	Wire     []byte `json:"key_package"`
	InitKey  []byte `json:"init_key"`
	EncKey   []byte `json:"encryption_key"`
	Fallback bool   `json:"fallback,omitempty"`
}

const prefixKeyPackage = "kp/"

// newKeyPackage makes a key package and its store entry; it returns the
// key ID and the upload value.
func (c *Client) newKeyPackage(entries map[string][]byte, fallback bool) (id, value string, err error) {
	cred, err := c.credential()
	if err != nil {
		return "", "", err
	}
	kp, sec, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: c.sign, Credential: cred, Capabilities: Capabilities()})
	if err != nil {
		return "", "", fmt.Errorf("making a key package: %w", err)
	}
	ref, err := kp.Ref()
	if err != nil {
		return "", "", err
	}
	wire, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp}).MarshalMLS()
	if err != nil {
		return "", "", err
	}
	id = c.alg + ":" + b64.EncodeToString(ref)
	rec, err := json.Marshal(storedKeyPackage{Wire: wire, InitKey: sec.InitKey, EncKey: sec.EncryptionKey, Fallback: fallback})
	if err != nil {
		return "", "", err
	}
	entries[prefixKeyPackage+id] = rec
	return id, b64.EncodeToString(wire), nil
}

func (c *Client) credential() (mls.Credential, error) {
	return mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: c.acct.UserID, DeviceID: c.acct.DeviceID, SignatureKey: c.sign.PublicKey()})
}

// deviceKeys is the device_keys object of this device, signed with the
// MLS signature key under m.mls.v1.basic:<device ID> (MSC4256: "the device
// keys should be signed using the signing key of the credential").
func (c *Client) deviceKeys() (json.RawMessage, error) {
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	cb, err := cred.MarshalMLS()
	if err != nil {
		return nil, err
	}
	obj, err := json.Marshal(map[string]any{
		"user_id": c.acct.UserID, "device_id": c.acct.DeviceID, "algorithms": []string{c.alg},
		"keys": map[string]string{c.alg + ":" + c.acct.DeviceID: b64.EncodeToString(cb)},
	})
	if err != nil {
		return nil, err
	}
	return signWithMLSKey(c.sign, c.acct.UserID, credentialKeyID(c.acct.DeviceID), obj)
}

// credentialKeyID is the key ID of the MLS signature on device keys.
func credentialKeyID(deviceID string) string { return "m.mls.v1.basic:" + deviceID }

// signingBytes is the canonical JSON of obj without signatures and
// unsigned, as Matrix signs JSON.
func signingBytes(obj []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.CanonicalJSON(b)
}

// signWithMLSKey adds to obj a signature by userID's key keyID made with
// the MLS signature key: Ed25519 as Matrix signs JSON, ECDSA as ASN.1 over
// SHA-256 of the same bytes.
func signWithMLSKey(s *mls.Signer, userID, keyID string, obj []byte) (json.RawMessage, error) {
	msg, err := signingBytes(obj)
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch s.CipherSuite() {
	case mls.X25519AES128GCMSHA256Ed25519, mls.X25519ChaCha20Poly1305SHA256Ed25519:
		sig = ed25519.Sign(ed25519.NewKeyFromSeed(s.PrivateKey()), msg)
	case mls.XWingAES256GCMSHA512Ed25519:
		sig = ed25519.Sign(ed25519.NewKeyFromSeed(s.PrivateKey()), msg)
	default:
		curve, hash := ecdsaOf(s.CipherSuite())
		if curve == nil {
			return nil, fmt.Errorf("signing device keys: suite %v has no signature scheme the client knows", s.CipherSuite())
		}
		k, err := ecdsa.ParseRawPrivateKey(curve, s.PrivateKey())
		if err != nil {
			return nil, err
		}
		if sig, err = ecdsa.SignASN1(nil, k, hash(msg)); err != nil {
			return nil, err
		}
	}
	return addSignature(obj, userID, keyID, b64.EncodeToString(sig))
}

// ecdsaOf is the curve and hash of an ECDSA suite's signatures (nil for
// others).
func ecdsaOf(cs mls.CipherSuite) (elliptic.Curve, func([]byte) []byte) {
	switch cs {
	case mls.P256AES128GCMSHA256P256:
		return elliptic.P256(), func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
	case mls.P384AES256GCMSHA384P384:
		return elliptic.P384(), func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }
	case mls.P521AES256GCMSHA512P521:
		return elliptic.P521(), func(b []byte) []byte { h := sha512.Sum512(b); return h[:] }
	}
	return nil, nil
}

// verifyMLSKeySignature checks the signature keyID of userID on obj with
// the MLS signature public key pub of suite cs.
func verifyMLSKeySignature(cs mls.CipherSuite, pub []byte, userID, keyID string, obj []byte) error {
	sigB64 := signatureOf(obj, userID, keyID)
	if sigB64 == "" {
		return fmt.Errorf("no signature %s by %s", keyID, userID)
	}
	sig, err := b64.DecodeString(sigB64)
	if err != nil {
		return fmt.Errorf("signature %s is not base64", keyID)
	}
	msg, err := signingBytes(obj)
	if err != nil {
		return err
	}
	switch {
	case len(pub) == ed25519.PublicKeySize:
		if !ed25519.Verify(pub, msg, sig) {
			return fmt.Errorf("signature %s does not verify", keyID)
		}
	default:
		curve, hash := ecdsaOf(cs)
		if curve == nil {
			return fmt.Errorf("suite %v has no signature scheme the client knows", cs)
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, pub)
		if err != nil {
			return fmt.Errorf("signature key of suite %v: %w", cs, err)
		}
		if !ecdsa.VerifyASN1(k, hash(msg), sig) {
			return fmt.Errorf("signature %s does not verify", keyID)
		}
	}
	return nil
}

// addSignature sets signatures[userID][keyID] = sig in obj.
func addSignature(obj []byte, userID, keyID, sig string) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	sigs := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return nil, fmt.Errorf("signatures: %w", err)
		}
	}
	if sigs[userID] == nil {
		sigs[userID] = map[string]string{}
	}
	sigs[userID][keyID] = sig
	b, err := json.Marshal(sigs)
	if err != nil {
		return nil, err
	}
	m["signatures"] = b
	return json.Marshal(m)
}

// signatureOf returns signatures[userID][keyID] of obj ("" if none).
func signatureOf(obj []byte, userID, keyID string) string {
	var m struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	_ = json.Unmarshal(obj, &m)
	return m.Signatures[userID][keyID]
}

// uploadKeys uploads n new one-time key packages and, if fallback, a new
// fallback one; the device keys go with the first upload. The private
// keys are stored before the upload, so a key package handed out is never
// without its secrets.
func (c *Client) uploadKeys(ctx context.Context, n int, fallback bool) error {
	entries := map[string][]byte{}
	otks := map[string]string{}
	for range n {
		id, val, err := c.newKeyPackage(entries, false)
		if err != nil {
			return err
		}
		otks[id] = val
	}
	body := map[string]any{"one_time_keys": otks}
	if fallback {
		id, val, err := c.newKeyPackage(entries, true)
		if err != nil {
			return err
		}
		body["fallback_keys"] = map[string]string{id: val}
	}
	if !c.acct.KeysSent {
		dk, err := c.deviceKeys()
		if err != nil {
			return err
		}
		body["device_keys"] = dk
	}
	if err := c.store.Put(ctx, entries); err != nil {
		return err
	}
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/upload", body, nil); err != nil {
		return fmt.Errorf("uploading keys: %w", err)
	}
	if !c.acct.KeysSent {
		c.acct.KeysSent = true
		if err := c.saveAccount(ctx); err != nil {
			return err
		}
	}
	c.log.Debug("uploaded key packages", "one_time", n, "fallback", fallback)
	return nil
}

// replenish refills the server's key packages from /sync's counts: up to
// OneTimeKeyPackages one-time ones, and a new fallback once the last one
// has been handed out.
func (c *Client) replenish(ctx context.Context, counts map[string]int, unusedFallback []string, haveCounts bool) error {
	if !haveCounts {
		return nil
	}
	n := c.cfg.OneTimeKeyPackages - counts[c.alg]
	fallback := true
	for _, t := range unusedFallback {
		if t == c.alg {
			fallback = false
		}
	}
	if n <= 0 && !fallback {
		return nil
	}
	return c.uploadKeys(ctx, max(n, 0), fallback)
}

// keyPackageFor finds this device's key package that a Welcome is for.
func (c *Client) keyPackageFor(ctx context.Context, w *mls.Welcome) (string, *mls.KeyPackage, *mls.KeyPackageSecrets, error) {
	all, err := c.store.List(ctx, prefixKeyPackage)
	if err != nil {
		return "", nil, nil, err
	}
	for key, raw := range all {
		var s storedKeyPackage
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, nil, fmt.Errorf("reading stored key package %s: %w", key, err)
		}
		var m mls.MLSMessage
		if err := m.UnmarshalMLS(s.Wire); err != nil || m.KeyPackage == nil {
			return "", nil, nil, fmt.Errorf("reading stored key package %s: %v", key, err)
		}
		ref, err := m.KeyPackage.Ref()
		if err != nil {
			return "", nil, nil, err
		}
		for _, sec := range w.Secrets {
			if bytes.Equal(sec.NewMember, ref) {
				del := key
				if s.Fallback {
					del = ""
				}
				return del, m.KeyPackage, &mls.KeyPackageSecrets{InitKey: s.InitKey, EncryptionKey: s.EncKey}, nil
			}
		}
	}
	return "", nil, nil, fmt.Errorf("the Welcome is for none of this device's key packages")
}

// DeviceInfo is a device of a user as /keys/query tells it.
type DeviceInfo struct {
	UserID, DeviceID string
	// Keys is the device_keys object as the server returned it.
	Keys json.RawMessage
	// Credential is the device's MLS credential (nil if it has none in
	// this client's algorithm).
	Credential *mls.Credential
	Identity   *mls.MatrixIdentity
}

// queryResult is a decoded /keys/query answer.
type queryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

func (c *Client) queryKeys(ctx context.Context, userIDs ...string) (*queryResult, error) {
	q := map[string][]string{}
	for _, u := range userIDs {
		q[u] = []string{}
	}
	var out queryResult
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": q}, &out); err != nil {
		return nil, fmt.Errorf("querying keys of %s: %w", strings.Join(userIDs, ", "), err)
	}
	return &out, nil
}

// Devices returns the devices of userID with their MLS credentials.
func (c *Client) Devices(ctx context.Context, userID string) ([]DeviceInfo, error) {
	q, err := c.queryKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	return c.devicesOf(q, userID), nil
}

func (c *Client) devicesOf(q *queryResult, userID string) []DeviceInfo {
	var out []DeviceInfo
	for dev, raw := range q.DeviceKeys[userID] {
		d := DeviceInfo{UserID: userID, DeviceID: dev, Keys: raw}
		var dk struct {
			Keys map[string]string `json:"keys"`
		}
		if json.Unmarshal(raw, &dk) == nil {
			if v, ok := dk.Keys[c.alg+":"+dev]; ok {
				if cb, err := b64.DecodeString(v); err == nil {
					var cred mls.Credential
					if cred.UnmarshalMLS(cb) == nil {
						if id, err := cred.MatrixIdentity(); err == nil {
							d.Credential, d.Identity = &cred, id
						}
					}
				}
			}
		}
		out = append(out, d)
	}
	sortDevices(out)
	return out
}

// claimKeyPackages claims one key package of each device.
func (c *Client) claimKeyPackages(ctx context.Context, devices []DeviceInfo) (map[string]*mls.KeyPackage, error) {
	req := map[string]map[string]string{}
	for _, d := range devices {
		if req[d.UserID] == nil {
			req[d.UserID] = map[string]string{}
		}
		req[d.UserID][d.DeviceID] = c.alg
	}
	var out struct {
		OneTimeKeys map[string]map[string]map[string]string `json:"one_time_keys"`
	}
	if err := c.call(ctx, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": req}, &out); err != nil {
		return nil, fmt.Errorf("claiming key packages: %w", err)
	}
	kps := map[string]*mls.KeyPackage{}
	for _, d := range devices {
		claimed := out.OneTimeKeys[d.UserID][d.DeviceID]
		if len(claimed) == 0 {
			return nil, fmt.Errorf("device %s of %s has no key package left", d.DeviceID, d.UserID)
		}
		for id, v := range claimed {
			raw, err := b64.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("key package %s of %s %s: not base64", id, d.UserID, d.DeviceID)
			}
			var m mls.MLSMessage
			if err := m.UnmarshalMLS(raw); err != nil || m.KeyPackage == nil {
				return nil, fmt.Errorf("key package %s of %s %s: %v", id, d.UserID, d.DeviceID, err)
			}
			kps[d.UserID+"|"+d.DeviceID] = m.KeyPackage
		}
	}
	return kps, nil
}
