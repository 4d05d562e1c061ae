package mls

import (
	"github.com/mlsmode/mlsmode/mls/internal/keyschedule"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
)

// EpochSecrets are the secrets of one epoch (RFC 9420 §8): the joiner,
// welcome and epoch secrets, the secrets derived from the epoch secret (its
// fields), and the init secret the next epoch starts from. Export is the
// MLS exporter; ExternalKeyPair derives the external HPKE key pair.
type EpochSecrets struct {
	keyschedule.Epoch
	cs CipherSuite
}

// KeySchedule runs the key schedule of the epoch ctx describes, from the
// previous epoch's init secret (random for a new group; the external init
// secret for an external commit), the commit secret (nil for a commit
// without a path: the zero string) and the PSK secret (nil without PSKs).
func KeySchedule(ctx *GroupContext, initSecret, commitSecret, pskSecret []byte) (*EpochSecrets, error) {
	return runSchedule(ctx, pskSecret, func(s *suite.Suite, pskSecret, gc []byte) (*keyschedule.Epoch, error) {
		if commitSecret == nil {
			commitSecret = keyschedule.Zero(s)
		}
		return keyschedule.New(s, initSecret, commitSecret, pskSecret, gc)
	})
}

// KeyScheduleFromJoiner runs the key schedule from a joiner secret, as a
// member joining from a Welcome does. pskSecret nil means no PSKs.
func KeyScheduleFromJoiner(ctx *GroupContext, joinerSecret, pskSecret []byte) (*EpochSecrets, error) {
	return runSchedule(ctx, pskSecret, func(s *suite.Suite, pskSecret, gc []byte) (*keyschedule.Epoch, error) {
		return keyschedule.FromJoiner(s, joinerSecret, pskSecret, gc)
	})
}

// runSchedule encodes ctx, defaults an absent PSK secret to zero and runs
// one form of the schedule.
func runSchedule(ctx *GroupContext, pskSecret []byte, run func(s *suite.Suite, pskSecret, gc []byte) (*keyschedule.Epoch, error)) (*EpochSecrets, error) {
	s, err := ctx.CipherSuite.impl()
	if err != nil {
		return nil, err
	}
	gc, err := ctx.MarshalMLS()
	if err != nil {
		return nil, err
	}
	if pskSecret == nil {
		pskSecret = keyschedule.Zero(s)
	}
	e, err := run(s, pskSecret, gc)
	if err != nil {
		return nil, errorf("key schedule of epoch %d: %w", ctx.Epoch, err)
	}
	return &EpochSecrets{Epoch: *e, cs: ctx.CipherSuite}, nil
}

// EpochKeys returns the message protection state of this epoch for a
// ratchet tree of leaves leaves (a power of two).
func (e *EpochSecrets) EpochKeys(ctx *GroupContext, leaves uint32, cfg *EpochKeysConfig) (*EpochKeys, error) {
	if ctx.CipherSuite != e.cs {
		return nil, errorf("group context is for %v, the secrets for %v", ctx.CipherSuite, e.cs)
	}
	return NewEpochKeys(ctx, leaves, e.EncryptionSecret, e.SenderDataSecret, e.MembershipKey, cfg)
}

// PSK is a pre-shared key and its ID, in the order a Commit's PreSharedKey
// proposals or a GroupSecrets' psks list them. For a resumption PSK, Secret
// is the resumption_psk of the epoch the ID names.
type PSK struct {
	ID     PreSharedKeyID
	Secret []byte
}

// PSKSecret chains psks into the psk_secret of RFC 9420 §8.4. It is the zero
// string when psks is empty.
func PSKSecret(cs CipherSuite, psks []PSK) ([]byte, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	in := make([]keyschedule.PSK, len(psks))
	for i := range psks {
		id, err := psks[i].ID.MarshalMLS()
		if err != nil {
			return nil, errorf("PSK %d: %w", i, err)
		}
		in[i] = keyschedule.PSK{ID: id, Secret: psks[i].Secret}
	}
	return keyschedule.PSKSecret(s, in)
}
