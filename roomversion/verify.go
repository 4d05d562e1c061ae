package roomversion

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// KeyFetcher finds servers' signing keys for VerifySignature.
type KeyFetcher interface {
	// PublicKey returns the ed25519 public key that server published under
	// keyID (for example "ed25519:abc"), if it was valid for signing at
	// time at (the event's origin_server_ts). It returns an error when the
	// key is unknown, cannot be fetched or was not valid at that time.
	PublicKey(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error)
}

// KeyFetcherFunc adapts a function to KeyFetcher.
type KeyFetcherFunc func(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error)

// PublicKey calls f.
func (f KeyFetcherFunc) PublicKey(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error) {
	return f(ctx, server, keyID, at)
}

// VerifySignature checks that ev carries a valid signature of its origin
// server (SPEC-NOTES §2: events are signed by their origin). It tries the
// origin's ed25519 key IDs in sorted order, fetching each key through
// fetcher for the event's origin_server_ts; one valid signature suffices.
// Signatures of other servers are not checked. It fails with an *Error of
// kind KindSignature saying what was tried.
//
// The check is the Matrix JSON signature check, the one
// gomatrixserverlib.VerifyJSON makes on the redacted event (RedactedJSON):
// ed25519 over the canonical JSON of the redacted event without signatures
// and unsigned. Parse has already made exactly those bytes (they are what
// the event ID hashes), so VerifySignature verifies them directly instead of
// letting VerifyJSON decode, re-encode and re-canonicalise the event, which
// costs about as much as the ed25519 verification itself. The tests check
// that both give the same answer, and that gomatrixserverlib's VerifyJSON and
// KeyRing accept the events Builder signs.
func VerifySignature(ctx context.Context, ev *Event, fetcher KeyFetcher) error {
	const op = "verifying signature"
	fail := func(reason string, err error) error {
		return &Error{Op: op, Kind: KindSignature, Field: "signatures." + ev.origin, Reason: reason, Err: err}
	}
	keys := ev.signatures[ev.origin]
	ids := make([]string, 0, len(keys))
	for id := range keys {
		if strings.HasPrefix(id, "ed25519:") {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return fail(fmt.Sprintf("no ed25519 signature by the origin %s", ev.origin), nil)
	}
	slices.Sort(ids)
	at := time.UnixMilli(ev.ts)
	var msg []byte
	var errs []error
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return fail("cancelled", err)
		}
		sig := keys[id]
		if len(sig) != ed25519.SignatureSize {
			errs = append(errs, fmt.Errorf("signature %s: %d bytes, want %d", id, len(sig), ed25519.SignatureSize))
			continue
		}
		pub, err := fetcher.PublicKey(ctx, ev.origin, id, at)
		if err != nil {
			errs = append(errs, fmt.Errorf("fetching key %s: %w", id, err))
			continue
		}
		if len(pub) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("key %s: %d bytes, want %d", id, len(pub), ed25519.PublicKeySize))
			continue
		}
		if msg == nil {
			msg = ev.referenceJSON()
		}
		if !ed25519.Verify(pub, msg, sig) {
			errs = append(errs, fmt.Errorf("key %s: bad signature", id))
			continue
		}
		return nil
	}
	return fail(fmt.Sprintf("no valid signature by the origin %s", ev.origin), errors.Join(errs...))
}
