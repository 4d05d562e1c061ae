// Package interop proves that members built on independent MLS
// implementations work with our running mlsserver, next to our own
// clients. Its tests need the interop build tag, so that go test ./...
// skips them; make interop installs the Node side and runs them:
//
//	(cd interop/ts-mls && npm ci) && go test -tags interop ./interop/...
//
// TestTSMLS runs, for each cipher suite both implementations share (1, 2,
// 3 and 83), one room story with a member built on ts-mls (a Node process,
// interop/ts-mls/peer.mjs, driven step by step over JSON lines) and members
// of our own client on one server; TestTSMLSFederated runs its pending
// commit across two federating servers. TestMLSGo runs the same story with
// github.com/thomas-vilte/mls-go as far as that library allows (suite 1)
// and asserts where it stops. docs/INTEROP.md describes both.
package interop
