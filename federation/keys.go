package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage"
)

// MinRefetchInterval is how long the key fetcher waits before asking a
// server for its keys again (after a fetch, successful or not), so that
// requests naming unknown key IDs cannot make it hammer a server.
const MinRefetchInterval = time.Minute

// serverKeys answers GET /_matrix/key/v2/server: this server's key,
// valid_until_ts = now + KeyValidity, signed with the key itself.
func (a *API) serverKeys(*request) (any, error) {
	fields := gomatrixserverlib.ServerKeyFields{
		ServerName: spec.ServerName(a.cfg.ServerName),
		VerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{
			gomatrixserverlib.KeyID(a.cfg.KeyID): {Key: spec.Base64Bytes(a.public)},
		},
		ValidUntilTS:  spec.AsTimestamp(a.now().Add(a.cfg.KeyValidity)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("federation: encoding the key response: %w", err)
	}
	signed, err := gomatrixserverlib.SignJSON(a.cfg.ServerName, gomatrixserverlib.KeyID(a.cfg.KeyID), a.cfg.PrivateKey, b)
	if err != nil {
		return nil, fmt.Errorf("federation: signing the key response: %w", err)
	}
	return json.RawMessage(signed), nil
}

// KeyFetcher finds servers' signing keys: this server's own key directly;
// others in storage (storage.ServerKeys) when stored and valid at the time
// asked for, otherwise from GET https://<server>/_matrix/key/v2/server,
// whose response must name the server, be valid now and carry a valid
// signature of every ed25519 key it lists (gomatrixserverlib.CheckKeys).
// Fetched keys are stored with their valid_until_ts (old keys with their
// expired_ts), so an expired key is fetched again when asked for a later
// time. It implements roomversion.KeyFetcher; the same storage and fetching
// back the key ring that checks X-Matrix signatures.
type KeyFetcher struct {
	db     *keyDatabase
	direct *directFetcher
}

var _ roomversion.KeyFetcher = (*KeyFetcher)(nil)

func newKeyFetcher(cfg Config, public ed25519.PublicKey, c *Client) *KeyFetcher {
	local := gomatrixserverlib.PublicKeyLookupResult{
		VerifyKey: gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(public)},
		ExpiredTS: gomatrixserverlib.PublicKeyNotExpired,
	}
	d := &directFetcher{client: c, clock: cfg.Clock, serverName: cfg.ServerName, keyID: cfg.KeyID,
		local: local, validity: cfg.KeyValidity, fetches: map[string]*keyFetch{}}
	return &KeyFetcher{db: &keyDatabase{st: cfg.Store, local: d}, direct: d}
}

// PublicKey returns server's key keyID if it was valid for signing at at
// (gomatrixserverlib.StrictValiditySignatureCheck for current keys: at is
// not after valid_until_ts, capped at 7 days from now; before expired_ts
// for old keys).
func (k *KeyFetcher) PublicKey(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error) {
	req := gomatrixserverlib.PublicKeyLookupRequest{ServerName: spec.ServerName(server), KeyID: gomatrixserverlib.KeyID(keyID)}
	ts := spec.AsTimestamp(at)
	stored, err := k.db.FetchKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{req: ts})
	if err != nil {
		return nil, err
	}
	if res, ok := stored[req]; ok && res.WasValidAt(ts, gomatrixserverlib.StrictValiditySignatureCheck) {
		return ed25519.PublicKey(res.Key), nil
	}
	fetched, err := k.direct.fetchServer(ctx, server)
	if err != nil {
		return nil, err
	}
	if err := k.db.StoreKeys(ctx, fetched); err != nil {
		return nil, err
	}
	res, ok := fetched[req]
	if !ok {
		return nil, fmt.Errorf("federation: %s does not publish key %s in its keys fetched less than %v ago", server, keyID, MinRefetchInterval)
	}
	if !res.WasValidAt(ts, gomatrixserverlib.StrictValiditySignatureCheck) {
		return nil, fmt.Errorf("federation: key %s of %s was not valid at %s", keyID, server, at.UTC().Format(time.RFC3339))
	}
	return ed25519.PublicKey(res.Key), nil
}

// keyDatabase is gomatrixserverlib's KeyDatabase over storage.ServerKeys
// (our own key answered from memory).
type keyDatabase struct {
	st    storage.ServerKeys
	local *directFetcher
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (d *keyDatabase) FetcherName() string { return "mlsmode storage" }

// FetchKeys returns the stored keys among requests.
func (d *keyDatabase) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	out := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	for req := range requests {
		if res, ok := d.local.localKey(req); ok {
			out[req] = res
			continue
		}
		k, err := d.st.ServerKey(ctx, string(req.ServerName), string(req.KeyID))
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("federation: loading key %s of %s: %w", req.KeyID, req.ServerName, err)
		}
		res := gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey:    gomatrixserverlib.VerifyKey{Key: k.PublicKey},
			ValidUntilTS: spec.Timestamp(k.ValidUntilTS),
			ExpiredTS:    spec.Timestamp(k.ExpiredTS),
		}
		if k.ExpiredTS != 0 {
			res.ValidUntilTS = gomatrixserverlib.PublicKeyNotValid
		}
		out[req] = res
	}
	return out, nil
}

