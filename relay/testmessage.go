package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// testMessage is what a failed POST /providers/{id}/test tells the team
// (and records as status_reason): the class of the failure, in words,
// never the raw error. Network errors carry the daemon's local address and
// port and the resolved remote address ("read tcp 10.0.3.7:41234->…"), and
// an upstream's raw answer can be anything its operator — or an attacker —
// wants the team to read, so only a short, sanitised reason gets through.
func testMessage(err error, providerType string) string {
	var de *DeliveryError
	var se SettingsError
	errors.As(err, &de)
	switch {
	case errors.Is(err, netpolicy.ErrRefused):
		return "refused: " + netpolicy.ErrRefused.Error()
	case errors.As(err, &se):
		return err.Error()
	case de != nil && de.Failure.Code != 0:
		return upstreamReply(de, providerType)
	}
	if m := networkClass(err); m != "" {
		return m
	}
	if de != nil {
		switch de.Classified() {
		case routing.Auth:
			if providerType == store.TypeSMTP && de.Err != nil {
				// relay/smtp's own words for a setup fault (no STARTTLS,
				// no AUTH, no usable mechanism), cleaned: they may quote
				// the upstream's EHLO.
				return "configuration problem: " + clean(de.Err.Error())
			}
			return "authentication or configuration problem (check the credentials and settings)"
		case routing.Quota:
			return "the upstream reports the account is over its sending quota"
		}
	}
	return "connection failed"
}

// networkClass names a transport failure, or "" when err is none.
func networkClass(err error) string {
	var dnsErr *net.DNSError
	var certUnknown x509.UnknownAuthorityError
	var certName x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var tlsAlert tls.AlertError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "DNS lookup failed: the host name does not exist"
		}
		return "DNS lookup failed"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// upstreamReply renders an answer the upstream gave: for SMTP the code and
// a cleaned, short text; for SES (an HTTP API) the status and the AWS
// error code only, never the body.
func upstreamReply(de *DeliveryError, providerType string) string {
	f := de.Failure
	if providerType != store.TypeSMTP {
		code, _, _ := strings.Cut(f.Text, ":")
		if !awsCodeRE.MatchString(code) {
			code = ""
		}
		msg := fmt.Sprintf("the upstream answered HTTP %d", f.Code)
		if code != "" {
			msg += " (" + code + ")"
		}
		if de.Classified() == routing.Auth {
			msg += ": the credentials were refused"
		}
		return msg
	}
	msg := fmt.Sprintf("the upstream answered %d", f.Code)
	if f.Enhanced != "" {
		msg += " " + f.Enhanced
	}
	if t := clean(f.Text); t != "" {
		msg += ": " + t
	}
	return msg
}

var (
	awsCodeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,63}$`)
	// addrRE finds IPv4 addresses and IPv6-looking runs, which upstream
	// texts quote ("client host [203.0.113.9] blocked"); they may be the
	// daemon's own addresses.
	addrRE = regexp.MustCompile(`\[?(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7})\]?(:\d+)?`)
)

// maxReasonText bounds quoted upstream text in a test result.
const maxReasonText = 120

// clean keeps printable ASCII of s, masks addresses and cuts it short.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	s = addrRE.ReplaceAllString(s, "[address]")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReasonText {
		s = s[:maxReasonText] + "…"
	}
	return s
}
