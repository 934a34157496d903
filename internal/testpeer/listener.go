package testpeer

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// trackedConn is a raw accepted connection with its sequence number, so
// sessions (which go-smtp recreates after STARTTLS) can be attributed to
// the TCP connection they ran on.
type trackedConn struct {
	net.Conn
	id    int
	srv   *Server
	close sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.close.Do(func() { c.srv.connClosed(c) })
	return err
}

// connID finds the trackedConn under nc, which may be wrapped in TLS.
func connID(nc net.Conn) int {
	for nc != nil {
		switch v := nc.(type) {
		case *trackedConn:
			return v.id
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return -1
		}
	}
	return -1
}

// listener counts and tracks connections, applies StepConnect, and wraps
// connections in TLS for implicit-TLS peers. go-smtp's Serve only sees
// connections that should be greeted.
type listener struct {
	net.Listener
	srv *Server
	tls *tls.Config // non-nil for implicit TLS
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := l.srv.connOpened(raw)
		var c net.Conn = tc
		if l.tls != nil {
			c = tls.Server(tc, l.tls)
		}
		a := l.srv.decide(StepConnect, raw.RemoteAddr().String())
		switch a.kind {
		case kindContinue:
			return c, nil
		case kindDrop:
			tc.Close()
		case kindHang:
			l.srv.aux.Add(1)
			go func() {
				defer l.srv.aux.Done()
				l.srv.waitRelease()
				c.Close()
			}()
		case kindReply:
			// Written from a goroutine: for implicit TLS the write runs the
			// handshake, which must not stall the accept loop.
			l.srv.aux.Add(1)
			go func() {
				defer l.srv.aux.Done()
				line := fmt.Sprintf("%d %s", a.Code, a.Text)
				if a.Enhanced != "" {
					line = fmt.Sprintf("%d %s %s", a.Code, a.Enhanced, a.Text)
				}
				fmt.Fprintf(c, "%s\r\n", line)
				c.Close()
			}()
		}
	}
}
