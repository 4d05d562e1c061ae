package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/mlsmode/mlsmode/client"
)

// explain says an error in words a person can act on, keeping the
// library's own message for the details.
func explain(err error) string {
	var ve *client.VerificationError
	if errors.As(err, &ve) {
		s := fmt.Sprintf("cannot add device %s of %s: the room requires %s and %s.", ve.DeviceID, ve.UserID, ve.Required, ve.Reason)
		switch ve.Required {
		case client.VerifyCross:
			s += fmt.Sprintf(" Compare %s's fingerprint with them (mlschat fingerprint %s), then run mlschat verify %s FINGERPRINT; their devices must be cross-signed by them (mlschat cross-sign DEVICE on their first device).", ve.UserID, ve.UserID, ve.UserID)
		case client.VerifyTOFU:
			s += " Their keys changed since you first saw them: ask them why before trusting the new keys."
		}
		return s + " Nothing was changed in the room."
	}
	var me *client.Error
	if errors.As(err, &me) {
		var hint string
		switch me.Errcode {
		case "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN":
			hint = "the homeserver no longer accepts this device (logged out?); log in again with mlschat login"
		case "M_USER_IN_USE":
			hint = "that name is taken on this homeserver; choose another"
		case "M_FORBIDDEN":
			hint = "the homeserver refused"
		case "M_LIMIT_EXCEEDED":
			hint = "the homeserver says too many requests; wait a moment and try again"
		case client.ErrcodeWrongEpoch:
			hint = "the room moved on while this was being sent; try again"
		}
		if hint != "" {
			return fmt.Sprintf("%s (%v)", hint, err)
		}
	}
	switch {
	case errors.Is(err, client.ErrCommitLost):
		return "another member's change was accepted instead of yours, several times; try again (" + err.Error() + ")"
	case errors.Is(err, client.ErrPendingCommitExpired):
		return "your change was not applied by any of the room's ordering servers in time; it was given up (" + err.Error() + ")"
	}
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &ue) && errors.As(err, &oe) {
		return fmt.Sprintf("cannot reach the homeserver at %s: is it running? (%v)", strings.TrimSuffix(hostOf(ue.URL), "/"), oe.Err)
	}
	return err.Error()
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}
