package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// MarkTransactionSeen records a federation transaction ID; false if the
// origin sent it before.
func (d *Database) MarkTransactionSeen(ctx context.Context, origin, txnID string, receivedTS int64) (bool, error) {
	return d.federationTxns.insertTxn(ctx, nil, origin, txnID, receivedTS)
}

// StoreTransactionResult records a federation transaction with its answer.
func (d *Database) StoreTransactionResult(ctx context.Context, origin, txnID string, result []byte, receivedTS int64) error {
	return d.federationTxns.upsertResult(ctx, nil, origin, txnID, result, receivedTS)
}

// TransactionResult returns the recorded answer to a federation
// transaction, ErrNotFound if none.
func (d *Database) TransactionResult(ctx context.Context, origin, txnID string) ([]byte, error) {
	return d.federationTxns.selectResult(ctx, nil, origin, txnID)
}

// QueueOutbound appends a payload to a destination's send queue.
func (d *Database) QueueOutbound(ctx context.Context, destination, kind string, payload []byte, queuedTS int64) (int64, error) {
	return d.outbound.insertItem(ctx, nil, types.OutboundItem{Destination: destination, Kind: kind, Payload: payload, QueuedTS: queuedTS})
}

// OutboundItems returns up to limit queued items of a destination.
func (d *Database) OutboundItems(ctx context.Context, destination string, limit int) ([]types.OutboundItem, error) {
	return d.outbound.selectItems(ctx, nil, destination, limit)
}

// DeleteOutbound removes a destination's items up to NID upTo.
func (d *Database) DeleteOutbound(ctx context.Context, destination string, upTo int64) error {
	return d.outbound.deleteItems(ctx, nil, destination, upTo)
}

// OutboundDestinations lists the destinations with queued items.
func (d *Database) OutboundDestinations(ctx context.Context) ([]string, error) {
	return d.outbound.selectDestinations(ctx, nil)
}

// StoreServerKey stores or replaces a server signing key.
func (d *Database) StoreServerKey(ctx context.Context, key types.ServerKey) error {
	return d.serverKeys.upsertKey(ctx, nil, key)
}

// ServerKey returns a server signing key.
func (d *Database) ServerKey(ctx context.Context, serverName, keyID string) (types.ServerKey, error) {
	return d.serverKeys.selectKey(ctx, nil, serverName, keyID)
}

// SendToDevice appends a message to a device's inbox.
func (d *Database) SendToDevice(ctx context.Context, userID, deviceID string, msg types.ToDeviceMessage) (int64, error) {
	return d.toDevice.insertMessage(ctx, nil, userID, deviceID, msg)
}

// SendToDeviceTxn records a sending device's to-device transaction and
// appends its messages in one transaction (BEGIN IMMEDIATE: one writer
// across processes); false, storing nothing, if the transaction was
// recorded before.
func (d *Database) SendToDeviceTxn(ctx context.Context, txn types.ClientTxn, msgs []types.ToDeviceDelivery) (bool, error) {
	var isNew bool
	err := d.withTx(ctx, "running to-device transaction "+txn.TxnID+" of "+txn.UserID+"/"+txn.DeviceID, func(tx *sql.Tx) error {
		isNew = false
		ok, err := d.toDeviceTxns.insertTxn(ctx, tx, txn)
		if err != nil || !ok {
			return err
		}
		for _, m := range msgs {
			if _, err := d.toDevice.insertMessage(ctx, tx, m.UserID, m.DeviceID, m.Message); err != nil {
				return err
			}
		}
		isNew = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return isNew, nil
}

// ToDeviceMessages returns up to limit messages after a position.
func (d *Database) ToDeviceMessages(ctx context.Context, userID, deviceID string, after int64, limit int) ([]types.ToDeviceMessage, error) {
	return d.toDevice.selectMessages(ctx, nil, userID, deviceID, after, limit)
}

// DeleteToDevice deletes delivered messages up to a position.
func (d *Database) DeleteToDevice(ctx context.Context, userID, deviceID string, upTo int64) error {
	return d.toDevice.deleteMessages(ctx, nil, userID, deviceID, upTo)
}

// SetMembership records a user's network membership of a room.
func (d *Database) SetMembership(ctx context.Context, m types.Membership) error {
	switch m.State {
	case "invite", "join", "leave":
	default:
		return fmt.Errorf("setting membership of %s in %s: unknown state %q", m.UserID, m.RoomID, m.State)
	}
	return d.membership.upsertMembership(ctx, nil, m)
}

// Membership returns a user's network membership of a room.
func (d *Database) Membership(ctx context.Context, roomID, userID string) (types.Membership, error) {
	return d.membership.selectMembership(ctx, nil, roomID, userID)
}

// Memberships lists a room's or a user's memberships in a state.
func (d *Database) Memberships(ctx context.Context, roomID, userID, state string) ([]types.Membership, error) {
	if (roomID == "") == (userID == "") {
		return nil, fmt.Errorf("listing memberships: set exactly one of room ID and user ID")
	}
	return d.membership.selectMemberships(ctx, nil, roomID, userID, state)
}
