package userapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// MaxKeyPackagesPerUpload bounds the one-time key packages of one
// /keys/upload (each costs two signature verifications).
const MaxKeyPackagesPerUpload = 500

// b64 is the standard unpadded base64 of SPEC-NOTES §9, strict (no
// padding, no stray bits).
var b64 = base64.RawStdEncoding.Strict()

// ParseAlgorithm returns the cipher suite of an MLS algorithm name of
// either room version (m.mls.v1.* or de.bwi.mls.v1.*).
func ParseAlgorithm(alg string) (mls.CipherSuite, error) {
	var firstErr error
	for _, v := range roomversion.Versions() {
		cs, err := v.ParseAlgorithm(alg)
		if err == nil {
			return cs, nil
		}
		if strings.HasPrefix(alg, v.AlgorithmPrefix()) || firstErr == nil {
			firstErr = err
		}
	}
	return 0, firstErr
}

// keyError is 400 M_BAD_JSON for a failed check of one uploaded key.
func keyError(field, keyID, format string, args ...any) error {
	return matrixerr.BadJSON("%s[%q]: %s", field, keyID, fmt.Sprintf(format, args...))
}

// CheckKeyPackage does every SPEC-NOTES §9 check of one uploaded key
// package: the key ID is "<algorithm>:<base64 KeyPackageRef>" with an MLS
// algorithm of either room version; the value is standard unpadded base64
// of an MLSMessage holding a KeyPackage; version mls10; its cipher suite is
// the algorithm's; KeyPackage and LeafNode signatures and the rest of RFC
// 9420 §10.1 (mls.KeyPackage.Validate); the lifetime covers now; init_key
// differs from encryption_key; the capabilities list extension 0xF6D0;
// the credential is a BasicCredential whose Matrix identity names userID
// and deviceID with the leaf's signature key; and the key ID's reference is
// the package's KeyPackageRef. A failure is an error naming the check (the
// HTTP layer's 400 M_BAD_JSON adds the key ID).
func CheckKeyPackage(_ context.Context, algorithm, keyID, value, userID, deviceID string, now time.Time) (*mls.KeyPackage, error) {
	alg, refB64, ok := strings.Cut(keyID, ":")
	if !ok {
		return nil, fmt.Errorf("key ID %q is not <algorithm>:<KeyPackageRef>", keyID)
	}
	if alg != algorithm {
		return nil, fmt.Errorf("key ID algorithm %q differs from %q", alg, algorithm)
	}
	cs, err := ParseAlgorithm(algorithm)
	if err != nil {
		return nil, fmt.Errorf("algorithm: %w (this server hosts MLS rooms only)", err)
	}
	ref, err := b64.DecodeString(refB64)
	if err != nil || len(ref) == 0 {
		return nil, fmt.Errorf("key ID reference %q is not standard unpadded base64", refB64)
	}
	raw, err := b64.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("value is not standard unpadded base64: %v", err)
	}
	var msg mls.MLSMessage
	if err := msg.UnmarshalMLS(raw); err != nil {
		return nil, fmt.Errorf("value is not an MLSMessage: %w", err)
	}
	if msg.Version != mls.MLS10 {
		return nil, fmt.Errorf("MLSMessage version %v, want mls10", msg.Version)
	}
	if msg.WireFormat != mls.WireFormatKeyPackage || msg.KeyPackage == nil {
		return nil, fmt.Errorf("MLSMessage wire format %v, want mls_key_package", msg.WireFormat)
	}
	kp := msg.KeyPackage
	if kp.Version != mls.MLS10 {
		return nil, fmt.Errorf("key package version %v, want mls10", kp.Version)
	}
	if kp.CipherSuite != cs {
		return nil, fmt.Errorf("key package cipher suite %v differs from the algorithm's %v", kp.CipherSuite, cs)
	}
	if err := kp.Validate(mls.KeyPackageCheck{
		CipherSuite:         cs,
		Now:                 now,
		RequiredExtensions:  []mls.ExtensionType{client.RoomStateExtension},
		RequiredCredentials: []mls.CredentialType{mls.CredentialTypeBasic},
	}); err != nil {
		return nil, err
	}
	id, err := kp.LeafNode.MatrixIdentity()
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	if id.UserID != userID || id.DeviceID != deviceID {
		return nil, fmt.Errorf("credential names %s/%s, not the uploading device %s/%s", id.UserID, id.DeviceID, userID, deviceID)
	}
	want, err := kp.Ref()
	if err != nil {
		return nil, fmt.Errorf("computing KeyPackageRef: %w", err)
	}
	if !bytes.Equal(want, ref) {
		return nil, fmt.Errorf("key ID reference is not the key package's KeyPackageRef %s", b64.EncodeToString(want))
	}
	return kp, nil
}

