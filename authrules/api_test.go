package authrules_test

import (
	"errors"
	"testing"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/roomversion"
)

func findCase(t *testing.T, name string) authrulestest.Case {
	t.Helper()
	for _, c := range authrulestest.Cases(authrulestest.DefaultParams()) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no case %s", name)
	return authrulestest.Case{}
}

func TestErrorValues(t *testing.T) {
	c := findCase(t, "9.9-rejected-lower-server-promotes-itself")
	err := authrules.CheckAuthEvents(c.Event, c.AuthEvents, nil)
	var ae *authrules.Error
	if !errors.As(err, &ae) || ae.Rule != "9.9" || ae.Reason == "" {
		t.Fatalf("%v", err)
	}
	if got := err.Error(); got != "auth rule 9.9: "+ae.Reason {
		t.Errorf("Error() = %q", got)
	}
	chain := &authrules.Error{Rule: authrules.RuleChain, Reason: "x"}
	if chain.Error() != "auth rules: chain rule: x" {
		t.Errorf("Error() = %q", chain.Error())
	}
	// A federation map that does not decode wraps the decoding error.
	c = findCase(t, "9.5-rejected-federation-map-does-not-decode")
	err = authrules.CheckAuthEvents(c.Event, c.AuthEvents, nil)
	var re *roomversion.Error
	if !errors.As(err, &ae) || ae.Rule != "9.5" || !errors.As(err, &re) {
		t.Errorf("%v", err)
	}
	// Auth events that are not the event's are the caller's mistake.
	c = findCase(t, "4.1-allowed-message-with-create-and-commit")
	if err := authrules.CheckAuthEvents(c.Event, c.AuthEvents[:1], nil); !errors.Is(err, authrules.ErrAuthEventsMismatch) {
		t.Errorf("one auth event short: %v", err)
	}
	swapped := []*roomversion.Event{c.AuthEvents[1], c.AuthEvents[0]}
	if err := authrules.CheckAuthEvents(c.Event, swapped, nil); !errors.Is(err, authrules.ErrAuthEventsMismatch) {
		t.Errorf("auth events in another order: %v", err)
	}
	sf := &authrules.SoftFail{Case: "c", Reason: "lost"}
	if sf.String() != "soft-fail (c): lost" {
		t.Errorf("String() = %q", sf.String())
	}
}

// TestCheckDoesNotAllocate: Check of an allowed message and of an allowed
// commit allocates nothing.
func TestCheckDoesNotAllocate(t *testing.T) {
	for _, name := range []string{"chain-allowed-message-in-older-epoch-on-mainline", "9.9-allowed-lower-server-keeps-higher-ones", "10.1-allowed-pending-epoch-current-plus-one"} {
		c := findCase(t, name)
		room := authrules.NewMemRoom(c.Create)
		for _, e := range c.Room {
			room.Add(e)
		}
		state := room.State(c.State)
		authCommit := c.AuthEvents[1]
		if err := authrules.Check(c.Event, authCommit, state); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = authrules.Check(c.Event, authCommit, state) }); n != 0 {
			t.Errorf("%s: %v allocations per Check", name, n)
		}
	}
}
