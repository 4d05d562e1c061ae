package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

const (
	testRoom   = "!room:a.example"
	testOrigin = "a.example"
	testKeyID  = "ed25519:k1"
)

// testNow is the clock of key package checks, and testTime the
// origin_server_ts of test events.
var (
	testNow  = time.Unix(1_760_000_000, 0)
	testTime = time.UnixMilli(1_760_000_000_123)
)

var testSuite = mls.X25519AES128GCMSHA256Ed25519

// testFedMap is the federation map test commits carry.
func testFedMap() *fedmap.Map {
	return &fedmap.Map{
		Federation: fedmap.Federation{Powers: []string{"a.example", "b.example"}, Servers: []string{"a.example", "b.example", "c.example"}},
		Security:   &fedmap.Security{Window: 3600, RequiredVerification: fedmap.VerificationTOFU},
	}
}

// encodeFedMap returns m's CBOR encoding.
func encodeFedMap(t testing.TB, m *fedmap.Map) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// privateCommit returns an MLSMessage holding a genuinely protected
// PrivateMessage commit of epoch in group testRoom with authenticated data
// ad, and removes Remove proposals (which vary its length).
func privateCommit(t testing.TB, epoch uint64, ad []byte, removes int) []byte {
	t.Helper()
	return protect(t, epoch, ad, mls.ContentTypeCommit, removes, false)
}

// privateMessage returns an MLSMessage holding a genuinely protected
// PrivateMessage of content type ct: a commit with removes Remove proposals,
// or an application message.
func privateMessage(t testing.TB, epoch uint64, ad []byte, ct mls.ContentType, removes int) []byte {
	t.Helper()
	return protect(t, epoch, ad, ct, removes, false)
}

