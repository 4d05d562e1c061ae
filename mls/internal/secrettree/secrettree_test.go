package secrettree

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
	"github.com/mlsmode/mlsmode/mls/internal/suite"
	tv "github.com/mlsmode/mlsmode/mls/internal/testvectors"
	"github.com/mlsmode/mlsmode/mls/internal/treemath"
)

func TestVectors(t *testing.T) {
	t.Run("secret-tree", func(t *testing.T) {
		var cases []struct {
			CipherSuite uint16 `json:"cipher_suite"`
			SenderData  struct {
				SenderDataSecret tv.Hex `json:"sender_data_secret"`
				Ciphertext       tv.Hex
				Key              tv.Hex
				Nonce            tv.Hex
			} `json:"sender_data"`
			EncryptionSecret tv.Hex `json:"encryption_secret"`
			Leaves           [][]struct {
				Generation       uint32
				HandshakeKey     tv.Hex `json:"handshake_key"`
				HandshakeNonce   tv.Hex `json:"handshake_nonce"`
				ApplicationKey   tv.Hex `json:"application_key"`
				ApplicationNonce tv.Hex `json:"application_nonce"`
			}
		}
		tv.Load(t, "secret-tree", &cases)
		supported := func(s uint16) bool { _, err := suite.Lookup(suite.ID(s)); return err == nil }
		tv.ForEachCase(t, "secret-tree", len(cases), func(i int) uint16 { return cases[i].CipherSuite }, supported, func(t *testing.T, i int) {
			c := &cases[i]
			s, _ := suite.Lookup(suite.ID(c.CipherSuite))
			sd := c.SenderData
			key, nonce, err := SenderDataKeyNonce(s, sd.SenderDataSecret, sd.Ciphertext)
			if err != nil || !bytes.Equal(key, sd.Key) || !bytes.Equal(nonce, sd.Nonce) {
				t.Errorf("sender data key/nonce = %x/%x, %v; want %x/%x", key, nonce, err, sd.Key, sd.Nonce)
			}
			tree, err := New(s, c.EncryptionSecret, uint32(len(c.Leaves)), DefaultConfig)
			if err != nil {
				t.Fatal(err)
			}
			for leaf, gens := range c.Leaves {
				for _, g := range gens {
					for _, k := range []struct {
						kind       Kind
						key, nonce []byte
					}{{Handshake, g.HandshakeKey, g.HandshakeNonce}, {Application, g.ApplicationKey, g.ApplicationNonce}} {
						kn, err := tree.Get(k.kind, treemath.LeafIndex(leaf), g.Generation)
						if err != nil || !bytes.Equal(kn.Key, k.key) || !bytes.Equal(kn.Nonce, k.nonce) {
							t.Errorf("leaf %d %s gen %d: %x/%x, %v; want %x/%x", leaf, k.kind, g.Generation, kn.Key, kn.Nonce, err, k.key, k.nonce)
						}
					}
				}
			}
		})
	})
}

func newTree(t *testing.T, cfg Config) *Tree {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	tree, err := New(s, bytes.Repeat([]byte{1}, 32), 4, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestSenderAndReceiverAgree(t *testing.T) {
	send, recv := newTree(t, DefaultConfig), newTree(t, DefaultConfig)
	var sent []KeyNonce
	for range 5 {
		kn, err := send.Next(Application, 2)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, kn)
	}
	// Out of order: 3, 0, 4, 1, 2.
	for _, g := range []int{3, 0, 4, 1, 2} {
		kn, err := recv.Get(Application, 2, uint32(g))
		if err != nil || !bytes.Equal(kn.Key, sent[g].Key) || !bytes.Equal(kn.Nonce, sent[g].Nonce) {
			t.Fatalf("generation %d: %v", g, err)
		}
	}
	// The handshake ratchet is independent.
	hs, _ := recv.Get(Handshake, 2, 0)
	if bytes.Equal(hs.Key, sent[0].Key) {
		t.Fatal("handshake and application ratchets share keys")
	}
}

func TestUsedKeysAreDeleted(t *testing.T) {
	tree := newTree(t, DefaultConfig)
	if _, err := tree.Get(Application, 1, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Get(Application, 1, 3); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("second Get of generation 3: %v, want ErrGenerationUsed", err)
	}
	if _, err := tree.Get(Application, 1, 1); err != nil {
		t.Fatalf("skipped generation 1: %v", err)
	}
	if _, err := tree.Get(Application, 1, 1); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("second Get of generation 1: %v, want ErrGenerationUsed", err)
	}
	// Tree node secrets on leaf 1's path are gone once its ratchets exist.
	if tree.nodes[treemath.LeafIndex(1).Node()] != nil || tree.nodes[treemath.Root(4)] != nil {
		t.Fatal("secrets above a derived leaf were kept")
	}
}

func TestWindows(t *testing.T) {
	tree := newTree(t, Config{OutOfOrder: 2, MaxForward: 10})
	if _, err := tree.Get(Application, 0, 11); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("generation 11 with MaxForward 10: %v", err)
	}
	if _, err := tree.Get(Application, 0, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Get(Application, 0, 7); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("generation 7, 3 below 10 with a window of 2: %v", err)
	}
	if _, err := tree.Get(Application, 0, 8); err != nil {
		t.Fatalf("generation 8, inside the window: %v", err)
	}
	if _, err := tree.Get(Application, 4, 0); !errors.Is(err, ErrLeaf) {
		t.Fatalf("leaf 4 of 4: %v", err)
	}
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	for _, n := range []uint32{0, 3, 6} {
		if _, err := New(s, make([]byte, 32), n, DefaultConfig); err == nil {
			t.Fatalf("a secret tree of %d leaves", n)
		}
	}
}

func TestRestore(t *testing.T) {
	tree := newTree(t, DefaultConfig)
	kn, err := tree.Get(Application, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	tree.Restore(Application, 3, kn)
	again, err := tree.Get(Application, 3, 5)
	if err != nil || !bytes.Equal(again.Key, kn.Key) {
		t.Fatalf("restored key: %v", err)
	}
	if _, err := tree.Get(Application, 3, 5); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("after second use: %v", err)
	}
}

func TestMarshalRestoresState(t *testing.T) {
	a := newTree(t, Config{OutOfOrder: 4, MaxForward: 100})
	b := newTree(t, Config{OutOfOrder: 4, MaxForward: 100})
	for range 3 {
		if _, err := a.Next(Application, 1); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := a.Next(Application, 1) // generation 3
	late, _ := b.Get(Application, 1, 2)
	_ = late
	w := codec.NewWriter(nil)
	b.Marshal(w)
	enc, err := w.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Unmarshal(b.s, codec.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	// Generation 1 was kept, 2 used, 3 is next: all as before.
	if _, err := c.Get(Application, 1, 1); err != nil {
		t.Fatalf("kept generation: %v", err)
	}
	if _, err := c.Get(Application, 1, 2); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("used generation: %v", err)
	}
	got, err := c.Get(Application, 1, 3)
	if err != nil || !bytes.Equal(got.Key, want.Key) {
		t.Fatalf("next generation: %v", err)
	}
	// Other leaves still derive from the remaining tree secrets.
	x, _ := a.Next(Handshake, 2)
	y, err := c.Get(Handshake, 2, 0)
	if err != nil || !bytes.Equal(x.Key, y.Key) {
		t.Fatalf("another leaf after restore: %v", err)
	}
	if _, err := Unmarshal(b.s, codec.NewReader(enc[:len(enc)-3])); err == nil {
		t.Fatal("truncated state accepted")
	}
}
