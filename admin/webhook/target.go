package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxURLLength bounds a webhook URL.
const MaxURLLength = 2048

// CheckURL validates a webhook target as the API accepts it: absolute
// http(s), a host, no credentials (they would be shown back in every
// listing) and no fragment. Unless allowPrivate, a host that is a loopback,
// private, link-local or otherwise internal IP literal, or a localhost name,
// is refused, so that a team cannot point the daemon at the operator's
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
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if internalAddr(ip) {
			return nil, "url must not point at a loopback, private or link-local address"
		}
		return u, ""
	}
	lh := strings.ToLower(strings.TrimSuffix(host, "."))
	if lh == "localhost" || strings.HasSuffix(lh, ".localhost") || !strings.Contains(lh, ".") {
		return nil, "url must name a public host"
	}
	return u, ""
}

// internalAddr reports addresses a webhook must not reach: loopback,
// RFC 1918 / ULA, link-local, unspecified, multicast, shared (CGNAT)
// and benchmarking space, broadcast; IPv4-mapped IPv6 is judged as IPv4.
func internalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range internalPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach any IPv4 address
}

// errInternalTarget is returned by the dialer for refused addresses.
var errInternalTarget = errors.New("webhook target resolves to an internal address")

// NewClient returns the HTTP client deliveries use: no proxy (a proxy
// would hide the real target from the address check), no redirects (a 3xx
// counts as a failed attempt; following it could lead anywhere), the given
// overall timeout, and, unless allowPrivate, a dialer that refuses internal
// addresses after DNS resolution, which also defeats DNS rebinding.
func NewClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || internalAddr(ap.Addr()) {
				return errInternalTarget
			}
			return nil
		}
	}
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