// CheckCredential checks an uploaded MLS credential (a device key
// "<algorithm>:<device_id>"): standard unpadded base64 of a TLS-encoded
// BasicCredential whose Matrix identity names userID and deviceID.
func CheckCredential(value, userID, deviceID string) (*mls.MatrixIdentity, error) {
	raw, err := b64.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("credential is not standard unpadded base64: %v", err)
	}
	var c mls.Credential
	if err := c.UnmarshalMLS(raw); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	id, err := c.MatrixIdentity()
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	if id.UserID != userID || id.DeviceID != deviceID {
		return nil, fmt.Errorf("credential names %s/%s, not the uploading device %s/%s", id.UserID, id.DeviceID, userID, deviceID)
	}
	return id, nil
}

// KeysUpload is a parsed /keys/upload body: shapes checked, nothing of the
// MLS content yet.
type KeysUpload struct {
	// DeviceKeys is the device_keys object as given (nil if absent).
	DeviceKeys json.RawMessage
	// Device is DeviceKeys decoded.
	Device *DeviceKeysObject
	// OneTimeKeys and FallbackKeys are key ID -> value (the base64 string).
	OneTimeKeys  map[string]string
	FallbackKeys map[string]string
}

// DeviceKeysObject is the shape of device_keys.
type DeviceKeysObject struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// ParseKeysUpload parses a /keys/upload body: a JSON object (else 400
// M_NOT_JSON) with optional device_keys (an object with user_id,
// device_id and keys required; algorithms and signatures, which this
// server does not check, optional but typed), one_time_keys and
// fallback_keys (objects of key ID to string); wrong shapes are 400
// M_BAD_JSON naming the field. At most MaxKeyPackagesPerUpload one-time
// keys.
func ParseKeysUpload(body []byte) (*KeysUpload, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return nil, matrixerr.NotJSON("request body is not valid JSON")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, matrixerr.BadJSON("request body must be a JSON object")
	}
	out := &KeysUpload{}
	if raw, ok := top["device_keys"]; ok && string(raw) != "null" {
		var dk DeviceKeysObject
		if err := json.Unmarshal(raw, &dk); err != nil {
			return nil, matrixerr.BadJSON("device_keys: %v", err)
		}
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields) // raw decoded as an object above
		for _, f := range []string{"user_id", "device_id", "keys"} {
			if v, ok := fields[f]; !ok || string(v) == "null" {
				return nil, matrixerr.BadJSON("device_keys.%s is required", f)
			}
		}
		out.DeviceKeys, out.Device = raw, &dk
	}
	var err error
	if out.OneTimeKeys, err = stringMap(top, "one_time_keys"); err != nil {
		return nil, err
	}
	if out.FallbackKeys, err = stringMap(top, "fallback_keys"); err != nil {
		return nil, err
	}
	if len(out.OneTimeKeys) > MaxKeyPackagesPerUpload {
		return nil, matrixerr.InvalidParam("one_time_keys: %d keys, at most %d per upload", len(out.OneTimeKeys), MaxKeyPackagesPerUpload)
	}
	return out, nil
}

// stringMap decodes top[field] as an object of strings.
func stringMap(top map[string]json.RawMessage, field string) (map[string]string, error) {
	raw, ok := top[field]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, matrixerr.BadJSON("%s must be an object", field)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, matrixerr.BadJSON("%s[%q]: MLS key packages are strings (standard unpadded base64 of an MLSMessage)", field, k)
		}
		out[k] = s
	}
	return out, nil
}

// UploadKeysResponse is the answer of POST /keys/upload.
type UploadKeysResponse struct {
	OneTimeKeyCounts map[string]int `json:"one_time_key_counts"`
}

