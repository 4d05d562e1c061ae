package userapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
)

// Profile fields.
const (
	FieldDisplayName = "displayname"
	FieldAvatarURL   = "avatar_url"
)

// maxAvatarURL limits avatar URLs (bytes).
const maxAvatarURL = 1000

// ProfileResponse is a profile or one field of it (GET /profile/...).
// Empty fields are left out.
type ProfileResponse struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// Profile returns a user's profile; field is "" for the whole profile or
// one of FieldDisplayName and FieldAvatarURL. Unknown local users are 404
// M_NOT_FOUND; remote users go through Remote (nil Remote: 404 M_NOT_FOUND
// saying federation is not available).
func (s *Service) Profile(ctx context.Context, userID, field string) (*ProfileResponse, error) {
	if err := checkUserID("userId", userID); err != nil {
		return nil, err
	}
	if field != "" && field != FieldDisplayName && field != FieldAvatarURL {
		return nil, matrixerr.InvalidParam("unknown profile field %q", field)
	}
	var p storage.Profile
	if s.isLocal(userID) {
		var err error
		p, err = s.cfg.Store.Profile(ctx, userID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, matrixerr.NotFound("no user %s", userID)
		}
		if err != nil {
			return nil, fmt.Errorf("reading profile of %s: %w", userID, err)
		}
	} else {
		if s.cfg.Remote == nil {
			return nil, matrixerr.NotFound("profile of %s: this server does not reach other servers (no federation)", userID)
		}
		var err error
		p, err = s.cfg.Remote.Profile(ctx, userID, field)
		if err != nil {
			if me := matrixerr.As(err); me != nil {
				return nil, me
			}
			return nil, matrixerr.NotFound("profile of %s: %v", userID, err)
		}
	}
	out := &ProfileResponse{DisplayName: p.DisplayName, AvatarURL: p.AvatarURL}
	switch field {
	case FieldDisplayName:
		out.AvatarURL = ""
	case FieldAvatarURL:
		out.DisplayName = ""
	}
	return out, nil
}

// SetProfileRequest is the body of PUT /profile/{userId}/{field}.
type SetProfileRequest struct {
	DisplayName *string `json:"displayname"`
	AvatarURL   *string `json:"avatar_url"`
}

// SetProfileField sets the caller's display name or avatar URL (PUT
// /profile/{userId}/displayname, .../avatar_url): only callerID's own
// profile (else 403 M_FORBIDDEN). The body must hold the field (400
// M_MISSING_PARAM); "" clears it. Display names are at most 256 bytes;
// avatar URLs mxc:// URIs of at most 1000 bytes. MLS rooms carry no member
// events, so nothing is sent into rooms.
func (s *Service) SetProfileField(ctx context.Context, callerID, userID, field string, req SetProfileRequest) error {
	if err := checkUserID("userId", userID); err != nil {
		return err
	}
	if userID != callerID {
		return matrixerr.Forbidden("you may only change your own profile")
	}
	var err error
	switch field {
	case FieldDisplayName:
		if req.DisplayName == nil {
			return matrixerr.MissingParam("displayname is required")
		}
		if len(*req.DisplayName) > maxDisplayName {
			return matrixerr.InvalidParam("displayname: over %d bytes", maxDisplayName)
		}
		err = s.cfg.Store.SetDisplayName(ctx, userID, *req.DisplayName)
	case FieldAvatarURL:
		if req.AvatarURL == nil {
			return matrixerr.MissingParam("avatar_url is required")
		}
		u := *req.AvatarURL
		if len(u) > maxAvatarURL {
			return matrixerr.InvalidParam("avatar_url: over %d bytes", maxAvatarURL)
		}
		if u != "" && !strings.HasPrefix(u, "mxc://") {
			return matrixerr.InvalidParam("avatar_url: %q is not an mxc:// URI", u)
		}
		err = s.cfg.Store.SetAvatarURL(ctx, userID, u)
	default:
		return matrixerr.InvalidParam("unknown profile field %q", field)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return matrixerr.NotFound("no user %s", userID)
	}
	if err != nil {
		return fmt.Errorf("setting %s of %s: %w", field, userID, err)
	}
	return nil
}

// FilterResponse is the answer of POST /user/{userId}/filter.
type FilterResponse struct {
	FilterID string `json:"filter_id"`
}

// maxFilterBytes limits a stored filter.
const maxFilterBytes = 64 << 10

// StoreFilter stores a /sync filter for callerID (POST
// /user/{userId}/filter): only one's own (403 M_FORBIDDEN); the body must
// be a JSON object (400 M_NOT_JSON / M_BAD_JSON), at most 64 KiB. It is
// kept as given.
func (s *Service) StoreFilter(ctx context.Context, callerID, userID string, filter []byte) (*FilterResponse, error) {
	if err := checkUserID("userId", userID); err != nil {
		return nil, err
	}
	if userID != callerID {
		return nil, matrixerr.Forbidden("you may only create filters for yourself")
	}
	if len(filter) > maxFilterBytes {
		return nil, matrixerr.TooLarge("filter over %d bytes", maxFilterBytes)
	}
	if !json.Valid(filter) {
		return nil, matrixerr.NotJSON("filter is not valid JSON")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(filter, &obj); err != nil {
		return nil, matrixerr.BadJSON("filter must be a JSON object")
	}
	id, err := s.cfg.Store.StoreFilter(ctx, userID, filter)
	if err != nil {
		return nil, fmt.Errorf("storing filter of %s: %w", userID, err)
	}
	return &FilterResponse{FilterID: id}, nil
}

// Filter returns one of callerID's filters (GET
// /user/{userId}/filter/{filterId}): another user's is 403 M_FORBIDDEN,
// an unknown one 404 M_NOT_FOUND.
func (s *Service) Filter(ctx context.Context, callerID, userID, filterID string) (json.RawMessage, error) {
	if err := checkUserID("userId", userID); err != nil {
		return nil, err
	}
	if userID != callerID {
		return nil, matrixerr.Forbidden("you may only read your own filters")
	}
	f, err := s.cfg.Store.Filter(ctx, userID, filterID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, matrixerr.NotFound("no filter %q", filterID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading filter %s of %s: %w", filterID, userID, err)
	}
	return json.RawMessage(f), nil
}
