package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/routing"
)

// past is a deadline that has already expired; setting it interrupts any
// blocked read or write at once.
var past = time.Unix(1, 0)

// deadlineConn caps every deadline go-smtp sets with the bound context's
// deadline and the current operation's bound. go-smtp sets a fresh
// deadline around each command and clears it afterwards, so deadlines set
// on the raw connection from outside would be overwritten; clamping them
// here is what makes the Send context effective. It also remembers whether
// a write failed, which is how a broken body transfer is told apart from a
// lost final reply.
type deadlineConn struct {
	net.Conn
	wfail atomic.Bool

	mu        sync.Mutex
	ctxDL     time.Time // deadline of the bound context
	opDL      time.Time // bound of the current operation (handshake, body)
	cancelled bool      // the bound context is done
}

func (c *deadlineConn) limitLocked() time.Time {
	if c.cancelled {
		return past
	}
	return earliest(c.ctxDL, c.opDL)
}

func (c *deadlineConn) clamp(t time.Time) time.Time {
	lim := c.limitLocked()
	if lim.IsZero() || (!t.IsZero() && t.Before(lim)) {
		return t
	}
	return lim
}

// SetDeadline implements net.Conn, capped by the current limits.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetDeadline(c.clamp(t))
}

// SetReadDeadline implements net.Conn, capped by the current limits.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// SetWriteDeadline implements net.Conn, capped by the current limits.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.wfail.Store(true)
	}
	return n, err
}

// update changes the limits and applies them to the connection at once
// (which also interrupts blocked I/O when the limit is in the past).
func (c *deadlineConn) update(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	c.Conn.SetDeadline(c.limitLocked())
}

// setOp bounds the next operation; the zero time removes the bound.
func (c *deadlineConn) setOp(t time.Time) { c.update(func() { c.opDL = t }) }

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// pconn is one upstream session, authenticated and ready for MAIL.
type pconn struct {
	conn   *deadlineConn
	client *gosmtp.Client
	idleAt time.Time
	reused bool        // taken from the pool rather than dialled for this send
	stop   func() bool // unbinds the context; false if it fired meanwhile
}

// bind makes ctx's deadline and cancellation apply to the connection until
// unbind.
func (pc *pconn) bind(ctx context.Context) {
	dl, _ := ctx.Deadline()
	pc.conn.update(func() { pc.conn.ctxDL, pc.conn.cancelled = dl, false })
	pc.stop = context.AfterFunc(ctx, func() {
		pc.conn.update(func() { pc.conn.cancelled = true })
	})
}

// unbind detaches the context. It reports false when the context fired
// while bound: the cancellation may still land on the connection, so it
// must not be reused.
func (pc *pconn) unbind() bool {
	if pc.stop == nil {
		return true
	}
	clean := pc.stop()
	pc.stop = nil
	pc.conn.update(func() { pc.conn.ctxDL, pc.conn.cancelled = time.Time{}, false })
	return clean
}

// dial opens and prepares one session: TCP, TLS, EHLO and AUTH. The
// returned connection is bound to ctx.
func (p *Provider) dial(ctx context.Context) (*pconn, error) {
	cfg := &p.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	raw, err := cfg.Dial(dctx, "tcp", cfg.Addr())
	cancel()
	if errors.Is(err, netpolicy.ErrRefused) {
		// The dialer's address policy refused where the host resolves
		// to: a setting to fix, not a network problem to retry. The
		// error is the policy's own, without the address.
		return nil, configFault(routing.PhaseConnect, netpolicy.ErrRefused)
	}
	if err != nil {
		return nil, fail(ctx, routing.PhaseConnect, err, false)
	}
	pc := &pconn{conn: &deadlineConn{Conn: raw}}
	pc.bind(ctx)
	if err := p.setup(ctx, pc); err != nil {
		pc.unbind()
		if pc.client != nil {
			pc.client.Close()
		} else {
			raw.Close()
		}
		return nil, err
	}
	return pc, nil
}

// setup runs the protocol's opening on a fresh connection.
func (p *Provider) setup(ctx context.Context, pc *pconn) error {
	cfg := &p.cfg
	dc := pc.conn
	switch {
	case cfg.implicitTLS():
		tc := tls.Client(dc, cfg.TLSConfig)
		dc.setOp(time.Now().Add(cfg.CommandTimeout))
		err := tc.HandshakeContext(ctx)
		dc.setOp(time.Time{})
		if err != nil {
			return fail(ctx, routing.PhaseConnect, fmt.Errorf("tls handshake: %w", err), false)
		}
		pc.client = gosmtp.NewClient(tc)
	case cfg.Protocol == smtpproto.STARTTLS:
		// Greeting, EHLO and STARTTLS run inside NewClientStartTLS with
		// go-smtp's default timeouts; bound them together.
		dc.setOp(time.Now().Add(cfg.CommandTimeout))
		c, err := gosmtp.NewClientStartTLS(dc, cfg.TLSConfig)
		dc.setOp(time.Time{})
		if err != nil {
			var se *gosmtp.SMTPError
			if !errors.As(err, &se) && strings.Contains(err.Error(), "doesn't support STARTTLS") {
				// "server doesn't support STARTTLS": the account is set up
				// for a TLS the server does not offer.
				return configFault(routing.PhaseConnect, err)
			}
			return fail(ctx, routing.PhaseConnect, err, false)
		}
		pc.client = c
	default:
		pc.client = gosmtp.NewClient(dc)
	}
	c := pc.client
	c.CommandTimeout = cfg.CommandTimeout
	c.SubmissionTimeout = cfg.DataTimeout
	if err := c.Hello(cfg.HeloName); err != nil {
		return fail(ctx, routing.PhaseConnect, err, false)
	}
	if cfg.Username == "" {
		return nil
	}
	return p.auth(ctx, c)
}

// auth authenticates with the configured or the best offered mechanism.
func (p *Provider) auth(ctx context.Context, c *gosmtp.Client) error {
	cfg := &p.cfg
	if ok, _ := c.Extension("AUTH"); !ok {
		return configFault(routing.PhaseAuth, errors.New("upstream does not offer AUTH"))
	}
	mech := cfg.AuthMech
	if mech == "" {
		switch {
		case c.SupportsAuth(sasl.Plain):
			mech = sasl.Plain
		case c.SupportsAuth(sasl.Login):
			mech = sasl.Login
		default:
			_, offered := c.Extension("AUTH")
			return configFault(routing.PhaseAuth, fmt.Errorf("upstream offers AUTH %s, none of PLAIN, LOGIN", offered))
		}
	}
	var sc sasl.Client
	if mech == sasl.Login {
		sc = sasl.NewLoginClient(cfg.Username, cfg.Password)
	} else {
		sc = sasl.NewPlainClient("", cfg.Username, cfg.Password)
	}
	if err := c.Auth(sc); err != nil {
		return fail(ctx, routing.PhaseAuth, err, false)
	}
	return nil
}