// UploadKeys handles POST /keys/upload for the caller's device: it parses
// body (ParseKeysUpload), checks device_keys (user_id and device_id the
// caller's; each key "<MLS algorithm>:<device_id>" a credential passing
// CheckCredential; keys of other algorithms are kept as given, for
// features outside MLS rooms) and every one-time and fallback key package
// (CheckKeyPackage; only MLS algorithms; at most one fallback per
// algorithm). Any failure is 400 M_BAD_JSON naming the key and the check,
// and nothing of the upload is stored; so is a one-time key ID stored
// already with another value, or one a claim handed out before (a claimed
// key package is never handed out twice). Then it stores the one-time
// packages (all or none), the device keys and the fallbacks, wakes the
// caller's /sync and answers the one-time counts per algorithm. Device
// keys that differ from those stored are first announced to the other
// servers sharing a room with the user (Remote.DeviceListUpdate, an
// m.device_list_update EDU); if that fails the upload fails before the
// keys are stored, and the client retries it.
func (s *Service) UploadKeys(ctx context.Context, userID, deviceID string, body []byte) (*UploadKeysResponse, error) {
	up, err := ParseKeysUpload(body)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var dk *storage.DeviceKeys
	if up.Device != nil {
		if dk, err = checkDeviceKeys(up, userID, deviceID); err != nil {
			return nil, err
		}
	}
	otks, err := s.checkKeyPackages(ctx, "one_time_keys", up.OneTimeKeys, userID, deviceID, now)
	if err != nil {
		return nil, err
	}
	fbs, err := s.checkKeyPackages(ctx, "fallback_keys", up.FallbackKeys, userID, deviceID, now)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, kp := range fbs {
		if other, ok := seen[kp.Algorithm]; ok {
			return nil, keyError("fallback_keys", kp.KeyID, "a second fallback key of algorithm %s (also %s): at most one per algorithm", kp.Algorithm, other)
		}
		seen[kp.Algorithm] = kp.KeyID
	}

	changed := false
	if len(otks) > 0 {
		err := s.cfg.Store.StoreOneTimeKeyPackages(ctx, userID, deviceID, otks)
		var kc *storage.KeyConflictError
		switch {
		case errors.As(err, &kc) && kc.Claimed:
			return nil, keyError("one_time_keys", kc.KeyID, "this key package was claimed already (handed out to another device); upload a new one")
		case errors.As(err, &kc):
			return nil, keyError("one_time_keys", kc.KeyID, "the key ID is stored already with another value")
		case errors.Is(err, storage.ErrConflict):
			return nil, matrixerr.BadJSON("one_time_keys: a key ID is stored already with another value")
		}
		if err != nil {
			return nil, fmt.Errorf("storing one-time key packages of %s/%s: %w", userID, deviceID, err)
		}
		changed = true
	}
	if dk != nil {
		// Other servers hear of new or changed keys before they are
		// stored: if queueing fails, nothing is stored, the upload fails
		// and the client's retry sends the update again.
		old, err := s.cfg.Store.DeviceKeys(ctx, userID, []string{deviceID})
		if err != nil {
			return nil, fmt.Errorf("reading device keys of %s/%s: %w", userID, deviceID, err)
		}
		if len(old) != 1 || !bytes.Equal(old[0].KeysJSON, dk.KeysJSON) {
			if err := s.deviceListUpdate(ctx, userID, deviceID, false, dk.KeysJSON); err != nil {
				return nil, err
			}
		}
		if err := s.cfg.Store.StoreDeviceKeys(ctx, *dk); err != nil {
			return nil, fmt.Errorf("storing device keys of %s/%s: %w", userID, deviceID, err)
		}
		changed = true
	}
	for _, kp := range fbs {
		if err := s.cfg.Store.StoreFallbackKeyPackage(ctx, userID, deviceID, kp); err != nil {
			return nil, fmt.Errorf("storing fallback key package of %s/%s: %w", userID, deviceID, err)
		}
		changed = true
	}
	if changed {
		s.notify(ctx, userID)
	}
	counts, err := s.cfg.Store.CountOneTimeKeyPackages(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("counting key packages of %s/%s: %w", userID, deviceID, err)
	}
	if counts == nil {
		counts = map[string]int{}
	}
	return &UploadKeysResponse{OneTimeKeyCounts: counts}, nil
}

