package main

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// FuzzInspect feeds inspect arbitrary input: it must not panic, and what it
// reports on success must encode as one valid JSON object holding exactly
// one of a message and an event description.
func FuzzInspect(f *testing.F) {
	ad := encodeFedMap(f, testFedMap())
	commit := privateCommit(f, 7, ad, 1)
	create := createEvent(f, roomversion.V1)
	kp := keyPackageMessage(f, keyPackage(f, testSuite, nil, true, time.Time{}, time.Time{}))
	for _, seed := range []string{
		base64.StdEncoding.EncodeToString(commit),
		base64.RawURLEncoding.EncodeToString(commit),
		base64.StdEncoding.EncodeToString(kp),
		base64.RawStdEncoding.EncodeToString(privateMessage(f, 1, []byte{0xa0}, mls.ContentTypeApplication, 0)),
		string(create.JSON()),
		string(mlsEvent(f, roomversion.V1Unstable, roomversion.V1Unstable.CommitType(), commit, create.EventID()).JSON()),
		`{"type":"m.room.create","content":{"room_version":"de.bwi.mls.v1"}}`,
		"",
		"{",
		"AAEAAg",
	} {
		f.Add([]byte(seed))
	}
	opts := inspectOptions{RoomVersion: roomversion.V1, Now: testNow}
	f.Fuzz(func(t *testing.T, input []byte) {
		r, err := inspect(input, opts)
		if err != nil {
			if r != nil || err.Error() == "" {
				t.Fatalf("error %q with report %+v", err, r)
			}
			return
		}
		if (r.Message == nil) == (r.Event == nil) {
			t.Fatalf("report %+v: want exactly one of Message and Event", r)
		}
		out, err := r.JSON()
		if err != nil {
			t.Fatalf("encoding the report: %v", err)
		}
		var obj map[string]any
		if !json.Valid(out) || json.Unmarshal(out, &obj) != nil || out[len(out)-1] != '\n' {
			t.Fatalf("output is not one newline-terminated JSON object: %q", out)
		}
		if _, ok := obj["wire_format"]; !ok && r.Message != nil {
			t.Fatalf("message report without wire_format: %s", out)
		}
		if sc, ok := obj["signature_checked"]; r.Event != nil && (!ok || sc != false) {
			t.Fatalf("event report without signature_checked false: %s", out)
		}
	})
}
