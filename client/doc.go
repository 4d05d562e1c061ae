// Package client holds the client side of MLS mode Matrix (MSC4256) that
// sits on top of package mls: the room state a group keeps in its
// GroupContext extension 0xF6D0 (SPEC-NOTES §10), the capabilities and
// required_capabilities that make every member support it, and the CBOR
// federation map clients put in the authenticated data of their commits
// (SPEC-NOTES §3).
package client
