// Package proxied takes the PROXY protocol header (v1 or v2, what
// HAProxy's send-proxy and send-proxy-v2 write) from the connections of
// trusted load balancers, so that everything above the listener — the
// per-client connection caps, the per-address AUTH failure limit, logs —
// sees the client's address instead of the balancer's.
//
// Trust is by source address only, and strict both ways: a connection from
// a trusted balancer must start with a valid header or it is closed, and a
// connection from anywhere else that starts with one is closed without
// the header being read. So a client cannot claim another address, a
// balancer that lost its send-proxy setting fails loudly instead of making
// every client one, and a balancer missing from the list is named in the
// log instead of speaking gibberish to the server.
//
// The header is read off the accept path, in a goroutine per trusted
// connection with a deadline: a balancer connection that sends nothing
// holds no connection slot (the caps count the client address, known only
// after the header) and cannot stall the accepts of others.
package proxied

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// HeaderTimeout is how long a trusted balancer has to send its complete
// header after connecting. HAProxy sends it with the connection's first
// packet; the bound is for a balancer (or something at its address) that
// connects and says nothing.
const HeaderTimeout = 5 * time.Second

// Errors a trusted connection is closed with (passed to Options.Refused).
var (
	// ErrNoHeader: the connection did not start with a PROXY header.
	ErrNoHeader = errors.New("no PROXY protocol header from a trusted balancer")
	// ErrTimeout: the header was not complete within the timeout.
	ErrTimeout = errors.New("PROXY protocol header not complete in time")
	// ErrTooManyPending: too many connections were waiting for a header.
	ErrTooManyPending = errors.New("too many connections waiting for a PROXY protocol header")
	// ErrUntrusted: a connection from a source not trusted to send a
	// header started with one (a client claiming another address, or a
	// balancer missing from the list).
	ErrUntrusted = errors.New("PROXY protocol header from an address not trusted to send one")
)

// Options configure Listen.
type Options struct {
	// From are the trusted balancers. Only their connections are read
	// for a header, and each of them must send one.
	From []netip.Prefix
	// Timeout bounds reading the header (0: HeaderTimeout).
	Timeout time.Duration
	// MaxPending caps the connections whose header is still being read
	// (0: no cap); one past it is closed at once.
	MaxPending int
	// Refused, when set, is told of every connection closed for its
	// header: a trusted one's missing, bad or late (ErrNoHeader,
	// ErrTimeout, ErrTooManyPending or a parse error), an untrusted one's
	// present (ErrUntrusted). For logs and metrics; it may be called from
	// several goroutines at once.
	Refused func(remote net.Addr, err error)
}

// Listen wraps ln so that the connections it returns from a trusted
// source report the client's address from their PROXY header as
// RemoteAddr. With no trusted source it returns ln itself: the feature
// is off and nothing changes.
func Listen(ln net.Listener, opts Options) net.Listener {
	if len(opts.From) == 0 {
		return ln
	}
	if opts.Timeout <= 0 {
		opts.Timeout = HeaderTimeout
	}
	l := &listener{Listener: ln, opts: opts, ready: make(chan accepted),
		done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	go l.acceptLoop()
	return l
}

type accepted struct {
	c   net.Conn
	err error
}

type listener struct {
	net.Listener
	opts  Options
	ready chan accepted // unbuffered: accepts go no faster than the server takes them
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{} // header being read; nil once closed
}

// Accept returns the next connection: an untrusted one as it came, a
// trusted one once its header has been read.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.ready:
		return a.c, a.err
	case <-l.done:
		return nil, fmt.Errorf("proxied: %w", net.ErrClosed)
	}
}

// Close closes the listener and every connection still waiting for its
// header.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		close(l.done)
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.pending = nil
		l.mu.Unlock()
	})
	return err
}

