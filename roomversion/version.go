package roomversion

import (
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/mlsmode/mlsmode/mls"
)

// Version is an MLS room version: V1 (m.mls.1) or V1Unstable
// (de.bwi.mls.v1). The two differ only in the names of SPEC-NOTES §1. Any
// other value is not a room version of this package: its accessors return
// empty names and Parse refuses it (see Lookup).
//
// Version implements gomatrixserverlib.IRoomVersion, so that code written
// against gomatrixserverlib can find it (after Register) and parse its
// events; the parts of that interface about power levels, joins and knocks,
// which MLS rooms do not have, return errors.
type Version string

// The MLS room versions.
const (
	// V1 is the stable room version m.mls.1.
	V1 Version = "m.mls.1"
	// V1Unstable is the unstable room version de.bwi.mls.v1, used while
	// MSC4256 is not merged.
	V1Unstable Version = "de.bwi.mls.v1"
)

// Event types common to both versions.
const (
	// EventTypeCreate is the create event's type.
	EventTypeCreate = "m.room.create"
	// EventTypeEncrypted is the type of MLS application and proposal
	// messages.
	EventTypeEncrypted = "m.room.encrypted"
)

// names are the per-version names of SPEC-NOTES §1.
type names struct {
	commit, pendingCommit, algorithmPrefix, welcome, credentialPrefix string
}

func (v Version) names() (names, bool) {
	switch v {
	case V1:
		return names{"m.mls.commit", "m.mls.pending_commit", "m.mls.v1.", "m.mls.welcome", "m.mls.v1.basic"}, true
	case V1Unstable:
		return names{"de.bwi.mls.commit", "de.bwi.mls.pending_commit", "de.bwi.mls.v1.", "de.bwi.mls.welcome", "de.bwi.mls.v1.basic"}, true
	}
	return names{}, false
}

// Versions returns the MLS room versions, stable first.
func Versions() []Version { return []Version{V1, V1Unstable} }

// Lookup returns the MLS room version called id, or an *Error of kind
// KindUnsupportedVersion.
func Lookup(id string) (Version, error) {
	v := Version(id)
	if !v.Known() {
		return "", &Error{Op: "looking up room version", Kind: KindUnsupportedVersion, Reason: fmt.Sprintf("%q is not an MLS room version", id)}
	}
	return v, nil
}

// Known reports whether v is one of the MLS room versions.
func (v Version) Known() bool {
	_, ok := v.names()
	return ok
}

// String returns the room version identifier.
func (v Version) String() string { return string(v) }

// CommitType returns the type of the commit state event (m.mls.commit).
func (v Version) CommitType() string { n, _ := v.names(); return n.commit }

// PendingCommitType returns the type of the pending commit message event
// (m.mls.pending_commit).
func (v Version) PendingCommitType() string { n, _ := v.names(); return n.pendingCommit }

// AlgorithmPrefix returns the prefix of every algorithm name (m.mls.v1.).
func (v Version) AlgorithmPrefix() string { n, _ := v.names(); return n.algorithmPrefix }

// WelcomeType returns the type of the welcome to-device event
// (m.mls.welcome).
func (v Version) WelcomeType() string { n, _ := v.names(); return n.welcome }

// CredentialPrefix returns the prefix of credential and signature key IDs
// (m.mls.v1.basic).
func (v Version) CredentialPrefix() string { n, _ := v.names(); return n.credentialPrefix }

// Suites returns the MLS cipher suites an algorithm may name (SPEC-NOTES §1):
// 1, 2, 3 and 83 (0x0053, X-Wing).
func Suites() []mls.CipherSuite {
	return []mls.CipherSuite{
		mls.X25519AES128GCMSHA256Ed25519,
		mls.P256AES128GCMSHA256P256,
		mls.X25519ChaCha20Poly1305SHA256Ed25519,
		mls.XWingAES256GCMSHA512Ed25519,
	}
}

func suiteAllowed(cs mls.CipherSuite) bool {
	switch cs {
	case mls.X25519AES128GCMSHA256Ed25519, mls.P256AES128GCMSHA256P256,
		mls.X25519ChaCha20Poly1305SHA256Ed25519, mls.XWingAES256GCMSHA512Ed25519:
		return true
	}
	return false
}

// Algorithm returns the algorithm name of cs in this version: the prefix
// followed by the suite's RFC 9420 name, for example
// "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519". It fails for a
// suite not in Suites and for an unknown version.
func (v Version) Algorithm(cs mls.CipherSuite) (string, error) {
	n, ok := v.names()
	if !ok {
		return "", &Error{Op: "naming algorithm", Kind: KindUnsupportedVersion, Reason: fmt.Sprintf("%q is not an MLS room version", string(v))}
	}
	if !suiteAllowed(cs) {
		return "", &Error{Op: "naming algorithm", Kind: KindAlgorithm, Reason: fmt.Sprintf("cipher suite %v is not allowed in MLS rooms", cs)}
	}
	return n.algorithmPrefix + cs.String(), nil
}

// ParseAlgorithm returns the cipher suite an algorithm name of this version
// names. Only the prefix followed by the exact name of one of the suites of
// Suites is accepted; everything else fails with an *Error of kind
// KindAlgorithm.
func (v Version) ParseAlgorithm(alg string) (mls.CipherSuite, error) {
	n, ok := v.names()
	if !ok {
		return 0, &Error{Op: "parsing algorithm", Kind: KindUnsupportedVersion, Reason: fmt.Sprintf("%q is not an MLS room version", string(v))}
	}
	name, ok := strings.CutPrefix(alg, n.algorithmPrefix)
	if ok {
		for _, cs := range Suites() {
			if cs.String() == name {
				return cs, nil
			}
		}
	}
	return 0, &Error{Op: "parsing algorithm", Kind: KindAlgorithm, Reason: fmt.Sprintf("%q is not an algorithm of room version %s (want %s followed by one of the suites 1, 2, 3, 83)", alg, v, n.algorithmPrefix)}
}

// eventKind classifies an event type of this version; ok is false for a
// type the version does not allow.
func (v Version) eventKind(typ string) (EventKind, bool) {
	n, known := v.names()
	if !known {
		return 0, false
	}
	switch typ {
	case EventTypeCreate:
		return EventCreate, true
	case n.commit:
		return EventCommit, true
	case n.pendingCommit:
		return EventPendingCommit, true
	case EventTypeEncrypted:
		return EventEncrypted, true
	}
	return 0, false
}

// Register makes both MLS room versions known to gomatrixserverlib
// (gomatrixserverlib.SetRoomVersion), so that its GetRoomVersion,
// NewEventFromHeaderedJSON and similar functions find them. Call it once at
// start-up, before any concurrent use of gomatrixserverlib: SetRoomVersion
// writes a map without locking. Registering again is harmless.
func Register() {
	for _, v := range Versions() {
		gomatrixserverlib.SetRoomVersion(v)
	}
}
