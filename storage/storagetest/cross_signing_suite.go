package storagetest

import (
	"context"
	"slices"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

func testCrossSigning(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u, v = "@a:a.example", "@b:a.example"
	if got, err := db.CrossSigningKeys(ctx, u); err != nil || len(got) != 0 {
		t.Fatalf("keys of a user with none: %v, %v", got, err)
	}
	_, before, err := db.DeviceKeyChangesSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := []storage.CrossSigningKey{
		{UserID: u, Usage: "master", KeyJSON: []byte(`{"usage":["master"],"v":1}`)},
		{UserID: u, Usage: "self_signing", KeyJSON: []byte(`{"usage":["self_signing"]}`)},
		{UserID: v, Usage: "master", KeyJSON: []byte(`{"usage":["master"],"user":"b"}`)},
	}
	if err := db.StoreCrossSigningKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	// Storing keys is a device key change of their users.
	changed, after, err := db.DeviceKeyChangesSince(ctx, before)
	if err != nil || after <= before || !slices.Equal(changed, []string{u, v}) {
		t.Fatalf("changes after storing keys: %v %d (before %d), %v", changed, after, before, err)
	}
	// Replacing the master key keeps the self-signing key.
	if err := db.StoreCrossSigningKeys(ctx, []storage.CrossSigningKey{{UserID: u, Usage: "master", KeyJSON: []byte(`{"usage":["master"],"v":2}`)}}); err != nil {
		t.Fatal(err)
	}
	got, err := db.CrossSigningKeys(ctx, u)
	if err != nil || len(got) != 2 || string(got["master"]) != `{"usage":["master"],"v":2}` || string(got["self_signing"]) != string(keys[1].KeyJSON) {
		t.Fatalf("keys of %s: %q, %v", u, got, err)
	}
	if got, err := db.CrossSigningKeys(ctx, v); err != nil || len(got) != 1 || string(got["master"]) != string(keys[2].KeyJSON) {
		t.Fatalf("keys of %s: %q, %v", v, got, err)
	}

	sigs := []storage.CrossSigningSignature{
		{SignerUserID: u, SignerKeyID: "ed25519:SSK", TargetUserID: u, TargetKeyID: "DEV2", Signature: "s1"},
		{SignerUserID: u, SignerKeyID: "ed25519:SSK", TargetUserID: u, TargetKeyID: "DEV1", Signature: "s2"},
		{SignerUserID: u, SignerKeyID: "ed25519:USK", TargetUserID: v, TargetKeyID: "MSKB", Signature: "s3"},
	}
	if err := db.StoreCrossSigningSignatures(ctx, sigs); err != nil {
		t.Fatal(err)
	}
	// The same key again replaces the signature.
	sigs[0].Signature = "s1b"
	if err := db.StoreCrossSigningSignatures(ctx, sigs[:1]); err != nil {
		t.Fatal(err)
	}
	gotSigs, err := db.CrossSigningSignatures(ctx, u)
	if err != nil || !slices.Equal(gotSigs, []storage.CrossSigningSignature{sigs[1], sigs[0]}) {
		t.Fatalf("signatures on %s: %+v, %v", u, gotSigs, err)
	}
	if gotSigs, err := db.CrossSigningSignatures(ctx, v); err != nil || !slices.Equal(gotSigs, sigs[2:]) {
		t.Fatalf("signatures on %s: %+v, %v", v, gotSigs, err)
	}
	if gotSigs, err := db.CrossSigningSignatures(ctx, "@c:a.example"); err != nil || len(gotSigs) != 0 {
		t.Fatalf("signatures on a user with none: %+v, %v", gotSigs, err)
	}
	// A failing call stores nothing (one transaction): a context
	// cancelled before the call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.StoreCrossSigningSignatures(cctx, []storage.CrossSigningSignature{{SignerUserID: u, SignerKeyID: "ed25519:SSK", TargetUserID: u, TargetKeyID: "DEV3", Signature: "x"}}); err == nil {
		t.Fatal("storing with a cancelled context succeeded")
	}
	if gotSigs, err := db.CrossSigningSignatures(ctx, u); err != nil || len(gotSigs) != 2 {
		t.Fatalf("signatures after a failed store: %+v, %v", gotSigs, err)
	}
	// Deleting a device deletes the signatures on it, not the others.
	if err := db.DeleteDevice(ctx, u, "DEV1"); err != nil {
		t.Fatal(err)
	}
	if gotSigs, err := db.CrossSigningSignatures(ctx, u); err != nil || !slices.Equal(gotSigs, sigs[:1]) {
		t.Fatalf("signatures on %s after deleting DEV1: %+v, %v", u, gotSigs, err)
	}
	if gotSigs, err := db.CrossSigningSignatures(ctx, v); err != nil || !slices.Equal(gotSigs, sigs[2:]) {
		t.Fatalf("signatures on %s after deleting DEV1: %+v, %v", v, gotSigs, err)
	}
}
