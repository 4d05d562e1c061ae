package userapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlsmode/mlsmode/matrixerr"
	"github.com/mlsmode/mlsmode/storage"
)

// maxPasswordBytes is bcrypt's limit: longer passwords are refused rather
// than silently truncated.
const maxPasswordBytes = 72

// maxDisplayName limits device and profile display names (bytes).
const maxDisplayName = 256

// RegisterRequest is the body of POST /register (Kind comes from the
// query string).
type RegisterRequest struct {
	Username                 string    `json:"username"`
	Password                 string    `json:"password"`
	DeviceID                 string    `json:"device_id"`
	InitialDeviceDisplayName string    `json:"initial_device_display_name"`
	InhibitLogin             bool      `json:"inhibit_login"`
	Auth                     *AuthData `json:"auth"`
	// Kind is "user" (or "") or "guest" (refused).
	Kind string `json:"-"`
}

// RegisterResponse is the answer of POST /register; AccessToken and
// DeviceID are empty with inhibit_login.
type RegisterResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
}

// checkLocalpart applies the Matrix user ID grammar to a localpart
// registered here: [a-z0-9._=/+-], and the whole ID within 255 bytes.
func (s *Service) checkLocalpart(localpart string) error {
	if localpart == "" {
		return matrixerr.New(http.StatusBadRequest, matrixerr.CodeInvalidUsername, "username is empty")
	}
	for _, c := range localpart {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._=/+-", c)) {
			return matrixerr.New(http.StatusBadRequest, matrixerr.CodeInvalidUsername, "username %q: character %q not allowed (only a-z, 0-9 and ._=/+-)", localpart, c)
		}
	}
	if n := len("@" + localpart + ":" + s.cfg.ServerName); n > 255 {
		return matrixerr.New(http.StatusBadRequest, matrixerr.CodeInvalidUsername, "user ID would be %d bytes, over the 255 allowed", n)
	}
	return nil
}

func checkPassword(pw string) error {
	if pw == "" {
		return matrixerr.MissingParam("password is required")
	}
	if len(pw) > maxPasswordBytes {
		return matrixerr.InvalidParam("password is %d bytes, over the %d allowed", len(pw), maxPasswordBytes)
	}
	return nil
}

func checkDeviceID(id string) error {
	if len(id) > 255 || strings.ContainsAny(id, "\x00") {
		return matrixerr.InvalidParam("device_id: at most 255 bytes, no NUL")
	}
	return nil
}

// Register creates an account (POST /register) with the m.login.dummy
// flow: a request without auth gets the 401 UIA answer (*AuthRequired)
// after its parameters were checked; a request with auth.type
// m.login.dummy registers. The session is not checked (the dummy stage
// proves nothing, so a session would not either).
func (s *Service) Register(ctx context.Context, req RegisterRequest) (*RegisterResponse, error) {
	if s.cfg.RegistrationDisabled {
		return nil, matrixerr.Forbidden("registration is disabled on this server")
	}
	if req.Kind != "" && req.Kind != "user" {
		return nil, matrixerr.Forbidden("registration of kind %q is not supported (guest access is off)", req.Kind)
	}
	if req.Username == "" {
		// The Matrix spec lets the server choose a localpart.
		r, err := s.newDeviceID()
		if err != nil {
			return nil, err
		}
		req.Username = "u" + strings.ToLower(r)
	}
	if err := s.checkLocalpart(req.Username); err != nil {
		return nil, err
	}
	if err := checkPassword(req.Password); err != nil {
		return nil, err
	}
	if err := checkDeviceID(req.DeviceID); err != nil {
		return nil, err
	}
	if len(req.InitialDeviceDisplayName) > maxDisplayName {
		return nil, matrixerr.InvalidParam("initial_device_display_name: over %d bytes", maxDisplayName)
	}
	userID := "@" + req.Username + ":" + s.cfg.ServerName
	if _, err := s.cfg.Store.User(ctx, userID); err == nil {
		return nil, matrixerr.New(http.StatusBadRequest, matrixerr.CodeUserInUse, "user ID %s is taken", userID)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("looking up user %s: %w", userID, err)
	}
	if req.Auth == nil {
		return nil, s.authRequired(LoginDummy, "", "")
	}
	if req.Auth.Type != LoginDummy {
		return nil, s.authRequired(LoginDummy, matrixerr.CodeUnrecognized, fmt.Sprintf("auth type %q is not offered; use %s", req.Auth.Type, LoginDummy))
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), s.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("hashing password: %w", err)
	}
	err = s.cfg.Store.CreateUser(ctx, storage.User{UserID: userID, PasswordHash: string(hash), CreatedTS: s.nowMS()})
	if errors.Is(err, storage.ErrConflict) {
		return nil, matrixerr.New(http.StatusBadRequest, matrixerr.CodeUserInUse, "user ID %s is taken", userID)
	}
	if err != nil {
		return nil, fmt.Errorf("creating user %s: %w", userID, err)
	}
	resp := &RegisterResponse{UserID: userID}
	if req.InhibitLogin {
		return resp, nil
	}
	resp.DeviceID, resp.AccessToken, err = s.newSession(ctx, userID, req.DeviceID, req.InitialDeviceDisplayName)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// newSession stores a device (a new one when deviceID is "", else that