func (l *listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Passed on as it is, so that the server's own handling of
			// temporary errors (a back-off on EMFILE) still applies; it
			// calls Accept again at its pace, which paces this loop.
			if !l.deliver(accepted{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.trusted(c.RemoteAddr()) {
			if !l.deliver(accepted{c: &untrustedConn{Conn: c, l: l}}) {
				c.Close()
				return
			}
			continue
		}
		if !l.addPending(c) {
			l.refuse(c, ErrTooManyPending)
			continue
		}
		go l.readHeader(c)
	}
}

// deliver hands a to Accept; false when the listener closed first.
func (l *listener) deliver(a accepted) bool {
	select {
	case l.ready <- a:
		return true
	case <-l.done:
		return false
	}
}

func (l *listener) trusted(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap() // an IPv4 client on a dual-stack socket
	for _, p := range l.opts.From {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *listener) addPending(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil || (l.opts.MaxPending > 0 && len(l.pending) >= l.opts.MaxPending) {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

// donePending takes c off the pending set; false if Close got there first
// (and closed it).
func (l *listener) donePending(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	delete(l.pending, c)
	return true
}

func (l *listener) refuse(c net.Conn, err error) {
	if l.opts.Refused != nil {
		l.opts.Refused(c.RemoteAddr(), err)
	}
	c.Close()
}

// readHeader reads c's header within the timeout and hands the
// connection, now answering the client's address, to Accept.
func (l *listener) readHeader(c net.Conn) {
	remote, rest, err := readHeader(c, l.opts.Timeout)
	if !l.donePending(c) {
		return // closed by Close
	}
	if err != nil {
		l.refuse(c, err)
		return
	}
	pc := &conn{Conn: c, remote: remote, rest: rest}
	if !l.deliver(accepted{c: pc}) {
		c.Close()
	}
}

// readHeader reads one PROXY header from c and returns the address the
// connection stands for and the bytes read past the header.
func readHeader(c net.Conn, timeout time.Duration) (net.Addr, []byte, error) {
	// The header is at most 107 bytes (v1) or 16 + its length (v2); the
	// parser reads past the buffer when a v2 header carries long TLVs.
	br := bufio.NewReaderSize(c, 512)
	c.SetReadDeadline(time.Now().Add(timeout))
	h, err := proxyproto.Read(br)
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return nil, nil, ErrTimeout
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return nil, nil, ErrNoHeader
	case err != nil:
		return nil, nil, fmt.Errorf("bad PROXY protocol header: %w", err)
	}
	remote := c.RemoteAddr()
	// LOCAL (v2) and UNKNOWN (v1) are the balancer's own connections,
	// such as its health checks: the spec says to use the real
	// endpoints. So is a source that is not TCP (a unix socket frontend).
	if src, _, ok := h.TCPAddrs(); ok && h.Command.IsProxy() {
		ip := src.IP
		if v4 := ip.To4(); v4 != nil {
			ip = v4 // ::ffff:a.b.c.d counts as the IPv4 client it is
		}
		remote = &net.TCPAddr{IP: ip, Port: src.Port}
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		// Client bytes that came with the header (an early talker).
		b, _ := br.Peek(n)
		rest = bytes.Clone(b)
	}
	return remote, rest, nil
}

// untrustedConn is a connection from a source not trusted to send a
// header. Its first read is checked for one: a header there is refused
// with the connection; anything else passes through untouched. (A
// balancer sends its header at once, so it is at the start of the first
// read; the v1 form is matched with its space so that no 5-letter word a
// protocol might start with is taken for it.)
type untrustedConn struct {
	net.Conn
	l       *listener
	checked bool
}

func (c *untrustedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if b := p[:n]; bytes.HasPrefix(b, []byte("PROXY ")) || bytes.HasPrefix(b, proxyproto.SIGV2) {
			c.l.refuse(c.Conn, ErrUntrusted)
			return 0, ErrUntrusted
		}
	}
	return n, err
}

// CloseWrite: see conn.CloseWrite.
func (c *untrustedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// conn is a trusted connection after its header: it reports the client's
// address and first returns what was read past the header.
//
// It has no SyscallConn on purpose: rest holds input read past the header,
// which go-smtp's wait on the socket between transactions (patch 16,
// third_party/go-smtp/idle_wait.go) would not see, so sessions behind a
// proxy wait by reading, as before.
type conn struct {
	net.Conn
	remote net.Addr
	rest   []byte
}

func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite passes a half-close through (go-smtp and net/http use it to
// let a last reply reach the peer), which a plain wrapper would hide.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