// protect returns an MLSMessage holding a PrivateMessage, or a PublicMessage
// when public is true, of content type ct from leaf 0 of a group of testRoom
// in epoch: a commit with removes Remove proposals, or an application
// message.
func protect(t testing.TB, epoch uint64, ad []byte, ct mls.ContentType, removes int, public bool) []byte {
	t.Helper()
	hash := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	gc := &mls.GroupContext{Version: mls.MLS10, CipherSuite: testSuite, GroupID: []byte(testRoom), Epoch: epoch,
		TreeHash: hash(1), ConfirmedTranscriptHash: hash(2)}
	keys, err := mls.NewEpochKeys(gc, 4, hash(10), hash(11), hash(12), nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := mls.GenerateSigner(testSuite)
	if err != nil {
		t.Fatal(err)
	}
	commit := &mls.Commit{}
	for i := range removes {
		commit.Proposals = append(commit.Proposals, mls.ProposalOrRef{Type: mls.ProposalOrRefTypeProposal,
			Proposal: &mls.Proposal{ProposalType: mls.ProposalTypeRemove, Remove: &mls.Remove{Removed: uint32(i + 1)}}})
	}
	fc := &mls.FramedContent{GroupID: gc.GroupID, Epoch: epoch, Sender: mls.Sender{SenderType: mls.SenderTypeMember},
		AuthenticatedData: ad, ContentType: ct}
	var tag []byte
	if ct == mls.ContentTypeCommit {
		fc.Commit, tag = commit, hash(3)
	} else {
		fc.Application = []byte(`{"type":"m.room.message","content":{"body":"hi"}}`)
	}
	m := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage}
	if public {
		m.WireFormat = mls.WireFormatPublicMessage
		m.PublicMessage, err = keys.ProtectPublic(fc, signer, tag)
	} else {
		m.PrivateMessage, err = keys.ProtectPrivate(fc, signer, tag)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyPackage returns a KeyPackage signed by a fresh signer of cs, with the
// Matrix identity of @alice:a.example's device ALICEDEV unless cred is set,
// listing extension 0xF6D0 when roomState is true, and valid from notBefore
// to notAfter (zero: the defaults around testNow).
func keyPackage(t testing.TB, cs mls.CipherSuite, cred *mls.Credential, roomState bool, notBefore, notAfter time.Time) *mls.KeyPackage {
	t.Helper()
	signer, err := mls.GenerateSigner(cs)
	if err != nil {
		t.Fatal(err)
	}
	p := mls.KeyPackageParams{Signer: signer, NotBefore: notBefore, NotAfter: notAfter, Now: func() time.Time { return testNow }}
	if cred != nil {
		p.Credential = *cred
	} else if p.Credential, err = mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: "@alice:a.example", DeviceID: "ALICEDEV",
		SignatureKey: signer.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if roomState {
		p.Capabilities = &mls.Capabilities{Extensions: []mls.ExtensionType{0xF6D0}}
	}
	kp, _, err := mls.NewKeyPackage(p)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// keyPackageMessage wraps kp in an MLSMessage.
func keyPackageMessage(t testing.TB, kp *mls.KeyPackage) []byte {
	t.Helper()
	b, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sp(s string) *string { return &s }

// buildEvent builds and signs an event with roomversion.Builder.
func buildEvent(t testing.TB, b *roomversion.Builder) *roomversion.Event {
	t.Helper()
	if b.RoomID == "" {
		b.RoomID = testRoom
	}
	b.Origin, b.Timestamp = testOrigin, testTime
	ev, err := b.Build(context.Background(), testKeyID, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// createEvent builds the create event of testRoom in v.
func createEvent(t testing.TB, v roomversion.Version) *roomversion.Event {
	t.Helper()
	content, err := v.CreateContentJSON(testSuite, true)
	if err != nil {
		t.Fatal(err)
	}
	return buildEvent(t, &roomversion.Builder{Version: v, Type: roomversion.EventTypeCreate, StateKey: sp(""), Content: content})
}

// mlsEvent builds an MLS event of type typ in v carrying msg, with auth
// events auth.
func mlsEvent(t testing.TB, v roomversion.Version, typ string, msg []byte, auth ...string) *roomversion.Event {
	t.Helper()
	content, err := v.MLSContent(typ, testSuite, msg)
	if err != nil {
		t.Fatal(err)
	}
	b := &roomversion.Builder{Version: v, Type: typ, Content: content, AuthEvents: auth, PrevEvents: auth}
	if typ == v.CommitType() {
		b.StateKey = sp("")
	}
	return buildEvent(t, b)
}

// result is what one run of the command gave.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line args through run with stdin.
func runCmd(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// inspectOK runs "inspect args..." on stdin, expects success, and returns
// the output decoded.
func inspectOK(t testing.TB, stdin string, args ...string) map[string]any {
	t.Helper()
	r := runCmd(t, stdin, append([]string{"inspect"}, args...)...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("inspect: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasSuffix(r.stdout, "}\n") {
		t.Fatalf("output is not one newline-terminated JSON object: %q", r.stdout)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("output holds more than one JSON value:\n%s", r.stdout)
	}
	return m
}

// get returns the value at a dotted path of decoded JSON, as a string
// (numbers in their JSON form, arrays and objects as JSON), and whether it
// exists. Keys may hold dots ("create.m.federate").
func get(m map[string]any, path string) (string, bool) {
	var v any = m
	for parts := strings.Split(path, "."); len(parts) > 0; {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		found := false
		for n := len(parts); n > 0 && !found; n-- {
			if v, found = obj[strings.Join(parts[:n], ".")]; found {
				parts = parts[n:]
			}
		}
		if !found {
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	default:
		b, _ := json.Marshal(x)
		return string(b), true
	}
}

// want checks fields of decoded output: path → value, "<absent>" for a path
// that must not exist.
func want(t testing.TB, m map[string]any, fields map[string]string) {
	t.Helper()
	for path, w := range fields {
		got, ok := get(m, path)
		switch {
		case w == "<absent>" && ok:
			t.Errorf("%s = %s, want it absent", path, got)
		case w != "<absent>" && !ok:
			t.Errorf("%s absent, want %s", path, w)
		case w != "<absent>" && got != w:
			t.Errorf("%s = %s, want %s", path, got, w)
		}
	}
}

// commitFields are the fields a test commit of epoch 7 in testRoom shows.
func commitFields(ad []byte, prefix string) map[string]string {
	return map[string]string{
		prefix + "wire_format":                    "mls_private_message",
		prefix + "group_id":                       testRoom,
		prefix + "group_id_hex":                   "<absent>",
		prefix + "epoch":                          "7",
		prefix + "content_type":                   "commit",
		prefix + "authenticated_data":             hex.EncodeToString(ad),
		prefix + "federation.powers":              `["a.example","b.example"]`,
		prefix + "federation.servers":             `["a.example","b.example","c.example"]`,
		prefix + "federation.can_propose":         `[]`,
		prefix + "security.window":                "3600",
		prefix + "security.required_verification": "m.tofu",
		prefix + "authenticated_data_error":       "<absent>",
	}
}

func TestInspectPrivateCommitEveryBase64Form(t *testing.T) {
	ad := encodeFedMap(t, testFedMap())
	// Find a commit whose base64 has padding and characters that differ
	// between the two alphabets, so that every form is really exercised.
	var msg []byte
	for removes := 1; ; removes++ {
		msg = privateCommit(t, 7, ad, removes)
		if std := base64.StdEncoding.EncodeToString(msg); len(msg)%3 != 0 && strings.ContainsAny(std, "+/") {
			break
		}
		if removes > 100 {
			t.Fatal("no commit with padding and +/ in its base64 found")
		}
	}
	forms := map[string]string{
		"standard padded":   base64.StdEncoding.EncodeToString(msg),
		"standard unpadded": base64.RawStdEncoding.EncodeToString(msg),
		"url-safe padded":   base64.URLEncoding.EncodeToString(msg),
		"url-safe unpadded": base64.RawURLEncoding.EncodeToString(msg),
		"wrapped lines":     wrap(base64.StdEncoding.EncodeToString(msg), 76),
	}
	var first string
	for name, text := range forms {
		t.Run(name, func(t *testing.T) {
			r := runCmd(t, "\n \t"+text+"\r\n\n", "inspect")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if first == "" {
				first = r.stdout
			} else if r.stdout != first {
				t.Errorf("output differs between base64 forms:\n%s\nvs\n%s", r.stdout, first)
			}
			want(t, inspectOK(t, text), commitFields(ad, ""))
		})
	}
}

// wrap breaks s into lines of n characters, as base64(1) does.
func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	return b.String() + s
}

func TestInspectOutputKeyOrder(t *testing.T) {
	ad := encodeFedMap(t, testFedMap())
	out := runCmd(t, base64.RawStdEncoding.EncodeToString(privateCommit(t, 7, ad, 1)), "inspect").stdout
	order := []string{"wire_format", "group_id", "epoch", "content_type", "authenticated_data", "federation", "powers",
		"servers", "can_propose", "security", "window", "required_verification"}
	last := -1
	for _, k := range order {
		i := strings.Index(out, `"`+k+`":`)
		if i <= last {
			t.Fatalf("key %q out of order (at %d, previous at %d):\n%s", k, i, last, out)
		}
		last = i
	}
	if !strings.HasPrefix(out, "{\n  \"wire_format\": ") {
		t.Errorf("output does not start with wire_format:\n%s", out)
	}
}

func TestInspectAuthenticatedData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ad     []byte
		fields map[string]string
	}{
		{"empty", nil, map[string]string{"authenticated_data": "", "federation": "<absent>", "security": "<absent>",
			"authenticated_data_error": "<absent>"}},
		{"not CBOR", []byte("plain text"), map[string]string{"authenticated_data": hex.EncodeToString([]byte("plain text")),
			"federation": "<absent>", "security": "<absent>"}},
		{"defaults", encodeFedMap(t, &fedmap.Map{Federation: fedmap.Federation{Powers: []string{"a.example"},
			Servers: []string{"a.example"}, CanPropose: []string{"b.example"}}}), map[string]string{
			"federation.can_propose": `["b.example"]`, "security.window": "0", "security.required_verification": "m.cross",
			"authenticated_data_error": "<absent>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := inspectOK(t, base64.StdEncoding.EncodeToString(privateCommit(t, 7, tc.ad, 1)))
			want(t, m, tc.fields)
			if tc.name == "not CBOR" {
				if e, _ := get(m, "authenticated_data_error"); !strings.Contains(e, "fedmap: decoding") {
					t.Errorf("authenticated_data_error = %q, want the fedmap decoding error", e)
				}
			}
		})
	}
}

func TestInspectGroupIDNotUTF8(t *testing.T) {
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte{0xff, 0x00, 0x01}, Epoch: 0, ContentType: mls.ContentTypeApplication,
		EncryptedSenderData: make([]byte, 28), Ciphertext: make([]byte, 40)}}
	b, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	want(t, inspectOK(t, base64.StdEncoding.EncodeToString(b)), map[string]string{
		"group_id": "<absent>", "group_id_hex": "ff0001", "epoch": "0", "content_type": "application"})
}

func TestInspectKeyPackage(t *testing.T) {
	now := testNow
	basic := mls.Credential{CredentialType: mls.CredentialTypeBasic, Identity: []byte("alice")}
	for _, tc := range []struct {
		name     string
		kp       *mls.KeyPackage
		fields   map[string]string
		errs     map[string]string // path → substring the value must contain
		refCheck bool
	}{
		{
			name: "valid, Matrix identity, 0xF6D0",
			kp:   keyPackage(t, testSuite, nil, true, time.Time{}, time.Time{}),
			fields: map[string]string{"wire_format": "mls_key_package", "cipher_suite": "1",
				"cipher_suite_name": "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
				"user_id":           "@alice:a.example", "device_id": "ALICEDEV",
				"valid": "true", "error": "<absent>", "matrix_valid": "true", "matrix_error": "<absent>",
				"lifetime.not_before": "1759996400", "lifetime.not_before_time": "2025-10-09T07:53:20Z",
				"last_resort": "<absent>", "group_id": "<absent>", "epoch": "<absent>"},
			refCheck: true,
		},
		{
			name:   "valid, without 0xF6D0",
			kp:     keyPackage(t, testSuite, nil, false, time.Time{}, time.Time{}),
			fields: map[string]string{"valid": "true", "error": "<absent>", "matrix_valid": "false", "user_id": "@alice:a.example"},
			errs:   map[string]string{"matrix_error": "does not list 0xF6D0"},
		},
		{
			name:   "expired",
			kp:     keyPackage(t, testSuite, nil, true, now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
			fields: map[string]string{"valid": "false", "matrix_valid": "false", "user_id": "@alice:a.example"},
			errs:   map[string]string{"error": "leaf_node.lifetime", "matrix_error": "not a valid key package"},
		},
		{
			name:   "no Matrix identity",
			kp:     keyPackage(t, testSuite, &basic, true, time.Time{}, time.Time{}),
			fields: map[string]string{"valid": "true", "matrix_valid": "false", "user_id": "<absent>", "device_id": "<absent>"},
			errs:   map[string]string{"matrix_error": "leaf_node.credential: no Matrix identity"},
		},
		{
			name:   "suite not of MLS mode",
			kp:     keyPackage(t, mls.P521AES256GCMSHA512P521, nil, true, time.Time{}, time.Time{}),
			fields: map[string]string{"cipher_suite": "5", "valid": "true", "matrix_valid": "false"},
			errs:   map[string]string{"matrix_error": "cipher_suite 5"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := inspect([]byte(base64.RawStdEncoding.EncodeToString(keyPackageMessage(t, tc.kp))), inspectOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				t.Fatal(err)
			}
			want(t, m, tc.fields)
			for path, sub := range tc.errs {
				if got, _ := get(m, path); !strings.Contains(got, sub) {
					t.Errorf("%s = %q, want it to contain %q", path, got, sub)
				}
			}
			if tc.refCheck {
				ref, err := tc.kp.Ref()
				if err != nil {
					t.Fatal(err)
				}
				want(t, m, map[string]string{"key_package_ref": hex.EncodeToString(ref),
					"key_package_ref_base64": base64.RawStdEncoding.EncodeToString(ref)})
			}
		})
	}
}

func TestInspectOtherWireFormats(t *testing.T) {
	ad := encodeFedMap(t, testFedMap())
	fields := commitFields(ad, "")
	fields["wire_format"], fields["sender_type"] = "mls_public_message", "member"
	want(t, inspectOK(t, base64.StdEncoding.EncodeToString(protect(t, 7, ad, mls.ContentTypeCommit, 1, true))), fields)

	gi := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatGroupInfo, GroupInfo: &mls.GroupInfo{
		GroupContext: mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.XWingAES256GCMSHA512Ed25519, GroupID: []byte(testRoom),
			Epoch: 12, TreeHash: []byte{1}, ConfirmedTranscriptHash: []byte{2}},
		ConfirmationTag: []byte{3}, Signer: 1, Signature: []byte{4}}}
	b, err := gi.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	want(t, inspectOK(t, base64.StdEncoding.EncodeToString(b)), map[string]string{
		"wire_format": "mls_group_info", "cipher_suite": "83", "cipher_suite_name": "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
		"group_id": testRoom, "epoch": "12", "content_type": "<absent>", "authenticated_data": "<absent>"})
}

func TestInspectLastResortAndWelcome(t *testing.T) {
	signer, err := mls.GenerateSigner(testSuite)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: "@bob:b.example", DeviceID: "B", SignatureKey: signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := mls.NewKeyPackage(mls.KeyPackageParams{Signer: signer, Credential: cred,
		Capabilities: &mls.Capabilities{Extensions: []mls.ExtensionType{0xF6D0, mls.ExtensionTypeLastResort}},
		Extensions:   mls.Extensions{{Type: mls.ExtensionTypeLastResort}}})
	if err != nil {
		t.Fatal(err)
	}
	want(t, inspectOK(t, base64.StdEncoding.EncodeToString(keyPackageMessage(t, kp))), map[string]string{
		"last_resort": "true", "valid": "true", "matrix_valid": "true", "user_id": "@bob:b.example"})

	welcome := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatWelcome, Welcome: &mls.Welcome{
		CipherSuite: mls.P256AES128GCMSHA256P256,
		Secrets: []mls.EncryptedGroupSecrets{{NewMember: []byte{1, 2, 3},
			EncryptedGroupSecrets: mls.HPKECiphertext{KEMOutput: []byte{4}, Ciphertext: []byte{5}}}},
		EncryptedGroupInfo: []byte{6, 7}}}
	b, err := welcome.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	want(t, inspectOK(t, base64.URLEncoding.EncodeToString(b)), map[string]string{
		"wire_format": "mls_welcome", "cipher_suite": "2", "new_members": `["010203"]`, "group_id": "<absent>", "valid": "<absent>"})
}

func TestInspectEvents(t *testing.T) {
	ad := encodeFedMap(t, testFedMap())
	for _, v := range roomversion.Versions() {
		t.Run(string(v), func(t *testing.T) {
			create := createEvent(t, v)
			m := inspectOK(t, string(create.JSON()))
			alg, err := v.Algorithm(testSuite)
			if err != nil {
				t.Fatal(err)
			}
			want(t, m, map[string]string{
				"event_id": create.EventID(), "room_version": string(v), "type": "m.room.create", "state_key": "",
				"room_id": testRoom, "origin": testOrigin, "origin_server_ts": "1760000000123",
				"origin_server_time": "2025-10-09T08:53:20.123Z", "algorithm": alg, "cipher_suite": "1",
				"create.room_version": string(v), "create.m.federate": "true", "epoch": "<absent>", "mls": "<absent>",
				"signature_checked": "false", "auth_events": "[]",
			})

			commit := mlsEvent(t, v, v.CommitType(), privateCommit(t, 7, ad, 1), create.EventID())
			m = inspectOK(t, string(commit.JSON()))
			fields := commitFields(ad, "mls.")
			maps.Copy(fields, map[string]string{
				"event_id": commit.EventID(), "room_version": string(v), "type": v.CommitType(), "state_key": "",
				"epoch": "7", "algorithm": alg, "auth_events": `["` + create.EventID() + `"]`, "signature_checked": "false",
			})
			want(t, m, fields)

			// m.room.encrypted does not name its room version: the flag does.
			app := mlsEvent(t, v, roomversion.EventTypeEncrypted, privateMessage(t, 8, nil, mls.ContentTypeApplication, 0),
				create.EventID(), commit.EventID())
			r := runCmd(t, string(app.JSON()), "inspect")
			if v == roomversion.V1 {
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				want(t, inspectOK(t, string(app.JSON())), map[string]string{"type": "m.room.encrypted", "epoch": "8",
					"mls.content_type": "application", "mls.authenticated_data": "", "mls.federation": "<absent>"})
			} else if r.code != 1 || !strings.Contains(r.stderr, "(algorithm)") {
				t.Fatalf("m.room.encrypted of %s without the flag: exit %d, stderr %q; want the algorithm refused", v, r.code, r.stderr)
			}
		})
	}
}

func TestInspectEncryptedWithRoomVersionFlag(t *testing.T) {
	v := roomversion.V1Unstable
	create := createEvent(t, v)
	m := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: []byte(testRoom), Epoch: 3, ContentType: mls.ContentTypeApplication,
		EncryptedSenderData: make([]byte, 28), Ciphertext: make([]byte, 40)}}
	msg, err := m.MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	ev := mlsEvent(t, v, roomversion.EventTypeEncrypted, msg, create.EventID(), eventIDOf("commit"))
	dir := t.TempDir()
	file := filepath.Join(dir, "event.json")
	if err := os.WriteFile(file, ev.JSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The flag before and after FILE, and with "--".
	for _, args := range [][]string{
		{"--room-version", string(v), file},
		{file, "--room-version=" + string(v)},
		{"-room-version", string(v), "--", file},
	} {
		want(t, inspectOK(t, "", args...), map[string]string{
			"event_id": ev.EventID(), "room_version": string(v), "type": "m.room.encrypted", "state_key": "<absent>",
			"epoch": "3", "mls.content_type": "application", "mls.authenticated_data": "", "mls.federation": "<absent>",
			"signature_checked": "false",
		})
	}
}

