// Package userapitest owns the test helpers of userapi and of the HTTP
// tests above it: fresh databases on both storage backends, and real MLS
// key packages and credentials for a device (SPEC-NOTES §9), good or
// broken in one named way.
package userapitest

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/mlsmode/mlsmode/client"
	"github.com/mlsmode/mlsmode/internal/testdb"
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// Backend opens fresh, empty databases of one storage backend.
type Backend struct {
	Name string
	// Open returns a fresh database, closed (and dropped) when tb ends.
	Open func(tb testing.TB) storage.Database
}

// Backends are SQLite and PostgreSQL, with internal/testdb's fresh
// databases.
func Backends() []Backend {
	var out []Backend
	for _, b := range testdb.Backends() {
		newDSN := b.NewDSN
		out = append(out, Backend{Name: b.Name, Open: func(tb testing.TB) storage.Database {
			tb.Helper()
			dsn := newDSN(tb)
			db, err := storage.Open(context.Background(), dsn)
			if err != nil {
				tb.Fatalf("opening %s: %v", dsn, err)
			}
			tb.Cleanup(func() { db.Close() })
			return db
		}})
	}
	return out
}

// B64 is standard unpadded base64 (SPEC-NOTES §9).
var B64 = base64.RawStdEncoding

// Suite is the cipher suite the helpers use by default (suite 1).
const Suite = mls.X25519AES128GCMSHA256Ed25519

// Algorithm is the m.mls.1 algorithm of cs.
func Algorithm(tb testing.TB, cs mls.CipherSuite) string {
	tb.Helper()
	alg, err := roomversion.V1.Algorithm(cs)
	if err != nil {
		tb.Fatal(err)
	}
	return alg
}

// Device is a client device with an MLS signature key.
type Device struct {
	UserID, DeviceID string
	Signer           *mls.Signer
	Credential       mls.Credential
}

// NewDevice returns a device of userID with a fresh signer of cs and its
// Matrix credential.
func NewDevice(tb testing.TB, userID, deviceID string, cs mls.CipherSuite) *Device {
	tb.Helper()
	signer, err := mls.GenerateSigner(cs)
	if err != nil {
		tb.Fatal(err)
	}
	cred, err := mls.NewMatrixCredential(&mls.MatrixIdentity{UserID: userID, DeviceID: deviceID, SignatureKey: signer.PublicKey()})
	if err != nil {
		tb.Fatal(err)
	}
	return &Device{UserID: userID, DeviceID: deviceID, Signer: signer, Credential: cred}
}

// CredentialValue is the device key value of the credential: standard
// unpadded base64 of the TLS-encoded Credential.
func (d *Device) CredentialValue(tb testing.TB) string {
	tb.Helper()
	b, err := d.Credential.MarshalMLS()
	if err != nil {
		tb.Fatal(err)
	}
	return B64.EncodeToString(b)
}

// DeviceKeys returns a device_keys object for the device: the credential
// under "<algorithm>:<device_id>" (and an ed25519 placeholder key).
func (d *Device) DeviceKeys(tb testing.TB) map[string]any {
	tb.Helper()
	alg := Algorithm(tb, d.Signer.CipherSuite())
	return map[string]any{
		"user_id":    d.UserID,
		"device_id":  d.DeviceID,
		"algorithms": []string{alg},
		"keys": map[string]string{
			alg + ":" + d.DeviceID:  d.CredentialValue(tb),
			"ed25519:" + d.DeviceID: "ZWQyNTUxOSBwbGFjZWhvbGRlcg",
		},
		"signatures": map[string]map[string]string{
			d.UserID: {"m.mls.v1.basic:" + d.DeviceID: "c2lnbmF0dXJl"},
		},
	}
}

// KeyPackageOptions change a generated key package.
type KeyPackageOptions struct {
	// Capabilities default to client.Capabilities() (0xF6D0 listed).
	Capabilities *mls.Capabilities
	// Credential replaces the device's credential (Signer stays).
	Credential *mls.Credential
	// NotBefore and NotAfter default to an hour before and 90 days after
	// Now.
	NotBefore, NotAfter time.Time
	// Now defaults to time.Now.
	Now time.Time
	// Mutate changes the package after signing; Resign signs it again
	// afterwards (so that only the change under test fails).
	Mutate func(*mls.KeyPackage)
	Resign bool
}

// KeyPackage is a generated key package with its upload key ID and value.
type KeyPackage struct {
	KP    *mls.KeyPackage
	KeyID string
	Value string
}

// NewKeyPackage generates a key package of the device, with its key ID
// ("<algorithm>:<base64 KeyPackageRef>", the ref computed after Mutate)
// and value (base64 of the MLSMessage).
func (d *Device) NewKeyPackage(tb testing.TB, o KeyPackageOptions) KeyPackage {
	tb.Helper()
	caps := o.Capabilities
	if caps == nil {
		caps = client.Capabilities()
	}
	cred := d.Credential
	if o.Credential != nil {
		cred = *o.Credential
	}
	p := mls.KeyPackageParams{Signer: d.Signer, Credential: cred, Capabilities: caps, NotBefore: o.NotBefore, NotAfter: o.NotAfter}
	if !o.Now.IsZero() {
		p.Now = func() time.Time { return o.Now }
	}
	kp, _, err := mls.NewKeyPackage(p)
	if err != nil {
		tb.Fatal(err)
	}
	if o.Mutate != nil {
		o.Mutate(kp)
		if o.Resign {
			Resign(tb, kp, d.Signer)
		}
	}
	ref, err := kp.Ref()
	if err != nil {
		tb.Fatal(err)
	}
	msg := mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp}
	raw, err := msg.MarshalMLS()
	if err != nil {
		tb.Fatal(err)
	}
	return KeyPackage{KP: kp, KeyID: Algorithm(tb, kp.CipherSuite) + ":" + B64.EncodeToString(ref), Value: B64.EncodeToString(raw)}
}

// Resign signs kp's leaf node and kp again with s.
func Resign(tb testing.TB, kp *mls.KeyPackage, s *mls.Signer) {
	tb.Helper()
	tbs, err := kp.LeafNode.TBS(nil, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if kp.LeafNode.Signature, err = s.SignWithLabel("LeafNodeTBS", tbs); err != nil {
		tb.Fatal(err)
	}
	if tbs, err = kp.TBS(); err != nil {
		tb.Fatal(err)
	}
	if kp.Signature, err = s.SignWithLabel("KeyPackageTBS", tbs); err != nil {
		tb.Fatal(err)
	}
}

// KeyPackages generates n good key packages of the device.
func (d *Device) KeyPackages(tb testing.TB, n int) []KeyPackage {
	tb.Helper()
	out := make([]KeyPackage, n)
	for i := range out {
		out[i] = d.NewKeyPackage(tb, KeyPackageOptions{})
	}
	return out
}

// KeyMap returns key ID -> value of kps.
func KeyMap(kps ...KeyPackage) map[string]string {
	m := make(map[string]string, len(kps))
	for _, kp := range kps {
		m[kp.KeyID] = kp.Value
	}
	return m
}
