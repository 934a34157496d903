package admin

import (
	"net"
	"sync"

	"github.com/smtpmux/smtpmux/internal/connslots"
)

// LimitListener caps the connections a listener holds open at once: total
// in all, and perIP from any one client (an IP; an IPv6 /64). A connection past either cap
// is accepted and closed at once, without a word (the peer reads EOF):
// refusing costs nothing, whereas leaving it in the kernel's backlog, as
// a blocking cap would, makes every other client wait behind it. Without
// the caps a few hundred slow clients starve the API and, through file
// descriptors, the SMTP listeners of the same process.
func LimitListener(ln net.Listener, total, perIP int) net.Listener {
	return &limitListener{Listener: ln, slots: connslots.New(total, perIP)}
}

type limitListener struct {
	net.Listener
	slots *connslots.Slots
}

// Accept returns the next connection within the caps; refused ones are
// closed here and never reach the server.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := connslots.ClientKey(c.RemoteAddr().String())
		if l.slots.Take(key) == connslots.OK {
			return &limitConn{Conn: c, slots: l.slots, key: key}, nil
		}
		c.Close()
	}
}

// limitConn gives its slot back on the first Close; net/http may close a
// connection more than once.
type limitConn struct {
	net.Conn
	slots *connslots.Slots
	key   string
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.slots.Release(c.key) })
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
