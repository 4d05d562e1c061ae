// Package mls is the project's own implementation of MLS, RFC 9420. It owns
// the protocol and nothing of Matrix beyond the credential identity MSC4256
// puts in a BasicCredential (MatrixIdentity).
//
// What it offers today:
//
//   - Every RFC 9420 structure as a Go type with explicit, strict TLS
//     presentation-language encoding (MarshalMLS) and decoding (UnmarshalMLS):
//     decoding rejects truncated input, trailing bytes, non-minimal length
//     prefixes and out-of-range enum values with a *DecodeError naming the
//     field, and re-encoding a decoded value gives back the same bytes.
//   - A header-only view for servers (ParseHeader, Header.Parse): wire
//     format, group, epoch, content type and authenticated data of a
//     PrivateMessage, read in place without decrypting or allocating.
//   - Cipher suites 1, 2, 3, 5, 7 and 83 (X-Wing), on the standard library:
//     Signer, VerifyWithLabel, RefHash.
//   - The key schedule (KeySchedule, KeyScheduleFromJoiner, EpochSecrets with
//     the exporter), PSK secrets for external and resumption PSKs
//     (PSKSecret), and the transcript hashes and confirmation tag.
//   - Message protection for one epoch (EpochKeys): PublicMessage with
//     signature and membership tag, PrivateMessage with sender-data
//     encryption, reuse guard, padding, and a secret tree whose per-sender
//     ratchets accept messages out of order within a window and delete every
//     key once used.
//   - KeyPackage generation (NewKeyPackage), KeyPackageRef, and validation
//     as RFC 9420 §10.1 and §7.3 ask of a KeyPackage before use
//     (KeyPackage.Validate).
//
// The ratchet tree, TreeKEM and the group state machine build on these.
//
// Errors name what was being done; decoding errors are *DecodeError values,
// whose Field says which field was wrong.
package mls
