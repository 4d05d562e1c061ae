// Package types owns the values the storage backends exchange with their
// callers: rooms, stored events and their state, key packages, pending
// commits, and the errors every backend returns. It exists so that package
// storage (the interfaces and Open) and the backends (storage/postgres,
// storage/sqlite) can share them without an import cycle; package storage
// re-exports every name.
package types

import (
	"errors"

	"github.com/mlsmode/mlsmode/roomversion"
)

// Errors every backend returns (wrapped; test with errors.Is).
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: the row exists already with different content.
	ErrConflict = errors.New("storage: conflict with stored data")
	// ErrStateChanged: a conditional event write (StoreEventOptions.
	// ExpectCurrent) found another current state; nothing was stored.
	ErrStateChanged = errors.New("storage: room state changed")
	// ErrDuplicateTxn: the client transaction (StoreEventOptions.Txn) was
	// recorded before; nothing was stored.
	ErrDuplicateTxn = errors.New("storage: duplicate client transaction")
)

// KeyConflictError is how StoreOneTimeKeyPackages refuses a key ID (find
// it with errors.As); it wraps ErrConflict.
type KeyConflictError struct {
	// KeyID is the refused key ID (the first in key ID order when several
	// are refused for the same reason).
	KeyID string
	// Claimed is true when a claim handed out a one-time package of that
	// key ID before (a claimed package is never stored again); false when
	// the key ID is stored with another value.
	Claimed bool
}

// Error names the key ID and the reason.
func (e *KeyConflictError) Error() string {
	if e.Claimed {
		return "one-time key package " + e.KeyID + " was claimed before: " + ErrConflict.Error()
	}
	return "one-time key package " + e.KeyID + " is stored with another value: " + ErrConflict.Error()
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *KeyConflictError) Unwrap() error { return ErrConflict }

// Room is one MLS room the server takes part in.
type Room struct {
	// RoomID is "!opaque:server".
	RoomID string
	// Version is the room version.
	Version roomversion.Version
	// Algorithm is the create event's MLS algorithm.
	Algorithm string
}

// RoomState is the whole state of an MLS room (SPEC-NOTES §5): the create
// event and the current commit. CommitID is "" before the first commit.
type RoomState struct {
	CreateID string
	CommitID string
}

// StoreEventOptions says how to store one event.
type StoreEventOptions struct {
	// Rejected marks an event the auth rules rejected; SoftFailed one they
	// soft-failed, with SoftFailReason saying why. Neither becomes a
	// forward extremity nor changes the current state.
	Rejected       bool
	SoftFailed     bool
	SoftFailReason string
	// StateBefore is the room state at the event, before it applies (the
	// state it was authorised against). The zero value stores no state for
	// the event.
	StateBefore RoomState
	// CurrentState, when non-nil, becomes the room's current state.
	CurrentState *RoomState
	// ForwardExtremities, when non-nil, replaces the room's forward
	// extremities. When nil, an accepted (neither rejected nor soft-failed)
	// event replaces its prev events among the extremities and becomes one
	// itself, unless a stored event already names it as a prev event.
	ForwardExtremities []string
	// ExpectCurrent, when non-nil, makes the write conditional: if the
	// room's current state (zero RoomState when the room has none) is not
	// *ExpectCurrent when the write runs (under the room's lock), nothing is
	// stored and the error wraps ErrStateChanged. An event stored already
	// is reported as not new (false, nil) before this check.
	ExpectCurrent *RoomState
	// Txn, when non-nil, records the client transaction that sent the event
	// in the same transaction; if (UserID, DeviceID, TxnID) was recorded
	// before, nothing is stored and the error wraps ErrDuplicateTxn. An
	// event stored already is reported as not new (false, nil) before this
	// check, and the transaction is then not recorded.
	Txn *ClientTxn
}

// ClientTxn identifies a client-server API transaction (PUT
// /rooms/{roomId}/send/{eventType}/{txnId}, or PUT
// /sendToDevice/{eventType}/{txnId} for SendToDeviceTxn): the sending user
// and device and the client's transaction ID.
type ClientTxn struct {
	UserID, DeviceID, TxnID string
}

// StoredEvent is an event as stored, with its flags.
type StoredEvent struct {
	Event *roomversion.Event
	// NID is the event's position in the store (increasing in write
	// order).
	NID            int64
	Rejected       bool
	SoftFailed     bool
	SoftFailReason string
	// Txn is the client transaction that sent the event through the
	// client API here; set by RoomEvents only (nil otherwise).
	Txn *ClientTxn
}

// EventToStore is one event and its options, for StoreEvents.
type EventToStore struct {
	Event   *roomversion.Event
	Options StoreEventOptions
}

// KeyPackage is one uploaded key package (SPEC-NOTES §9).
type KeyPackage struct {
	// Algorithm is the MLS algorithm of the package.
	Algorithm string
	// KeyID is "<algorithm>:<base64 KeyPackageRef>".
	KeyID string
	// Value is the uploaded value (base64 of the MLSMessage), as given.
	Value string
}

// ClaimedKeyPackage is a key package handed out by a claim.
type ClaimedKeyPackage struct {
	KeyPackage
	// Fallback is true when no one-time package was left and the
	// device's fallback package was returned (and marked used).
	Fallback bool
}