// checkDeviceKeys checks device_keys and extracts the MLS credentials.
func checkDeviceKeys(up *KeysUpload, userID, deviceID string) (*storage.DeviceKeys, error) {
	d := up.Device
	if d.UserID != userID {
		return nil, matrixerr.BadJSON("device_keys.user_id %q is not the caller %q", d.UserID, userID)
	}
	if d.DeviceID != deviceID {
		return nil, matrixerr.BadJSON("device_keys.device_id %q is not the caller's device %q", d.DeviceID, deviceID)
	}
	creds := map[string]string{}
	for keyID, value := range d.Keys {
		alg, dev, ok := strings.Cut(keyID, ":")
		if !ok || alg == "" || dev != deviceID {
			return nil, keyError("device_keys.keys", keyID, "key IDs are <algorithm>:%s", deviceID)
		}
		if !isMLSAlgorithmName(alg) {
			continue
		}
		if _, err := ParseAlgorithm(alg); err != nil {
			return nil, keyError("device_keys.keys", keyID, "%v", err)
		}
		if _, err := CheckCredential(value, userID, deviceID); err != nil {
			return nil, keyError("device_keys.keys", keyID, "%v", err)
		}
		creds[alg] = value
	}
	return &storage.DeviceKeys{UserID: userID, DeviceID: deviceID, KeysJSON: slices.Clone(up.DeviceKeys), Credentials: creds}, nil
}

// isMLSAlgorithmName reports whether alg has the algorithm prefix of an
// MLS room version (the credential prefix m.mls.v1.basic is not an
// algorithm and is excluded).
func isMLSAlgorithmName(alg string) bool {
	for _, v := range roomversion.Versions() {
		if strings.HasPrefix(alg, v.AlgorithmPrefix()) && !strings.HasPrefix(alg, v.CredentialPrefix()) {
			return true
		}
	}
	return false
}

// checkKeyPackages checks every key package of one field with
// Config.CheckKeyPackage, in key ID order (so that the error names the
// same key every time).
func (s *Service) checkKeyPackages(ctx context.Context, field string, keys map[string]string, userID, deviceID string, now time.Time) ([]storage.KeyPackage, error) {
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]storage.KeyPackage, 0, len(ids))
	for _, id := range ids {
		alg, _, _ := strings.Cut(id, ":")
		if _, err := s.cfg.CheckKeyPackage(ctx, alg, id, keys[id], userID, deviceID, now); err != nil {
			return nil, keyError(field, id, "%v", err)
		}
		out = append(out, storage.KeyPackage{Algorithm: alg, KeyID: id, Value: keys[id]})
	}
	return out, nil
}

// QueryKeysRequest is the body of POST /keys/query.
type QueryKeysRequest struct {
	// DeviceKeys is user ID -> device IDs (empty: all devices).
	DeviceKeys map[string][]string `json:"device_keys"`
	Timeout    *int64              `json:"timeout,omitempty"`
	// Caller is the user asking (set by the handler, not from the body):
	// its own user_signing_keys are answered.
	Caller string `json:"-"`
}

// QueryKeys returns the device keys of the users asked for (POST
// /keys/query): local users' stored device keys (with
// unsigned.device_display_name and the uploaded cross-signing signatures)
// and cross-signing keys (LocalCrossSigningKeys; user_signing only of
// req.Caller), unknown local users as {}, remote users through Remote
// (their master and self-signing keys too); a remote server that fails (or any, while Remote is nil)
// is listed in failures.
func (s *Service) QueryKeys(ctx context.Context, req QueryKeysRequest) (*QueryKeysResponse, error) {
	out := &QueryKeysResponse{DeviceKeys: map[string]map[string]json.RawMessage{}, Failures: map[string]json.RawMessage{}}
	remote := map[string]map[string][]string{}
	for userID, devices := range req.DeviceKeys {
		if err := checkUserID("device_keys", userID); err != nil {
			return nil, err
		}
		if !s.isLocal(userID) {
			srv := serverOf(userID)
			if remote[srv] == nil {
				remote[srv] = map[string][]string{}
			}
			remote[srv][userID] = devices
			continue
		}
		m, err := s.LocalDeviceKeys(ctx, userID, devices)
		if err != nil {
			return nil, err
		}
		out.DeviceKeys[userID] = m
		cs, err := s.LocalCrossSigningKeys(ctx, userID, userID == req.Caller)
		if err != nil {
			return nil, err
		}
		out.addCrossSigningKeys(userID, cs)
	}
	for srv, users := range remote {
		if s.cfg.Remote == nil {
			out.Failures[srv] = failure(503, "this server does not reach other servers (no federation)")
			continue
		}
		resp, err := s.cfg.Remote.QueryKeys(ctx, srv, users)
		if err != nil {
			out.Failures[srv] = failure(503, err.Error())
			continue
		}
		for userID, devs := range resp.DeviceKeys {
			if _, asked := users[userID]; asked && serverOf(userID) == srv {
				out.DeviceKeys[userID] = devs
			}
		}
		for usage, keys := range map[string]map[string]json.RawMessage{UsageMaster: resp.MasterKeys, UsageSelfSigning: resp.SelfSigningKeys} {
			for userID, js := range keys {
				if _, asked := users[userID]; asked && serverOf(userID) == srv {
					if usage == UsageMaster {
						if js, err = s.withCallerSignatures(ctx, userID, js, req.Caller); err != nil {
							return nil, err
						}
					}
					out.addCrossSigningKeys(userID, map[string]json.RawMessage{usage: js})
				}
			}
		}
	}
	return out, nil
}

