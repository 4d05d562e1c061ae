// Package storage owns everything an mlsmode homeserver keeps: rooms,
// events with their state and forward extremities, key packages and their
// claims, and the pending-commit queue (SPEC-NOTES §2, §6, §9). It defines
// one interface per concern and Database, which has them all; Open picks
// the backend from the connection string: PostgreSQL (storage/postgres) for
// "postgres://" or "postgresql://" addresses, embedded SQLite
// (storage/sqlite) for "file:" URIs, plain paths and ":memory:".
//
// Every write that must be atomic is one transaction: an event, its edges,
// its state, the forward extremities and the room's current state together;
// a key package claim hands out each one-time package at most once; a
// pending commit is claimed for applying at most once, across processes
// sharing the database.
package storage

import (
	"context"
	"fmt"
	"strings"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage/postgres"
	"github.com/mlsmode/mlsmode/storage/sqlite"
	"github.com/mlsmode/mlsmode/storage/types"
)

// Re-exported values of storage/types.
type (
	Room              = types.Room
	RoomState         = types.RoomState
	StoreEventOptions = types.StoreEventOptions
	StoredEvent       = types.StoredEvent
	EventToStore      = types.EventToStore
	KeyPackage        = types.KeyPackage
	ClaimedKeyPackage = types.ClaimedKeyPackage
	PendingStatus     = types.PendingStatus
	Window            = types.Window
	PendingCommit     = types.PendingCommit
	ClaimResult       = types.ClaimResult
	OutboundItem      = types.OutboundItem
	ServerKey         = types.ServerKey
	ToDeviceMessage   = types.ToDeviceMessage
	ToDeviceDelivery  = types.ToDeviceDelivery
	KeyConflictError  = types.KeyConflictError
	Membership        = types.Membership
	User              = types.User
	Device            = types.Device
	DeviceKeys        = types.DeviceKeys
	ClientTxn         = types.ClientTxn
	StreamPositions   = types.StreamPositions
	Profile           = types.Profile
	CrossSigningKey   = types.CrossSigningKey
	// CrossSigningSignature is a signature of a cross-signing key on a
	// device or on another user's master key.
	CrossSigningSignature = types.CrossSigningSignature
)

// Re-exported constants of storage/types.
const (
	PendingWaiting = types.PendingWaiting
	PendingApplied = types.PendingApplied
	PendingStale   = types.PendingStale
	PendingExpired = types.PendingExpired
	ClaimWon       = types.ClaimWon
	ClaimTaken     = types.ClaimTaken
	ClaimStale     = types.ClaimStale
)

// Re-exported errors of storage/types.
var (
	ErrNotFound     = types.ErrNotFound
	ErrConflict     = types.ErrConflict
	ErrStateChanged = types.ErrStateChanged
	ErrDuplicateTxn = types.ErrDuplicateTxn
)

// Rooms keeps the rooms the server takes part in.
type Rooms interface {
	// CreateRoom stores a room; storing the same room again does nothing,
	// a different version or algorithm is ErrConflict.
	CreateRoom(ctx context.Context, room Room) error
	// Room returns a room, ErrNotFound if unknown.
	Room(ctx context.Context, roomID string) (Room, error)
}

