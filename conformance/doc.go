// Package conformance is a black-box conformance suite for MLS-mode
// Matrix homeservers (room version m.mls.1 as SPEC-NOTES reads it): a
// library of checks that talk to the server under test only over HTTP
// (the client API and, acting as other homeservers with their own signing
// keys and TLS listener, the federation API), a runner that records each
// check's result, and a summary per section. `go test ./conformance/...`
// runs every check against our mlsserver started in the test's process,
// or against any server named by MLSMODE_CONFORMANCE_CLIENT_URL,
// MLSMODE_CONFORMANCE_FEDERATION_URL and MLSMODE_CONFORMANCE_SERVER_NAME;
// docs/CONFORMANCE.md says what is checked and how to run it.
package conformance
