// Package e2e runs the built mlsserver binary as separate processes. Its
// tests need the e2e build tag, so that go test ./... skips them:
//
//	go test -tags e2e ./e2e/...
//
// The tests of processes sharing one database need a PostgreSQL server
// (MLSMODE_TEST_POSTGRES, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); each makes a
// fresh schema and drops it. The federation test runs two servers with
// their own SQLite databases and a self-signed certificate made by the
// test. The federation harness (fedharness_test.go) runs several servers
// with such a certificate, each link between two of them through a TCP
// proxy the test can cut, processes it can stop, kill and restart on their
// data dirs, and one virtual clock (--clock-speed, --clock-start) so that
// the commit queue's 5-minute windows take seconds. Their MLS clients are
// internal/testclient.
package e2e
