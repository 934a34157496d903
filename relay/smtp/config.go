// Package smtp is the Custom SMTP provider: it relays messages to any SMTP
// server over cleartext, STARTTLS or implicit TLS, authenticating with
// AUTH PLAIN or LOGIN, and keeps a small pool of authenticated connections
// per provider so that consecutive messages reuse one session.
//
// Every failure comes back as a *relay.DeliveryError whose Failure carries
// the phase, the upstream reply and whether the body was fully sent, so
// routing.Classify can tell a refused message from an uncertain one.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
)

// Defaults for the zero values of Config.
const (
	DefaultDialTimeout    = 15 * time.Second
	DefaultCommandTimeout = 60 * time.Second
	DefaultDataTimeout    = 5 * time.Minute
	// DefaultMaxConns is Postfix's default_destination_concurrency_limit.
	// Each connection waits about 2 ms per message for the durable data
	// mark, so 8 capped one provider near 2,400 messages/s on the bench
	// machine while Postfix used 20 (bench/RESULTS.md).
	DefaultMaxConns    = 20
	DefaultIdleTimeout = 30 * time.Second
)

// Config describes one Custom SMTP upstream. Zero durations and MaxConns
// take the defaults above.
type Config struct {
	Host     string
	Port     int
	Protocol string // one of the internal/smtpproto constants, case-insensitive

	// Username and Password enable AUTH; both or neither. They are sent
	// only over TLS unless Protocol is none/plain, which is the user's
	// explicit choice of cleartext.
	Username, Password string
	// AuthMech forces "PLAIN" or "LOGIN"; "" picks PLAIN when the server
	// offers it and LOGIN otherwise.
	AuthMech string

	// HeloName is the EHLO name; default os.Hostname(), else "localhost".
	// (With STARTTLS the EHLO before the upgrade says "localhost": go-smtp
	// does not let the caller choose it, and nothing is trusted then.)
	HeloName string

	// TLSConfig is cloned; its ServerName defaults to Host.
	TLSConfig *tls.Config

	// DialTimeout bounds the TCP connect; CommandTimeout each command
	// reply, the greeting and the TLS handshake; DataTimeout the body
	// transfer plus the final reply. The Send context's deadline bounds
	// all of them.
	DialTimeout, CommandTimeout, DataTimeout time.Duration

	// MaxConns is the most connections (idle or busy) open at once; Send
	// waits for one to free up, within its context.
	MaxConns int
	// IdleTimeout closes pooled connections unused for that long.
	IdleTimeout time.Duration

	// Dial replaces the net.Dialer (a test seam); nil dials TCP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives the pool's own events (its limit lowered after the
	// upstream turned a connection away, raised again); nil discards.
	Logger *slog.Logger
}

// Addr is Host:Port.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// implicitTLS reports whether the connection is TLS from the first byte.
func (c Config) implicitTLS() bool { return smtpproto.ImplicitTLS(c.Protocol) }

// validate normalises c in place and reports the first problem.
func (c *Config) validate() error {
	c.Host = strings.TrimSpace(c.Host)
	if c.Host == "" {
		return errors.New("smtp: host is required")
	}
	c.Host = strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]")
	if strings.ContainsAny(c.Host, " \t\r\n/@[]") {
		return fmt.Errorf("smtp: invalid host %q", c.Host)
	}
	if strings.Contains(c.Host, ":") && net.ParseIP(c.Host) == nil {
		return fmt.Errorf("smtp: host %q must not include a port; set port separately", c.Host)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("smtp: port %d out of range 1-65535", c.Port)
	}
	c.Protocol = strings.ToLower(strings.TrimSpace(c.Protocol))
	switch {
	case smtpproto.Valid(c.Protocol):
	case c.Protocol == "":
		return errors.New("smtp: protocol is required (none, plain, starttls, tls or ssl)")
	default:
		return fmt.Errorf("smtp: unknown protocol %q (want none, plain, starttls, tls or ssl)", c.Protocol)
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("smtp: username and password must be set together")
	}
	if strings.ContainsAny(c.Username+c.Password, "\r\n") {
		return errors.New("smtp: username and password must not contain line breaks")
	}
	c.AuthMech = strings.ToUpper(strings.TrimSpace(c.AuthMech))
	switch c.AuthMech {
	case "", "PLAIN", "LOGIN":
	default:
		return fmt.Errorf("smtp: unsupported auth mechanism %q (want PLAIN or LOGIN)", c.AuthMech)
	}
	if c.HeloName == "" {
		c.HeloName, _ = os.Hostname()
		if c.HeloName == "" || strings.ContainsAny(c.HeloName, " \t\r\n") {
			c.HeloName = "localhost"
		}
	}
	if strings.ContainsAny(c.HeloName, " \t\r\n") {
		return fmt.Errorf("smtp: invalid helo name %q", c.HeloName)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dial timeout", &c.DialTimeout, DefaultDialTimeout},
		{"command timeout", &c.CommandTimeout, DefaultCommandTimeout},
		{"data timeout", &c.DataTimeout, DefaultDataTimeout},
		{"idle timeout", &c.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("smtp: negative %s %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("smtp: negative max conns %d", c.MaxConns)
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.TLSConfig != nil {
		c.TLSConfig = c.TLSConfig.Clone()
	} else {
		c.TLSConfig = &tls.Config{}
	}
	if c.TLSConfig.ServerName == "" {
		c.TLSConfig.ServerName = c.Host
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: c.DialTimeout}
		c.Dial = d.DialContext
	}
	return nil
}
