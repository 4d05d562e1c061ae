package userapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
)

// Cross-signing (the Matrix spec's client-server API, "Cross-signing"):
// each user has a master key, a self-signing key (signs the user's own
// devices) and a user-signing key (signs other users' master keys), all
// ed25519, uploaded with POST /keys/device_signing/upload; signatures made
// with them are uploaded with POST /keys/signatures/upload and handed out
// by /keys/query merged into the signed objects.

// Usages of cross-signing keys, as in the key's "usage" and storage's
// CrossSigningKey.Usage.
const (
	UsageMaster      = "master"
	UsageSelfSigning = "self_signing"
	UsageUserSigning = "user_signing"
)

// CodeInvalidSignature is the errcode of a signature that does not verify
// (in the failures of /keys/signatures/upload).
const CodeInvalidSignature = "M_INVALID_SIGNATURE"

// CrossSigningKeyObject is the shape of a CrossSigningKey.
type CrossSigningKeyObject struct {
	UserID     string                       `json:"user_id"`
	Usage      []string                     `json:"usage"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures,omitempty"`
}

// CrossSigningKey is a checked cross-signing key: the object as given,
// decoded, with its one ed25519 key.
type CrossSigningKey struct {
	Raw    json.RawMessage
	Object CrossSigningKeyObject
	// KeyID is "ed25519:<PublicKeyB64>".
	KeyID        string
	PublicKeyB64 string
	PublicKey    ed25519.PublicKey
}

// ParseCrossSigningKey checks the shape of a CrossSigningKey given as
// field: a JSON object (else 400 M_BAD_JSON naming field) whose user_id is
// userID, whose usage is [usage] and whose keys hold exactly one ed25519
// key "ed25519:<key>": "<key>", the key standard unpadded base64 of 32
// bytes (else 400 M_INVALID_PARAM naming field). Signatures are not
// checked here.
func ParseCrossSigningKey(field string, raw json.RawMessage, userID, usage string) (*CrossSigningKey, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, matrixerr.BadJSON("%s must be an object", field)
	}
	var obj CrossSigningKeyObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, matrixerr.BadJSON("%s: %v", field, err)
	}
	for _, f := range []string{"user_id", "usage", "keys"} {
		if v, ok := fields[f]; !ok || string(v) == "null" {
			return nil, matrixerr.BadJSON("%s.%s is required", field, f)
		}
	}
	if obj.UserID != userID {
		return nil, matrixerr.InvalidParam("%s.user_id %q is not %q", field, obj.UserID, userID)
	}
	if len(obj.Usage) != 1 || obj.Usage[0] != usage {
		return nil, matrixerr.InvalidParam("%s.usage %q must be [%q]", field, obj.Usage, usage)
	}
	if len(obj.Keys) != 1 {
		return nil, matrixerr.InvalidParam("%s.keys: %d keys, want exactly one ed25519 key", field, len(obj.Keys))
	}
	k := &CrossSigningKey{Raw: bytes.Clone(raw), Object: obj}
	for keyID, value := range obj.Keys {
		pub, ok := strings.CutPrefix(keyID, "ed25519:")
		if !ok || pub != value {
			return nil, matrixerr.InvalidParam("%s.keys[%q]: the key ID must be ed25519:<the key>", field, keyID)
		}
		b, err := b64.DecodeString(value)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, matrixerr.InvalidParam("%s.keys[%q]: not standard unpadded base64 of a 32-byte ed25519 key", field, keyID)
		}
		k.KeyID, k.PublicKeyB64, k.PublicKey = keyID, value, ed25519.PublicKey(b)
	}
	return k, nil
}

// verifySignedBy checks that obj (JSON) carries a signature of signer's
// key, which verifies over the canonical JSON without signatures and
// unsigned; it returns the signature.
func verifySignedBy(obj json.RawMessage, signerUserID string, signer *CrossSigningKey) (string, error) {
	var o struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(obj, &o); err != nil {
		return "", fmt.Errorf("signatures: %v", err)
	}
	sig, ok := o.Signatures[signerUserID][signer.KeyID]
	if !ok {
		return "", fmt.Errorf("no signature of %s by %s", signerUserID, signer.KeyID)
	}
	if err := gomatrixserverlib.VerifyJSON(signerUserID, gomatrixserverlib.KeyID(signer.KeyID), signer.PublicKey, obj); err != nil {
		return "", fmt.Errorf("the signature of %s by %s does not verify: %v", signerUserID, signer.KeyID, err)
	}
	return sig, nil
}

