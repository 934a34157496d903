package smtp

// smtpmux patch (16): an idle connection waits at a shallow stack.
//
// After patch 14 the largest thing an idle session held was its
// goroutine's 8 KiB stack. The TLS handshake grows it to 8 KiB, and a
// goroutine parked in crypto/tls's record read (tls.Conn.Read,
// readRecordOrCCS, bytes.Buffer.ReadFrom, net, poll) uses more than the
// quarter of it under which the garbage collector halves a parked
// goroutine's stack. So between messages the connection now waits for
// input on the socket itself (syscall.RawConn.Read, a few frames deep)
// and reads through crypto/tls only once there is something to read; the
// collector can then shrink an idle session's stack.
//
// crypto/tls may already hold input read from the socket (a client's
// second record, arrived with its first), which no socket wait would
// see. It is asked first, with a read deadline in the past: what it has
// buffered it returns, and otherwise it fails with a timeout before
// touching the socket (a timeout does not poison a tls.Conn: it is a
// temporary error, and no partial record is lost). The connection's real
// deadline is then put back and also bounds the socket wait.
//
// Only the wait for a command outside a mail transaction goes this way
// (greeting to MAIL, and between messages): that is where sessions sit
// idle, and within a transaction the client's next command follows at
// once, so the extra system calls would buy nothing there.

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// idleWaitHook, when set (tests only), runs as a connection starts to
// wait on its socket.
var idleWaitHook atomic.Value // of func()

// longAgo is a read deadline that has passed: a read fails at once with
// os.ErrDeadlineExceeded unless it has buffered input to return.
var longAgo = time.Unix(1, 0)

// rawConnOf returns the socket under c, unwrapping TLS, or nil when c has
// none (a pipe in tests, a wrapper that hides it). Conn.init sets
// idleSocket with it, for the connection as it is then (plain, and again
// after STARTTLS). A wrapper that buffers input of its own must not pass
// its socket through: the wait would not see those bytes.
func rawConnOf(c net.Conn) syscall.RawConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// idleRead reads the first bytes of the next command into c.idle.buf.
// deadline is the one readLine set (zero: none).
func (c *Conn) idleRead(deadline time.Time) (int, error) {
	buf := c.idle.buf[:]
	if c.fromReceived || c.idleSocket == nil {
		return c.idle.src.Read(buf)
	}
	if _, isTLS := c.conn.(*tls.Conn); isTLS {
		if err := c.conn.SetReadDeadline(longAgo); err != nil {
			return 0, err
		}
		n, err := c.idle.src.Read(buf)
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return 0, err // the connection is closed: what was read goes with it
		}
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
	}
	if h, _ := idleWaitHook.Load().(func()); h != nil {
		h()
	}
	if err := c.idleSocket.Read(socketReadable); err != nil {
		return 0, err
	}
	return c.idle.src.Read(buf)
}
