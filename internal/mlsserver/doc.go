// Package mlsserver is the reference homeserver that cmd/mlsserver runs:
// its settings (flags and the YAML file of --config), the signing key, the
// clock settings, the wiring of storage, roomserver, userapi, clientapi,
// federation and the outbound sender, the client and federation
// listeners, GET /health and the graceful shutdown. It is a package of its
// own so that the conformance suite (package conformance) can start the
// server in its own process; docs/mlsserver.md describes the settings.
package mlsserver