// UploadSigningKeysRequest is the parsed body of POST
// /keys/device_signing/upload.
type UploadSigningKeysRequest struct {
	// Keys are the raw key objects by usage (absent usages left out).
	Keys map[string]json.RawMessage
	Auth *AuthData
}

// signingKeyFields maps the body's fields to usages.
var signingKeyFields = []struct{ field, usage string }{
	{"master_key", UsageMaster},
	{"self_signing_key", UsageSelfSigning},
	{"user_signing_key", UsageUserSigning},
}

// ParseUploadSigningKeys parses the body of POST
// /keys/device_signing/upload: a JSON object (else 400 M_NOT_JSON) with
// optional master_key, self_signing_key and user_signing_key objects and
// an optional auth object (else 400 M_BAD_JSON naming the field).
func ParseUploadSigningKeys(body []byte) (*UploadSigningKeysRequest, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return nil, matrixerr.NotJSON("request body is not valid JSON")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, matrixerr.BadJSON("request body must be a JSON object")
	}
	out := &UploadSigningKeysRequest{Keys: map[string]json.RawMessage{}}
	for _, f := range signingKeyFields {
		if raw, ok := top[f.field]; ok && string(raw) != "null" {
			out.Keys[f.usage] = raw
		}
	}
	if raw, ok := top["auth"]; ok && string(raw) != "null" {
		var a AuthData
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, matrixerr.BadJSON("auth: %v", err)
		}
		out.Auth = &a
	}
	return out, nil
}

