package mlsserver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestSigningKeyCreateThenLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	k1, created, err := loadOrCreateSigningKey(path, rand.Reader)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !regexp.MustCompile(`^ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n$`).Match(b) {
		t.Errorf("key file %q is not \"ed25519 <version> <unpadded base64 seed>\"", b)
	}
	if !strings.HasPrefix(k1.ID, "ed25519:a_") || strings.Fields(string(b))[1] != strings.TrimPrefix(k1.ID, "ed25519:") {
		t.Errorf("key ID %q does not match file %q", k1.ID, b)
	}
	k2, created, err := loadOrCreateSigningKey(path, rand.Reader)
	if err != nil || created {
		t.Fatalf("second call: created %v, %v", created, err)
	}
	if k2.ID != k1.ID || !k2.Public().Equal(k1.Public()) {
		t.Errorf("second call loaded %s %x, want %s %x", k2.ID, k2.Public(), k1.ID, k1.Public())
	}
	// No temporary files are left beside the key.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(ents))
	}
}

// Synapse's key files load, with the same key.
func TestSigningKeySynapseFormat(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	line := "ed25519 a_bcDE " + base64.RawStdEncoding.EncodeToString(seed) + "\n"
	k, err := parseSigningKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "ed25519:a_bcDE" || !k.Public().Equal(ed25519.NewKeyFromSeed(seed).Public()) {
		t.Errorf("parsed %s %x", k.ID, k.Public())
	}
	if got := string(encodeSigningKey(k)); got != line {
		t.Errorf("encoded %q, want %q", got, line)
	}
}

func TestSigningKeyMalformed(t *testing.T) {
	seed := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	for name, c := range map[string]struct{ content, want string }{
		"empty":        {"", "empty"},
		"two fields":   {"ed25519 " + seed, "fields"},
		"algorithm":    {"rsa a_1 " + seed, "rsa"},
		"version":      {"ed25519 a-1 " + seed, "version"},
		"not base64":   {"ed25519 a_1 !!!!", "base64"},
		"short seed":   {"ed25519 a_1 " + base64.RawStdEncoding.EncodeToString(make([]byte, 31)), "31 bytes"},
		"two lines":    {"ed25519 a_1 " + seed + "\ned25519 a_2 " + seed, "line"},
		"PEM instead":  {"-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----\n", "line"},
		"garbage byte": {"\x00", "fields"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "signing.key")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := loadOrCreateSigningKey(path, rand.Reader)
			if err == nil {
				t.Fatal("malformed key file accepted")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name the file and %q", err, c.want)
			}
			// The malformed file is left as it was.
			if b, _ := os.ReadFile(path); string(b) != c.content {
				t.Errorf("file changed to %q", b)
			}
		})
	}
}

// Processes starting together on one key path end with one key.
func TestSigningKeyConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	const n = 8
	keys := make([]signingKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], _, errs[i] = loadOrCreateSigningKey(path, rand.Reader) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if keys[i].ID != keys[0].ID || !keys[i].Public().Equal(keys[0].Public()) {
			t.Errorf("caller %d got key %s, caller 0 %s", i, keys[i].ID, keys[0].ID)
		}
	}
}
