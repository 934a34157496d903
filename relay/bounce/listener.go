package bounce

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/connslots"
	"github.com/smtpmux/smtpmux/internal/proxied"
	"github.com/smtpmux/smtpmux/relay"
)

// Config is the listener's settings, validated by cmd ([bounces]).
type Config struct {
	Listen   string
	Hostname string
	// MaxMessageBytes caps one report (552 5.3.4 past it).
	MaxMessageBytes int64
	// MaxConnectionsPerIP caps one client address's connections.
	MaxConnectionsPerIP int
	// MaxConnections caps all connections (0: 200).
	MaxConnections int
	// Timeout is the idle time allowed between commands and for a body.
	Timeout time.Duration
	// ProxyFrom are the load balancers whose connections must start with
	// a PROXY protocol header (empty: off), as on the SMTP listeners.
	ProxyFrom []netip.Prefix
}

// Replies. The refusal of a recipient says nothing about why (a forged,
// foreign or expired token look alike), so the listener cannot be used
// to learn which tokens exist.
var (
	errNoSuchUser   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errTooBig       = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Report too big"}
	errTooManyRcpts = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"}
	errTooManyBad   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many invalid recipients, closing"}
	errTempFail     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errNeedRcpt     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	errJunk         = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many commands without a report, closing"}
)

const (
	maxTargets   = 5 // valid tokens per transaction
	maxBadTokens = 3 // invalid recipients per connection before 421
	// maxJunk bounds the commands a connection sends without handing
	// over a report (EHLO, MAIL, five RCPT and DATA take eight), so a
	// client cannot hold a slot forever with NOOPs and RSETs.
	maxJunk = 20
)

// Listener is the bounce listener.
type Listener struct {
	cfg     Config
	rec     *Recorder
	srv     *smtp.Server
	ln      net.Listener
	log     *slog.Logger
	closing atomic.Bool
}

// NewListener builds a listener recording through rec.
func NewListener(cfg Config, rec *Recorder, log *slog.Logger) *Listener {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 200
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	l := &Listener{cfg: cfg, rec: rec, log: log}
	s := smtp.NewServer(backend{l})
	s.Domain = cfg.Hostname
	s.MaxMessageBytes = cfg.MaxMessageBytes
	s.MaxRecipients = maxTargets
	s.ReadTimeout, s.WriteTimeout = cfg.Timeout, cfg.Timeout
	s.MaxLineLength = 4096
	s.CommandFilter = filterCommand
	l.srv = s
	return l
}

// Start listens and serves in the background.
func (l *Listener) Start() error {
	ln, err := net.Listen("tcp", l.cfg.Listen)
	if err != nil {
		return err
	}
	// The PROXY header is read first, so the per-IP cap counts clients.
	pln := proxied.Listen(ln, proxied.Options{From: l.cfg.ProxyFrom, MaxPending: l.cfg.MaxConnections,
		Refused: func(remote net.Addr, err error) {
			l.log.Warn("bounce connection closed: PROXY protocol", "event", "proxy_refused", "remote", remote.String(), "err", err)
		}})
	l.ln = junkListener{connslots.Listener(pln, connslots.New(l.cfg.MaxConnections, l.cfg.MaxConnectionsPerIP), refuseBusy)}
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !l.closing.Load() {
			l.log.Error("bounce listener stopped", "err", err)
		}
	}()
	l.log.Info("bounce listener up", "addr", ln.Addr().String())
	return nil
}

// Addr is the address listened on (after Start).
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Shutdown stops accepting and waits for sessions to end, up to ctx.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.closing.Store(true)
	return l.srv.Shutdown(ctx)
}

type backend struct{ l *Listener }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{l: b.l, conn: c.Conn(), remote: c.Conn().RemoteAddr().String()}, nil
}

// target is one valid token of a transaction.
type target struct {
	msgID string
	rcpt  int
}

type session struct {
	l       *Listener
	conn    net.Conn
	remote  string
	targets []target
	bad     int
	// postmaster is set when the transaction is addressed to postmaster,
	// which RFC 5321 §4.5.1 requires every receiving host to accept.
	postmaster bool
}

