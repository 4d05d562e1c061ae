package federation

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxResponseBytes bounds a remote server's response body.
const maxResponseBytes = 64 << 20

// Client makes outbound federation requests: every request is signed with
// this server's key (X-Matrix, fclient.FederationRequest.Sign) and sent
// over HTTPS to the destination's address (Config.Resolve, or Matrix
// server name resolution).
type Client struct {
	origin string
	keyID  string
	key    ed25519.PrivateKey
	http   *fclient.Client
}

func newClient(cfg Config) *Client {
	tr := &matrixTransport{base: cfg.Transport, resolve: cfg.Resolve}
	return &Client{origin: cfg.ServerName, keyID: cfg.KeyID, key: cfg.PrivateKey,
		http: fclient.NewClient(fclient.WithTransport(tr), fclient.WithTimeout(cfg.Timeout))}
}

// Do sends a signed request to destination: method, path (with its query
// string, already escaped) and body (marshalled as JSON; nil for none). It
// returns the response's status and body; an error only when no response
// was read. A non-2xx status is not an error here.
func (c *Client) Do(ctx context.Context, destination, method, path string, body any) (int, []byte, error) {
	if destination == c.origin {
		return 0, nil, fmt.Errorf("federation: refusing to send %s %s to ourselves", method, path)
	}
	fr := fclient.NewFederationRequest(method, spec.ServerName(c.origin), spec.ServerName(destination), path)
	if body != nil {
		if err := fr.SetContent(body); err != nil {
			return 0, nil, fmt.Errorf("federation: encoding %s %s: %w", method, path, err)
		}
	}
	if err := fr.Sign(spec.ServerName(c.origin), gomatrixserverlib.KeyID(c.keyID), c.key); err != nil {
		return 0, nil, fmt.Errorf("federation: signing %s %s: %w", method, path, err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return 0, nil, fmt.Errorf("federation: building %s %s: %w", method, path, err)
	}
	resp, err := c.http.DoHTTPRequest(ctx, req)
	if err != nil {
		return 0, nil, fmt.Errorf("federation: %s %s to %s: %w", method, path, destination, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("federation: reading the response of %s to %s %s: %w", destination, method, path, err)
	}
	if len(b) > maxResponseBytes {
		return 0, nil, fmt.Errorf("federation: response of %s to %s %s over %d bytes", destination, method, path, maxResponseBytes)
	}
	return resp.StatusCode, b, nil
}

// serverKeys fetches destination's key response (unsigned GET
// /_matrix/key/v2/server).
func (c *Client) serverKeys(ctx context.Context, destination string) (gomatrixserverlib.ServerKeys, error) {
	keys, err := c.http.GetServerKeys(ctx, spec.ServerName(destination))
	if err != nil {
		return keys, fmt.Errorf("federation: fetching the keys of %s: %w", destination, err)
	}
	return keys, nil
}

// matrixTransport sends matrix://<server name>/... requests over HTTPS:
// to the address Resolve pins the name to, or else to where Matrix server
// name resolution (well-known, SRV, port 8448) points, with the Host header
// the resolution names. Other schemes go to base unchanged.
type matrixTransport struct {
	base    http.RoundTripper
	resolve map[string]string
}

// RoundTrip implements http.RoundTripper.
func (t *matrixTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "matrix" {
		return t.base.RoundTrip(r)
	}
	name := r.URL.Host
	addr, host := t.resolve[name], name
	if addr == "" {
		res, err := fclient.ResolveServer(r.Context(), spec.ServerName(name))
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", name, err)
		}
		if len(res) == 0 {
			return nil, errors.New("resolving " + name + ": no address")
		}
		addr, host = res[0].Destination, string(res[0].Host)
	}
	out := r.Clone(r.Context())
	u := *r.URL
	u.Scheme, u.Host = "https", addr
	out.URL, out.Host = &u, host
	return t.base.RoundTrip(out)
}
