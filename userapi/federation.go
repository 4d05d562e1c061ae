package userapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/mlsmode/mlsmode/matrixerr"
)

// This file holds the answers of the federation user endpoints
// (SPEC-NOTES §12): they serve this server's own users only and never go
// through Remote.

// IsLocal reports whether userID is a user ID of this server.
func (s *Service) IsLocal(userID string) bool {
	return checkUserID("user_id", userID) == nil && s.isLocal(userID)
}

// LocalKeys is the answer of POST /_matrix/federation/v1/user/keys/query
// (the Matrix spec's shape): device keys and the users' master and
// self-signing keys (never user-signing keys over federation).
type LocalKeys struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
}

// QueryLocalKeys answers POST /_matrix/federation/v1/user/keys/query:
// user ID -> device IDs (empty: all) to user ID -> device ID -> device
// keys, as LocalDeviceKeys (uploaded signatures merged in), with each
// user's master and self-signing keys (LocalCrossSigningKeys). User IDs
// of other servers and malformed ones are left out; an unknown local user
// is answered with {}.
func (s *Service) QueryLocalKeys(ctx context.Context, req map[string][]string) (*LocalKeys, error) {
	out := &LocalKeys{DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{}, SelfSigningKeys: map[string]json.RawMessage{}}
	for _, userID := range sortedKeys(req) {
		if !s.IsLocal(userID) {
			continue
		}
		m, err := s.LocalDeviceKeys(ctx, userID, req[userID])
		if err != nil {
			return nil, err
		}
		out.DeviceKeys[userID] = m
		cs, err := s.LocalCrossSigningKeys(ctx, userID, false)
		if err != nil {
			return nil, err
		}
		if k, ok := cs[UsageMaster]; ok {
			out.MasterKeys[userID] = k
		}
		if k, ok := cs[UsageSelfSigning]; ok {
			out.SelfSigningKeys[userID] = k
		}
	}
	return out, nil
}

// ClaimLocalKeysFederation answers POST
// /_matrix/federation/v1/user/keys/claim: user ID -> device ID ->
// algorithm to user ID -> device ID -> key ID -> value, claiming through
// ClaimLocalKeys (each one-time key package handed out at most once, then
// the fallback). Only MLS algorithms (else 400 M_INVALID_PARAM); users of
// other servers and malformed user IDs are left out, and so are devices
// with nothing to claim.
func (s *Service) ClaimLocalKeysFederation(ctx context.Context, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	for userID, devices := range req {
		for dev, alg := range devices {
			if _, err := ParseAlgorithm(alg); err != nil {
				return nil, matrixerr.InvalidParam("one_time_keys[%q][%q]: %v (this server hosts MLS rooms only)", userID, dev, err)
			}
		}
	}
	out := map[string]map[string]map[string]json.RawMessage{}
	for _, userID := range sortedKeys(req) {
		if !s.IsLocal(userID) {
			continue
		}
		m, err := s.ClaimLocalKeys(ctx, userID, req[userID])
		if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out[userID] = m
		}
	}
	return out, nil
}

// UserDevice is one entry of the federation device list.
type UserDevice struct {
	DeviceID          string          `json:"device_id"`
	Keys              json.RawMessage `json:"keys"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
}

// UserDevicesResponse is the answer of GET
// /_matrix/federation/v1/user/devices/{userId} (the Matrix spec's shape).
type UserDevicesResponse struct {
	UserID   string       `json:"user_id"`
	StreamID int64        `json:"stream_id"`
	Devices  []UserDevice `json:"devices"`
	// MasterKey and SelfSigningKey are the user's cross-signing keys
	// (with the signatures stored on the master key), when uploaded.
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// LocalUserDevices lists a local user's devices that have uploaded device
// keys, by device ID, with their keys (as LocalDeviceKeys) and display
// names, and the user's master and self-signing keys; stream_id is the position of the device-key change stream (it
// grows with every change of any user's device keys). A user of another
// server is 404 M_NOT_FOUND; an unknown local user has no devices.
func (s *Service) LocalUserDevices(ctx context.Context, userID string) (*UserDevicesResponse, error) {
	if !s.IsLocal(userID) {
		return nil, matrixerr.NotFound("%q is not a user of this server", userID)
	}
	pos, err := s.cfg.Store.MaxStreamPositions(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream positions: %w", err)
	}
	keys, err := s.LocalDeviceKeys(ctx, userID, nil)
	if err != nil {
		return nil, err
	}
	devs, err := s.cfg.Store.Devices(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	names := map[string]string{}
	for _, d := range devs {
		names[d.DeviceID] = d.DisplayName
	}
	out := &UserDevicesResponse{UserID: userID, StreamID: pos.DeviceKeys, Devices: []UserDevice{}}
	for _, dev := range sortedKeys(keys) {
		out.Devices = append(out.Devices, UserDevice{DeviceID: dev, Keys: keys[dev], DeviceDisplayName: names[dev]})
	}
	cs, err := s.LocalCrossSigningKeys(ctx, userID, false)
	if err != nil {
		return nil, err
	}
	out.MasterKey, out.SelfSigningKey = cs[UsageMaster], cs[UsageSelfSigning]
	return out, nil
}

// LocalProfile answers GET /_matrix/federation/v1/query/profile: a local
// user's profile or one field of it, as Profile. A user of another server
// or an unknown one is 404 M_NOT_FOUND.
func (s *Service) LocalProfile(ctx context.Context, userID, field string) (*ProfileResponse, error) {
	if !s.IsLocal(userID) {
		return nil, matrixerr.NotFound("%q is not a user of this server", userID)
	}
	return s.Profile(ctx, userID, field)
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
