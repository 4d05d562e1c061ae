package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mlsmode/mlsmode/storage"
)

const (
	algA = "m.mls.v1.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	algB = "m.mls.v1.MLS_128_DHKEMP256_AES128GCM_SHA256_P256"
)

func kp(alg string, i int) storage.KeyPackage {
	return storage.KeyPackage{Algorithm: alg, KeyID: fmt.Sprintf("%s:ref%04d", alg, i), Value: fmt.Sprintf("package-%s-%d", alg, i)}
}

func testKeyPackages(t *testing.T, b Backend) {
	ctx := context.Background()
	db := b.fresh(t)
	const u, d = "@alice:a.example", "DEV"
	if _, err := db.ClaimKeyPackage(ctx, u, d, algA); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim with none: %v", err)
	}
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 1), kp(algA, 2), kp(algB, 1)}); err != nil {
		t.Fatal(err)
	}
	// The same again is fine; another value under a stored key ID is a
	// conflict and stores nothing of the call.
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 1)}); err != nil {
		t.Fatalf("same package again: %v", err)
	}
	bad := kp(algA, 2)
	bad.Value = "other"
	if err := db.StoreOneTimeKeyPackages(ctx, u, d, []storage.KeyPackage{kp(algA, 3), bad}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("conflicting package: %v", err)
	}
	counts, err := db.CountOneTimeKeyPackages(ctx, u, d)
	if err != nil || counts[algA] != 2 || counts[algB] != 1 || len(counts) != 2 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	if err := db.StoreFallbackKeyPackage(ctx, u, d, kp(algA, 100)); err != nil {
		t.Fatal(err)
	}
	if err := db.StoreFallbackKeyPackage(ctx, u, d, kp(algA, 101)); err != nil {
		t.Fatal(err)
	}
	if algs, err := db.UnusedFallbackAlgorithms(ctx, u, d); err != nil || !slices.Equal(algs, []string{algA}) {
		t.Fatalf("unused fallbacks %v, %v", algs, err)
	}
	ids, err := db.KeyPackageIDs(ctx, u, d)
	want := []string{kp(algA, 1).KeyID, kp(algA, 2).KeyID, kp(algA, 101).KeyID, kp(algB, 1).KeyID}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Fatalf("key IDs %v, %v; want %v", ids, err, want)
	}
	// The fallback key IDs alone: the replaced fallback is gone, one-time
	// packages are not fallbacks.
	if fb, err := db.FallbackKeyPackageIDs(ctx, u, d); err != nil || !slices.Equal(fb, []string{kp(algA, 101).KeyID}) {
		t.Fatalf("fallback key IDs %v, %v", fb, err)
	}
	// One-time packages first, oldest first, then the fallback.
	for _, w := range []storage.ClaimedKeyPackage{{KeyPackage: kp(algA, 1)}, {KeyPackage: kp(algA, 2)}, {KeyPackage: kp(algA, 101), Fallback: true}, {KeyPackage: kp(algA, 101), Fallback: true}} {
		got, err := db.ClaimKeyPackage(ctx, u, d, algA)
		if err != nil || got != w {
			t.Fatalf("claim %+v, %v; want %+v", got, err, w)
		}
	}
	if algs, err := db.UnusedFallbackAlgorithms(ctx, u, d); err != nil || len(algs) != 0 {
		t.Fatalf("unused fallbacks after claim %v, %v", algs, err)
	}
	// A used fallback is still held (and handed out): still listed.
	if fb, err := db.FallbackKeyPackageIDs(ctx, u, d); err != nil || !slices.Equal(fb, []string{kp(algA, 101).KeyID}) {
		t.Fatalf("fallback key IDs after use %v, %v", fb, err)
	}
	counts, err = db.CountOneTimeKeyPackages(ctx, u, d)
	if err != nil || counts[algA] != 0 || counts[algB] != 1 {
		t.Fatalf("counts after claims %v, %v", counts, err)
	}
	// Other devices are untouched; no fallback of algB.
	if _, err := db.ClaimKeyPackage(ctx, u, "OTHER", algA); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("other device: %v", err)
	}
	if got, err := db.ClaimKeyPackage(ctx, u, d, algB); err != nil || got.KeyPackage != kp(algB, 1) || got.Fallback {
		t.Fatalf("claim algB %+v, %v", got, err)
	}
	if _, err := db.ClaimKeyPackage(ctx, u, d, algB); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim algB with none: %v", err)
	}
	// A new fallback is unused again.
	if err := db.StoreFallbackKeyPackage(ctx, u, d, kp(algA, 102)); err != nil {
		t.Fatal(err)
	}
	if algs, err := db.UnusedFallbackAlgorithms(ctx, u, d); err != nil || !slices.Equal(algs, []string{algA}) {
		t.Fatalf("unused fallbacks after new upload %v, %v", algs, err)
	}
	// One per algorithm, sorted; other devices have none.
	if err := db.StoreFallbackKeyPackage(ctx, u, d, kp(algB, 7)); err != nil {
		t.Fatal(err)
	}
	want = []string{kp(algA, 102).KeyID, kp(algB, 7).KeyID}
	slices.Sort(want)
	if fb, err := db.FallbackKeyPackageIDs(ctx, u, d); err != nil || !slices.Equal(fb, want) {
		t.Fatalf("fallback key IDs %v, %v; want %v", fb, err, want)
	}
	if fb, err := db.FallbackKeyPackageIDs(ctx, u, "OTHER"); err != nil || len(fb) != 0 {
		t.Fatalf("fallback key IDs of another device %v, %v", fb, err)
	}
}

