package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/store"

	"github.com/smtpmux/smtpmux/internal/connslots"
	"github.com/smtpmux/smtpmux/internal/proxied"
)

// Config is the inbound SMTP side's settings, already validated by cmd.
type Config struct {
	Hostname string
	// SuppressedAction is what a recipient on the team's suppression
	// list gets: SuppressedRefuse ("" too) or SuppressedAccept.
	SuppressedAction  string
	Listen            []string // submission with STARTTLS
	ListenTLS         []string // implicit TLS
	TLSConfig         *tls.Config
	AllowInsecureAuth bool
	MaxMessageBytes   int64
	MaxRecipients     int
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	MaxConnections    int
	// MaxConnectionsPerIP caps the connections of one client address (an
	// IPv6 /64), so that one client cannot take every slot (0: no cap).
	MaxConnectionsPerIP int
	// PreAuthTimeout is the idle time allowed between commands until AUTH
	// succeeds (0: ReadTimeout throughout).
	PreAuthTimeout time.Duration
	// MaxJunkCommands is how many commands in a row may move no message
	// forward before the connection is closed with 421 (0: unlimited).
	MaxJunkCommands int
	AuthFailDelay   time.Duration
	// Limiter is the per-credential request limit shared with HTTP sends.
	Limiter *ratelimit.Limiter
	// SendLimit, when set, replaces Limiter for the per-credential send
	// limit (cluster mode: counted across nodes).
	SendLimit SendLimiter
	// ManagedGate, when set, also counts the managed account's accepted
	// recipients across the cluster (relay.ManagedGate).
	ManagedGate ManagedGate
	// BareNewlines is what DATA/BDAT content with a bare CR or LF gets:
	// refused (crlf.ModeReject, the zero value) or made CRLF.
	BareNewlines crlf.Mode
	// AuthFailLimit is how many failed AUTH one client IP may make per
	// minute before its AUTH is refused (0: unlimited).
	AuthFailLimit int
	// Metrics, when set, records Prometheus series.
	Metrics *Metrics
	// NodeID, set in cluster mode, is appended to message IDs
	// (store.NodeMessageID) so an ID names the node that holds it.
	NodeID string
	// ProxyFrom are the load balancers whose connections must start with
	// a PROXY protocol header, whose client address then stands for the
	// connection in every per-address limit and log (empty: off).
	ProxyFrom []netip.Prefix
}

// maxLineLength is the longest command or body line accepted.
const maxLineLength = 64 << 10

// Server is the inbound SMTP relay: it owns the listeners and hands
// accepted mail to the store and the scheduler.
type Server struct {
	cfg     Config
	store   *store.Store
	reg     *Registry
	sched   *Scheduler
	auth    *Authenticator
	limiter *ratelimit.Limiter
	// authFails counts failed AUTH per client IP (AuthFailLimit a minute).
	authFails *ratelimit.Limiter
	used      *store.LastUsed // sending keys' last_used_at
	log       *slog.Logger
	now       func() time.Time
	metrics   *Metrics

	smtp      *smtp.Server
	mu        sync.Mutex
	listeners []net.Listener
	sessions  map[*session]struct{}
	draining  atomic.Bool
	wg        sync.WaitGroup
}

// NewServer wires the inbound side. now may be nil (time.Now).
func NewServer(cfg Config, st *store.Store, reg *Registry, sched *Scheduler, logger *slog.Logger, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	srv := &Server{cfg: cfg, store: st, reg: reg, sched: sched, log: logger, now: now, limiter: cfg.Limiter, metrics: cfg.Metrics,
		used: store.NewLastUsed(st.TouchKey), authFails: ratelimit.New(cfg.AuthFailLimit, time.Minute, now),
		auth: &Authenticator{Store: st, MinDelay: cfg.AuthFailDelay}, sessions: map[*session]struct{}{}}
	if sched != nil {
		sched.reports.Store(newFailureReporter(srv, FailureReportsPerHour))
	}
	s := smtp.NewServer(smtp.BackendFunc(srv.newSession))
	s.Domain = cfg.Hostname
	s.TLSConfig = cfg.TLSConfig
	s.AllowInsecureAuth = cfg.AllowInsecureAuth
	s.MaxMessageBytes = cfg.MaxMessageBytes
	s.MaxRecipients = cfg.MaxRecipients
	// RFC 5321 allows 1000, but real mail (unwrapped HTML) has longer body
	// lines; 64 KiB bounds what one connection can make us buffer.
	s.MaxLineLength = maxLineLength
	s.ReadTimeout = cfg.ReadTimeout
	s.WriteTimeout = cfg.WriteTimeout
	s.CommandFilter = srv.filterCommand
	s.ErrorLog = log.New(io.Discard, "", 0) // go-smtp's per-connection noise; our own log has the events
	srv.smtp = s
	return srv
}