// UploadSigningKeys handles POST /keys/device_signing/upload for userID:
// each key given passes ParseCrossSigningKey (user_id the caller's, usage
// the field's, one ed25519 key), and the self-signing and user-signing
// keys must carry a valid signature of the master key (the one uploaded
// with them, else the stored one); a failure is 400 naming the field and
// nothing is stored. While the user has no master key the upload needs no
// user-interactive auth; afterwards an upload that changes any stored key
// needs auth m.login.password with the user's password (else 401 with the
// m.login.password flow), while uploading the stored keys again does not.
// The keys are stored together (a device key change of the user, listed
// by /sync) and the user's /sync is woken.
func (s *Service) UploadSigningKeys(ctx context.Context, userID string, body []byte) error {
	req, err := ParseUploadSigningKeys(body)
	if err != nil {
		return err
	}
	keys := map[string]*CrossSigningKey{}
	for _, f := range signingKeyFields {
		raw, ok := req.Keys[f.usage]
		if !ok {
			continue
		}
		if keys[f.usage], err = ParseCrossSigningKey(f.field, raw, userID, f.usage); err != nil {
			return err
		}
	}
	stored, err := s.cfg.Store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return fmt.Errorf("reading cross-signing keys of %s: %w", userID, err)
	}
	master := keys[UsageMaster]
	if master == nil && stored[UsageMaster] != nil {
		if master, err = ParseCrossSigningKey("stored master key", stored[UsageMaster], userID, UsageMaster); err != nil {
			return fmt.Errorf("stored master key of %s: %w", userID, err)
		}
	}
	for _, f := range signingKeyFields[1:] {
		k := keys[f.usage]
		if k == nil {
			continue
		}
		if master == nil {
			return matrixerr.InvalidParam("%s: the user has no master key; upload master_key with it", f.field)
		}
		if _, err := verifySignedBy(k.Raw, userID, master); err != nil {
			return matrixerr.InvalidParam("%s: must be signed by the master key: %v", f.field, err)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	changes := false
	for usage, k := range keys {
		if old, ok := stored[usage]; !ok || !sameJSON(old, k.Raw) {
			changes = true
		}
	}
	if stored[UsageMaster] != nil && changes {
		if err := s.passwordAuth(ctx, userID, req.Auth); err != nil {
			return err
		}
	}
	if !changes {
		return nil
	}
	toStore := make([]storage.CrossSigningKey, 0, len(keys))
	for _, f := range signingKeyFields {
		if k := keys[f.usage]; k != nil {
			toStore = append(toStore, storage.CrossSigningKey{UserID: userID, Usage: f.usage, KeyJSON: k.Raw})
		}
	}
	if err := s.cfg.Store.StoreCrossSigningKeys(ctx, toStore); err != nil {
		return fmt.Errorf("storing cross-signing keys of %s: %w", userID, err)
	}
	s.notify(ctx, userID)
	return nil
}

// sameJSON reports whether a and b are the same JSON (canonically).
func sameJSON(a, b []byte) bool {
	ca, err1 := gomatrixserverlib.CanonicalJSON(a)
	cb, err2 := gomatrixserverlib.CanonicalJSON(b)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// passwordAuth checks user-interactive auth m.login.password for userID:
// nil a, another type, another user or a wrong password are 401 with the
// m.login.password flow.
func (s *Service) passwordAuth(ctx context.Context, userID string, a *AuthData) error {
	if a == nil {
		return s.authRequired(LoginPassword, "", "")
	}
	if a.Type != LoginPassword {
		return s.authRequired(LoginPassword, matrixerr.CodeUnrecognized, fmt.Sprintf("auth type %q is not offered; use %s", a.Type, LoginPassword))
	}
	who := userID
	if a.Identifier != nil || a.User != "" {
		var err error
		if who, err = s.loginUser(a.Identifier, a.User); err != nil {
			return err
		}
	}
	if who != userID {
		return s.authRequired(LoginPassword, matrixerr.CodeForbidden, "auth names another user than the caller")
	}
	if err := s.checkUserPassword(ctx, userID, a.Password); err != nil {
		if matrixerr.As(err) == nil {
			return err
		}
		return s.authRequired(LoginPassword, matrixerr.CodeForbidden, "invalid password")
	}
	return nil
}

// SignatureFailure is one entry of the failures of
// /keys/signatures/upload.
type SignatureFailure struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// UploadSignaturesResponse is the answer of POST /keys/signatures/upload:
// user ID -> key ID or device ID -> why that object's signature was not
// stored.
type UploadSignaturesResponse struct {
	Failures map[string]map[string]SignatureFailure `json:"failures"`
}

// MaxSignaturesPerUpload bounds the signed objects of one
// /keys/signatures/upload.
const MaxSignaturesPerUpload = 1000

// UploadSignatures handles POST /keys/signatures/upload for userID. The
// body is {user ID: {key or device ID: signed object}} (else 400
// M_NOT_JSON / M_BAD_JSON naming the entry; at most
// MaxSignaturesPerUpload objects). Two kinds of signature are accepted:
// of the caller's self-signing key on one of the caller's devices (the
// object is that device's keys) and of the caller's user-signing key on
// a local user's master key (the entry is the master key's public key).
// Each object must equal the stored one apart from signatures and
// unsigned and carry a signature of the caller's key that verifies; the
// signatures that pass are stored together, the others are listed in
// failures (M_NOT_FOUND: unknown device or key, M_INVALID_PARAM: the
// object differs or is not accepted, M_INVALID_SIGNATURE: no valid
// signature).
func (s *Service) UploadSignatures(ctx context.Context, userID string, body []byte) (*UploadSignaturesResponse, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return nil, matrixerr.NotJSON("request body is not valid JSON")
	}
	var top map[string]map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, matrixerr.BadJSON("request body must be an object of user IDs to objects of key or device IDs to signed objects")
	}
	n := 0
	for target, objs := range top {
		if err := checkUserID("request body", target); err != nil {
			return nil, err
		}
		for id, obj := range objs {
			var o map[string]json.RawMessage
			if json.Unmarshal(obj, &o) != nil || o == nil {
				return nil, matrixerr.BadJSON("[%q][%q] must be an object", target, id)
			}
			n++
		}
	}
	if n > MaxSignaturesPerUpload {
		return nil, matrixerr.InvalidParam("%d signed objects, at most %d per upload", n, MaxSignaturesPerUpload)
	}
	mine, err := s.cfg.Store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reading cross-signing keys of %s: %w", userID, err)
	}
	signer := func(usage string) *CrossSigningKey {
		k, err := ParseCrossSigningKey(usage, mine[usage], userID, usage)
		if err != nil {
			return nil
		}
		return k
	}
	ssk, usk := signer(UsageSelfSigning), signer(UsageUserSigning)

	out := &UploadSignaturesResponse{Failures: map[string]map[string]SignatureFailure{}}
	fail := func(target, id, code, format string, args ...any) {
		if out.Failures[target] == nil {
			out.Failures[target] = map[string]SignatureFailure{}
		}
		out.Failures[target][id] = SignatureFailure{ErrCode: code, Error: fmt.Sprintf(format, args...)}
	}
	var sigs []storage.CrossSigningSignature
	for _, target := range sortedKeys(top) {
		objs := top[target]
		ids := make([]string, 0, len(objs))
		for id := range objs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if target == userID {
			devs, err := s.cfg.Store.DeviceKeys(ctx, userID, ids)
			if err != nil {
				return nil, fmt.Errorf("reading device keys of %s: %w", userID, err)
			}
			stored := map[string][]byte{}
			for _, d := range devs {
				stored[d.DeviceID] = d.KeysJSON
			}
			for _, id := range ids {
				old, ok := stored[id]
				if !ok || len(old) == 0 {
					fail(target, id, matrixerr.CodeNotFound, "no device %s with keys (this server accepts signatures of the self-signing key on the caller's devices)", id)
					continue
				}
				if ssk == nil {
					fail(target, id, matrixerr.CodeNotFound, "the caller has no self-signing key")
					continue
				}
				if !sameUnsigned(old, objs[id]) {
					fail(target, id, matrixerr.CodeInvalidParam, "the object differs from the stored device keys of %s", id)
					continue
				}
				sig, err := verifySignedBy(objs[id], userID, ssk)
				if err != nil {
					fail(target, id, CodeInvalidSignature, "%v", err)
					continue
				}
				sigs = append(sigs, storage.CrossSigningSignature{SignerUserID: userID, SignerKeyID: ssk.KeyID, TargetUserID: userID, TargetKeyID: id, Signature: sig})
			}
			continue
		}
		var theirs map[string][]byte
		if s.isLocal(target) {
			if theirs, err = s.cfg.Store.CrossSigningKeys(ctx, target); err != nil {
				return nil, fmt.Errorf("reading cross-signing keys of %s: %w", target, err)
			}
		} else if s.cfg.Remote != nil {
			// A remote user's master key as its server gives it now: the
			// signature is kept here, shown to the signer's own devices.
			if resp, err := s.cfg.Remote.QueryKeys(ctx, serverOf(target), map[string][]string{target: {}}); err == nil {
				if mk, ok := resp.MasterKeys[target]; ok {
					theirs = map[string][]byte{UsageMaster: mk}
				}
			}
		}
		for _, id := range ids {
			master, err := ParseCrossSigningKey("master key", theirs[UsageMaster], target, UsageMaster)
			if err != nil || master.PublicKeyB64 != id {
				fail(target, id, matrixerr.CodeNotFound, "%s is not the master key of %s known here (this server accepts signatures of the user-signing key on master keys it holds or can fetch from their server)", id, target)
				continue
			}
			if usk == nil {
				fail(target, id, matrixerr.CodeNotFound, "the caller has no user-signing key")
				continue
			}
			if !sameUnsigned(master.Raw, objs[id]) {
				fail(target, id, matrixerr.CodeInvalidParam, "the object differs from the master key of %s", target)
				continue
			}
			sig, err := verifySignedBy(objs[id], userID, usk)
			if err != nil {
				fail(target, id, CodeInvalidSignature, "%v", err)
				continue
			}
			sigs = append(sigs, storage.CrossSigningSignature{SignerUserID: userID, SignerKeyID: usk.KeyID, TargetUserID: target, TargetKeyID: id, Signature: sig})
		}
	}
	if len(sigs) > 0 {
		if err := s.cfg.Store.StoreCrossSigningSignatures(ctx, sigs); err != nil {
			return nil, fmt.Errorf("storing signatures of %s: %w", userID, err)
		}
		var woken []string
		for _, sg := range sigs {
			if !slices.Contains(woken, sg.TargetUserID) {
				woken = append(woken, sg.TargetUserID)
				s.notify(ctx, sg.TargetUserID)
			}
		}
	}
	return out, nil
}