// failure is one entry of "failures".
func failure(status int, message string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"status": status, "message": message})
	return b
}

// LocalDeviceKeys returns a local user's device keys (devices empty: all),
// device ID -> the uploaded device_keys object with
// unsigned.device_display_name added when the device has one and the
// signatures uploaded through /keys/signatures/upload merged in. Federation's
// user/keys/query answers with it.
func (s *Service) LocalDeviceKeys(ctx context.Context, userID string, devices []string) (map[string]json.RawMessage, error) {
	keys, err := s.cfg.Store.DeviceKeys(ctx, userID, devices)
	if err != nil {
		return nil, fmt.Errorf("reading device keys of %s: %w", userID, err)
	}
	out := map[string]json.RawMessage{}
	if len(keys) == 0 {
		return out, nil
	}
	devs, err := s.cfg.Store.Devices(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	names := map[string]string{}
	for _, d := range devs {
		names[d.DeviceID] = d.DisplayName
	}
	sigs, err := s.cfg.Store.CrossSigningSignatures(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reading signatures on keys of %s: %w", userID, err)
	}
	for _, k := range keys {
		if len(k.KeysJSON) == 0 {
			continue
		}
		var on []storage.CrossSigningSignature
		for _, sg := range sigs {
			if sg.TargetKeyID == k.DeviceID {
				on = append(on, sg)
			}
		}
		obj, err := mergeSignatures(k.KeysJSON, on)
		if err != nil {
			return nil, fmt.Errorf("stored device keys of %s/%s: %w", userID, k.DeviceID, err)
		}
		if name := names[k.DeviceID]; name != "" {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(obj, &m); err != nil {
				return nil, fmt.Errorf("stored device keys of %s/%s: %w", userID, k.DeviceID, err)
			}
			unsigned, _ := json.Marshal(map[string]string{"device_display_name": name})
			m["unsigned"] = unsigned
			if obj, err = json.Marshal(m); err != nil {
				return nil, fmt.Errorf("encoding device keys: %w", err)
			}
		}
		out[k.DeviceID] = obj
	}
	return out, nil
}

// ClaimKeysRequest is the body of POST /keys/claim.
type ClaimKeysRequest struct {
	// OneTimeKeys is user ID -> device ID -> algorithm.
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	Timeout     *int64                       `json:"timeout,omitempty"`
}

// ClaimKeysResponse is the answer of POST /keys/claim: user ID -> device
// ID -> key ID -> value (the base64 string of the key package).
type ClaimKeysResponse struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	Failures    map[string]json.RawMessage                       `json:"failures"`
}

