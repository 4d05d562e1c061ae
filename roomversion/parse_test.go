package roomversion

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/mlsmode/mlsmode/mls"
)

// with returns a copy of base with the given keys set (a nil value deletes).
func with(base map[string]any, kv ...any) map[string]any {
	m := maps.Clone(base)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = kv[i+1]
		}
	}
	return m
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// mlsBody returns MLS content with the given algorithm and ciphertext text.
func mlsBody(alg, ct string) map[string]any {
	return map[string]any{"algorithm": alg, "ciphertext": ct}
}

// publicMsg returns an MLSMessage holding a genuine PublicMessage commit.
func publicMsg(t testing.TB) []byte {
	t.Helper()
	cs := mls.X25519AES128GCMSHA256Ed25519
	ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: cs, GroupID: []byte(testRoom), Epoch: 1,
		TreeHash: make([]byte, 32), ConfirmedTranscriptHash: make([]byte, 32)}
	keys, err := mls.NewEpochKeys(ctx, 4, make([]byte, 32), make([]byte, 32), make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := mls.GenerateSigner(cs)
	if err != nil {
		t.Fatal(err)
	}
	c := &mls.FramedContent{GroupID: ctx.GroupID, Epoch: 1, Sender: mls.Sender{SenderType: mls.SenderTypeMember, LeafIndex: 0},
		AuthenticatedData: fedAD(t, []string{testOrigin}, []string{testOrigin}), ContentType: mls.ContentTypeCommit, Commit: &mls.Commit{}}
	pub, err := keys.ProtectPublic(c, signer, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPublicMessage, PublicMessage: pub}).MarshalMLS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRejects(t *testing.T) {
	v := V1
	enc := members(t, build(t, builder(t, v, EventEncrypted)))
	commit := members(t, build(t, builder(t, v, EventCommit)))
	pending := members(t, build(t, builder(t, v, EventPendingCommit)))
	create := members(t, build(t, builder(t, v, EventCreate)))

	alg := "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	appMsg := privMsg(t, testRoom, 2, mls.ContentTypeApplication, nil, 0)
	commitMsg := privMsg(t, testRoom, 1, mls.ContentTypeCommit, fedAD(t, []string{testOrigin}, []string{testOrigin}), 0)
	std := base64.RawStdEncoding.EncodeToString
	url := base64.RawURLEncoding.EncodeToString
	if !strings.ContainsAny(std(commitMsg), "+/") || !strings.ContainsAny(url(appMsg), "-_") {
		t.Fatal("test messages do not tell the base64 alphabets apart")
	}
	padded := privMsg(t, testRoom, 2, mls.ContentTypeApplication, nil, 200)
	if len(padded)%3 == 0 {
		t.Fatal("padded message needs padding")
	}
	longID := "!" + strings.Repeat("r", 244) + ":a.example" // 255 bytes
	many := func(n int) []string {
		var ids []string
		for i := range n {
			ids = append(ids, eventID(fmt.Sprint(i)))
		}
		return ids
	}
	hashOf := func(m map[string]any) json.RawMessage {
		var full map[string]json.RawMessage
		_ = json.Unmarshal(forge(t, m), &full)
		return full["hashes"]
	}

	cases := []struct {
		name  string
		v     Version
		in    []byte
		kind  ErrorKind
		field string
		want  string
	}{
		// JSON and canonical-JSON values.
		{"not JSON", v, []byte(`{"type":`), KindBadJSON, "", "unexpected end of input"},
		{"empty input", v, nil, KindBadJSON, "", "unexpected end of input"},
		{"an array", v, []byte(`[]`), KindBadJSON, "", "JSON array, want an object"},
		{"trailing data", v, append(forge(t, enc), '{', '}'), KindBadJSON, "", "after the value"},
		{"float", v, forge(t, with(enc, "unsigned", raw(`{"x":1.5}`))), KindBadJSON, "", "fractions and exponents"},
		{"exponent", v, forge(t, with(enc, "unsigned", raw(`{"x":1e3}`))), KindBadJSON, "", "fractions and exponents"},
		{"capital exponent", v, forge(t, with(enc, "origin_server_ts", raw(`1E3`))), KindBadJSON, "", "fractions and exponents"},
		{"integer too large", v, forge(t, with(enc, "origin_server_ts", raw(`9007199254740992`))), KindBadJSON, "", "outside ±(2^53-1)"},
		{"integer too small", v, forge(t, with(enc, "unsigned", raw(`{"x":-9007199254740992}`))), KindBadJSON, "", "outside"},
		{"huge integer", v, forge(t, with(enc, "unsigned", raw(`{"x":123456789012345678901234567890}`))), KindBadJSON, "", "outside"},
		{"negative zero", v, forge(t, with(enc, "unsigned", raw(`{"x":-0}`))), KindBadJSON, "", "-0"},
		{"leading zero", v, forge(t, with(enc, "unsigned", raw(`{"x":01}`))), KindBadJSON, "", "leading zero"},
		{"duplicate top-level key", v, bytes.Replace(forge(t, enc), []byte(`"origin":"a.example"`), []byte(`"origin":"a.example","origin":"b.example"`), 1), KindBadJSON, "", "duplicate object key \"origin\""},
		{"duplicate nested key", v, forge(t, with(enc, "unsigned", raw(`{"a":1,"a":1}`))), KindBadJSON, "", "duplicate object key"},
		{"invalid UTF-8", v, forge(t, with(enc, "unsigned", raw("{\"x\":\"\xff\"}"))), KindBadJSON, "", "invalid UTF-8"},
		{"invalid UTF-8 after an escape", v, forge(t, with(enc, "unsigned", raw("{\"x\":\"\\n\xc3\"}"))), KindBadJSON, "", "invalid UTF-8"},
		{"lone high surrogate", v, forge(t, with(enc, "unsigned", raw(`{"x":"\ud800"}`))), KindBadJSON, "", "not followed by a low one"},
		{"lone low surrogate", v, forge(t, with(enc, "unsigned", raw(`{"x":"\udc00"}`))), KindBadJSON, "", "lone low surrogate"},
		{"raw control character", v, forge(t, with(enc, "unsigned", raw("{\"x\":\"a\tb\"}"))), KindBadJSON, "", "control character"},
		{"bad escape", v, forge(t, with(enc, "unsigned", raw(`{"x":"\x41"}`))), KindBadJSON, "", "invalid escape"},
		{"too deep", v, forge(t, with(enc, "unsigned", raw(`{"x":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`}`))), KindBadJSON, "", "nested more than 64"},
		{"input too large", v, make([]byte, MaxInputSize+1), KindTooLarge, "", "at most 4194304 read"},
		{"unsupported version", Version("11"), forge(t, enc), KindUnsupportedVersion, "", "not an MLS room version"},

		// Fields.
		{"sender", v, forge(t, with(enc, "sender", "@alice:a.example")), KindForbiddenField, "sender", "MLS events have no sender"},
		{"depth", v, forge(t, with(enc, "depth", 3)), KindForbiddenField, "depth", "no depth"},
		{"event_id", v, forge(t, with(enc, "event_id", eventID("x"))), KindUnknownField, "event_id", "not a field"},
		{"redacts", v, forge(t, with(enc, "redacts", eventID("x"))), KindUnknownField, "redacts", "not a field"},
		{"membership", v, forge(t, with(enc, "membership", "join")), KindUnknownField, "membership", "not a field"},
		{"no room_id", v, forge(t, with(enc, "room_id", nil)), KindMissingField, "room_id", "missing"},
		{"no type", v, forge(t, with(enc, "type", nil)), KindMissingField, "type", "missing"},
		{"no content", v, forge(t, with(enc, "content", nil)), KindMissingField, "content", "missing"},
		{"no origin", v, forge(t, with(enc, "origin", nil)), KindMissingField, "origin", "missing"},
		{"no origin_server_ts", v, forge(t, with(enc, "origin_server_ts", nil)), KindMissingField, "origin_server_ts", "missing"},
		{"no prev_events", v, forge(t, with(enc, "prev_events", nil)), KindMissingField, "prev_events", "missing"},
		{"no auth_events", v, forge(t, with(enc, "auth_events", nil)), KindMissingField, "auth_events", "missing"},
		{"no hashes", v, forge(t, with(enc, "hashes", omitted{})), KindMissingField, "hashes", "missing"},
		{"no signatures", v, forge(t, with(enc, "signatures", omitted{})), KindMissingField, "signatures", "missing"},
		{"type not a string", v, forge(t, with(enc, "type", 5)), KindBadField, "type", "want a string, got the number 5"},
		{"room_id not a string", v, forge(t, with(enc, "room_id", []string{testRoom})), KindBadField, "room_id", "got a array"},
		{"room_id without !", v, forge(t, with(enc, "room_id", "room:a.example")), KindBadField, "room_id", "does not start with '!'"},
		{"room_id without server", v, forge(t, with(enc, "room_id", "!room")), KindBadField, "room_id", "not !opaque_id:server_name"},
		{"room_id with empty opaque part", v, forge(t, with(enc, "room_id", "!:a.example")), KindBadField, "room_id", "not !opaque_id:server_name"},
		{"room_id with bad server", v, forge(t, with(enc, "room_id", "!room:a_b")), KindBadField, "room_id", "not allowed in a hostname"},
		{"room_id too long", v, forge(t, with(enc, "room_id", longID+"x")), KindBadField, "room_id", "256 bytes, at most 255"},
		{"origin not a string", v, forge(t, with(enc, "origin", nil, "origin", true)), KindBadField, "origin", "got a boolean"},
		{"origin invalid", v, forge(t, with(enc, "origin", "a.example:99999")), KindBadField, "origin", "out of range"},
		{"origin empty", v, forge(t, with(enc, "origin", "")), KindBadField, "origin", "empty server name"},
		{"negative timestamp", v, forge(t, with(enc, "origin_server_ts", -1)), KindBadField, "origin_server_ts", "non-negative integer"},
		{"string timestamp", v, forge(t, with(enc, "origin_server_ts", "1")), KindBadField, "origin_server_ts", "got a string"},
		{"prev_events not an array", v, forge(t, with(enc, "prev_events", eventID("x"))), KindBadField, "prev_events", "want an array"},
		{"prev_events entry not a string", v, forge(t, with(enc, "prev_events", []any{1})), KindBadField, "prev_events[0]", "want a string"},
		{"prev_events bad ID", v, forge(t, with(enc, "prev_events", []string{"$abc:a.example"})), KindBadField, "prev_events[0]", "not a reference-hash event ID"},
		{"prev_events standard base64 ID", v, forge(t, with(enc, "prev_events", []string{"$" + strings.Repeat("+", 43)})), KindBadField, "prev_events[0]", "URL-safe"},
		{"prev_events ID with trailing bits", v, forge(t, with(enc, "prev_events", []string{"$" + strings.Repeat("A", 42) + "B"})), KindBadField, "prev_events[0]", "URL-safe"},
		{"prev_events duplicate", v, forge(t, with(enc, "prev_events", []string{eventID("a"), eventID("b"), eventID("a")})), KindBadField, "prev_events[2]", "duplicate of prev_events[0]"},
		{"too many prev_events", v, forge(t, with(enc, "prev_events", many(21))), KindBadField, "prev_events", "21 event IDs, at most 20"},
		{"too many auth_events", v, forge(t, with(enc, "auth_events", many(11))), KindBadField, "auth_events", "11 event IDs, at most 10"},
		{"auth_events bad ID", v, forge(t, with(enc, "auth_events", []string{""})), KindBadField, "auth_events[0]", "not a reference-hash"},
		{"hashes not an object", v, forge(t, with(enc, "hashes", "x")), KindBadField, "hashes", "want an object"},
		{"hashes without sha256", v, forge(t, with(enc, "hashes", map[string]any{})), KindMissingField, "hashes.sha256", "missing"},
		{"hashes with another algorithm", v, forge(t, with(enc, "hashes", map[string]any{"sha256": "x", "sha512": "y"})), KindBadField, "hashes.sha512", "only sha256"},
		{"hash not a string", v, forge(t, with(enc, "hashes", map[string]any{"sha256": 1})), KindBadField, "hashes.sha256", "want a string"},
		{"hash too short", v, forge(t, with(enc, "hashes", map[string]any{"sha256": "AAAA"})), KindBadField, "hashes.sha256", "32 bytes"},
		{"hash padded", v, forge(t, with(enc, "hashes", map[string]any{"sha256": strings.Repeat("A", 43) + "="})), KindBadField, "hashes.sha256", "unpadded base64"},
		{"content hash mismatch", v, forge(t, with(enc, "hashes", hashOf(with(enc, "origin_server_ts", 1)))), KindContentHash, "hashes.sha256", "does not match"},
		{"signatures not an object", v, forge(t, with(enc, "signatures", []string{})), KindBadField, "signatures", "want an object"},
		{"server signatures not an object", v, forge(t, with(enc, "signatures", map[string]any{testOrigin: "x"})), KindBadField, "signatures.a.example", "want an object"},
		{"signature not a string", v, forge(t, with(enc, "signatures", map[string]any{testOrigin: map[string]any{testKeyID: 1}})), KindBadField, "signatures.a.example.ed25519:k1", "want a string"},
		{"signature not base64", v, forge(t, with(enc, "signatures", map[string]any{testOrigin: map[string]any{testKeyID: "!!"}})), KindBadField, "signatures.a.example.ed25519:k1", "not unpadded base64"},
		{"unsigned not an object", v, forge(t, with(enc, "unsigned", []int{})), KindBadField, "unsigned", "want an object"},
		{"content not an object", v, forge(t, with(enc, "content", "x")), KindBadContent, "content", "want an object"},

		// Types and state keys.
		{"m.room.message", v, forge(t, with(enc, "type", "m.room.message")), KindEventType, "type", "\"m.room.message\" is not allowed in room version m.mls.1"},
		{"m.room.member", v, forge(t, with(create, "type", "m.room.member")), KindEventType, "type", "not allowed"},
		{"m.room.power_levels", v, forge(t, with(create, "type", "m.room.power_levels")), KindEventType, "type", "not allowed"},
		{"proposal's m.mls.proposed_commit", v, forge(t, with(pending, "type", "m.mls.proposed_commit")), KindEventType, "type", "not allowed"},
		{"unstable commit type in m.mls.1", v, forge(t, with(commit, "type", "de.bwi.mls.commit")), KindEventType, "type", "not allowed"},
		{"stable commit type in de.bwi.mls.v1", V1Unstable, forge(t, members(t, build(t, builder(t, V1, EventCommit)))), KindEventType, "type", "not allowed in room version de.bwi.mls.v1"},
		{"state_key on m.room.encrypted", v, forge(t, with(enc, "state_key", "")), KindStateKey, "state_key", "must not have a state key"},
		{"state_key on pending commit", v, forge(t, with(pending, "state_key", "")), KindStateKey, "state_key", "must not have a state key"},
		{"no state_key on create", v, forge(t, with(create, "state_key", nil)), KindStateKey, "state_key", "must have a state key"},
		{"no state_key on commit", v, forge(t, with(commit, "state_key", nil)), KindStateKey, "state_key", "must have a state key"},
		{"state_key not a string", v, forge(t, with(commit, "state_key", 0)), KindBadField, "state_key", "want a string"},
		{"state_key too long", v, forge(t, with(commit, "state_key", strings.Repeat("k", 256))), KindStateKey, "state_key", "256 bytes, at most 255"},

		// MLS content.
		{"extra content key", v, forge(t, with(enc, "content", map[string]any{"algorithm": alg, "ciphertext": std(appMsg), "body": "hi"})), KindBadContent, "content.body", "only algorithm and ciphertext"},
		{"megolm content", v, forge(t, with(enc, "content", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "session_id": "s"})), KindBadContent, "content.session_id", ""},
		{"no algorithm", v, forge(t, with(enc, "content", map[string]any{"ciphertext": std(appMsg)})), KindBadContent, "content.algorithm", "missing"},
		{"algorithm not a string", v, forge(t, with(enc, "content", map[string]any{"algorithm": 1, "ciphertext": std(appMsg)})), KindBadContent, "content.algorithm", "want a string"},
		{"unknown algorithm", v, forge(t, with(enc, "content", mlsBody("m.megolm.v1.aes-sha2", std(appMsg)))), KindAlgorithm, "content.algorithm", "not an algorithm of room version m.mls.1"},
		{"suite 5", v, forge(t, with(enc, "content", mlsBody("m.mls.v1.MLS_256_DHKEMP521_AES256GCM_SHA512_P521", std(appMsg)))), KindAlgorithm, "content.algorithm", ""},
		{"other version's algorithm", v, forge(t, with(enc, "content", mlsBody("de.bwi.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", std(appMsg)))), KindAlgorithm, "content.algorithm", ""},
		{"no ciphertext", v, forge(t, with(enc, "content", map[string]any{"algorithm": alg})), KindBadContent, "content.ciphertext", "missing"},
		{"ciphertext not a string", v, forge(t, with(enc, "content", map[string]any{"algorithm": alg, "ciphertext": []byte{1}})), KindCiphertext, "content.ciphertext", ""},
		{"ciphertext null", v, forge(t, with(enc, "content", map[string]any{"algorithm": alg, "ciphertext": nil})), KindBadContent, "content.ciphertext", "want a string, got a null"},
		{"commit in standard base64", v, forge(t, with(commit, "content", mlsBody(alg, std(commitMsg)))), KindCiphertext, "content.ciphertext", "not URL-safe unpadded base64"},
		{"pending commit in standard base64", v, forge(t, with(pending, "content", mlsBody(alg, std(commitMsg)))), KindCiphertext, "content.ciphertext", "not URL-safe"},
		{"encrypted in URL-safe base64", v, forge(t, with(enc, "content", mlsBody(alg, url(appMsg)))), KindCiphertext, "content.ciphertext", "not standard unpadded base64"},
		{"padded base64", v, forge(t, with(enc, "content", mlsBody(alg, base64.StdEncoding.EncodeToString(padded)))), KindCiphertext, "content.ciphertext", "not standard unpadded"},
		{"line break in base64", v, forge(t, with(enc, "content", mlsBody(alg, std(appMsg)[:20]+"\n"+std(appMsg)[20:]))), KindCiphertext, "content.ciphertext", "line break"},
		{"base64 trailing bits", v, forge(t, with(enc, "content", mlsBody(alg, "AB"))), KindCiphertext, "content.ciphertext", ""},
		{"empty ciphertext", v, forge(t, with(enc, "content", mlsBody(alg, ""))), KindMLSMessage, "content.ciphertext", "not an MLSMessage"},
		{"not an MLSMessage", v, forge(t, with(enc, "content", mlsBody(alg, std([]byte("hello world"))))), KindMLSMessage, "content.ciphertext", "not an MLSMessage"},
		{"truncated MLSMessage", v, forge(t, with(enc, "content", mlsBody(alg, std(appMsg[:len(appMsg)-1])))), KindMLSMessage, "content.ciphertext", ""},
		{"trailing bytes after MLSMessage", v, forge(t, with(enc, "content", mlsBody(alg, std(append(slices.Clone(appMsg), 0))))), KindMLSMessage, "content.ciphertext", ""},
		{"MLS version 2", v, forge(t, with(enc, "content", mlsBody(alg, std(append([]byte{0, 2}, appMsg[2:]...))))), KindMLSMessage, "content.ciphertext", ""},
		{"PublicMessage commit", v, forge(t, with(commit, "content", mlsBody(alg, url(publicMsg(t))))), KindMLSMessage, "content.ciphertext", "wire format mls_public_message, want mls_private_message"},
		{"commit in m.room.encrypted", v, forge(t, with(enc, "content", mlsBody(alg, std(commitMsg)))), KindMLSContentType, "content.ciphertext", "carries commit, want application or proposal"},
		{"application in commit", v, forge(t, with(commit, "content", mlsBody(alg, url(appMsg)))), KindMLSContentType, "content.ciphertext", "carries application, want commit"},
		{"proposal in pending commit", v, forge(t, with(pending, "content", mlsBody(alg, url(privMsg(t, testRoom, 1, mls.ContentTypeProposal, nil, 0))))), KindMLSContentType, "content.ciphertext", "carries proposal, want commit"},
		{"group_id of another room", v, forge(t, with(enc, "content", mlsBody(alg, std(privMsg(t, "!other:a.example", 1, mls.ContentTypeApplication, nil, 0))))), KindGroupID, "content.ciphertext", "is not the room ID"},
		{"group_id empty", v, forge(t, with(commit, "content", mlsBody(alg, url(privMsg(t, "", 1, mls.ContentTypeCommit, nil, 0))))), KindGroupID, "content.ciphertext", ""},

		// Create content.
		{"create without room_version", v, forge(t, with(create, "content", map[string]any{"algorithm": alg})), KindCreateContent, "content.room_version", "missing"},
		{"create with room_version 11", v, forge(t, with(create, "content", map[string]any{"algorithm": alg, "room_version": "11"})), KindCreateContent, "content.room_version", "\"11\", but the room's version is m.mls.1"},
		{"create with the other MLS version", v, forge(t, with(create, "content", map[string]any{"algorithm": alg, "room_version": "de.bwi.mls.v1"})), KindCreateContent, "content.room_version", ""},
		{"create with numeric room_version", v, forge(t, with(create, "content", map[string]any{"algorithm": alg, "room_version": 1})), KindCreateContent, "content.room_version", "want a string"},
		{"create without algorithm", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "encryption_algorithm": alg})), KindCreateContent, "content.algorithm", "missing"},
		{"create with empty algorithm", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": ""})), KindCreateContent, "content.algorithm", "unknown algorithm"},
		{"create with megolm", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": "m.megolm.v1.aes-sha2"})), KindCreateContent, "content.algorithm", ""},
		{"create with algorithm not a string", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": []string{alg}})), KindCreateContent, "content.algorithm", "want a string"},
		{"create with differing encryption_algorithm", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": alg,
			"encryption_algorithm": "m.mls.v1.MLS_128_DHKEMP256_AES128GCM_SHA256_P256"})), KindCreateContent, "content.encryption_algorithm", "differs from algorithm"},
		{"create with numeric encryption_algorithm", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": alg, "encryption_algorithm": 1})), KindCreateContent, "content.encryption_algorithm", "want a string"},
		{"create with string m.federate", v, forge(t, with(create, "content", map[string]any{"room_version": "m.mls.1", "algorithm": alg, "m.federate": "false"})), KindCreateContent, "content.m.federate", "want a boolean"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate case %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			ev, err := Parse(context.Background(), c.v, c.in)
			if err == nil {
				t.Fatalf("accepted %s", ev.JSON())
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v", err, err)
			}
			if e.Kind != c.kind || e.Field != c.field || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\n(kind %s, field %q); want kind %s, field %q, text containing %q", err, e.Kind, e.Field, c.kind, c.field, c.want)
			}
			if !strings.HasPrefix(err.Error(), "roomversion: parsing event: ") {
				t.Fatalf("error does not say what was being done: %v", err)
			}
		})
	}
}

// TestParseAcceptsAnyLayout: keys in any order, whitespace, escapes that
// canonical JSON removes. The event ID and canonical JSON do not change.
func TestParseAcceptsAnyLayout(t *testing.T) {
	ev := build(t, builder(t, V1, EventCommit))
	canon := ev.JSON()
	var indented bytes.Buffer
	if err := json.Indent(&indented, canon, "  ", "\t"); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(canon, &m)
	keys := slices.Sorted(maps.Keys(m))
	slices.Reverse(keys)
	var rev bytes.Buffer
	rev.WriteString(" \r\n{")
	for i, k := range keys {
		if i > 0 {
			rev.WriteString(" ,\n")
		}
		fmt.Fprintf(&rev, "%q : %s", k, m[k])
	}
	rev.WriteString("}\n")
	escaped := bytes.Replace(canon, []byte(`"origin":"a.example"`), []byte(`"origin":"a\u002eexample"`), 1)
	escaped = bytes.Replace(escaped, []byte(`"type":"m.mls.commit"`), []byte(`"type":"\u006d.mls.commit"`), 1)
	escaped = bytes.Replace(escaped, []byte(`"room_id":"!room:a.example"`), []byte(`"room_id":"\u0021room:a.example"`), 1)
	for name, in := range map[string][]byte{"indented": indented.Bytes(), "reversed": rev.Bytes(), "escaped": escaped} {
		got, err := Parse(context.Background(), V1, in)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, in)
		}
		if got.EventID() != ev.EventID() || !bytes.Equal(got.JSON(), canon) {
			t.Fatalf("%s: changed the event", name)
		}
		if err := VerifySignature(context.Background(), got, testKeys()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Unsigned contents come out canonical too.
	in := append(slices.Clone(canon[:len(canon)-1]), []byte(`,"unsigned":{"z":"\u00e9\/\u001f","a":[true,false,null,-5]}}`)...)
	got, err := Parse(context.Background(), V1, in)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Unsigned()) != "{\"a\":[true,false,null,-5],\"z\":\"é/\\u001f\"}" || got.EventID() != ev.EventID() {
		t.Fatalf("unsigned %s", got.Unsigned())
	}
}

// withPad returns the event JSON with unsigned {"p": n × "x"} added.
func withPad(ev *Event, n int) []byte {
	j := ev.JSON()
	out := slices.Clone(j[:len(j)-1])
	out = append(out, `,"unsigned":{"p":"`...)
	out = append(out, bytes.Repeat([]byte("x"), n)...)
	return append(out, `"}}`...)
}

func TestSizeLimits(t *testing.T) {
	overhead := len(`,"unsigned":{"p":""}`)
	cases := []struct {
		name  string
		ev    *Event
		limit int
	}{
		{"m.room.encrypted", build(t, builder(t, V1, EventEncrypted)), MaxEventSize},
		{"create", build(t, builder(t, V1, EventCreate)), MaxEventSize},
		{"commit", func() *Event {
			b := builder(t, V1, EventCommit)
			b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, testRoom, 1, mls.ContentTypeCommit, fedAD(t, []string{testOrigin}, []string{testOrigin}), 1500_000))
			return build(t, b)
		}(), MaxCommitEventSize},
		{"pending commit", build(t, builder(t, V1Unstable, EventPendingCommit)), MaxCommitEventSize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.limit - len(c.ev.JSON()) - overhead
			at := withPad(c.ev, n)
			if len(at) != c.limit {
				t.Fatalf("built %d bytes", len(at))
			}
			got, err := Parse(context.Background(), c.ev.RoomVersion(), at)
			if err != nil {
				t.Fatalf("exactly %d bytes: %v", c.limit, err)
			}
			if got.EventID() != c.ev.EventID() {
				t.Fatal("event ID changed")
			}
			_, err = Parse(context.Background(), c.ev.RoomVersion(), withPad(c.ev, n+1))
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindTooLarge || !strings.Contains(err.Error(), fmt.Sprintf("canonical JSON of %d bytes", c.limit+1)) {
				t.Fatalf("%d bytes: %v", c.limit+1, err)
			}
		})
	}
	// The limit is on canonical JSON: whitespace does not count.
	ev := build(t, builder(t, V1, EventEncrypted))
	at := withPad(ev, MaxEventSize-len(ev.JSON())-overhead)
	spaced := append(bytes.Repeat([]byte(" "), 100_000), at...)
	if _, err := Parse(context.Background(), V1, spaced); err != nil {
		t.Fatalf("whitespace counted: %v", err)
	}
	// An m.room.encrypted event may not grow to a commit's size, nor a
	// commit beyond its own, through the ciphertext alone.
	b := builder(t, V1, EventEncrypted)
	b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, testRoom, 2, mls.ContentTypeApplication, nil, 50_000))
	if _, err := b.Build(context.Background(), testKeyID, testKey()); err == nil || !strings.Contains(err.Error(), "may have at most 65536") {
		t.Fatalf("large m.room.encrypted: %v", err)
	}
	b = builder(t, V1, EventCommit)
	b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, testRoom, 1, mls.ContentTypeCommit, nil, 1600_000))
	if _, err := b.Build(context.Background(), testKeyID, testKey()); err == nil || !strings.Contains(err.Error(), "may have at most 2097152") {
		t.Fatalf("large commit: %v", err)
	}
}