// one, keeping its display name unless displayName is set) and a new
// access token for it. Before storing the token it deletes the device's
// older ones (an existing device's: as the Matrix spec says of POST
// /login, the server invalidates any access token previously associated
// with the device; its keys, key packages and inbox stay).
func (s *Service) newSession(ctx context.Context, userID, deviceID, displayName string) (string, string, error) {
	if deviceID == "" {
		var err error
		if deviceID, err = s.newDeviceID(); err != nil {
			return "", "", err
		}
	} else if displayName == "" {
		devs, err := s.cfg.Store.Devices(ctx, userID)
		if err != nil {
			return "", "", fmt.Errorf("listing devices of %s: %w", userID, err)
		}
		for _, d := range devs {
			if d.DeviceID == deviceID {
				displayName = d.DisplayName
			}
		}
	}
	if err := s.cfg.Store.StoreDevice(ctx, storage.Device{UserID: userID, DeviceID: deviceID, DisplayName: displayName, CreatedTS: s.nowMS()}); err != nil {
		return "", "", fmt.Errorf("storing device %s of %s: %w", deviceID, userID, err)
	}
	if err := s.cfg.Store.DeleteAccessTokens(ctx, userID, deviceID); err != nil {
		return "", "", fmt.Errorf("invalidating the access tokens of %s/%s: %w", userID, deviceID, err)
	}
	token, err := s.newAccessToken()
	if err != nil {
		return "", "", err
	}
	if err := s.cfg.Store.StoreAccessToken(ctx, token, userID, deviceID, s.nowMS()); err != nil {
		return "", "", fmt.Errorf("storing access token of %s/%s: %w", userID, deviceID, err)
	}
	s.notify(ctx, userID)
	return deviceID, token, nil
}

// LoginFlows is the answer of GET /login.
type LoginFlows struct {
	Flows []LoginFlow `json:"flows"`
}

// LoginFlow is one login type.
type LoginFlow struct {
	Type string `json:"type"`
}

// LoginFlows lists the login types: only m.login.password.
func (s *Service) LoginFlows() LoginFlows {
	return LoginFlows{Flows: []LoginFlow{{Type: LoginPassword}}}
}

// LoginRequest is the body of POST /login.
type LoginRequest struct {
	Type                     string      `json:"type"`
	Identifier               *Identifier `json:"identifier"`
	User                     string      `json:"user"`
	Password                 string      `json:"password"`
	DeviceID                 string      `json:"device_id"`
	InitialDeviceDisplayName string      `json:"initial_device_display_name"`
}

// LoginResponse is the answer of POST /login.
type LoginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
	HomeServer  string `json:"home_server"`
}

