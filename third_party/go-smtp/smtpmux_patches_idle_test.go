package smtp_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpmux patch 14: an idle connection waits for its next command without
// a command buffer (idle.go). These pin that the wait changes nothing a
// client sees: a command cut anywhere, one longer than the wait's own
// buffer, pipelined commands, a timeout, and input sent with STARTTLS.

// TestServerIdleWaitReadsCommandsWhole: commands arriving in pieces, longer
// than the idle read, or pipelined are each answered once, in order.
func TestServerIdleWaitReadsCommandsWhole(t *testing.T) {
	be, s, c, scanner, _ := testServerEhlo(t)
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	expect := func(what, prefix string) {
		t.Helper()
		if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), prefix) {
			t.Fatalf("%s: reply %q (%v), want %s…", what, scanner.Text(), scanner.Err(), prefix)
		}
	}

	// A command in three pieces: the idle wait gets the first only.
	for _, piece := range []string{"NO", "O", "P\r\n"} {
		io.WriteString(c, piece)
		time.Sleep(20 * time.Millisecond) // let each piece arrive alone (not synchronisation: any split must work)
	}
	expect("NOOP in pieces", "250 ")

	// Longer than the idle read's 128 bytes.
	long := strings.Repeat("x", 300) + "@example.org"
	io.WriteString(c, "MAIL FROM:<"+long+">\r\n")
	expect("300-byte MAIL", "250 ")

	// Pipelined, one write: all answered, in order.
	io.WriteString(c, "RCPT TO:<a@example.org>\r\nNOOP\r\nRSET\r\nNOOP\r\n")
	for _, what := range []string{"RCPT", "NOOP", "RSET", "NOOP"} {
		expect(what, "250 ")
	}
	if len(be.messages)+len(be.anonmsgs) != 0 {
		t.Fatal("a message was stored")
	}
}

// TestServerIdleWaitTimeout: a client silent past ReadTimeout gets the
// 421 it got before the patch, and the connection closes.
func TestServerIdleWaitTimeout(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.ReadTimeout = 200 * time.Millisecond })
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var replies []string
	for scanner.Scan() {
		replies = append(replies, scanner.Text())
	}
	if len(replies) != 1 || !strings.HasPrefix(replies[0], "421 4.4.2") {
		t.Fatalf("silent client: replies %q, want one 421 4.4.2 and the connection closed", replies)
	}
}

// TestServerStartTLSDropsPlaintextInput: commands sent in plaintext with
// STARTTLS (in the same write) are not run inside the TLS session
// (CVE-2011-0411): the bytes the idle wait read go with the old reader.
func TestServerStartTLSDropsPlaintextInput(t *testing.T) {
	cfg := testTLSConfig(t)
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.TLSConfig = cfg })
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
	if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "220 ") {
		t.Fatalf("STARTTLS: %q", scanner.Text())
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Were the MAIL run after the handshake, this RCPT would be accepted
	// and its reply preceded by MAIL's.
	io.WriteString(tc, "RCPT TO:<a@example.org>\r\n")
	r := bufio.NewReader(tc)
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, "502 5.5.1") {
		t.Fatalf("first reply inside TLS: %q, want 502 5.5.1 (no MAIL was given in TLS)", line)
	}
}

// testTLSConfig is a server config with a throwaway self-signed key.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