// Events keeps room events, their auth and prev edges, the state at each
// event, the forward extremities and the current state per room.
type Events interface {
	// StoreEvent stores an event, its edges and state, updates the forward
	// extremities and the room's current state, all in one transaction.
	// The room is created from the event if unknown. It reports false (and
	// changes nothing) if the event was stored already, before looking at
	// opts.ExpectCurrent (ErrStateChanged) and opts.Txn (ErrDuplicateTxn).
	StoreEvent(ctx context.Context, ev *roomversion.Event, opts StoreEventOptions) (bool, error)
	// StoreEvents stores several events in order in one transaction: all
	// or none. It reports how many were new.
	StoreEvents(ctx context.Context, evs []EventToStore) (int, error)
	// Event loads an event, ErrNotFound if unknown.
	Event(ctx context.Context, eventID string) (*StoredEvent, error)
	// Events loads the known events among ids, in the order of ids.
	Events(ctx context.Context, eventIDs []string) ([]*StoredEvent, error)
	// EventReferences returns the IDs of stored events naming eventID as a
	// prev event (children in the DAG).
	EventReferences(ctx context.Context, eventID string) ([]string, error)
	// StateAtEvent returns the state at (before) an event, ErrNotFound if
	// none was stored.
	StateAtEvent(ctx context.Context, eventID string) (RoomState, error)
	// CurrentState returns a room's current state, ErrNotFound if none.
	CurrentState(ctx context.Context, roomID string) (RoomState, error)
	// ForwardExtremities returns a room's forward extremities, sorted.
	ForwardExtremities(ctx context.Context, roomID string) ([]string, error)
	// RoomEvents returns a room's stored events that were not rejected
	// (soft-failed ones included, with their flags), by NID. Forward
	// (backward false): from < NID <= to, ascending. Backward: to < NID <
	// from, descending. A bound of 0 means unbounded on that side. limit <=
	// 0 means no limit.
	RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, backward bool) ([]*StoredEvent, error)
	// ClientTxnEvent returns the event a client transaction sent,
	// ErrNotFound if none.
	ClientTxnEvent(ctx context.Context, userID, deviceID, txnID string) (string, error)
	// EventClientTxn returns the client transaction that sent an event,
	// ErrNotFound if it was not sent through the client API here.
	EventClientTxn(ctx context.Context, eventID string) (ClientTxn, error)
}

// KeyPackages keeps one-time and fallback key packages per device and
// hands them out (SPEC-NOTES §9).
type KeyPackages interface {
	// StoreOneTimeKeyPackages stores one-time key packages in one
	// transaction; a key ID stored already with the same value is kept.
	// A key ID stored with another value, or one a claim of the device
	// handed out before (even if the device was deleted since), is
	// refused: the error is a *KeyConflictError naming it (wrapping
	// ErrConflict) and nothing of the call is stored. Against a
	// concurrent claim of a key ID being stored again, either the claim
	// comes first (and the store is refused) or the store does (and the
	// claim then hands out and records that package).
	StoreOneTimeKeyPackages(ctx context.Context, userID, deviceID string, kps []KeyPackage) error
	// StoreFallbackKeyPackage sets the device's fallback package for its
	// algorithm, unused, replacing any earlier one.
	StoreFallbackKeyPackage(ctx context.Context, userID, deviceID string, kp KeyPackage) error
	// ClaimKeyPackage hands out one one-time key package of the algorithm
	// and deletes it, recording its key ID as claimed in the same
	// transaction (StoreOneTimeKeyPackages refuses it afterwards); each
	// is handed out at most once, even under concurrent claims. When none
	// is left it returns the fallback package and marks it used (fallback
	// key IDs are not recorded as claimed). ErrNotFound when there is
	// neither.
	ClaimKeyPackage(ctx context.Context, userID, deviceID, algorithm string) (ClaimedKeyPackage, error)
	// CountOneTimeKeyPackages counts the device's one-time packages per
	// algorithm.
	CountOneTimeKeyPackages(ctx context.Context, userID, deviceID string) (map[string]int, error)
	// UnusedFallbackAlgorithms lists the algorithms of the device's unused
	// fallback packages, sorted.
	UnusedFallbackAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error)
	// KeyPackageIDs lists the key IDs of the device's one-time and
	// fallback packages (used fallbacks included), sorted, each once.
	KeyPackageIDs(ctx context.Context, userID, deviceID string) ([]string, error)
	// FallbackKeyPackageIDs lists the key IDs of the device's fallback
	// packages, sorted: one per algorithm, used ones included. GET
	// /keys/list reports the packages the server still holds and may hand
	// out, so that the client keeps their private keys; a used fallback is
	// kept and handed out again until replaced, so it is listed.
	FallbackKeyPackageIDs(ctx context.Context, userID, deviceID string) ([]string, error)
}

