package client

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// FuzzTimelineEvent feeds arbitrary timeline events (from the server: outside
// input) to a joined room: nothing panics, and no event that is not a
// commit the group can process moves the group on.
func FuzzTimelineEvent(f *testing.F) {
	c, r := localMember(f, "@a:a.test", 0)
	m, err := r.group.Encrypt([]byte(`{"type":"m.room.message","content":{"body":"x"}}`), nil)
	if err != nil {
		f.Fatal(err)
	}
	wire, _ := m.MarshalMLS()
	ev, _ := json.Marshal(map[string]any{"event_id": "$m", "type": roomversion.EventTypeEncrypted, "origin": "a.test",
		"content": map[string]string{"algorithm": c.alg, "ciphertext": b64.EncodeToString(wire)}})
	f.Add(ev)
	f.Add([]byte(`{"event_id":"$x","type":"m.mls.commit","content":{"ciphertext":"AAAA"}}`))
	f.Add([]byte(`{"event_id":"$y","type":"m.room.encrypted","unsigned":{"de.bwi.mls.lost_fork":true},"content":{"ciphertext":"!!"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		epoch := r.group.Epoch()
		if err := c.handleEvent(context.Background(), r, raw); err != nil {
			t.Fatalf("handleEvent returned an error for outside input: %v", err)
		}
		if r.group.Epoch() != epoch {
			t.Fatalf("an event moved the group from epoch %d to %d", epoch, r.group.Epoch())
		}
		r.Broken, r.NeedsWelcome, r.Undecryptable, r.Deferred, r.Messages = nil, "", nil, nil, nil
	})
}

// FuzzWelcomeContent feeds arbitrary m.mls.welcome to-device contents:
// only a well-formed MLS Welcome for the client's algorithm is kept.
func FuzzWelcomeContent(f *testing.F) {
	c, _ := localMember(f, "@a:a.test", 0)
	f.Add([]byte(`{"algorithm":"` + c.alg + `","room_id":"!r:a.test","welcome":"AAAA"}`))
	f.Add([]byte(`{"room_id":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c.rooms = map[string]*room{}
		c.receiveWelcome(context.Background(), "@x:x.test", raw)
		for id, r := range c.rooms {
			var m mls.MLSMessage
			if r.Welcome == nil || m.UnmarshalMLS(r.Welcome) != nil || m.Welcome == nil {
				t.Fatalf("room %q kept a Welcome that is not one", id)
			}
		}
	})
}
