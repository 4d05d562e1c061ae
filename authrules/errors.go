package authrules

import "strings"

// Error is a rejection by the auth rules: Rule names the rule that failed
// and Reason says, for people, what was wrong. Use errors.As to read it:
//
//	var ae *authrules.Error
//	if errors.As(err, &ae) && ae.Rule == "9.9" { ... }
//
// Rule is one of "1", "2", "3.1" to "3.5", "4.1" to "4.4", "5", "6", "7",
// "8", "9.1" to "9.10", "10.1" to "10.7", "11" (the numbering of MSC4256's
// "Authorization Rules"), or "chain" (the chain rule of SPEC-NOTES §4).
type Error struct {
	// Rule is the number of the rule that rejected the event.
	Rule string
	// Reason says what was wrong.
	Reason string
	// Err is the underlying error, if any: the *roomversion.Error of a
	// ParseEvent rejection, the *fedmap.DecodeError of a federation map
	// that does not decode.
	Err error
}

// Error returns "auth rule <rule>: <reason>".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Rule == RuleChain {
		b.WriteString("auth rules: chain rule: ")
	} else {
		b.WriteString("auth rule ")
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// RuleChain is the Rule of a rejection by the chain rule (SPEC-NOTES §4).
const RuleChain = "chain"

// reject returns an *Error for rule with the given reason.
func reject(rule, reason string) *Error { return &Error{Rule: rule, Reason: reason} }

// SoftFail says that an event which passed the auth rules is soft-failed
// (SPEC-NOTES §4): stored, but never used as a forward extremity or prev
// event, and not delivered to clients (except messages soft-failed under
// (c), delivered with unsigned["de.bwi.mls.lost_fork"]).
type SoftFail struct {
	// Case is "a" (an event extending the room from a server no longer in
	// servers of the current commit, or failing rule 5), "b" (a replayed
	// ciphertext) or "c" (an event on a fork that would lose state
	// resolution).
	Case string
	// Reason says why, for people.
	Reason string
}

// String returns "soft-fail (<case>): <reason>".
func (s *SoftFail) String() string { return "soft-fail (" + s.Case + "): " + s.Reason }

// Soft-fail cases.
const (
	SoftFailA = "a"
	SoftFailB = "b"
	SoftFailC = "c"
)
