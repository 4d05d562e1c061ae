// Package e2e runs the built mlsserver binary as separate processes. Its
// tests need the e2e build tag, so that go test ./... skips them:
//
//	go test -tags e2e ./e2e/...
//
// They need a PostgreSQL server (MLSMODE_TEST_POSTGRES, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); each test makes
// a fresh schema and drops it. Their MLS clients are internal/testclient.
package e2e
