package stateres_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/stateres"
	"github.com/mlsmode/mlsmode/stateres/stateresttest"
)

var update = flag.Bool("update", false, "rewrite the vectors in testdata/stateres")

const vectorDir = "../testdata/stateres"

// vectorRandom is how many random rooms the vectors hold.
const vectorRandom = 12

// Vector is one file of testdata/stateres (see testdata/README.md).
type Vector struct {
	Description string                  `json:"description"`
	RoomVersion string                  `json:"room_version"`
	Servers     map[string]VectorServer `json:"servers"`
	Events      []json.RawMessage       `json:"events"`
	StateSets   []*string               `json:"state_sets"`
	Expected    VectorExpected          `json:"expected"`
}

// VectorServer is a server's signing key.
type VectorServer struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
}

// VectorExpected is the resolution's result.
type VectorExpected struct {
	Commit *string      `json:"commit"`
	Chain  []string     `json:"chain"`
	Losers []VectorLoss `json:"losers"`
}

// VectorLoss is one losing event.
type VectorLoss struct {
	EventID string `json:"event_id"`
	Kind    string `json:"kind"`
}

func idp(e *roomversion.Event) *string {
	if e == nil {
		return nil
	}
	s := e.EventID()
	return &s
}

// expected resolves the state sets of a room and describes the result.
func expected(create *roomversion.Event, events []*roomversion.Event, states []*roomversion.Event, store stateres.Store) (VectorExpected, error) {
	var sets []stateres.StateSet
	for _, c := range states {
		sets = append(sets, stateres.StateSet{Create: create, Commit: c})
	}
	res, err := stateres.Resolve(sets, store)
	if err != nil {
		return VectorExpected{}, err
	}
	x := VectorExpected{Commit: idp(res.Commit), Chain: []string{}, Losers: []VectorLoss{}}
	ml, err := stateres.Mainline(res.Commit, create, store)
	if err != nil {
		return x, err
	}
	for _, c := range ml {
		x.Chain = append(x.Chain, c.EventID())
	}
	ls, err := stateres.Losers(events, res, store)
	if err != nil {
		return x, err
	}
	for _, l := range ls {
		x.Losers = append(x.Losers, VectorLoss{EventID: l.Event.EventID(), Kind: l.Kind})
	}
	return x, nil
}

// makeVector returns a scenario's vector as indented JSON.
func makeVector(t *testing.T, s stateresttest.Scenario) []byte {
	g := s.Gen
	v := Vector{Description: s.Description, RoomVersion: string(g.Params().Version), Servers: map[string]VectorServer{}}
	for _, name := range g.Params().Servers {
		v.Servers[name] = VectorServer{KeyID: stateresttest.KeyID, PublicKey: base64.RawStdEncoding.EncodeToString(g.PublicKey(name))}
	}
	for _, e := range g.Events() {
		v.Events = append(v.Events, json.RawMessage(e.JSON()))
	}
	for _, c := range s.States {
		v.StateSets = append(v.StateSets, idp(c))
	}
	x, err := expected(g.Create(), g.Events(), s.States, g.Store())
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	if s.Want != nil && (x.Commit == nil || *x.Commit != s.Want.EventID()) {
		t.Fatalf("%s: resolves to %v, want %s", s.Name, x.Commit, s.Want.EventID())
	}
	v.Expected = x
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestVectors regenerates the vectors of testdata/stateres from the
// scenarios and compares them with the files (rewrite them with go test
// ./stateres -run TestVectors -update), then reads every file back,
// verifies every event's signature, resolves its state sets and compares
// the result with the file's.
func TestVectors(t *testing.T) {
	want := map[string][]byte{}
	for _, s := range stateresttest.Scenarios(vectorRandom) {
		want[s.Name+".json"] = makeVector(t, s)
	}
	if *update {
		old, _ := filepath.Glob(filepath.Join(vectorDir, "*.json"))
		for _, f := range old {
			if !strings.HasSuffix(f, ".resolve.json") {
				os.Remove(f)
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".resolve.json") })
	if len(files) != len(want) {
		t.Errorf("%d vector files, the scenarios make %d (run with -update)", len(files), len(want))
	}
	for _, f := range files {
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[filepath.Base(f)]; !ok || !bytes.Equal(got, w) {
			t.Errorf("%s differs from what the scenarios make (run with -update)", f)
		}
		if err := runVector(got); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// runVector runs one vector as another implementation would.
func runVector(data []byte) error {
	var v Vector
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	ver, err := roomversion.Lookup(v.RoomVersion)
	if err != nil {
		return err
	}
	fetch := roomversion.KeyFetcherFunc(func(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
		s, ok := v.Servers[server]
		if !ok || s.KeyID != keyID {
			return nil, fmt.Errorf("no key %s of %s", keyID, server)
		}
		return base64.RawStdEncoding.DecodeString(s.PublicKey)
	})
	store := stateres.MapStore{}
	var events []*roomversion.Event
	var create *roomversion.Event
	for i, raw := range v.Events {
		ev, err := roomversion.Parse(context.Background(), ver, raw)
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if err := roomversion.VerifySignature(context.Background(), ev, fetch); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if ev.Kind() == roomversion.EventCreate && create == nil {
			create = ev
		}
		store.Add(ev)
		events = append(events, ev)
	}
	var states []*roomversion.Event
	for _, id := range v.StateSets {
		if id == nil {
			states = append(states, nil)
			continue
		}
		if states = append(states, store.Event(*id)); store.Event(*id) == nil {
			return fmt.Errorf("state set commit %s is not among the events", *id)
		}
	}
	x, err := expected(create, events, states, store)
	if err != nil {
		return err
	}
	a, _ := json.Marshal(x)
	b, _ := json.Marshal(v.Expected)
	if !bytes.Equal(a, b) {
		return fmt.Errorf("resolved to %s, the vector expects %s", a, b)
	}
	return nil
}
