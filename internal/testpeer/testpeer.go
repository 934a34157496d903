// Package testpeer is a recording upstream SMTP server for tests and
// benchmarks: a go-smtp server on 127.0.0.1:0 that stores every message it
// receives byte for byte, counts connections and transactions per
// connection, and can be scripted to misbehave at any step (4xx/5xx
// replies, dropped connections, hangs).
//
// A peer is started with Start and closed by t.Cleanup; all methods are
// safe for concurrent use.
package testpeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/smtpmux/smtpmux/internal/selfsigned"
)

// TLS modes of a peer.
const (
	TLSNone     = "none"     // cleartext; AUTH is offered without TLS
	TLSStartTLS = "starttls" // STARTTLS offered; AUTH only after it
	TLSImplicit = "implicit" // TLS from the first byte
)

// Options configure a peer. The zero value is a cleartext peer that
// accepts everything without AUTH.
type Options struct {
	// TLS is TLSNone (default), TLSStartTLS or TLSImplicit.
	TLS string
	// Username and Password, when Username is set, make AUTH required
	// before MAIL (530 otherwise) and the only accepted credentials.
	Username, Password string
	// AuthMechs restricts the advertised mechanisms (default PLAIN, LOGIN).
	AuthMechs []string
	// Behave, when set, is asked at every step not handled by Script or
	// Always rules; returning Continue keeps the normal behaviour. It is
	// called from connection goroutines and must be safe for concurrent use.
	Behave func(step Step, arg string) Action
	// SMTPUTF8 advertises the SMTPUTF8 extension.
	SMTPUTF8 bool
	// MaxMessageBytes, when > 0, is advertised as SIZE and enforced.
	MaxMessageBytes int64
	// Verbose logs the protocol dialogue and server errors with t.Log.
	Verbose bool
}

// Message is one body the peer received in full.
type Message struct {
	From     string
	To       []string
	Data     []byte // exact bytes after dot-unstuffing, final CRLF included
	AuthUser string // "" when the client did not authenticate
	TLS      bool
	Helo     string
	ConnID   int    // 0-based accept order of the connection it came on
	QueueID  string // the "queued as" token of the default 250 reply
	Code     int    // final reply code sent; 0 when dropped or hung
	Received time.Time
}

// Accepted reports whether the peer answered the final dot with 2xx.
func (m Message) Accepted() bool { return m.Code >= 200 && m.Code < 300 }

// connStat is what the peer knows about one TCP connection.
type connStat struct {
	txns int
	open bool
	conn net.Conn
}

// Server is a running peer.
type Server struct {
	tb      testing.TB
	opts    Options
	srv     *gosmtp.Server
	ln      net.Listener
	certPEM []byte
	done    chan struct{}
	served  chan struct{}

	mu        sync.Mutex
	rules     []*rule
	msgs      []Message
	changed   chan struct{} // closed and replaced whenever msgs grows
	conns     []*connStat
	open      int
	maxOpen   int
	release   chan struct{}
	queueSeq  int
	closeOnce sync.Once
	aux       sync.WaitGroup // goroutines of StepConnect actions
}

// Start starts a peer on 127.0.0.1:0 and registers its shutdown with
// tb.Cleanup. It fails the test if the peer cannot start.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{
		tb: tb, opts: opts,
		done: make(chan struct{}), served: make(chan struct{}),
		changed: make(chan struct{}), release: make(chan struct{}),
	}
	srv := gosmtp.NewServer(backend{s})
	srv.Domain = "testpeer.localhost"
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if opts.Verbose {
		srv.ErrorLog = log.New(tbWriter{tb}, "testpeer: ", 0)
		srv.Debug = tbWriter{tb}
	}
	var implicit *tls.Config
	switch opts.TLS {
	case "", TLSNone:
		srv.AllowInsecureAuth = true
	case TLSStartTLS, TLSImplicit:
		// Clients verify it with a pool holding just this certificate.
		cert, certPEM, _, err := selfsigned.New("localhost", 24*time.Hour)
		if err != nil {
			tb.Fatalf("testpeer: certificate: %v", err)
		}
		s.certPEM = certPEM
		cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		if opts.TLS == TLSStartTLS {
			srv.TLSConfig = cfg
		} else {
			implicit = cfg
		}
	default:
		tb.Fatalf("testpeer: unknown TLS mode %q", opts.TLS)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testpeer: listen: %v", err)
	}
	s.srv, s.ln = srv, raw
	go func() {
		defer close(s.served)
		srv.Serve(&listener{Listener: raw, srv: s, tls: implicit})
	}()
	tb.Cleanup(s.Close)
	return s
}

