// Package roomversion owns the MLS room versions of MSC4256, m.mls.1 and
// its unstable twin de.bwi.mls.v1 (SPEC-NOTES §1, §2): their names, the
// event format, and everything about an event that can be checked without
// other events.
//
// What it offers:
//
//   - Version (V1, V1Unstable): the names of SPEC-NOTES §1 (commit and
//     pending commit types, algorithm prefix, welcome type, credential
//     prefix), the accepted algorithms (prefix + cipher suite 1, 2, 3 or 83),
//     and an implementation of gomatrixserverlib.IRoomVersion. Register
//     makes both versions known to gomatrixserverlib.
//   - Event, implementing gomatrixserverlib.PDU for MLS events, which have
//     an origin but no sender and no depth, plus what the auth rules need:
//     the kind of event, the parsed MLS header (group, epoch, content type,
//     authenticated data), the algorithm and cipher suite, the decoded
//     federation map of commits and pending commits (package fedmap), the
//     create event's content.
//   - Parse: untrusted event JSON to a checked Event (canonical-JSON values,
//     field types, allowed types and state keys, size limits, content hash,
//     MLS framing, create content), with the event ID computed as a
//     reference hash. Errors are *Error values with a machine-readable Kind
//     and the offending field.
//   - VerifySignature: the origin's signature, through
//     gomatrixserverlib.VerifyJSON, with keys from a KeyFetcher.
//   - Builder: builds, hashes and signs new events.
//   - RedactJSON: the redaction algorithm of SPEC-NOTES §2, used for the
//     reference hash and signing (MLS rooms do not support redaction
//     events).
//
// The auth rules, state resolution and storage live in other packages.
// Package state is limited to Register's entries in gomatrixserverlib.
package roomversion