// StoreKeys stores fetched keys (not our own).
func (d *keyDatabase) StoreKeys(ctx context.Context, results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	for req, res := range results {
		if string(req.ServerName) == d.local.serverName {
			continue
		}
		k := storage.ServerKey{ServerName: string(req.ServerName), KeyID: string(req.KeyID), PublicKey: res.Key,
			ValidUntilTS: int64(res.ValidUntilTS), ExpiredTS: int64(res.ExpiredTS)}
		if err := d.st.StoreServerKey(ctx, k); err != nil {
			return fmt.Errorf("federation: storing key %s of %s: %w", req.KeyID, req.ServerName, err)
		}
	}
	return nil
}

// directFetcher fetches keys from the servers themselves (a
// gomatrixserverlib.KeyFetcher), at most once per MinRefetchInterval per
// server.
type directFetcher struct {
	client     *Client
	clock      func() time.Time
	serverName string
	keyID      string
	local      gomatrixserverlib.PublicKeyLookupResult
	validity   time.Duration

	mu sync.Mutex
	// fetches is the latest fetch of each server: callers while it runs,
	// and for MinRefetchInterval after it started, share its result.
	fetches map[string]*keyFetch
}

// keyFetch is one fetch of a server's keys; res and err are set when done
// is closed.
type keyFetch struct {
	at   time.Time
	done chan struct{}
	res  map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult
	err  error
}

// localKey answers a request for this server's own key.
func (d *directFetcher) localKey(req gomatrixserverlib.PublicKeyLookupRequest) (gomatrixserverlib.PublicKeyLookupResult, bool) {
	if string(req.ServerName) != d.serverName || string(req.KeyID) != d.keyID {
		return gomatrixserverlib.PublicKeyLookupResult{}, false
	}
	res := d.local
	res.ValidUntilTS = spec.AsTimestamp(d.clock().Add(d.validity))
	return res, true
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (d *directFetcher) FetcherName() string { return "mlsmode direct" }

// FetchKeys fetches the keys of every server named in requests; servers
// that fail are left out of the result.
func (d *directFetcher) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	out := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	done := map[spec.ServerName]bool{}
	for req := range requests {
		if res, ok := d.localKey(req); ok {
			out[req] = res
			continue
		}
		if done[req.ServerName] {
			continue
		}
		done[req.ServerName] = true
		res, err := d.fetchServer(ctx, string(req.ServerName))
		if err != nil {
			continue
		}
		for k, v := range res {
			out[k] = v
		}
	}
	return out, nil
}

// fetchServer fetches and checks server's key response.
func (d *directFetcher) fetchServer(ctx context.Context, server string) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	if server == d.serverName {
		return nil, fmt.Errorf("federation: %s is this server, not fetching its keys", server)
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
		return nil, fmt.Errorf("federation: %q is not a valid server name", server)
	}
	now := d.clock()
	d.mu.Lock()
	f, ok := d.fetches[server]
	if !ok || now.Before(f.at) || now.Sub(f.at) >= MinRefetchInterval {
		f = &keyFetch{at: now, done: make(chan struct{})}
		d.fetches[server] = f
		d.mu.Unlock()
		f.res, f.err = d.fetch(ctx, server, now)
		close(f.done)
		return f.res, f.err
	}
	d.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return nil, fmt.Errorf("federation: keys of %s fetched less than %v ago, and that failed: %w", server, MinRefetchInterval, f.err)
		}
		return f.res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("federation: waiting for the keys of %s: %w", server, ctx.Err())
	}
}

// fetch fetches and checks server's key response once.
func (d *directFetcher) fetch(ctx context.Context, server string, now time.Time) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	keys, err := d.client.serverKeys(ctx, server)
	if err != nil {
		return nil, err
	}
	checks, _ := gomatrixserverlib.CheckKeys(spec.ServerName(server), now, keys)
	if !checks.AllChecksOK {
		return nil, fmt.Errorf("federation: key response of %s failed its checks (name matches: %v, valid in the future: %v, ed25519 key: %v, signatures valid: %v)",
			server, checks.MatchingServerName, checks.FutureValidUntilTS, checks.HasEd25519Key,
			checks.AllEd25519ChecksOK != nil && *checks.AllEd25519ChecksOK)
	}
	out := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	for id, k := range keys.VerifyKeys {
		out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}] = gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey: k, ValidUntilTS: keys.ValidUntilTS, ExpiredTS: gomatrixserverlib.PublicKeyNotExpired}
	}
	for id, k := range keys.OldVerifyKeys {
		if _, current := keys.VerifyKeys[id]; current || k.ExpiredTS == 0 || len(k.Key) != ed25519.PublicKeySize {
			continue
		}
		out[gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}] = gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey: k.VerifyKey, ValidUntilTS: gomatrixserverlib.PublicKeyNotValid, ExpiredTS: k.ExpiredTS}
	}
	return out, nil
}
