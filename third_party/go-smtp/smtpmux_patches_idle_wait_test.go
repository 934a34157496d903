package smtp_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpmux patch 16: between transactions a connection waits on its socket
// (idle_wait.go), asking crypto/tls first for input it already holds.
// These pin what a TLS client sees: records that arrived together are all
// answered, the read deadline still applies, and a wait that outlasts the
// (restored) deadline is not cut short.

// coalescingConn holds its writes until flush, so that two TLS records
// reach the server in one segment and one socket read.
type coalescingConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	hold    bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *coalescingConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	_, err := c.Conn.Write(c.pending)
	c.pending = nil
	return err
}

// tlsSession is a client past STARTTLS and EHLO on a fresh test server.
func tlsSession(t *testing.T, fn ...serverConfigureFunc) (*coalescingConn, *tls.Conn, *bufio.Reader) {
	t.Helper()
	cfg := testTLSConfig(t)
	_, s, c, scanner, _ := testServerEhlo(t, append([]serverConfigureFunc{func(s *smtp.Server) { s.TLSConfig = cfg }}, fn...)...)
	t.Cleanup(func() { c.Close(); s.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "STARTTLS\r\n")
	if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "220 ") {
		t.Fatalf("STARTTLS: %q", scanner.Text())
	}
	cc := &coalescingConn{Conn: c}
	tc := tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(tc)
	io.WriteString(tc, "EHLO localhost\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("EHLO in TLS: %v", err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	return cc, tc, r
}

func expectReply(t *testing.T, r *bufio.Reader, what, prefix string) {
	t.Helper()
	line, err := r.ReadString('\n')
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("%s: reply %q (%v), want %s…", what, line, err, prefix)
	}
}

// TestServerIdleWaitTLSRecordsTogether: two commands in two TLS records
// that arrive in one segment are both answered. crypto/tls reads both from
// the socket with the first; a wait on the socket alone would never see
// the second (the client then gets a 421 at ReadTimeout instead).
func TestServerIdleWaitTLSRecordsTogether(t *testing.T) {
	cc, tc, r := tlsSession(t, func(s *smtp.Server) { s.ReadTimeout = 5 * time.Second })
	cc.mu.Lock()
	cc.hold = true
	cc.mu.Unlock()
	io.WriteString(tc, "NOOP\r\n") // a record of its own
	io.WriteString(tc, "RSET\r\n") // and another
	if err := cc.flush(); err != nil {
		t.Fatal(err)
	}
	expectReply(t, r, "NOOP (first record)", "250 ")
	expectReply(t, r, "RSET (second record, already read by crypto/tls)", "250 ")

	// The deadline the probe moved is back: a command sent once the
	// server waits on its socket again is answered, not timed out.
	waiting := make(chan struct{}, 1)
	smtp.SetIdleWaitHook(func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})
	defer smtp.SetIdleWaitHook(nil)
	io.WriteString(tc, "NOOP\r\n")
	expectReply(t, r, "NOOP", "250 ")
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never waited on its socket")
	}
	io.WriteString(tc, "NOOP\r\n")
	expectReply(t, r, "NOOP after a pause", "250 ")

	// Inside a transaction the wait reads through crypto/tls as before.
	io.WriteString(tc, "MAIL FROM:<a@example.org>\r\n")
	expectReply(t, r, "MAIL", "250 ")
	cc.mu.Lock()
	cc.hold = true
	cc.mu.Unlock()
	io.WriteString(tc, "RCPT TO:<b@example.org>\r\n")
	io.WriteString(tc, "RSET\r\n")
	cc.flush()
	expectReply(t, r, "RCPT", "250 ")
	expectReply(t, r, "RSET", "250 ")
	io.WriteString(tc, "NOOP\r\n")
	expectReply(t, r, "NOOP after the transaction", "250 ")
}

// TestServerIdleWaitTLSTimeout: a TLS client silent past ReadTimeout gets
// the 421 a plain one gets, from the socket wait's own deadline.
func TestServerIdleWaitTLSTimeout(t *testing.T) {
	_, _, r := tlsSession(t, func(s *smtp.Server) { s.ReadTimeout = 200 * time.Millisecond })
	expectReply(t, r, "silence", "421 4.4.2")
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("after the 421: %q, want the connection closed", line)
	}
}

// BenchmarkIdleWaitTLS is a NOOP round trip over TLS on loopback: between
// transactions (the socket wait, with its deadline probe and peek) and
// inside one (the read through crypto/tls as before patch 16). The
// difference is what the shallow wait costs per message.
func BenchmarkIdleWaitTLS(b *testing.B) {
	for _, inTx := range []bool{false, true} {
		name := "between"
		if inTx {
			name = "in-transaction"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			_, tc, r := tlsSession(t, func(s *smtp.Server) { s.ReadTimeout = time.Minute })
			if inTx {
				io.WriteString(tc, "MAIL FROM:<a@example.org>\r\n")
				r.ReadString('\n')
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				io.WriteString(tc, "NOOP\r\n")
				if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "250 ") {
					b.Fatalf("NOOP: %q %v", line, err)
				}
			}
		})
	}
}

// TestServerStartTLSFailedHandshakeCloses (patch 18): after a failed
// handshake the server closes the connection; it does not answer in plain
// text and carry on with the session.
func TestServerStartTLSFailedHandshakeCloses(t *testing.T) {
	cfg := testTLSConfig(t)
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.TLSConfig = cfg })
	defer s.Close()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "STARTTLS\r\n")
	if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "220 ") {
		t.Fatalf("STARTTLS: %q", scanner.Text())
	}
	// Not a TLS record: the handshake fails at once.
	io.WriteString(c, "NOOP\r\nNOOP\r\n")
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading to the end: %v (want the server to close, not the deadline)", err)
	}
	if strings.Contains(string(got), "250") || strings.Contains(string(got), "550") {
		t.Fatalf("after the failed handshake the server sent %q, want it to close without a reply", got)
	}
}
