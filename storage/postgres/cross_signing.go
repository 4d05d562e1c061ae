package postgres

import (
	"context"
	"database/sql"
	"slices"

	"github.com/mlsmode/mlsmode/storage/types"
)

// StoreCrossSigningKeys stores cross-signing keys in one transaction, each
// replacing its user's key of that usage, recording a device key change
// of each user.
func (d *Database) StoreCrossSigningKeys(ctx context.Context, keys []types.CrossSigningKey) error {
	return d.withTx(ctx, "storing cross-signing keys", func(tx *sql.Tx) error {
		// The device key stream's lock: positions become visible in order.
		if err := lockStream(ctx, tx, streamDeviceKeys); err != nil {
			return err
		}
		var users []string
		for _, k := range keys {
			if err := d.crossSigningKeys.upsertKey(ctx, tx, k.UserID, k.Usage, k.KeyJSON); err != nil {
				return err
			}
			if !slices.Contains(users, k.UserID) {
				users = append(users, k.UserID)
			}
		}
		slices.Sort(users)
		for _, u := range users {
			if err := d.keyChanges.insertChange(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
}

// CrossSigningKeys returns a user's cross-signing keys, usage -> JSON.
func (d *Database) CrossSigningKeys(ctx context.Context, userID string) (map[string][]byte, error) {
	var out map[string][]byte
	err := d.withTx(ctx, "reading cross-signing keys of "+userID, func(tx *sql.Tx) error {
		var err error
		out, err = d.crossSigningKeys.selectKeys(ctx, tx, userID)
		return err
	})
	return out, err
}

// StoreCrossSigningSignatures stores signatures in one transaction, each
// replacing the stored one of its (signer, target) key, recording a
// device key change of each target user.
func (d *Database) StoreCrossSigningSignatures(ctx context.Context, sigs []types.CrossSigningSignature) error {
	return d.withTx(ctx, "storing cross-signing signatures", func(tx *sql.Tx) error {
		// The device key stream's lock: positions become visible in order.
		if err := lockStream(ctx, tx, streamDeviceKeys); err != nil {
			return err
		}
		var users []string
		for _, s := range sigs {
			if err := d.crossSigningSigs.upsertSig(ctx, tx, s); err != nil {
				return err
			}
			if !slices.Contains(users, s.TargetUserID) {
				users = append(users, s.TargetUserID)
			}
		}
		slices.Sort(users)
		for _, u := range users {
			if err := d.keyChanges.insertChange(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
}

// CrossSigningSignatures returns the signatures on a user's keys and
// devices, sorted by target key ID, signer user and signer key ID.
func (d *Database) CrossSigningSignatures(ctx context.Context, targetUserID string) ([]types.CrossSigningSignature, error) {
	var out []types.CrossSigningSignature
	err := d.withTx(ctx, "reading signatures on keys of "+targetUserID, func(tx *sql.Tx) error {
		var err error
		out, err = d.crossSigningSigs.selectSigs(ctx, tx, targetUserID)
		return err
	})
	return out, err
}