// sameUnsigned reports whether JSON objects a and b are equal apart from
// their signatures and unsigned.
func sameUnsigned(a, b []byte) bool {
	strip := func(js []byte) ([]byte, bool) {
		var m map[string]json.RawMessage
		if json.Unmarshal(js, &m) != nil || m == nil {
			return nil, false
		}
		delete(m, "signatures")
		delete(m, "unsigned")
		out, err := json.Marshal(m)
		if err != nil {
			return nil, false
		}
		c, err := gomatrixserverlib.CanonicalJSON(out)
		return c, err == nil
	}
	ca, ok1 := strip(a)
	cb, ok2 := strip(b)
	return ok1 && ok2 && bytes.Equal(ca, cb)
}

// mergeSignatures adds sigs (signer user -> key ID -> signature) to the
// signatures of the JSON object obj, keeping those it has.
func mergeSignatures(obj json.RawMessage, sigs []storage.CrossSigningSignature) (json.RawMessage, error) {
	if len(sigs) == 0 {
		return obj, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	all := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, fmt.Errorf("signatures: %w", err)
		}
		if all == nil {
			all = map[string]map[string]string{}
		}
	}
	for _, sg := range sigs {
		if all[sg.SignerUserID] == nil {
			all[sg.SignerUserID] = map[string]string{}
		}
		all[sg.SignerUserID][sg.SignerKeyID] = sg.Signature
	}
	b, err := json.Marshal(all)
	if err != nil {
		return nil, err
	}
	m["signatures"] = b
	return json.Marshal(m)
}