// PendingCommits is the pending-commit queue (SPEC-NOTES §6). It survives
// restarts and is shared by every process using the database.
type PendingCommits interface {
	// AddPendingCommit queues a pending commit in status waiting with its
	// windows. It reports false (and changes nothing) if queued already.
	AddPendingCommit(ctx context.Context, pc PendingCommit) (bool, error)
	// PendingCommit returns one queued pending commit, ErrNotFound if
	// unknown.
	PendingCommit(ctx context.Context, eventID string) (PendingCommit, error)
	// PendingCommits lists a room's pending commits in a status, in
	// (receipt time, event ID) order.
	PendingCommits(ctx context.Context, roomID string, status PendingStatus) ([]PendingCommit, error)
	// PendingCommitRooms lists, in room ID order, the rooms with a pending
	// commit in status (a restarted scheduler finds its work with it).
	PendingCommitRooms(ctx context.Context, status PendingStatus) ([]string, error)
	// ClaimPendingCommit claims a waiting pending commit for applying as
	// appliedCommitID: it succeeds (ClaimWon) at most once across every
	// process sharing the database. If the room's current commit is no
	// longer the one it references, it is marked stale (ClaimStale).
	ClaimPendingCommit(ctx context.Context, eventID, appliedCommitID string) (ClaimResult, error)
	// ApplyPendingCommit claims a waiting pending commit and stores commit
	// (with opts: its state and the room's new current state) in one
	// transaction, under the room's lock: it succeeds (ClaimWon) at most
	// once per pending commit and at most once per current commit, across
	// every process sharing the database; a pending commit whose referenced
	// commit is no longer current is marked stale (ClaimStale).
	ApplyPendingCommit(ctx context.Context, eventID string, commit *roomversion.Event, opts StoreEventOptions) (ClaimResult, error)
	// SetPendingCommitStatus moves a waiting pending commit to stale or
	// expired; it reports false if it was not waiting.
	SetPendingCommitStatus(ctx context.Context, eventID string, status PendingStatus) (bool, error)
}

// FederationTransactions remembers the transaction IDs received from each
// origin, so that a retried transaction is processed once.
type FederationTransactions interface {
	// MarkTransactionSeen records a transaction; it reports false if the
	// origin sent that ID before.
	MarkTransactionSeen(ctx context.Context, origin, txnID string, receivedTS int64) (bool, error)
	// StoreTransactionResult records a transaction with the answer given
	// to it (the per-PDU results of /send), replacing an earlier answer.
	StoreTransactionResult(ctx context.Context, origin, txnID string, result []byte, receivedTS int64) error
	// TransactionResult returns the answer recorded for a transaction,
	// ErrNotFound if there is none: a retried transaction is answered from
	// it and not applied again.
	TransactionResult(ctx context.Context, origin, txnID string) ([]byte, error)
}

// OutboundQueue is the federation send queue, per destination.
type OutboundQueue interface {
	// QueueOutbound appends a payload to a destination's queue.
	QueueOutbound(ctx context.Context, destination, kind string, payload []byte, queuedTS int64) (int64, error)
	// OutboundItems returns up to limit of a destination's items, oldest
	// first.
	OutboundItems(ctx context.Context, destination string, limit int) ([]OutboundItem, error)
	// DeleteOutbound removes a destination's items up to NID upTo (sent).
	DeleteOutbound(ctx context.Context, destination string, upTo int64) error
	// OutboundDestinations lists the destinations with queued items.
	OutboundDestinations(ctx context.Context) ([]string, error)
}

// ServerKeys keeps servers' signing keys (ours and fetched ones).
type ServerKeys interface {
	// StoreServerKey stores or replaces a key.
	StoreServerKey(ctx context.Context, key ServerKey) error
	// ServerKey returns a key, ErrNotFound if unknown.
	ServerKey(ctx context.Context, serverName, keyID string) (ServerKey, error)
}

// ToDevice keeps the to-device inbox of each device, with stream
// positions.
type ToDevice interface {
	// SendToDevice appends a message to a device's inbox and returns its
	// stream position.
	SendToDevice(ctx context.Context, userID, deviceID string, msg ToDeviceMessage) (int64, error)
	// ToDeviceMessages returns up to limit messages after position after.
	ToDeviceMessages(ctx context.Context, userID, deviceID string, after int64, limit int) ([]ToDeviceMessage, error)
	// DeleteToDevice deletes the messages up to position upTo (delivered).
	DeleteToDevice(ctx context.Context, userID, deviceID string, upTo int64) error
	// SendToDeviceTxn runs one client to-device transaction (PUT
	// /sendToDevice/{eventType}/{txnId}) of the sending device txn names:
	// in one database transaction it records txn and appends every
	// message to its recipient's inbox, in the order of msgs (positions
	// from the to-device stream, as SendToDevice's). It reports false and
	// stores nothing when txn was recorded before; of concurrent callers
	// with the same txn, across processes, exactly one reports true.
	// DeleteDevice forgets the sending device's transactions.
	SendToDeviceTxn(ctx context.Context, txn ClientTxn, msgs []ToDeviceDelivery) (bool, error)
}

