package roomserver

import (
	"encoding/json"
	"testing"

	"github.com/mlsmode/mlsmode/roomversion"
)

// FuzzSyncToken: /sync's since parameter is outside input. A token that
// parses formats back to itself (one text per position).
func FuzzSyncToken(f *testing.F) {
	for _, s := range []string{"s0_0_0_0", "s12_3_4_5", "", "s1_2_3", "s-1_0_0_0", "t5", "s01_0_0_0"} {
		f.Add(s)
	}
	s := &Server{}
	f.Fuzz(func(t *testing.T, tok string) {
		st, err := parseSyncToken(tok)
		if err != nil {
			return
		}
		if st.Events < 0 || st.ToDevice < 0 || st.Memberships < 0 || st.DeviceKeys < 0 {
			t.Fatalf("%q parsed to negative positions %+v", tok, st)
		}
		again, err := parseSyncToken(s.formatSyncToken(st))
		if err != nil || again != st {
			t.Fatalf("%q: round trip %+v -> %+v, %v", tok, st, again, err)
		}
	})
}

// FuzzEventsToken: /messages' from and to are outside input.
func FuzzEventsToken(f *testing.F) {
	for _, s := range []string{"t0", "t42", "s1_2_3_4", "t", "t-1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		n, err := parseEventsToken(tok)
		if err == nil && n < 0 {
			t.Fatalf("%q parsed to %d", tok, n)
		}
	})
}

// FuzzContentEpoch: a client's event content is outside input; reading its
// epoch must never panic, and an epoch is read only from a PrivateMessage
// of the room's group whose content type fits the event type.
func FuzzContentEpoch(f *testing.F) {
	f.Add([]byte(`{"algorithm":"x","ciphertext":"AAEAAg"}`), uint8(0))
	f.Add([]byte(`{"ciphertext":""}`), uint8(1))
	f.Add([]byte(`[]`), uint8(2))
	f.Fuzz(func(t *testing.T, content []byte, k uint8) {
		kind := []roomversion.EventKind{roomversion.EventCommit, roomversion.EventPendingCommit, roomversion.EventEncrypted}[int(k)%3]
		if _, ok := contentEpoch("!r:a.example", kind, content); ok && !json.Valid(content) {
			t.Fatalf("an epoch read from content that is not JSON: %q", content)
		}
	})
}
