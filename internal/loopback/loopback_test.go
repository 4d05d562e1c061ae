package loopback

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// The link proxy forwards while unblocked; Block closes the connection in
// flight and refuses new ones; Unblock forwards again.
func TestLinkProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	l, err := StartLinkProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echo := func(c net.Conn, msg string) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echoed %q, want %q", buf, msg)
		}
		return nil
	}
	c1, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := echo(c1, "before"); err != nil {
		t.Fatalf("unblocked link: %v", err)
	}
	l.SetBlocked(true)
	// The open connection is cut (not left hanging till the deadline).
	_ = c1.SetDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := c1.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection open at Block was not closed: read %v", err)
	}
	// A new connection is accepted by the listener, then closed unused.
	c2, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := echo(c2, "during"); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a connection made while blocked was not closed: %v", err)
	}
	l.SetBlocked(false)
	c3, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := echo(c3, "after"); err != nil {
		t.Fatalf("after Unblock: %v", err)
	}
	if acc, ref := l.Counts(); acc < 2 || ref != 1 {
		t.Errorf("proxy counted %d connections forwarded (want at least 2: 2 in, 2 out), %d refused (want 1)", acc, ref)
	}
}

// WriteCert's certificate serves TLS for its names (the pool it returns
// trusts it), and FreeAddr's address can be listened on.
func TestWriteCert(t *testing.T) {
	certFile, keyFile, pool, err := WriteCert(t.TempDir(), time.Hour, "a.test", "b.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	for _, name := range []string{"b.test", "c.test"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12})
		if name == "c.test" {
			if err == nil {
				c.Close()
				t.Fatal("the certificate was accepted for a name it does not hold")
			}
			continue
		}
		if err != nil {
			t.Fatalf("TLS to %s: %v", name, err)
		}
		c.Close()
	}
}