// Close stops the peer: it releases hung handlers, closes the listener and
// every connection, and waits for all connection goroutines to finish.
// Start registers it with Cleanup; calling it earlier simulates an
// upstream going away. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		// Stop accepting first so that CloseConns sees every connection.
		s.ln.Close()
		<-s.served
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.srv.Shutdown(ctx) }() // waits for connection goroutines
		s.CloseConns()
		<-shut
		s.aux.Wait()
	})
}

// CloseConns closes every open client connection (the listener keeps
// accepting), the way an upstream drops idle connections.
func (s *Server) CloseConns() {
	s.mu.Lock()
	var open []net.Conn
	for _, c := range s.conns {
		if c.open {
			open = append(open, c.conn)
		}
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// ReleaseHangs lets every handler blocked by Hang go on (it then closes its
// connection). Later Hang actions block again.
func (s *Server) ReleaseHangs() {
	s.mu.Lock()
	close(s.release)
	s.release = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) waitRelease() {
	s.mu.Lock()
	ch := s.release
	s.mu.Unlock()
	select {
	case <-ch:
	case <-s.done:
	}
}

// Addr is host:port of the peer.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the peer's IP address, "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the peer's TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPEM is the peer's self-signed certificate (valid for 127.0.0.1, ::1
// and localhost), or nil for a cleartext peer.
func (s *Server) CertPEM() []byte { return s.certPEM }

// ClientTLSConfig is a client configuration that trusts the peer's
// certificate, or nil for a cleartext peer.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.certPEM == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.certPEM)
	return &tls.Config{RootCAs: pool, ServerName: s.Host()}
}

// Messages returns the messages the peer accepted (2xx final reply), in
// the order received.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if m.Accepted() {
			out = append(out, m)
		}
	}
	return out
}

// Received returns every body the peer read in full, including those it
// then refused, dropped or hung on (see Message.Code).
func (s *Server) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count is len(Messages()).
func (s *Server) Count() int { return len(s.Messages()) }

// WaitMessages waits until at least n messages were accepted and returns
// them; it fails the test after timeout.
func (s *Server) WaitMessages(tb testing.TB, n int, timeout time.Duration) []Message {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if msgs := s.Messages(); len(msgs) >= n {
			return msgs
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("testpeer: %d messages accepted after %v, want %d", s.Count(), timeout, n)
			return nil
		}
	}
}

// Conns is the number of TCP connections accepted so far.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Open is the number of connections open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// MaxOpen is the largest number of connections that were open at once.
func (s *Server) MaxOpen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxOpen
}

// Transactions returns, per connection in accept order, how many
// transactions (accepted MAIL commands) went over it.
func (s *Server) Transactions() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, len(s.conns))
	for i, c := range s.conns {
		out[i] = c.txns
	}
	return out
}

func (s *Server) connOpened(c net.Conn) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	tc := &trackedConn{Conn: c, id: len(s.conns), srv: s}
	s.conns = append(s.conns, &connStat{open: true, conn: tc})
	s.open++
	s.maxOpen = max(s.maxOpen, s.open)
	return tc
}

func (s *Server) connClosed(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[tc.id].open = false
	s.open--
}

func (s *Server) txnStarted(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id >= 0 && id < len(s.conns) {
		s.conns[id].txns++
	}
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) nextQueueID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueSeq++
	return "TP" + strconv.Itoa(s.queueSeq)
}

// tbWriter sends go-smtp's debug output to the test log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(fmt.Sprintf("%q", p))
	return len(p), nil
}
