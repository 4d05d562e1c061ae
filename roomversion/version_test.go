package roomversion

import (
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/mls"
)

func TestVersionNames(t *testing.T) {
	cases := []struct {
		v                                                 Version
		commit, pending, prefix, welcome, credential, str string
	}{
		{V1, "m.mls.commit", "m.mls.pending_commit", "m.mls.v1.", "m.mls.welcome", "m.mls.v1.basic", "m.mls.1"},
		{V1Unstable, "de.bwi.mls.commit", "de.bwi.mls.pending_commit", "de.bwi.mls.v1.", "de.bwi.mls.welcome", "de.bwi.mls.v1.basic", "de.bwi.mls.v1"},
		{Version("11"), "", "", "", "", "", "11"},
	}
	for _, c := range cases {
		got := []string{c.v.CommitType(), c.v.PendingCommitType(), c.v.AlgorithmPrefix(), c.v.WelcomeType(), c.v.CredentialPrefix(), c.v.String()}
		want := []string{c.commit, c.pending, c.prefix, c.welcome, c.credential, c.str}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: got %q, want %q", c.v, got, want)
		}
	}
	if vs := Versions(); len(vs) != 2 || vs[0] != V1 || vs[1] != V1Unstable {
		t.Fatalf("Versions() = %v", vs)
	}
	for _, id := range []string{"m.mls.1", "de.bwi.mls.v1"} {
		if v, err := Lookup(id); err != nil || string(v) != id || !v.Known() {
			t.Errorf("Lookup(%q) = %q, %v", id, v, err)
		}
	}
	for _, id := range []string{"", "11", "m.mls.2", "M.MLS.1", "de.bwi.mls.v2"} {
		_, err := Lookup(id)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindUnsupportedVersion {
			t.Errorf("Lookup(%q): %v", id, err)
		}
	}
}

func TestAlgorithms(t *testing.T) {
	want := map[mls.CipherSuite]string{
		1:    "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		2:    "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
		3:    "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
		0x53: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
	}
	if len(Suites()) != 4 {
		t.Fatalf("Suites() = %v", Suites())
	}
	for _, v := range Versions() {
		for _, cs := range Suites() {
			alg, err := v.Algorithm(cs)
			if err != nil || alg != v.AlgorithmPrefix()+want[cs] {
				t.Errorf("%s.Algorithm(%v) = %q, %v", v, cs, alg, err)
			}
			got, err := v.ParseAlgorithm(alg)
			if err != nil || got != cs {
				t.Errorf("%s.ParseAlgorithm(%q) = %v, %v", v, alg, got, err)
			}
		}
		for _, cs := range []mls.CipherSuite{0, 4, 5, 6, 7, 0x54, 0xffff} {
			if alg, err := v.Algorithm(cs); err == nil {
				t.Errorf("%s.Algorithm(%v) = %q", v, cs, alg)
			}
		}
		other := V1Unstable
		if v == V1Unstable {
			other = V1
		}
		bad := []string{
			"", v.AlgorithmPrefix(), want[1], other.AlgorithmPrefix() + want[1],
			v.AlgorithmPrefix() + "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
			v.AlgorithmPrefix() + "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
			v.AlgorithmPrefix() + "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",
			v.AlgorithmPrefix() + strings.ToLower(want[1]), v.AlgorithmPrefix() + want[1] + " ",
			" " + v.AlgorithmPrefix() + want[1], v.AlgorithmPrefix() + "CipherSuite(0x0053)",
			"m.megolm.v1.aes-sha2", v.AlgorithmPrefix() + "1",
		}
		for _, alg := range bad {
			_, err := v.ParseAlgorithm(alg)
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindAlgorithm {
				t.Errorf("%s.ParseAlgorithm(%q): %v", v, alg, err)
			}
		}
	}
	if _, err := Version("x").ParseAlgorithm("m.mls.v1." + want[1]); err == nil {
		t.Error("unknown version parsed an algorithm")
	}
}