// PendingStatus is the state of a pending commit in the queue.
type PendingStatus string

// Pending commit states.
const (
	PendingWaiting PendingStatus = "waiting"
	PendingApplied PendingStatus = "applied"
	PendingStale   PendingStatus = "stale"
	PendingExpired PendingStatus = "expired"
)

// Window is when the server at one index of powers may apply a pending
// commit (SPEC-NOTES §6), in Unix milliseconds, [Start, End).
type Window struct {
	PowerIndex int
	Start      int64
	End        int64
}

// PendingCommit is one m.mls.pending_commit in the commit queue.
type PendingCommit struct {
	// EventID is the pending commit event.
	EventID string
	RoomID  string
	// CommitID is the commit in the pending commit's auth events.
	CommitID string
	// ReceivedTS is the local receipt time, Unix milliseconds.
	ReceivedTS int64
	// Windows are the windows per power index.
	Windows []Window
	Status  PendingStatus
	// AppliedCommitID is the commit event that applied it, once applied.
	AppliedCommitID string
}

// ClaimResult is the outcome of claiming a pending commit for applying.
type ClaimResult int

// Claim outcomes.
const (
	// ClaimWon: this caller applies the pending commit; it is now marked
	// applied with the given commit ID.
	ClaimWon ClaimResult = iota + 1
	// ClaimTaken: it was no longer waiting (another process applied it,
	// or it is stale or expired).
	ClaimTaken
	// ClaimStale: the room's current commit is no longer the one the
	// pending commit references; it is now marked stale.
	ClaimStale
)

// String names the outcome.
func (c ClaimResult) String() string {
	switch c {
	case ClaimWon:
		return "won"
	case ClaimTaken:
		return "taken"
	case ClaimStale:
		return "stale"
	}
	return "ClaimResult(?)"
}

// OutboundItem is one queued federation payload (a PDU or EDU) for a
// destination server.
type OutboundItem struct {
	// NID orders the queue.
	NID         int64
	Destination string
	// Kind is "pdu" or "edu".
	Kind     string
	Payload  []byte
	QueuedTS int64
}

// ServerKey is a server's ed25519 signing key.
type ServerKey struct {
	ServerName string
	KeyID      string
	PublicKey  []byte
	// ValidUntilTS is valid_until_ts; ExpiredTS is when an old key
	// expired (0 for a current key). Unix milliseconds.
	ValidUntilTS int64
	ExpiredTS    int64
}

// ToDeviceMessage is one message in a device's to-device inbox.
type ToDeviceMessage struct {
	// Pos is the message's position in the inbox stream.
	Pos     int64
	Sender  string
	Type    string
	Content []byte
}

// ToDeviceDelivery is one message of a to-device transaction
// (SendToDeviceTxn) for one device's inbox.
type ToDeviceDelivery struct {
	// UserID and DeviceID name the recipient device (a local one).
	UserID, DeviceID string
	// Message is the message; its Pos is ignored (the stream assigns it).
	Message ToDeviceMessage
}

// Membership is a user's out-of-band network membership of an MLS room
// (SPEC-NOTES §7).
type Membership struct {
	RoomID string
	UserID string
	// State is "invite", "join" or "leave".
	State string
	// Inviter is the user who invited, for invites.
	Inviter   string
	UpdatedTS int64
	// EventsPos is the events-stream position when the membership was set
	// (a joined user's timeline starts after it), stored as given.
	EventsPos int64
	// Pos is the membership's position in the memberships stream, set on
	// read: SetMembership assigns a new, higher one every time.
	Pos int64
}

// User is a local account.
type User struct {
	UserID string
	// PasswordHash is the hash of the password ("" for none), as the
	// caller made it.
	PasswordHash string
	CreatedTS    int64
}

// Device is one of a user's devices.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName string
	CreatedTS   int64
}

// DeviceKeys is a device's uploaded device keys (the signed JSON object)
// and its MLS credentials per algorithm (SPEC-NOTES §9: standard unpadded
// base64 of the TLS-encoded Credential).
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	KeysJSON    []byte
	Credentials map[string]string
}

// StreamPositions are the highest positions of each stream (sync tokens).
// Events are event NIDs; to-device messages, membership changes and device
// key changes each have their own increasing sequence.
type StreamPositions struct {
	Events, ToDevice, Memberships, DeviceKeys int64
}

// Profile is a local user's profile.
type Profile struct {
	DisplayName, AvatarURL string
}

// CrossSigningKey is one of a user's cross-signing keys: Usage is
// "master", "self_signing" or "user_signing" and KeyJSON the uploaded
// CrossSigningKey object as given (with the signatures it was uploaded
// with).
type CrossSigningKey struct {
	UserID  string
	Usage   string
	KeyJSON []byte
}

// CrossSigningSignature is a signature uploaded through
// /keys/signatures/upload: the key SignerKeyID ("ed25519:<pubkey>") of
// SignerUserID signed the key or device TargetKeyID (a device ID, or a
// cross-signing key's "<pubkey>") of TargetUserID; Signature is the
// unpadded base64 signature.
type CrossSigningSignature struct {
	SignerUserID string
	SignerKeyID  string
	TargetUserID string
	TargetKeyID  string
	Signature    string
}
