// Package client is a Go client of MLS mode Matrix (MSC4256) over the
// client-server API and package mls: one device of one user with its
// account, device keys and key packages (refilled from /sync counts),
// cross-signing and the room's security.required_verification enforced
// before any add, rooms (create, invite, join from the Welcome, remove,
// leave, encrypted room state in GroupContext extension 0xF6D0, messages),
// commits staged and merged only when they come back in /sync, rollback to
// a kept state within security.window when another commit wins, reports
// of messages it cannot decrypt and of rooms it cannot follow, and its
// state in a Store (memory, or an SQLite file that survives restarts).
//
// It also holds the pieces other clients reuse: the room state format of
// 0xF6D0 (SPEC-NOTES §10), the capabilities and required_capabilities that
// make every member support it, and the CBOR federation map clients put
// in the authenticated data of their commits (SPEC-NOTES §3).
package client