func TestLongestIDs(t *testing.T) {
	room := "!" + strings.Repeat("r", 244) + ":a.example"
	b := builder(t, V1, EventCommit)
	b.RoomID = room
	b.StateKey = sp(strings.Repeat("k", 255)) // parses; auth rule 1 rejects a non-empty state key
	b.PrevEvents = nil
	for i := range 20 {
		b.PrevEvents = append(b.PrevEvents, eventID(fmt.Sprint(i)))
	}
	b.AuthEvents = b.PrevEvents[:10]
	b.Content, _ = V1.MLSContent(b.Type, 1, privMsg(t, room, 1, mls.ContentTypeCommit, nil, 0))
	ev := build(t, b)
	if ev.RoomID().String() != room || len(ev.PrevEventIDs()) != 20 || !ev.StateKeyEquals(strings.Repeat("k", 255)) {
		t.Fatal("longest IDs")
	}
}

func TestRedactJSON(t *testing.T) {
	in := `{"type":"m.room.encrypted","sender":"@a:b","depth":3,"unsigned":{"age":1},"x":1,"event_id":"$e","origin":"a.example",
		"content":{"algorithm":"a","ciphertext":"c","body":"secret"},"signatures":{"a":{"b":"c"}},"hashes":{"sha256":"h"},
		"room_id":"!r:a","state_key":"","prev_events":[],"auth_events":[],"origin_server_ts":5,"membership":"join"}`
	want := `{"auth_events":[],"content":{"algorithm":"a","ciphertext":"c"},"event_id":"$e","hashes":{"sha256":"h"},"origin":"a.example","origin_server_ts":5,"prev_events":[],"room_id":"!r:a","signatures":{"a":{"b":"c"}},"state_key":"","type":"m.room.encrypted"}`
	got, err := RedactJSON([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("got %s, %v\nwant %s", got, err, want)
	}
	create := `{"type":"m.room.create","content":{"room_version":"m.mls.1","algorithm":"x","creator":"@a:b","m.federate":false}}`
	got, _ = RedactJSON([]byte(create))
	if string(got) != `{"content":{"algorithm":"x","creator":"@a:b","m.federate":false,"room_version":"m.mls.1"},"type":"m.room.create"}` {
		t.Fatalf("create: %s", got)
	}
	commit := `{"type":"de.bwi.mls.commit","content":{"ciphertext":"c","other":{"deep":1}}}`
	got, _ = RedactJSON([]byte(commit))
	if string(got) != `{"content":{"ciphertext":"c"},"type":"de.bwi.mls.commit"}` {
		t.Fatalf("commit: %s", got)
	}
	for _, bad := range []string{"[]", "{", `{"a":1.5}`} {
		if _, err := RedactJSON([]byte(bad)); err == nil {
			t.Fatalf("redacted %s", bad)
		}
	}
}

func TestCanonicalStrings(t *testing.T) {
	in := "\"\\u0000\\u0008\\u0009\\u000a\\u000b\\u000c\\u000d\\u001f \\\" \\\\ \\/ \\u00e9 \\ud83d\\ude00 \\u2028 \x7f \\u003c\""
	want := "\"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f \\\" \\\\ / é 😀 \u2028 \x7f <\""
	got, err := canonicalJSON([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("got %q, %v\nwant %q", got, err, want)
	}
	for _, bad := range []string{`"\u12"`, `"\ud800\u0041"`, `"abc`, `"\`, `tru`, `nul`, `-`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{1:2}`, "\"\x00\""} {
		if _, err := canonicalJSON([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestReferenceIDOf: the reference hash of raw JSON is the event ID Parse
// computes, with or without unsigned; "" for what is not a JSON object.
func TestReferenceIDOf(t *testing.T) {
	for _, k := range []EventKind{EventCreate, EventCommit, EventEncrypted} {
		b := builder(t, V1, k)
		ev, err := b.Build(context.Background(), testKeyID, testKey())
		if err != nil {
			t.Fatal(err)
		}
		if got := ReferenceIDOf(ev.JSON()); got != ev.EventID() {
			t.Fatalf("%v: ReferenceIDOf %s, event ID %s", k, got, ev.EventID())
		}
		withUnsigned := append(bytes.TrimSuffix(ev.JSON(), []byte("}")), []byte(`,"unsigned":{"age":5}}`)...)
		if got := ReferenceIDOf(withUnsigned); got != ev.EventID() {
			t.Fatalf("%v with unsigned: %s, want %s", k, got, ev.EventID())
		}
	}
	for _, raw := range []string{`null`, `[1]`, `"x"`, `{`} {
		if got := ReferenceIDOf([]byte(raw)); got != "" {
			t.Fatalf("%s: %q", raw, got)
		}
	}
}

func TestDomain(t *testing.T) {
	for id, want := range map[string]string{"!r:a.example": "a.example", "@u:b.example:8448": "b.example:8448", "!noserver": "", "": ""} {
		if got := Domain(id); got != want {
			t.Fatalf("Domain(%q) = %q, want %q", id, got, want)
		}
	}
}