// Login logs in with m.login.password (identifier m.id.user, or the legacy
// top-level user): a new device, or device_id's (which keeps its keys;
// its older access tokens stop working, as the Matrix spec says), with a
// new access token. A wrong user or password is 403 M_FORBIDDEN.
func (s *Service) Login(ctx context.Context, req LoginRequest) (*LoginResponse, error) {
	if req.Type != LoginPassword {
		return nil, matrixerr.New(http.StatusBadRequest, matrixerr.CodeUnknown, "login type %q is not supported; use %s", req.Type, LoginPassword)
	}
	if err := checkDeviceID(req.DeviceID); err != nil {
		return nil, err
	}
	if len(req.InitialDeviceDisplayName) > maxDisplayName {
		return nil, matrixerr.InvalidParam("initial_device_display_name: over %d bytes", maxDisplayName)
	}
	user, err := s.loginUser(req.Identifier, req.User)
	if err != nil {
		return nil, err
	}
	if err := s.checkUserPassword(ctx, user, req.Password); err != nil {
		return nil, err
	}
	deviceID, token, err := s.newSession(ctx, user, req.DeviceID, req.InitialDeviceDisplayName)
	if err != nil {
		return nil, err
	}
	return &LoginResponse{UserID: user, AccessToken: token, DeviceID: deviceID, HomeServer: s.cfg.ServerName}, nil
}

// loginUser returns the user ID an identifier (or legacy user field)
// names: a full user ID or a localpart of this server.
func (s *Service) loginUser(id *Identifier, legacy string) (string, error) {
	user := legacy
	if id != nil {
		if id.Type != IDUser {
			return "", matrixerr.New(http.StatusBadRequest, matrixerr.CodeUnknown, "identifier type %q is not supported; use %s", id.Type, IDUser)
		}
		user = id.User
	}
	if user == "" {
		return "", matrixerr.MissingParam("identifier.user is required")
	}
	if !strings.HasPrefix(user, "@") {
		user = "@" + strings.ToLower(user) + ":" + s.cfg.ServerName
	}
	return user, nil
}

// checkUserPassword compares a password with a local user's hash; any
// mismatch (unknown or remote user included) is 403 M_FORBIDDEN, after the
// same bcrypt work.
func (s *Service) checkUserPassword(ctx context.Context, userID, password string) error {
	s.dummyOnce.Do(func() {
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte("dummy password"), s.cfg.BcryptCost)
	})
	hash := s.dummyHash
	known := false
	if s.isLocal(userID) {
		u, err := s.cfg.Store.User(ctx, userID)
		switch {
		case err == nil && u.PasswordHash != "":
			hash, known = []byte(u.PasswordHash), true
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("looking up user %s: %w", userID, err)
		}
	}
	pw := password
	if len(pw) > maxPasswordBytes {
		pw, known = "", false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil || !known {
		return matrixerr.Forbidden("invalid user or password")
	}
	return nil
}

// Logout ends a session (POST /logout): as the Matrix spec says, the
// device goes with its access token, keys, key packages and to-device
// inbox. The other servers sharing a room with the user are told first
// (Remote.DeviceListUpdate); if that fails, nothing is deleted and the
// call fails, so the client retries.
func (s *Service) Logout(ctx context.Context, userID, deviceID string) error {
	if err := s.deviceListUpdate(ctx, userID, deviceID, true, nil); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteDevice(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting device %s of %s: %w", deviceID, userID, err)
	}
	s.notify(ctx, userID)
	return nil
}

// LogoutAll ends every session of a user (POST /logout/all): all devices
// go, each announced to other servers first as in Logout.
func (s *Service) LogoutAll(ctx context.Context, userID string) error {
	devs, err := s.cfg.Store.Devices(ctx, userID)
	if err != nil {
		return fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	for _, d := range devs {
		if err := s.deviceListUpdate(ctx, userID, d.DeviceID, true, nil); err != nil {
			return err
		}
		if err := s.cfg.Store.DeleteDevice(ctx, userID, d.DeviceID); err != nil {
			return fmt.Errorf("deleting device %s of %s: %w", d.DeviceID, userID, err)
		}
	}
	s.notify(ctx, userID)
	return nil
}

// WhoamiResponse is the answer of GET /account/whoami.
type WhoamiResponse struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	IsGuest  bool   `json:"is_guest"`
}

