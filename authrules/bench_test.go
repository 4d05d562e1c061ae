package authrules_test

import (
	"testing"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/roomversion"
)

// benchCase returns the case of a message in an older epoch, checked
// against a state four epochs on, so the chain rule looks the message's
// auth commit up on the mainline.
func benchCase(b *testing.B, name string) (*roomversion.Event, *roomversion.Event, authrules.State) {
	b.Helper()
	for _, c := range authrulestest.Cases(authrulestest.DefaultParams()) {
		if c.Name != name {
			continue
		}
		room := authrules.NewMemRoom(c.Create)
		for _, e := range c.Room {
			room.Add(e)
		}
		var authCommit *roomversion.Event
		for _, a := range c.AuthEvents {
			if a.Kind() == roomversion.EventCommit {
				authCommit = a
			}
		}
		if c.Event == nil || c.Event.Kind() != roomversion.EventEncrypted {
			b.Fatalf("case %s is not a parsed m.room.encrypted event", name)
		}
		return c.Event, authCommit, room.State(c.State)
	}
	b.Fatalf("no case %s", name)
	return nil, nil, nil
}

// BenchmarkCheck is the auth check alone (rules 1-12 and the chain rule) of
// a parsed m.room.encrypted event against a state: from a server in
// servers but not the create event's, so rules 5 and 6 both look, with its
// auth commit two epochs below the state's current commit.
func BenchmarkCheck(b *testing.B) {
	ev, authCommit, state := benchCase(b, "chain-allowed-message-in-older-epoch-on-mainline")
	if err := authrules.Check(ev, authCommit, state); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := authrules.Check(ev, authCommit, state); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckAuthEvents is the check on receipt: rule 4 and the rules
// against the event's own auth events.
func BenchmarkCheckAuthEvents(b *testing.B) {
	ev, authCommit, state := benchCase(b, "chain-allowed-message-in-older-epoch-on-mainline")
	auth := []*roomversion.Event{state.Create(), authCommit}
	if err := authrules.CheckAuthEvents(ev, auth, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := authrules.CheckAuthEvents(ev, auth, nil); err != nil {
			b.Fatal(err)
		}
	}
}