// Claimers is how many goroutines claim at once in the concurrency test
// and benchmark.
const Claimers = 50

// testConcurrentClaims runs 50 claimers against one device: every
// one-time package is handed out exactly once, then only the fallback.
func testConcurrentClaims(t *testing.T, b Backend) {
	ctx := context.Background()
	dsn := b.NewDSN(t)
	dbs := []storage.Database{b.open(t, dsn)}
	if b.Shared {
		dbs = append(dbs, b.open(t, dsn)) // claimers in two "processes"
	}
	const u, d, n = "@bob:a.example", "DEV", 500
	kps := make([]storage.KeyPackage, n)
	for i := range kps {
		kps[i] = kp(algA, i)
	}
	if err := dbs[0].StoreOneTimeKeyPackages(ctx, u, d, kps); err != nil {
		t.Fatal(err)
	}
	fallback := kp(algA, 9999)
	if err := dbs[0].StoreFallbackKeyPackage(ctx, u, d, fallback); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		got       = map[string]int{}
		fallbacks int
		wg        sync.WaitGroup
		errs      = make(chan error, Claimers)
	)
	for c := range Claimers {
		wg.Add(1)
		go func(db storage.Database) {
			defer wg.Done()
			for {
				ck, err := db.ClaimKeyPackage(ctx, u, d, algA)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if ck.Fallback {
					fallbacks++
					if ck.KeyPackage != fallback {
						errs <- fmt.Errorf("fallback %+v", ck)
					}
					mu.Unlock()
					return
				}
				got[ck.KeyID+" "+ck.Value]++
				mu.Unlock()
			}
		}(dbs[c%len(dbs)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d distinct one-time packages handed out, want %d", len(got), n)
	}
	for _, k := range kps {
		if got[k.KeyID+" "+k.Value] != 1 {
			t.Fatalf("%s handed out %d times", k.KeyID, got[k.KeyID+" "+k.Value])
		}
	}
	if fallbacks != Claimers {
		t.Fatalf("%d fallback claims, want %d", fallbacks, Claimers)
	}
	if counts, err := dbs[0].CountOneTimeKeyPackages(ctx, u, d); err != nil || counts[algA] != 0 {
		t.Fatalf("counts after: %v, %v", counts, err)
	}
	if algs, err := dbs[0].UnusedFallbackAlgorithms(ctx, u, d); err != nil || len(algs) != 0 {
		t.Fatalf("fallback not marked used: %v, %v", algs, err)
	}
}