// Whoami names the caller.
func (s *Service) Whoami(userID, deviceID string) WhoamiResponse {
	return WhoamiResponse{UserID: userID, DeviceID: deviceID}
}

// DeviceInfo is one device in GET /devices.
type DeviceInfo struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
}

// DevicesResponse is the answer of GET /devices.
type DevicesResponse struct {
	Devices []DeviceInfo `json:"devices"`
}

// Devices lists the caller's devices.
func (s *Service) Devices(ctx context.Context, userID string) (*DevicesResponse, error) {
	devs, err := s.cfg.Store.Devices(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	out := &DevicesResponse{Devices: make([]DeviceInfo, 0, len(devs))}
	for _, d := range devs {
		out.Devices = append(out.Devices, DeviceInfo{DeviceID: d.DeviceID, DisplayName: d.DisplayName})
	}
	return out, nil
}

// device returns one of a user's devices, 404 M_NOT_FOUND if it has none
// of that ID.
func (s *Service) device(ctx context.Context, userID, deviceID string) (storage.Device, error) {
	devs, err := s.cfg.Store.Devices(ctx, userID)
	if err != nil {
		return storage.Device{}, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	for _, d := range devs {
		if d.DeviceID == deviceID {
			return d, nil
		}
	}
	return storage.Device{}, matrixerr.NotFound("no device %q", deviceID)
}

// Device returns one of the caller's devices (GET /devices/{deviceId}).
func (s *Service) Device(ctx context.Context, userID, deviceID string) (*DeviceInfo, error) {
	d, err := s.device(ctx, userID, deviceID)
	if err != nil {
		return nil, err
	}
	return &DeviceInfo{DeviceID: d.DeviceID, DisplayName: d.DisplayName}, nil
}

// UpdateDeviceRequest is the body of PUT /devices/{deviceId}.
type UpdateDeviceRequest struct {
	DisplayName *string `json:"display_name"`
}

// UpdateDevice sets a device's display name (PUT /devices/{deviceId}).
func (s *Service) UpdateDevice(ctx context.Context, userID, deviceID string, req UpdateDeviceRequest) error {
	d, err := s.device(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	if req.DisplayName == nil {
		return nil
	}
	if len(*req.DisplayName) > maxDisplayName {
		return matrixerr.InvalidParam("display_name: over %d bytes", maxDisplayName)
	}
	d.DisplayName = *req.DisplayName
	if err := s.cfg.Store.StoreDevice(ctx, d); err != nil {
		return fmt.Errorf("storing device %s of %s: %w", deviceID, userID, err)
	}
	s.notify(ctx, userID)
	return nil
}

// DeleteDeviceRequest is the body of DELETE /devices/{deviceId}.
type DeleteDeviceRequest struct {
	Auth *AuthData `json:"auth"`
}

// DeleteDevice deletes one of the caller's devices with its tokens, keys,
// key packages and to-device inbox (DELETE /devices/{deviceId}). The
// Matrix spec lets the server require user-interactive authentication;
// this server accepts the request without "auth" (the access token
// suffices) and, when "auth" is given, checks it: m.login.password with
// the caller's password, else 401 with the m.login.password flow (403-like
// errcode M_FORBIDDEN inside the 401 for a wrong password). As in Logout,
// other servers are told of the deletion before it happens.
func (s *Service) DeleteDevice(ctx context.Context, userID, deviceID string, req DeleteDeviceRequest) error {
	if _, err := s.device(ctx, userID, deviceID); err != nil {
		return err
	}
	if req.Auth != nil {
		if err := s.passwordAuth(ctx, userID, req.Auth); err != nil {
			return err
		}
	}
	if err := s.deviceListUpdate(ctx, userID, deviceID, true, nil); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteDevice(ctx, userID, deviceID); err != nil {
		return fmt.Errorf("deleting device %s of %s: %w", deviceID, userID, err)
	}
	s.notify(ctx, userID)
	return nil
}
