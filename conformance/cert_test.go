package conformance_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/mlsmode/mlsmode/conformance"
)

// TestSuiteCertificate writes the suite's certificate into
// MLSMODE_CONFORMANCE_SUITE_TLS_DIR (or a temporary directory), as an
// operator does once before configuring the server under test to trust
// it, and checks that it names the suite's servers and is kept across
// runs.
func TestSuiteCertificate(t *testing.T) {
	dir := os.Getenv(conformance.EnvSuiteTLS)
	if dir == "" {
		dir = t.TempDir()
	}
	certFile, keyFile, err := conformance.SuiteCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{conformance.SuiteNameA, conformance.SuiteNameB, conformance.SuiteNameD, "127.0.0.1"} {
		if err := cert.VerifyHostname(n); err != nil {
			t.Errorf("the suite's certificate: %v", err)
		}
	}
	again, _, err := conformance.SuiteCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(certFile)
	b2, _ := os.ReadFile(again)
	if string(b1) != string(b2) {
		t.Error("a second call made a new certificate; the server under test trusts the first")
	}
	t.Logf("the suite's certificate: %s", certFile)
}
