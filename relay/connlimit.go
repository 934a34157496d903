package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/connslots"
)

// Connection slots and how long a connection may hold one. The global cap
// alone let one address take every slot and keep them with NOOPs, which
// locked every other client out; so each client address has a cap of its
// own, a connection that has not authenticated gets a shorter idle time,
// and commands that move no message forward are bounded (what Postfix's
// smtpd_junk_command_limit does).

// Replies of the connection limits.
var (
	errJunkLimit = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many commands without progress, closing connection"}
)

// capListener bounds concurrent connections, in all and per client
// address; over a cap a client gets a 421 at once instead of waiting in the
// kernel backlog. Every connection it returns is a *trackedConn.
type capListener struct {
	net.Listener
	slots    *connslots.Slots
	hostname string
	// preAuth is the read deadline of a connection that has not
	// authenticated (0: the server's ReadTimeout alone).
	preAuth time.Duration
	metrics *Metrics
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return c, err
		}
		key := connslots.ClientKey(c.RemoteAddr().String())
		switch l.slots.Take(key) {
		case connslots.OK:
			return &trackedConn{Conn: c, release: func() { l.slots.Release(key) }, preAuth: l.preAuth}, nil
		case connslots.ClientFull:
			l.metrics.limited("max_connections_per_ip")
			l.refuse(c, "Too many connections from your address, try again later")
		default:
			l.metrics.limited("max_connections")
			l.refuse(c, "Too many connections, try again later")
		}
	}
}

func (l *capListener) refuse(c net.Conn, text string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "421 4.7.0 "+l.hostname+" "+text+"\r\n")
	c.Close()
}

// trackedConn is an accepted connection holding a slot, with what the
// session-independent limits need to know about it. go-smtp calls
// SetReadDeadline before every command read (through tls.Conn after
// STARTTLS), which is where the pre-AUTH timeout is applied.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
	preAuth time.Duration

	authed atomic.Bool
	// junk counts commands since the last progress; rcptFree is how many
	// RCPT the current transaction may still send without counting. The
	// filter and the session methods that report progress all run on the
	// connection's goroutine; atomics cost nothing here and keep a future
	// reader on another goroutine (shutdown, metrics) safe.
	junk     atomic.Int64
	rcptFree atomic.Int64
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes go-smtp's half-close through (its lingerClose, which
// lets the last reply reach the client before the close), which a plain
// wrapper would hide from its interface check.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn passes the socket through, which go-smtp's idle wait
// (third_party/go-smtp/idle_wait.go) waits on so that an idle session's
// goroutine parks at a shallow stack; a plain wrapper would hide it.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// SetReadDeadline shortens the deadline go-smtp asks for while the client
// has not authenticated: an anonymous connection waits for at most
// preAuth between commands, not the full read_timeout.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if c.preAuth > 0 && !c.authed.Load() && !t.IsZero() {
		if limit := time.Now().Add(c.preAuth); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline applies SetReadDeadline's rule to the read half.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// progress records that the client moved forward: it authenticated or a
// message was queued. The junk count starts again.
func (c *trackedConn) progress(authed bool) {
	if authed {
		c.authed.Store(true)
	}
	c.junk.Store(0)
}

// countCommand adds cmd to the count of commands without progress and
// reports whether the connection is still within limit. Every command
// counts except RCPT within the recipient cap of a transaction the client
// has opened with MAIL, and BDAT chunks that carry a body (BodyChunk), so
// a transaction to maxRcpt recipients costs two (MAIL and DATA, or the
// LAST chunk) whatever its size, and a queued message pays them back.
func (c *trackedConn) countCommand(cmd, arg string, maxRcpt, limit int) bool {
	switch cmd {
	case "BDAT":
		if BodyChunk(arg) {
			return true
		}
	case "MAIL":
		c.rcptFree.Store(int64(maxRcpt))
	case "RCPT":
		if c.rcptFree.Add(-1) >= 0 {
			return true
		}
	case "RSET", "HELO", "EHLO":
		c.rcptFree.Store(0)
	}
	return limit <= 0 || c.junk.Add(1) <= int64(limit)
}

// trackedOf finds the trackedConn under a go-smtp connection (under the
// TLS layer, after STARTTLS or on an implicit-TLS listener).
func trackedOf(c *smtp.Conn) *trackedConn {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	t, _ := nc.(*trackedConn)
	return t
}

// filterCommand is go-smtp's CommandFilter: it bounds the commands a
// connection may send without progress.
func (srv *Server) filterCommand(c *smtp.Conn, cmd, arg string) error {
	t := trackedOf(c)
	if t == nil {
		return nil
	}
	maxRcpt := srv.cfg.MaxRecipients
	if maxRcpt <= 0 {
		maxRcpt = 1 << 20 // go-smtp's own cap is off too
	}
	if !t.authed.Load() && (cmd == "MAIL" || cmd == "RCPT") {
		maxRcpt = 0 // refused anyway before AUTH: they count
	}
	if t.countCommand(cmd, arg, maxRcpt, srv.cfg.MaxJunkCommands) {
		return nil
	}
	srv.metrics.limited("junk_commands")
	srv.log.Info("connection closed: too many commands without progress", "event", "junk_limit",
		"remote", c.Conn().RemoteAddr().String(), "last", cmd)
	return errJunkLimit
}

// minBodyChunk is the smallest BDAT chunk that counts as moving a body
// forward. A client may split a message into as many chunks as it likes
// (RFC 3030), so chunks cannot count as junk; but a client sending
// "BDAT 0" or one-byte chunks forever would hold its slot without
// progress. Chunks of at least this size are bounded by the message size
// limit instead.
const minBodyChunk = 1024

// BodyChunk reports whether a BDAT argument ("<size> [LAST]") is a chunk
// that is not the last and carries at least minBodyChunk bytes. The last
// chunk counts once, as DATA does.
func BodyChunk(arg string) bool {
	f := strings.Fields(arg)
	if len(f) != 1 {
		return false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	return err == nil && n >= minBodyChunk
}
