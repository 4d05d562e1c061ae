package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"slices"

	"github.com/mlsmode/mlsmode/storage/types"
)

// tokenHash is how access tokens are stored.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateUser stores a user; ErrConflict if the ID is taken.
func (d *Database) CreateUser(ctx context.Context, u types.User) error {
	return d.users.insertUser(ctx, nil, u)
}

// User returns a user.
func (d *Database) User(ctx context.Context, userID string) (types.User, error) {
	return d.users.selectUser(ctx, nil, userID)
}

// StoreDevice stores a device or updates its display name.
func (d *Database) StoreDevice(ctx context.Context, dev types.Device) error {
	return d.devices.upsertDevice(ctx, nil, dev)
}

// Devices lists a user's devices.
func (d *Database) Devices(ctx context.Context, userID string) ([]types.Device, error) {
	return d.devices.selectDevices(ctx, nil, userID)
}

// DeleteDevice deletes a device and everything kept for it (its client
// and to-device transactions included; not its claimed key IDs) in one
// transaction, recording a device key change of the user.
func (d *Database) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	return d.withTx(ctx, "deleting device "+deviceID+" of "+userID, func(tx *sql.Tx) error {
		if err := lockStream(ctx, tx, streamDeviceKeys); err != nil {
			return err
		}
		if err := d.keyChanges.insertChange(ctx, tx, userID); err != nil {
			return err
		}
		for _, del := range []func(context.Context, *sql.Tx, string, string) error{
			d.devices.deleteDevice, d.accessTokens.deleteDeviceTokens, d.deviceKeys.deleteKeys,
			d.credentials.deleteCredentials, d.oneTimeKeys.deleteDevice, d.fallbackKeys.deleteDevice,
			d.toDevice.deleteDevice, d.syncPositions.deletePositions, d.clientTxns.deleteDevice,
			d.toDeviceTxns.deleteDevice, d.crossSigningSigs.deleteSigsOn,
		} {
			if err := del(ctx, tx, userID, deviceID); err != nil {
				return err
			}
		}
		return nil
	})
}

// StoreAccessToken stores a token (hashed) for a device.
func (d *Database) StoreAccessToken(ctx context.Context, token, userID, deviceID string, createdTS int64) error {
	return d.accessTokens.insertToken(ctx, nil, tokenHash(token), userID, deviceID, createdTS)
}

// AccessTokenOwner returns the user and device of a token.
func (d *Database) AccessTokenOwner(ctx context.Context, token string) (string, string, error) {
	return d.accessTokens.selectToken(ctx, nil, tokenHash(token))
}

// DeleteAccessToken deletes a token.
func (d *Database) DeleteAccessToken(ctx context.Context, token string) error {
	return d.accessTokens.deleteToken(ctx, nil, tokenHash(token))
}

// DeleteAccessTokens deletes every token of a device.
func (d *Database) DeleteAccessTokens(ctx context.Context, userID, deviceID string) error {
	return d.accessTokens.deleteDeviceTokens(ctx, nil, userID, deviceID)
}

// RecordDeviceKeyChange records a device key change of a user without
// storing keys (a remote user's m.device_list_update).
func (d *Database) RecordDeviceKeyChange(ctx context.Context, userID string) error {
	return d.withTx(ctx, "recording a device key change of "+userID, func(tx *sql.Tx) error {
		if err := lockStream(ctx, tx, streamDeviceKeys); err != nil {
			return err
		}
		return d.keyChanges.insertChange(ctx, tx, userID)
	})
}

// StoreDeviceKeys replaces a device's keys and credentials in one
// transaction, recording a device key change of the user.
func (d *Database) StoreDeviceKeys(ctx context.Context, k types.DeviceKeys) error {
	return d.withTx(ctx, "storing device keys of "+k.UserID+"/"+k.DeviceID, func(tx *sql.Tx) error {
		if err := lockStream(ctx, tx, streamDeviceKeys); err != nil {
			return err
		}
		if err := d.keyChanges.insertChange(ctx, tx, k.UserID); err != nil {
			return err
		}
		if err := d.deviceKeys.upsertKeys(ctx, tx, k.UserID, k.DeviceID, k.KeysJSON); err != nil {
			return err
		}
		if err := d.credentials.deleteCredentials(ctx, tx, k.UserID, k.DeviceID); err != nil {
			return err
		}
		algs := make([]string, 0, len(k.Credentials))
		for alg := range k.Credentials {
			algs = append(algs, alg)
		}
		slices.Sort(algs)
		for _, alg := range algs {
			if err := d.credentials.insertCredential(ctx, tx, k.UserID, k.DeviceID, alg, k.Credentials[alg]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeviceKeys returns the keys of a user's devices (all when deviceIDs is
// empty), sorted by device ID.
func (d *Database) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]types.DeviceKeys, error) {
	var out []types.DeviceKeys
	err := d.withTx(ctx, "reading device keys of "+userID, func(tx *sql.Tx) error {
		order, keys, err := d.deviceKeys.selectKeys(ctx, tx, userID)
		if err != nil {
			return err
		}
		creds, err := d.credentials.selectCredentials(ctx, tx, userID)
		if err != nil {
			return err
		}
		out = make([]types.DeviceKeys, 0, len(order))
		for _, dev := range order {
			if len(deviceIDs) > 0 && !slices.Contains(deviceIDs, dev) {
				continue
			}
			c := creds[dev]
			if c == nil {
				c = map[string]string{}
			}
			out = append(out, types.DeviceKeys{UserID: userID, DeviceID: dev, KeysJSON: keys[dev], Credentials: c})
		}
		return nil
	})
	return out, err
}

// SetSyncPosition records a device's position in a stream.
func (d *Database) SetSyncPosition(ctx context.Context, userID, deviceID, stream string, pos int64) error {
	return d.syncPositions.upsertPosition(ctx, nil, userID, deviceID, stream, pos)
}

// SyncPosition returns a device's position in a stream, 0 if none.
func (d *Database) SyncPosition(ctx context.Context, userID, deviceID, stream string) (int64, error) {
	return d.syncPositions.selectPosition(ctx, nil, userID, deviceID, stream)
}