// eventIDOf makes a syntactically valid event ID from a label.
func eventIDOf(label string) string {
	return "$" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte(label[:1]), 32))
}

func TestInspectInvalidInput(t *testing.T) {
	commit := privateCommit(t, 7, encodeFedMap(t, testFedMap()), 1)
	create := createEvent(t, roomversion.V1)
	tampered := strings.Replace(string(create.JSON()), testOrigin, "b.example", 1)
	badVersion := strings.Replace(string(create.JSON()), `"room_version":"m.mls.1"`, `"room_version":"11"`, 1)
	clientFormat := `{"event_id":"$x","type":"m.room.encrypted","content":{},"origin_server_ts":1,"room_id":"!r:a"}`
	for _, tc := range []struct {
		name, input string
		stderr      []string
	}{
		{"empty", " \n", []string{"stdin: empty input"}},
		{"bad base64", "not*base64", []string{"decoding base64 MLSMessage", "illegal base64 data at input byte 3"}},
		{"mixed alphabets", "ab+c-d", []string{"decoding base64 MLSMessage", "mixes the standard"}},
		{"non-zero trailing bits", "AB", []string{"decoding base64 MLSMessage", "illegal base64 data"}},
		{"truncated MLSMessage", base64.StdEncoding.EncodeToString(commit[:len(commit)-5]),
			[]string{"parsing MLSMessage", "mls: decode"}},
		{"trailing bytes", base64.StdEncoding.EncodeToString(append(slices.Clone(commit), 0)),
			[]string{"parsing MLSMessage", "mls: decode"}},
		{"not an MLSMessage", base64.StdEncoding.EncodeToString([]byte{0, 2, 0, 9}), []string{"parsing MLSMessage", "mls: decode"}},
		{"bad JSON", `{"type": `, []string{"event of room version m.mls.1", "(bad_json)"}},
		{"JSON not an event", `{"type": "m.room.message"}`, []string{"auth_events: missing (missing_field)"}},
		{"wrong content hash", tampered, []string{"hashes.sha256", "(content_hash)"}},
		{"create with a non-MLS room version", badVersion, []string{`content.room_version "11"`, "not an MLS room version"}},
		{"client-format event", clientFormat, []string{"event_id: not a field", "client-format event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, tc.input, "inspect")
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			if !strings.HasPrefix(r.stderr, "mlsroom inspect: stdin: ") {
				t.Errorf("stderr %q does not name the command and input", r.stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q does not contain %q", r.stderr, s)
				}
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substring, "" for nothing
		stderr string // substring, "" for nothing
	}{
		{"no command", nil, 2, "", "usage: mlsroom COMMAND"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "usage: mlsroom COMMAND", ""},
		{"--help", []string{"--help"}, 0, "usage: mlsroom COMMAND", ""},
		{"help inspect", []string{"help", "inspect"}, 0, "usage: mlsroom inspect", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", `unknown command "nope"`},
		{"help help", []string{"help", "help"}, 0, "usage: mlsroom COMMAND", ""},
		{"help two commands", []string{"help", "inspect", "check"}, 2, "", "want at most one command, got 2"},
		{"inspect -h", []string{"inspect", "-h"}, 0, "signature_checked", ""},
		{"inspect two files", []string{"inspect", "a", "b"}, 2, "", "want at most one FILE, got 2"},
		{"inspect bad flag", []string{"inspect", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"inspect bad room version", []string{"inspect", "--room-version", "10", "-"}, 2, "", `--room-version "10": not an MLS room version`},
		{"inspect missing file", []string{"inspect", filepath.Join(t.TempDir(), "absent")}, 1, "", "reading input: open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", r.stdout, tc.stdout}, {"stderr", r.stderr, tc.stderr}} {
				if c.want == "" && c.got != "" || !strings.Contains(c.got, c.want) {
					t.Errorf("%s %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
}

// TestBinary builds the command and runs it as a process, to check that main
// hands run's exit status and output through.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short because it builds the binary; make test and CI run without -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mlsroom")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	kp := keyPackage(t, testSuite, nil, true, time.Time{}, time.Now().Add(time.Hour))
	cmd := exec.Command(bin, "inspect", "-")
	cmd.Stdin = strings.NewReader(base64.RawStdEncoding.EncodeToString(keyPackageMessage(t, kp)) + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || m["matrix_valid"] != true || m["wire_format"] != "mls_key_package" {
		t.Fatalf("output %s (%v), want a Matrix-valid key package", out, err)
	}

	cmd = exec.Command(bin, "inspect")
	cmd.Stdin = strings.NewReader("%%%")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(out) != 0 ||
		!strings.Contains(stderr.String(), "decoding base64 MLSMessage") {
		t.Fatalf("bad input: err %v, stdout %q, stderr %q; want exit 1 with the base64 error", err, out, stderr.String())
	}
}