// LocalCrossSigningKeys returns a local user's cross-signing keys by usage
// (those stored; user_signing only when withUserSigning), the master
// key's uploaded signatures merged into it.
func (s *Service) LocalCrossSigningKeys(ctx context.Context, userID string, withUserSigning bool) (map[string]json.RawMessage, error) {
	stored, err := s.cfg.Store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reading cross-signing keys of %s: %w", userID, err)
	}
	if len(stored) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	sigs, err := s.cfg.Store.CrossSigningSignatures(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("reading signatures on keys of %s: %w", userID, err)
	}
	out := map[string]json.RawMessage{}
	for usage, js := range stored {
		if usage == UsageUserSigning && !withUserSigning {
			continue
		}
		out[usage] = js
	}
	if js, ok := out[UsageMaster]; ok {
		mk, err := ParseCrossSigningKey("master key", js, userID, UsageMaster)
		if err != nil {
			return nil, fmt.Errorf("stored master key of %s: %w", userID, err)
		}
		var on []storage.CrossSigningSignature
		for _, sg := range sigs {
			if sg.TargetKeyID == mk.PublicKeyB64 {
				on = append(on, sg)
			}
		}
		if out[UsageMaster], err = mergeSignatures(js, on); err != nil {
			return nil, fmt.Errorf("stored master key of %s: %w", userID, err)
		}
	}
	return out, nil
}

// addCrossSigningKeys puts a user's keys by usage into the response.
func (r *QueryKeysResponse) addCrossSigningKeys(userID string, keys map[string]json.RawMessage) {
	for usage, js := range keys {
		var m *map[string]json.RawMessage
		switch usage {
		case UsageMaster:
			m = &r.MasterKeys
		case UsageSelfSigning:
			m = &r.SelfSigningKeys
		case UsageUserSigning:
			m = &r.UserSigningKeys
		default:
			continue
		}
		if *m == nil {
			*m = map[string]json.RawMessage{}
		}
		(*m)[userID] = js
	}
}
