// Package netclass names the class of a failed connection in fixed words,
// for text a tenant reads: provider test results and webhook delivery
// logs.
//
// A Go network error's text carries what a tenant must not learn: the
// daemon's local address and port, the address a name resolved to
// ("dial tcp 10.0.3.7:25"), and whether an internal name exists ("lookup
// db.internal: no such host"). So callers report Describe's class, never
// err.Error(). It is a package of its own so that cmd (provider tests)
// and admin/webhook (deliveries) share one list without admin importing
// cmd.
package netclass

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
)

// Refused is the class of a connection the daemon's own policy refused:
// the target resolves to an internal address (netpolicy.ErrRefused).
var Refused = "refused: " + netpolicy.ErrRefused.Error()

// Describe names the class of the transport failure err, or "" when err
// is none of the known ones (the caller then says something generic).
// The words never include an address, a port or a host name.
func Describe(err error) string {
	var dnsErr *net.DNSError
	var certUnknown x509.UnknownAuthorityError
	var certName x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var tlsAlert tls.AlertError
	var recordErr tls.RecordHeaderError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, netpolicy.ErrRefused):
		return Refused
	case errors.As(err, &dnsErr):
		// Whether the name does not exist or DNS failed is not said:
		// the difference tells a prober which names the daemon's
		// resolver knows.
		return "DNS lookup failed"
	case errors.Is(err, context.DeadlineExceeded) || IsTimeout(err):
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the upstream"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "network unreachable"
	case errors.As(err, &certUnknown):
		return "TLS: the upstream's certificate is not trusted"
	case errors.As(err, &certName):
		return "TLS: the upstream's certificate does not match the host name"
	case errors.As(err, &certInvalid):
		return "TLS: the upstream's certificate is invalid or expired"
	case errors.As(err, &tlsAlert), errors.As(err, &recordErr), strings.Contains(err.Error(), "tls:"):
		return "TLS handshake failed"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return "connection failed"
	}
	return ""
}

// IsTimeout reports whether err says it is a timeout (net.Error and the
// like).
func IsTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