// errBadHelo answers an EHLO/HELO name no real client sends.
var errBadHelo = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid EHLO name"}

// newSession runs at EHLO/HELO, so it is where the greeting name is checked.
func (srv *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if h := c.Hostname(); len(h) == 0 || len(h) > 255 || strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errBadHelo
	}
	srv.metrics.session()
	s := &session{srv: srv, conn: c, remote: c.Conn().RemoteAddr().String()}
	srv.mu.Lock()
	srv.sessions[s] = struct{}{}
	srv.mu.Unlock()
	if srv.draining.Load() {
		s.hangUp()
	}
	return s, nil
}

func (srv *Server) untrack(s *session) {
	srv.mu.Lock()
	delete(srv.sessions, s)
	srv.mu.Unlock()
}

// Start binds every listener and serves in the background. A bind failure
// closes what was already bound and is returned.
func (srv *Server) Start() error {
	slots := connslots.New(srv.cfg.MaxConnections, srv.cfg.MaxConnectionsPerIP)
	bind := func(addr string, implicitTLS bool) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("smtp listen %s: %w", addr, err)
		}
		// The PROXY header is read below the slot count, so the caps
		// count the client, and below TLS, which the balancer passes
		// through.
		var ln net.Listener = &capListener{Listener: srv.proxied(l), slots: slots, hostname: srv.cfg.Hostname,
			preAuth: srv.cfg.PreAuthTimeout, metrics: srv.metrics}
		if implicitTLS {
			ln = tls.NewListener(ln, srv.cfg.TLSConfig)
		}
		srv.mu.Lock()
		srv.listeners = append(srv.listeners, ln)
		srv.mu.Unlock()
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			if err := srv.smtp.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				srv.log.Error("smtp listener stopped", "addr", addr, "err", err)
			}
		}()
		srv.log.Info("smtp listening", "addr", l.Addr().String(), "implicit_tls", implicitTLS)
		return nil
	}
	for _, a := range srv.cfg.Listen {
		if err := bind(a, false); err != nil {
			srv.closeListeners()
			return err
		}
	}
	for _, a := range srv.cfg.ListenTLS {
		if err := bind(a, true); err != nil {
			srv.closeListeners()
			return err
		}
	}
	return nil
}

// proxied wraps a bound listener to take PROXY headers from the
// configured balancers (unchanged when there are none). Connections
// waiting for their header are capped like open ones.
func (srv *Server) proxied(l net.Listener) net.Listener {
	return proxied.Listen(l, proxied.Options{From: srv.cfg.ProxyFrom, MaxPending: srv.cfg.MaxConnections,
		Refused: func(remote net.Addr, err error) {
			reason := "proxy_header"
			if errors.Is(err, proxied.ErrUntrusted) {
				reason = "proxy_untrusted" // a balancer missing from the list, or a spoofing client
			}
			srv.metrics.limited(reason)
			srv.log.Warn("connection closed: PROXY protocol", "event", "proxy_refused", "remote", remote.String(), "err", err)
		}})
}

// Addrs returns the bound addresses (useful with port 0 in tests).
func (srv *Server) Addrs() []net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]net.Addr, len(srv.listeners))
	for i, l := range srv.listeners {
		out[i] = l.Addr()
	}
	return out
}

func (srv *Server) closeListeners() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, l := range srv.listeners {
		l.Close()
	}
}

// Shutdown stops accepting, lets sessions finish their transaction until
// ctx ends, then closes what is left. A transaction cut off before its 250
// was never acknowledged, so nothing acknowledged is lost.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.draining.Store(true)
	// Our own close, not only go-smtp's: its Shutdown closes the listeners
	// Serve has registered, and a Serve goroutine started just before may
	// not have yet, which left it accepting and Shutdown waiting forever.
	srv.closeListeners()
	srv.forIdle((*session).hangUp)
	err := srv.smtp.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // its second close of a listener we closed above
	}
	if err != nil {
		srv.smtp.Close()
	}
	srv.wg.Wait()
	return err
}

// forIdle runs fn on every session not in a transaction.
func (srv *Server) forIdle(fn func(*session)) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for s := range srv.sessions {
		if !s.inTx.Load() {
			fn(s)
		}
	}
}