// NetworkMembership keeps invites, joins and leaves out of band
// (SPEC-NOTES §7).
type NetworkMembership interface {
	// SetMembership records a user's membership of a room, replacing the
	// previous one.
	SetMembership(ctx context.Context, m Membership) error
	// Membership returns a user's membership, ErrNotFound if none.
	Membership(ctx context.Context, roomID, userID string) (Membership, error)
	// Memberships lists the memberships in a state of a room (roomID set)
	// or of a user (userID set), sorted.
	Memberships(ctx context.Context, roomID, userID, state string) ([]Membership, error)
}

// Accounts keeps local users, their devices and access tokens. Tokens are
// stored as SHA-256 hashes.
type Accounts interface {
	// CreateUser stores a user; ErrConflict if the ID is taken.
	CreateUser(ctx context.Context, u User) error
	// User returns a user, ErrNotFound if unknown.
	User(ctx context.Context, userID string) (User, error)
	// StoreDevice stores a device or updates its display name.
	StoreDevice(ctx context.Context, d Device) error
	// Devices lists a user's devices, sorted by device ID.
	Devices(ctx context.Context, userID string) ([]Device, error)
	// DeleteDevice deletes a device with its access tokens, device keys
	// (and the cross-signing signatures on them), key packages, to-device
	// inbox, sync positions, client transactions
	// (event sends and to-device transactions it made), in one
	// transaction, so that a device re-created with the same ID starts
	// afresh (its transaction IDs are not replays). The key IDs its claims
	// handed out stay recorded (StoreOneTimeKeyPackages still refuses
	// them).
	DeleteDevice(ctx context.Context, userID, deviceID string) error
	// StoreAccessToken stores a token for a device.
	StoreAccessToken(ctx context.Context, token, userID, deviceID string, createdTS int64) error
	// AccessTokenOwner returns the user and device of a token,
	// ErrNotFound if unknown.
	AccessTokenOwner(ctx context.Context, token string) (userID, deviceID string, err error)
	// DeleteAccessToken deletes a token (logout).
	DeleteAccessToken(ctx context.Context, token string) error
	// DeleteAccessTokens deletes every token of a device, keeping the
	// device (a login with its device ID replaces its session).
	DeleteAccessTokens(ctx context.Context, userID, deviceID string) error
}

// DeviceKeyStore keeps devices' device keys and MLS credentials.
type DeviceKeyStore interface {
	// StoreDeviceKeys replaces a device's keys and credentials in one
	// transaction.
	StoreDeviceKeys(ctx context.Context, k DeviceKeys) error
	// DeviceKeys returns the keys of a user's devices (all devices when
	// deviceIDs is empty), sorted by device ID.
	DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error)
	// RecordDeviceKeyChange records a change of a user's device keys in
	// the device key change stream without storing keys: a remote user's
	// m.device_list_update (SPEC-NOTES §12), listed by /sync.
	RecordDeviceKeyChange(ctx context.Context, userID string) error
}

// CrossSigning keeps users' cross-signing keys (master, self_signing,
// user_signing; the JSON objects as uploaded) and the signatures uploaded
// through /keys/signatures/upload. A signature is keyed by (signer user,
// signer key ID, target user, target key ID): the target key ID is a
// device ID for a signed device and the public key (the part after
// "ed25519:") for a signed master key. Storing a user's keys or a
// signature on a user's keys records a device key change of that user
// (DeviceKeyChangesSince), so that /sync lists them in
// device_lists.changed.
type CrossSigning interface {
	// StoreCrossSigningKeys stores the keys in one transaction, each
	// replacing the stored key of its user and usage.
	StoreCrossSigningKeys(ctx context.Context, keys []CrossSigningKey) error
	// CrossSigningKeys returns a user's keys, usage -> JSON (empty when
	// none).
	CrossSigningKeys(ctx context.Context, userID string) (map[string][]byte, error)
	// StoreCrossSigningSignatures stores the signatures in one
	// transaction, each replacing the stored one of its key.
	StoreCrossSigningSignatures(ctx context.Context, sigs []CrossSigningSignature) error
	// CrossSigningSignatures returns the signatures on the keys and
	// devices of targetUserID, sorted by target key ID, signer user,
	// signer key ID.
	CrossSigningSignatures(ctx context.Context, targetUserID string) ([]CrossSigningSignature, error)
}

