package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
)

// MaxURLLength bounds a webhook URL.
const MaxURLLength = 2048

// CheckURL validates a webhook target as the API accepts it: absolute
// http(s), a host, no credentials (they would be shown back in every
// listing) and no fragment. Unless allowPrivate, a host that is a loopback,
// private, link-local or otherwise internal IP literal (in any notation), or
// a name that only means something inside a network, is refused
// (netpolicy.CheckHost), so that a team cannot point the daemon at the operator's
// internal services. Names are not resolved here: DNS can change after the
// check, so the dialer checks every address it actually connects to (see
// NewClient). The returned string says what is wrong, for the 422.
func CheckURL(raw string, allowPrivate bool) (*url.URL, string) {
	if len(raw) > MaxURLLength {
		return nil, fmt.Sprintf("url must be at most %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return nil, "url must be an absolute http:// or https:// URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "url must use http or https"
	}
	if u.User != nil {
		return nil, "url must not contain credentials; authenticate the request by its signature"
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		return nil, "url must not contain a fragment"
	}
	host := u.Hostname()
	if host == "" {
		return nil, "url must name a host"
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return nil, "url must not contain whitespace"
	}
	if allowPrivate {
		return u, ""
	}
	switch err := netpolicy.CheckHost(host); {
	case errors.Is(err, netpolicy.ErrInternalHost):
		return nil, "url must not point at a loopback, private or link-local address"
	case err != nil:
		return nil, "url must name a public host"
	}
	return u, ""
}

// NewClient returns the HTTP client deliveries use: no proxy (a proxy
// would hide the real target from the address check), no redirects (a 3xx
// counts as a failed attempt; following it could lead anywhere), the given
// overall timeout, and, unless allowPrivate, a dialer that refuses internal
// addresses after DNS resolution, which also defeats DNS rebinding.
func NewClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := netpolicy.Dialer(timeout, allowPrivate)
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
