package connslots

import (
	"net"
	"sync"
)

// Listener wraps ln so that Accept returns only connections within s's
// caps, keyed by client address. A connection over them is handed to
// refuse (which may write a last reply) and then closed; it never reaches
// the server. An accepted connection gives its slot back on its first
// Close (net/http may close one more than once).
func Listener(ln net.Listener, s *Slots, refuse func(net.Conn)) net.Listener {
	return &listener{Listener: ln, slots: s, refuse: refuse}
}

type listener struct {
	net.Listener
	slots  *Slots
	refuse func(net.Conn)
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ClientKey(c.RemoteAddr().String())
		if l.slots.Take(key) == OK {
			return &conn{Conn: c, slots: l.slots, key: key}, nil
		}
		if l.refuse != nil {
			l.refuse(c)
		}
		c.Close()
	}
}

type conn struct {
	net.Conn
	slots *Slots
	key   string
	once  sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.slots.Release(c.key) })
	return err
}

// CloseWrite half-closes like *net.TCPConn, which net/http uses to let the
// peer read a final answer before the connection goes.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
