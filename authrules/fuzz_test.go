package authrules_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mlsmode/mlsmode/authrules"
	"github.com/mlsmode/mlsmode/authrules/authrulestest"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
)

// rules are the Rule values an *authrules.Error may have.
var rules = map[string]bool{"1": true, "2": true, "3.1": true, "3.2": true, "3.3": true, "3.4": true, "3.5": true,
	"4.1": true, "4.2": true, "4.3": true, "4.4": true, "5": true, "6": true, "7": true, "8": true,
	"9.1": true, "9.2": true, "9.3": true, "9.4": true, "9.5": true, "9.6": true, "9.7": true, "9.8": true, "9.9": true, "9.10": true,
	"10.1": true, "10.2": true, "10.3": true, "10.4": true, "10.5": true, "10.6": true, "10.7": true, "11": true, "chain": true}

// FuzzCheck feeds mutated events through ParseEvent, CheckAuthEvents
// (auth events looked up in the room scenario's room), Check against the
// room's current state and CheckSoftFail: nothing may panic, every
// rejection names a known rule, an event Check allows is allowed again, and
// soft-fail never fails for an event that passed.
func FuzzCheck(f *testing.F) {
	p := authrulestest.DefaultParams()
	scenario := authrulestest.RoomScenario(p)
	for _, c := range authrulestest.Cases(p) {
		f.Add(c.JSON)
	}
	room := authrules.NewMemRoom(scenario[0].Event)
	rejected := map[string]bool{}
	for _, c := range scenario {
		if c.Rule != "" {
			rejected[c.Event.EventID()] = true
			continue
		}
		room.Add(c.Event)
		if c.Event.Kind() == roomversion.EventCommit && c.SoftFail == "" {
			room.SetCurrent(c.Event)
		}
	}
	all := map[string]*roomversion.Event{}
	for _, c := range scenario {
		all[c.Event.EventID()] = c.Event
	}
	known := func(err error) {
		var ae *authrules.Error
		if errors.As(err, &ae) && !rules[ae.Rule] {
			f.Fatalf("unknown rule %q: %v", ae.Rule, err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := authrules.ParseEvent(context.Background(), p.Version, data)
		if err != nil {
			known(err)
			return
		}
		var auth []*roomversion.Event
		var authCommit *roomversion.Event
		for _, id := range ev.AuthEventIDs() {
			a := all[id]
			auth = append(auth, a)
			if a != nil && a.Kind() == roomversion.EventCommit {
				authCommit = a
			}
		}
		if err := authrules.CheckAuthEvents(ev, auth, func(id string) bool { return rejected[id] }); err != nil {
			var ae *authrules.Error
			if !errors.As(err, &ae) {
				t.Fatalf("not a rejection: %v", err)
			}
			known(err)
			return
		}
		if ev.Kind() == roomversion.EventCreate {
			return
		}
		err = authrules.Check(ev, authCommit, room)
		known(err)
		if err != nil {
			return
		}
		if err := authrules.Check(ev, authCommit, room); err != nil {
			t.Fatalf("allowed, then: %v", err)
		}
		sf, err := authrules.CheckSoftFail(ev, room)
		if err != nil {
			t.Fatalf("soft-fail: %v", err)
		}
		if sf != nil && sf.Case != "a" && sf.Case != "b" && sf.Case != "c" {
			t.Fatalf("soft-fail case %q", sf.Case)
		}
	})
}

// FuzzCheckBuilt builds well-formed events of every kind from fuzzed
// fields (origin, auth commit, epoch, authenticated data, which the
// federation map rules read) and runs them through the same checks as
// FuzzCheck. The MLS messages carry a fixed body: servers read only the
// header.
func FuzzCheckBuilt(f *testing.F) {
	p := authrulestest.DefaultParams()
	scenario := authrulestest.RoomScenario(p)
	create := scenario[0].Event
	room := authrules.NewMemRoom(create)
	var commits []*roomversion.Event
	for _, c := range scenario {
		if c.Rule != "" {
			continue
		}
		room.Add(c.Event)
		if c.Event.Kind() == roomversion.EventCommit {
			commits = append(commits, c.Event)
			if c.SoftFail == "" {
				room.SetCurrent(c.Event)
			}
		}
	}
	servers := p.Servers()
	f.Add(uint8(0), uint8(0), uint8(0), int8(1), []byte{0xa0})
	for i, c := range commits {
		h, _ := c.MLSHeader()
		f.Add(uint8(1), uint8(i), uint8(i+1), int8(1), h.AuthenticatedData)
		f.Add(uint8(2), uint8(i), uint8(i+1), int8(1), h.AuthenticatedData)
		f.Add(uint8(3), uint8(i), uint8(i+1), int8(1), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, kind, origin, authIdx uint8, delta int8, ad []byte) {
		if len(ad) > 4096 {
			return
		}
		srv := servers[int(origin)%len(servers)]
		var authCommit *roomversion.Event
		if n := int(authIdx) % (len(commits) + 1); n > 0 {
			authCommit = commits[n-1]
		}
		epoch := uint64(int64(delta))
		if authCommit != nil {
			epoch = uint64(int64(authCommit.Epoch()) + int64(delta))
		}
		b := &roomversion.Builder{Version: p.Version, RoomID: p.RoomID, Origin: srv.Name, PrevEvents: []string{create.EventID()}, AuthEvents: []string{create.EventID()}}
		if authCommit != nil {
			b.AuthEvents = append(b.AuthEvents, authCommit.EventID())
		}
		ct := mls.ContentTypeCommit
		switch kind % 3 {
		case 0:
			b.Type, b.StateKey = p.Version.CommitType(), new(string)
		case 1:
			b.Type = p.Version.PendingCommitType()
		default:
			b.Type, ct, ad = roomversion.EventTypeEncrypted, mls.ContentTypeApplication, nil
		}
		msg, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
			GroupID: []byte(p.RoomID), Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
			EncryptedSenderData: make([]byte, 28), Ciphertext: make([]byte, 48)}}).MarshalMLS()
		if err != nil {
			return
		}
		if b.Content, err = p.Version.MLSContent(b.Type, p.Suite, msg); err != nil {
			t.Fatal(err)
		}
		ev, err := b.Build(context.Background(), srv.KeyID, srv.PrivateKey())
		if err != nil {
			return // too large, for example
		}
		auth := []*roomversion.Event{create}
		if authCommit != nil {
			auth = append(auth, authCommit)
		}
		err = authrules.CheckAuthEvents(ev, auth, nil)
		var ae *authrules.Error
		if err != nil && (!errors.As(err, &ae) || !rules[ae.Rule]) {
			t.Fatalf("not a known rejection: %v", err)
		}
		if err != nil {
			return
		}
		if err := authrules.Check(ev, authCommit, room); err != nil {
			if !errors.As(err, &ae) || !rules[ae.Rule] {
				t.Fatalf("not a known rejection: %v", err)
			}
			return
		}
		if _, err := authrules.CheckSoftFail(ev, room); err != nil {
			t.Fatalf("soft-fail: %v", err)
		}
	})
}