// ClaimKeys claims one key package per device asked for (POST
// /keys/claim): each one-time package is handed out at most once, then
// the device's fallback. Devices with neither are left out. Only MLS
// algorithms (else 400 M_INVALID_PARAM). Remote users go through Remote;
// failing servers (all, while Remote is nil) are listed in failures.
func (s *Service) ClaimKeys(ctx context.Context, req ClaimKeysRequest) (*ClaimKeysResponse, error) {
	out := &ClaimKeysResponse{OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}, Failures: map[string]json.RawMessage{}}
	remote := map[string]map[string]map[string]string{}
	for userID, devices := range req.OneTimeKeys {
		if err := checkUserID("one_time_keys", userID); err != nil {
			return nil, err
		}
		for dev, alg := range devices {
			if _, err := ParseAlgorithm(alg); err != nil {
				return nil, matrixerr.InvalidParam("one_time_keys[%q][%q]: %v (this server hosts MLS rooms only)", userID, dev, err)
			}
		}
		if !s.isLocal(userID) {
			srv := serverOf(userID)
			if remote[srv] == nil {
				remote[srv] = map[string]map[string]string{}
			}
			remote[srv][userID] = devices
		}
	}
	for userID, devices := range req.OneTimeKeys {
		if !s.isLocal(userID) {
			continue
		}
		m, err := s.ClaimLocalKeys(ctx, userID, devices)
		if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out.OneTimeKeys[userID] = m
		}
	}
	for srv, users := range remote {
		if s.cfg.Remote == nil {
			out.Failures[srv] = failure(503, "this server does not reach other servers (no federation)")
			continue
		}
		resp, err := s.cfg.Remote.ClaimKeys(ctx, srv, users)
		if err != nil {
			out.Failures[srv] = failure(503, err.Error())
			continue
		}
		for userID, devs := range resp {
			if _, asked := users[userID]; asked && serverOf(userID) == srv {
				out.OneTimeKeys[userID] = devs
			}
		}
	}
	return out, nil
}

// ClaimLocalKeys claims one key package per device of a local user
// (device ID -> algorithm), as ClaimKeys; federation's user/keys/claim
// answers with it. It wakes the owner's /sync when anything was claimed
// (its counts changed).
func (s *Service) ClaimLocalKeys(ctx context.Context, userID string, devices map[string]string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	for dev, alg := range devices {
		kp, err := s.cfg.Store.ClaimKeyPackage(ctx, userID, dev, alg)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("claiming a key package of %s/%s: %w", userID, dev, err)
		}
		v, err := json.Marshal(kp.Value)
		if err != nil {
			return nil, fmt.Errorf("encoding key package: %w", err)
		}
		out[dev] = map[string]json.RawMessage{kp.KeyID: v}
	}
	if len(out) > 0 {
		s.notify(ctx, userID)
	}
	return out, nil
}

// ListKeysResponse is the answer of GET /keys/list (the proposal's shape).
type ListKeysResponse struct {
	OneTimeKeys  []string `json:"one_time_keys"`
	FallbackKeys []string `json:"fallback_keys"`
}

// ListKeys lists the calling device's key package IDs (GET /keys/list),
// split into one-time and fallback ones as the proposal shows, each
// sorted: the packages the server holds and may still hand out, so the
// fallback ones include a used fallback (kept and handed out again until
// replaced). A key ID uploaded both ways is listed as a fallback.
func (s *Service) ListKeys(ctx context.Context, userID, deviceID string) (*ListKeysResponse, error) {
	all, err := s.cfg.Store.KeyPackageIDs(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("listing key packages of %s/%s: %w", userID, deviceID, err)
	}
	fb, err := s.cfg.Store.FallbackKeyPackageIDs(ctx, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("listing fallback key packages of %s/%s: %w", userID, deviceID, err)
	}
	out := &ListKeysResponse{OneTimeKeys: []string{}, FallbackKeys: append([]string{}, fb...)}
	for _, id := range all {
		if !slices.Contains(fb, id) {
			out.OneTimeKeys = append(out.OneTimeKeys, id)
		}
	}
	return out, nil
}

// withCallerSignatures merges into a remote user's master key the
// signatures caller uploaded on it (a verification of that user, kept
// here and shown only to the caller's devices, as the Matrix spec has it).
func (s *Service) withCallerSignatures(ctx context.Context, userID string, master json.RawMessage, caller string) (json.RawMessage, error) {
	if caller == "" {
		return master, nil
	}
	mk, err := ParseCrossSigningKey("master key", master, userID, UsageMaster)
	if err != nil {
		return master, nil // the remote server's answer, passed on as it is
	}
	sigs, err := s.cfg.Store.CrossSigningSignatures(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reading signatures on keys of %s: %w", userID, err)
	}
	var on []storage.CrossSigningSignature
	for _, sg := range sigs {
		if sg.SignerUserID == caller && sg.TargetKeyID == mk.PublicKeyB64 {
			on = append(on, sg)
		}
	}
	return mergeSignatures(master, on)
}
