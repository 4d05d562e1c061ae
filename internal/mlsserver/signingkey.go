package mlsserver

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// signingKey is the server's ed25519 signing key.
type signingKey struct {
	// ID is "ed25519:<version>".
	ID   string
	Priv ed25519.PrivateKey
}

// Public returns the public half.
func (k signingKey) Public() ed25519.PublicKey { return k.Priv.Public().(ed25519.PublicKey) }

// The key file holds one line in Synapse's format:
//
//	ed25519 <version> <seed in unpadded standard base64>
//
// where version is [A-Za-z0-9_]+ and the seed is 32 bytes.
const keyAlgorithm = "ed25519"

// loadOrCreateSigningKey reads the key file at path, or creates one with a
// fresh key if there is none. It reports whether it created the file.
// Creation is atomic (a temporary file hard-linked into place), so two
// processes starting together on one path end with the same key.
func loadOrCreateSigningKey(path string, random io.Reader) (signingKey, bool, error) {
	k, err := readSigningKey(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return signingKey{}, false, err
	}
	k, err = newSigningKey(random)
	if err != nil {
		return signingKey{}, false, err
	}
	created, err := writeSigningKeyExclusive(path, k)
	if err != nil {
		return signingKey{}, false, err
	}
	if !created {
		// Another process wrote it first: use its key.
		k, err = readSigningKey(path)
		return k, false, err
	}
	return k, true, nil
}

// newSigningKey makes a key with a random version "a_XXXX".
func newSigningKey(random io.Reader) (signingKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(random, seed); err != nil {
		return signingKey{}, fmt.Errorf("signing key: reading randomness: %w", err)
	}
	vb := make([]byte, 4)
	if _, err := io.ReadFull(random, vb); err != nil {
		return signingKey{}, fmt.Errorf("signing key: reading randomness: %w", err)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range vb {
		vb[i] = alphabet[int(vb[i])%len(alphabet)]
	}
	return signingKey{ID: keyAlgorithm + ":a_" + string(vb), Priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// encodeSigningKey is the key file's content.
func encodeSigningKey(k signingKey) []byte {
	version := strings.TrimPrefix(k.ID, keyAlgorithm+":")
	return fmt.Appendf(nil, "%s %s %s\n", keyAlgorithm, version, base64.RawStdEncoding.EncodeToString(k.Priv.Seed()))
}

// readSigningKey reads and parses a key file; a missing file is an error
// wrapping fs.ErrNotExist.
func readSigningKey(path string) (signingKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key: %w", err)
	}
	k, err := parseSigningKey(b)
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// parseSigningKey parses the key file format.
func parseSigningKey(b []byte) (signingKey, error) {
	text := strings.TrimRight(string(b), "\r\n")
	if text == "" {
		return signingKey{}, errors.New("empty file; expected \"ed25519 <version> <base64 seed>\"")
	}
	if strings.ContainsAny(text, "\r\n") {
		return signingKey{}, errors.New("more than one line; expected one key \"ed25519 <version> <base64 seed>\"")
	}
	f := strings.Fields(text)
	if len(f) != 3 {
		return signingKey{}, fmt.Errorf("%d fields; expected \"ed25519 <version> <base64 seed>\"", len(f))
	}
	if f[0] != keyAlgorithm {
		return signingKey{}, fmt.Errorf("algorithm %q, only ed25519 is supported", f[0])
	}
	for _, c := range []byte(f[1]) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return signingKey{}, fmt.Errorf("key version %q: character %q not allowed (A-Z, a-z, 0-9, _)", f[1], c)
		}
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[2], "="))
	if err != nil {
		return signingKey{}, fmt.Errorf("seed is not base64: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return signingKey{}, fmt.Errorf("seed of %d bytes, expected %d", len(seed), ed25519.SeedSize)
	}
	return signingKey{ID: keyAlgorithm + ":" + f[1], Priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// writeSigningKeyExclusive writes k to path (mode 0600) unless a file is
// there already, in which case it reports false and leaves it.
func writeSigningKeyExclusive(path string, k signingKey) (bool, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return false, fmt.Errorf("signing key: creating %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("signing key: %w", err)
	}
	if _, err := tmp.Write(encodeSigningKey(k)); err != nil {
		tmp.Close()
		return false, fmt.Errorf("signing key: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("signing key: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("signing key: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("signing key: creating %s: %w", path, err)
	}
	return true, nil
}
