package admin

import (
	"net"
	"sync"
)

// LimitListener caps the connections a listener holds open at once: total
// in all, and perIP from any one client IP. A connection past either cap
// is accepted and closed at once, without a word (the peer reads EOF):
// refusing costs nothing, whereas leaving it in the kernel's backlog, as
// a blocking cap would, makes every other client wait behind it. Without
// the caps a few hundred slow clients starve the API and, through file
// descriptors, the SMTP listeners of the same process (issue 12, item 4).
func LimitListener(ln net.Listener, total, perIP int) net.Listener {
	return &limitListener{Listener: ln, total: total, perIP: perIP, byIP: map[string]int{}}
}

type limitListener struct {
	net.Listener
	total, perIP int

	mu   sync.Mutex
	open int
	byIP map[string]int
}

// Accept returns the next connection within the caps; refused ones are
// closed here and never reach the server.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if l.take(ip) {
			return &limitConn{Conn: c, l: l, ip: ip}, nil
		}
		c.Close()
	}
}

func (l *limitListener) take(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total || l.byIP[ip] >= l.perIP {
		return false
	}
	l.open++
	l.byIP[ip]++
	return true
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip) // the map holds only IPs with open connections
	}
}

// remoteIP is the connection's client IP, or its whole address when it
// has no host:port form (a unix socket: one bucket for all).
func remoteIP(c net.Conn) string {
	a := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return a
}

// limitConn gives its slot back on the first Close; net/http may close a
// connection more than once.
type limitConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// CloseWrite half-closes like *net.TCPConn, which net/http uses to let the
// peer read a final answer before the connection goes.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