// SyncPositions keeps, per device and stream, the position up to which the
// device has synced.
type SyncPositions interface {
	// SetSyncPosition records a device's position in a stream.
	SetSyncPosition(ctx context.Context, userID, deviceID, stream string, pos int64) error
	// SyncPosition returns a device's position in a stream, 0 if none.
	SyncPosition(ctx context.Context, userID, deviceID, stream string) (int64, error)
}

// Streams are the /sync streams: event NIDs, to-device positions,
// membership positions and device-key change positions. Positions become
// visible in order: a reader that reads MaxStreamPositions and then
// everything up to those positions never later sees a row appear at or
// below them.
type Streams interface {
	// MaxStreamPositions returns the highest position of every stream.
	MaxStreamPositions(ctx context.Context) (StreamPositions, error)
	// MembershipsSince lists a user's membership changes with position >
	// after, by position (Membership.Pos set).
	MembershipsSince(ctx context.Context, userID string, after int64) ([]Membership, error)
	// DeviceKeyChangesSince lists the users whose device keys changed
	// (StoreDeviceKeys, DeleteDevice, RecordDeviceKeyChange) with position > after, sorted, and
	// the highest such position (after itself when there is none).
	DeviceKeyChangesSince(ctx context.Context, after int64) ([]string, int64, error)
}

// Filters keeps users' /sync filters.
type Filters interface {
	// StoreFilter stores a user's filter (JSON as given) and returns its ID.
	StoreFilter(ctx context.Context, userID string, filterJSON []byte) (string, error)
	// Filter returns a user's filter, ErrNotFound if unknown (or another user's).
	Filter(ctx context.Context, userID, filterID string) ([]byte, error)
}

// Profiles keeps local users' profiles.
type Profiles interface {
	// SetDisplayName and SetAvatarURL set one field of a local user's
	// profile; ErrNotFound if the user is unknown.
	SetDisplayName(ctx context.Context, userID, name string) error
	SetAvatarURL(ctx context.Context, userID, url string) error
	// Profile returns a local user's profile, ErrNotFound if the user is unknown.
	Profile(ctx context.Context, userID string) (Profile, error)
}

// Changes tells every process sharing the database of writes a /sync may be waiting for.
type Changes interface {
	// NotifyChange tells every subscriber in every process sharing the
	// database (this one included) that something keyed by key changed (a
	// room ID or a user ID).
	NotifyChange(ctx context.Context, key string) error
	// SubscribeChanges returns a channel that receives every notified key
	// until ctx ends (then it is closed). A subscriber that falls behind
	// receives "*" (anything may have changed) instead of losing wakes.
	SubscribeChanges(ctx context.Context) (<-chan string, error)
}

// Database is everything the module keeps.
type Database interface {
	Accounts
	DeviceKeyStore
	CrossSigning
	SyncPositions
	Rooms
	Events
	KeyPackages
	PendingCommits
	FederationTransactions
	OutboundQueue
	ServerKeys
	ToDevice
	NetworkMembership
	Streams
	Filters
	Profiles
	Changes
	// SchemaVersion is the highest migration applied.
	SchemaVersion(ctx context.Context) (int, error)
	// Close closes the database.
	Close() error
}

var (
	_ Database = (*postgres.Database)(nil)
	_ Database = (*sqlite.Database)(nil)
)

// Open opens (creating and migrating as needed) the database at dsn:
// PostgreSQL for "postgres://" and "postgresql://" URLs, SQLite otherwise
// ("file:" URIs, paths, ":memory:").
func Open(ctx context.Context, dsn string) (Database, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("opening storage: %w", err)
		}
		return db, nil
	}
	db, err := sqlite.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening storage: %w", err)
	}
	return db, nil
}
