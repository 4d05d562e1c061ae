package authrulestest

import (
	"context"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/roomversion"
)

// Verdict is what the auth rules say of a case's event.
type Verdict struct {
	// Rule is the rule that rejected the event, "" when it is allowed.
	Rule string
	// Reason says why it was rejected.
	Reason string
	// Stage is where it was rejected: "parse" (authrules.ParseEvent),
	// "auth events" (authrules.CheckAuthEvents) or "state"
	// (authrules.Check against the state before it); "" when allowed.
	Stage string
	// SoftFail is the soft-fail case of an allowed event, "" when it is not
	// soft-failed; SoftFailReason says why.
	SoftFail, SoftFailReason string
}

// Run checks a case's event the way a server does on receipt:
// authrules.ParseEvent on JSON, authrules.CheckAuthEvents against
// AuthEvents (RejectedAuthEvents flagged), authrules.Check against the state
// at State (the room holding Room), and, if it passed, CheckSoftFail
// against the room with Current as its current commit. The error is for a
// case that cannot be run (an event Parse refuses for a reason that is not
// an auth rule, or an inconsistent case), not for a rejection.
func Run(c *Case) (Verdict, error) {
	var v Verdict
	ev, err := authrules.ParseEvent(context.Background(), c.Version, c.JSON)
	if err != nil {
		return v.rejected("parse", err)
	}
	rejected := map[string]bool{}
	for _, id := range c.RejectedAuthEvents {
		rejected[id] = true
	}
	if err := authrules.CheckAuthEvents(ev, c.AuthEvents, func(id string) bool { return rejected[id] }); err != nil {
		return v.rejected("auth events", err)
	}
	if ev.Kind() == roomversion.EventCreate {
		return v, nil
	}
	room := authrules.NewMemRoom(c.Create)
	for _, e := range c.Room {
		room.Add(e)
	}
	var authCommit *roomversion.Event
	for _, a := range c.AuthEvents {
		if a != nil && a.Kind() == roomversion.EventCommit {
			authCommit = a
		}
	}
	if err := authrules.Check(ev, authCommit, room.State(c.State)); err != nil {
		return v.rejected("state", err)
	}
	room.SetCurrent(c.Current)
	sf, err := authrules.CheckSoftFail(ev, room)
	if err != nil {
		return v, fmt.Errorf("case %s: soft-fail: %w", c.Name, err)
	}
	if sf != nil {
		v.SoftFail, v.SoftFailReason = sf.Case, sf.Reason
	}
	return v, nil
}

// rejected fills v from a rejection, or returns err when it is not one.
func (v Verdict) rejected(stage string, err error) (Verdict, error) {
	var ae *authrules.Error
	if !errors.As(err, &ae) {
		return v, fmt.Errorf("%s: %w", stage, err)
	}
	v.Rule, v.Reason, v.Stage = ae.Rule, ae.Reason, stage
	return v, nil
}
