package authrules_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/roomversion"
)

var update = flag.Bool("update", false, "rewrite the vectors in testdata/authrules from the case table")

// vectorDir holds the language-neutral vectors (testdata/README.md).
const vectorDir = "../testdata/authrules"

// vectorFiles returns the vector files the case table makes for the default
// parameters: one <case>.json per case, and room.jsonl (the events of the
// room scenario, one per line, in the order of receipt).
func vectorFiles(t *testing.T) map[string][]byte {
	t.Helper()
	p := authrulestest.DefaultParams()
	files := map[string][]byte{}
	for _, c := range authrulestest.Cases(p) {
		b, err := authrulestest.MarshalVector(&c, p)
		if err != nil {
			t.Fatal(err)
		}
		files[c.Name+".json"] = b
	}
	var room bytes.Buffer
	for _, c := range authrulestest.RoomScenario(p) {
		room.Write(c.JSON)
		room.WriteByte('\n')
	}
	files["room.jsonl"] = room.Bytes()
	return files
}

// TestVectors checks that the files in testdata/authrules are exactly what
// the case table generates (regenerate them with
// go test ./authrules -run TestVectors -update), then reads every vector
// back, verifies every event's signature with the keys the file lists, and
// runs the checker on it.
func TestVectors(t *testing.T) {
	want := vectorFiles(t)
	if *update {
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(vectorDir, "*.json"))
		for _, f := range old {
			if _, ok := want[filepath.Base(f)]; !ok {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	onDisk, err := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range onDisk {
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("%s is not made by the case table (stale? run with -update)", f)
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Errorf("%v (run with -update)", err)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s differs from what the case table generates (run with -update)", name)
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) { runVector(t, got) })
	}
}

// runVector reads one vector and checks its verdict.
func runVector(t *testing.T, b []byte) {
	c, v, err := authrulestest.ReadVector(b)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, s := range v.Servers {
		k, err := base64.RawStdEncoding.DecodeString(s.PublicKey)
		if err != nil || len(k) != ed25519.PublicKeySize {
			t.Fatalf("server %s: bad public key", s.Name)
		}
		keys[s.Name+" "+s.KeyID] = k
	}
	fetch := roomversion.KeyFetcherFunc(func(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
		if k, ok := keys[server+" "+keyID]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no key %s of %s", keyID, server)
	})
	check := []*roomversion.Event{c.Event, c.Create, c.State, c.Current}
	check = append(check, c.AuthEvents...)
	check = append(check, c.Room...)
	for _, e := range check {
		if e != nil {
			if err := roomversion.VerifySignature(context.Background(), e, fetch); err != nil {
				t.Errorf("event %s: %v", e.EventID(), err)
			}
		}
	}
	got, err := authrulestest.Run(c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rule != c.Rule || got.SoftFail != c.SoftFail {
		t.Errorf("rule %q soft-fail %q (%s%s), want rule %q soft-fail %q", got.Rule, got.SoftFail, got.Reason, got.SoftFailReason, c.Rule, c.SoftFail)
	}
	wantStage := map[string]string{"parse": "parse", "auth_events": "auth events", "state": "state", "": ""}[v.Expected.Stage]
	if got.Stage != wantStage {
		t.Errorf("rejected at %q, want %q", got.Stage, v.Expected.Stage)
	}
}