func TestRegister(t *testing.T) {
	Register()
	Register() // harmless twice
	for _, v := range Versions() {
		impl, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(v))
		if err != nil {
			t.Fatalf("%s not found after Register: %v", v, err)
		}
		if got, ok := impl.(Version); !ok || got != v {
			t.Fatalf("gomatrixserverlib has %T %v for %s", impl, impl, v)
		}
		if !gomatrixserverlib.KnownRoomVersion(gomatrixserverlib.RoomVersion(v)) {
			t.Fatalf("%s not known", v)
		}
	}
	if impl := gomatrixserverlib.MustGetRoomVersion("m.mls.1"); impl.Version() != "m.mls.1" || impl.Stable() {
		t.Fatalf("m.mls.1: %v stable=%v", impl.Version(), impl.Stable())
	}
	// A headered event round-trips through gomatrixserverlib.
	ev := build(t, builder(t, V1, EventEncrypted))
	h, err := ev.ToHeaderedJSON()
	if err != nil {
		t.Fatal(err)
	}
	pdu, err := gomatrixserverlib.NewEventFromHeaderedJSON(h, false)
	if err != nil {
		t.Fatal(err)
	}
	if pdu.EventID() != ev.EventID() || pdu.Version() != "m.mls.1" {
		t.Fatalf("headered round trip: %s %s", pdu.EventID(), pdu.Version())
	}
}

func TestIRoomVersion(t *testing.T) {
	var v gomatrixserverlib.IRoomVersion = V1
	if v.EventFormat() != gomatrixserverlib.EventFormatV2 || v.EventIDFormat() != gomatrixserverlib.EventIDFormatV3 ||
		v.StateResAlgorithm() != gomatrixserverlib.StateResV2_1 || v.DomainlessRoomIDs() || v.PrivilegedCreators() {
		t.Fatal("formats")
	}
	if v.CheckRestrictedJoinsAllowed() == nil || v.CheckKnockingAllowed("", "", "", "", "") == nil ||
		v.ParsePowerLevels(nil, nil) == nil || v.CheckPowerLevelEvent("", nil, gomatrixserverlib.PowerLevelContent{}, gomatrixserverlib.PowerLevelContent{}) == nil {
		t.Fatal("unsupported features accepted")
	}
	if _, err := v.CheckRestrictedJoin(t.Context(), "", nil, spec.RoomID{}, ""); err == nil {
		t.Fatal("restricted join accepted")
	}
	if s, err := v.RestrictedJoinServername([]byte(`{}`)); s != "" || err != nil {
		t.Fatal(s, err)
	}
	if _, err := v.NewEventBuilder().Build(testTime, testOrigin, testKeyID, testKey()); err == nil {
		t.Fatal("gomatrixserverlib's builder built an MLS event")
	}
	if v.CheckCanonicalJSON([]byte(`{"a":1}`)) != nil || v.CheckCanonicalJSON([]byte(`{"a":1.5}`)) == nil ||
		v.CheckCanonicalJSON([]byte(`{"a":1,"a":2}`)) == nil || v.CheckCanonicalJSON([]byte(`{"a":9007199254740992}`)) == nil {
		t.Fatal("CheckCanonicalJSON")
	}

	create := build(t, builder(t, V1, EventCreate))
	if err := v.CheckCreateEvent(create, spec.UserID{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := V1Unstable.CheckCreateEvent(create, spec.UserID{}, nil); err == nil {
		t.Fatal("create event of m.mls.1 accepted by de.bwi.mls.v1")
	}
	if err := v.CheckCreateEvent(build(t, builder(t, V1, EventCommit)), spec.UserID{}, nil); err == nil {
		t.Fatal("commit accepted as create event")
	}

	ev := build(t, builder(t, V1, EventEncrypted))
	pdu, err := v.NewEventFromUntrustedJSON(ev.JSON())
	if err != nil || pdu.EventID() != ev.EventID() {
		t.Fatal(pdu, err)
	}
	if pdu, err := v.NewEventFromTrustedJSON(ev.JSON(), false); err != nil || pdu.EventID() != ev.EventID() {
		t.Fatal(pdu, err)
	}
	if pdu, err := v.NewEventFromTrustedJSONWithEventID(ev.EventID(), ev.JSON(), false); err != nil || pdu.EventID() != ev.EventID() {
		t.Fatal(pdu, err)
	}
	var e *Error
	if _, err := v.NewEventFromTrustedJSONWithEventID(eventID("other"), ev.JSON(), false); !errors.As(err, &e) || e.Kind != KindEventID {
		t.Fatal(err)
	}
	if _, err := v.NewEventFromTrustedJSON(ev.JSON(), true); !errors.As(err, &e) || e.Kind != KindRedacted {
		t.Fatal(err)
	}
	if pdu, err := v.NewEventFromUntrustedJSON([]byte("{}")); err == nil || pdu != nil {
		t.Fatalf("empty event: %v %v", pdu, err)
	}
}
