// Package keyschedule derives the secrets of an MLS epoch (RFC 9420 §8): the
// joiner, welcome and epoch secrets from the previous init secret, the commit
// secret, the PSK secret and the GroupContext; the secrets derived from the
// epoch secret; the exporter; and the PSK secret that chains pre-shared keys.
//
// GroupContexts and PreSharedKeyIDs come in already encoded: this package
// knows the derivations, not the structures.
package keyschedule

import (
	"fmt"

	"github.com/mlsmode/mlsmode/mls/internal/suite"
)

// Epoch holds the secrets of one epoch.
type Epoch struct {
	Suite *suite.Suite

	JoinerSecret       []byte
	WelcomeSecret      []byte
	EpochSecret        []byte
	SenderDataSecret   []byte
	EncryptionSecret   []byte
	ExporterSecret     []byte
	ExternalSecret     []byte
	ConfirmationKey    []byte
	MembershipKey      []byte
	ResumptionPSK      []byte
	EpochAuthenticator []byte
	InitSecret         []byte // init_secret_[n], the next epoch's input
}

// Zero returns the all-zero string of length Nh, which stands for an absent
// commit secret, PSK secret or initial init secret.
func Zero(s *suite.Suite) []byte { return make([]byte, s.HashSize()) }

// JoinerSecret is ExpandWithLabel(Extract(initSecret, commitSecret), "joiner",
// groupContext, Nh).
func JoinerSecret(s *suite.Suite, initSecret, commitSecret, groupContext []byte) ([]byte, error) {
	prk := s.Extract(initSecret, commitSecret)
	js, err := s.ExpandWithLabel(prk, "joiner", groupContext, uint16(s.HashSize()))
	if err != nil {
		return nil, fmt.Errorf("deriving joiner secret: %w", err)
	}
	return js, nil
}

// WelcomeSecret is DeriveSecret(Extract(joinerSecret, pskSecret), "welcome").
func WelcomeSecret(s *suite.Suite, joinerSecret, pskSecret []byte) ([]byte, error) {
	return s.DeriveSecret(s.Extract(joinerSecret, pskSecret), "welcome")
}

// WelcomeKeyNonce derives the AEAD key and nonce that encrypt a Welcome's
// GroupInfo (RFC 9420 §12.4.3.1).
func WelcomeKeyNonce(s *suite.Suite, welcomeSecret []byte) (key, nonce []byte, err error) {
	if key, err = s.ExpandWithLabel(welcomeSecret, "key", nil, uint16(s.AEADKeySize())); err != nil {
		return nil, nil, err
	}
	if nonce, err = s.ExpandWithLabel(welcomeSecret, "nonce", nil, uint16(s.AEADNonceSize())); err != nil {
		return nil, nil, err
	}
	return key, nonce, nil
}

// New runs the whole schedule for an epoch from the previous epoch's init
// secret (or a fresh random one for a new group, or the external init secret
// of an external commit), the commit secret (Zero when the commit has no
// path) and the PSK secret (Zero when there are no PSKs).
func New(s *suite.Suite, initSecret, commitSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	js, err := JoinerSecret(s, initSecret, commitSecret, groupContext)
	if err != nil {
		return nil, err
	}
	return FromJoiner(s, js, pskSecret, groupContext)
}

// FromJoiner runs the schedule from the joiner secret, as a new member does
// after decrypting its GroupSecrets.
func FromJoiner(s *suite.Suite, joinerSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	e := &Epoch{Suite: s, JoinerSecret: joinerSecret}
	member := s.Extract(joinerSecret, pskSecret)
	var err error
	if e.WelcomeSecret, err = s.DeriveSecret(member, "welcome"); err != nil {
		return nil, err
	}
	if e.EpochSecret, err = s.ExpandWithLabel(member, "epoch", groupContext, uint16(s.HashSize())); err != nil {
		return nil, fmt.Errorf("deriving epoch secret: %w", err)
	}
	for _, d := range []struct {
		label string
		out   *[]byte
	}{
		{"sender data", &e.SenderDataSecret},
		{"encryption", &e.EncryptionSecret},
		{"exporter", &e.ExporterSecret},
		{"external", &e.ExternalSecret},
		{"confirm", &e.ConfirmationKey},
		{"membership", &e.MembershipKey},
		{"resumption", &e.ResumptionPSK},
		{"authentication", &e.EpochAuthenticator},
		{"init", &e.InitSecret},
	} {
		if *d.out, err = s.DeriveSecret(e.EpochSecret, d.label); err != nil {
			return nil, fmt.Errorf("deriving %s secret: %w", d.label, err)
		}
	}
	return e, nil
}

// Export is MLS-Exporter(label, context, length) (RFC 9420 §8.5).
func (e *Epoch) Export(label string, context []byte, length uint16) ([]byte, error) {
	ds, err := e.Suite.DeriveSecret(e.ExporterSecret, label)
	if err != nil {
		return nil, err
	}
	return e.Suite.ExpandWithLabel(ds, "exported", e.Suite.Hash(context), length)
}

// ExternalKeyPair derives the group's external HPKE key pair from the
// external secret (RFC 9420 §8).
func (e *Epoch) ExternalKeyPair() (priv, pub []byte, err error) {
	return e.Suite.DeriveKeyPair(e.ExternalSecret)
}

// PSK is one pre-shared key in the order a Commit or GroupSecrets lists it:
// ID is the encoded PreSharedKeyID, Secret the key itself.
type PSK struct {
	ID     []byte
	Secret []byte
}

// PSKSecret chains psks into psk_secret (RFC 9420 §8.4). With no PSKs it is
// the zero string.
func PSKSecret(s *suite.Suite, psks []PSK) ([]byte, error) {
	if len(psks) > 0xffff {
		return nil, fmt.Errorf("mls: %d PSKs exceed the uint16 count", len(psks))
	}
	zero := Zero(s)
	secret := zero
	for i, p := range psks {
		extracted := s.Extract(zero, p.Secret)
		label := make([]byte, 0, len(p.ID)+4)
		label = append(label, p.ID...)
		label = append(label, byte(i>>8), byte(i), byte(len(psks)>>8), byte(len(psks)))
		input, err := s.ExpandWithLabel(extracted, "derived psk", label, uint16(s.HashSize()))
		if err != nil {
			return nil, fmt.Errorf("deriving PSK input %d: %w", i, err)
		}
		secret = s.Extract(input, secret)
	}
	return secret, nil
}