// filterCommand counts the commands since the last report handed over
// and closes the connection past maxJunk. The count is the connection's,
// not the session's: go-smtp makes the session at EHLO/HELO and serves
// NOOP, RSET and VRFY before it.
func filterCommand(c *smtp.Conn, cmd, arg string) error {
	jc, ok := c.Conn().(*junkConn)
	if !ok || cmd == "BDAT" && relay.BodyChunk(arg) {
		return nil // a report sent in chunks is bounded by its size
	}
	if jc.junk.Add(1) > maxJunk {
		return errJunk
	}
	return nil
}

// junkListener gives every connection its command count (filterCommand).
type junkListener struct{ net.Listener }

func (l junkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &junkConn{Conn: c}, nil
}

// junkConn is a connection with the count of its commands since its last
// report.
type junkConn struct {
	net.Conn
	junk atomic.Int32
}

// CloseWrite passes go-smtp's half-close through (its lingerClose lets
// the last reply reach the client), which a plain wrapper would hide.
func (c *junkConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (s *session) Mail(string, *smtp.MailOptions) error { s.Reset(); return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if isPostmaster(to) {
		s.postmaster = true
		return nil
	}
	msgID, rcpt, err := s.l.rec.signer.Parse(to, s.l.rec.now())
	if err == nil && rcpt < 0 {
		// A token for any of several recipients: every one of them saw
		// it, so any could forge reports about the others. The relay no
		// longer mints them (envelopeFrom); one that exists is refused
		// like a forged one.
		err = errNoSuchUser
	}
	if err != nil {
		s.bad++
		if s.bad >= maxBadTokens {
			// 421 closes the channel (RFC 5321 §3.8): let the reply go
			// out, then end the connection, so a guesser must reconnect
			// (and meets the per-IP connection cap).
			c := s.conn
			time.AfterFunc(100*time.Millisecond, func() { c.Close() })
			return errTooManyBad
		}
		return errNoSuchUser
	}
	if len(s.targets) >= maxTargets {
		return errTooManyRcpts
	}
	for _, t := range s.targets {
		if t.msgID == msgID && t.rcpt == rcpt {
			return nil
		}
	}
	s.targets = append(s.targets, target{msgID, rcpt})
	return nil
}

func (s *session) Data(r io.Reader) error {
	if len(s.targets) == 0 && !s.postmaster {
		return errNeedRcpt
	}
	max := s.l.cfg.MaxMessageBytes
	raw, err := io.ReadAll(io.LimitReader(r, max+1))
	var tooBig *smtp.SMTPError
	if errors.As(err, &tooBig) && tooBig.Code == 552 || int64(len(raw)) > max {
		io.Copy(io.Discard, r)
		return errTooBig
	}
	if err != nil {
		return err
	}
	if len(s.targets) == 0 {
		// Only for postmaster: nobody reads it, and a report without a
		// token names no message to record it on. Nor does it reset the
		// junk count: a tiny postmaster message every few commands
		// would hold a connection slot for ever.
		s.l.rec.metrics.Report("none", "ignored")
		return nil
	}
	rep, err := Parse(bytes.NewReader(raw))
	if err != nil {
		// Accepted and dropped: an auto-reply or junk sent to a return
		// path. Refusing it would only make its sender bounce it. It is
		// no report either, so the junk count goes on (anyone who got
		// one of the team's messages holds a valid return path).
		s.l.log.Info("bounce listener: not a report", "event", "report_ignored", "remote", s.remote)
		s.l.rec.metrics.Report("none", "ignored")
		return nil
	}
	if jc, ok := s.conn.(*junkConn); ok {
		jc.junk.Store(0)
	}
	for _, t := range s.targets {
		if err := s.l.rec.Record(t.msgID, t.rcpt, rep); err != nil {
			s.l.log.Error("recording a report failed", "msg_id", t.msgID, "err", err)
			return errTempFail
		}
	}
	return nil
}

func (s *session) Reset()        { s.targets, s.postmaster = s.targets[:0], false }
func (s *session) Logout() error { return nil }

// refuseBusy turns a connection over the caps away with 421 at once.
func refuseBusy(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "421 4.7.0 Too many connections\r\n")
}

// isPostmaster reports whether a recipient is postmaster, bare or at any
// domain (case-insensitive, RFC 5321 §4.5.1).
func isPostmaster(to string) bool {
	local, _, _ := strings.Cut(to, "@")
	return strings.EqualFold(local, "postmaster")
}
