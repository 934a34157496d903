// Package netpolicy is the one rule for which network addresses a
// tenant-configured upstream may reach: webhook URLs, Custom SMTP hosts and
// own-SES endpoints. Every tenant is a possible attacker (SPEC §10), and
// the daemon usually sits inside the operator's network, next to metadata
// services, admin ports and MTAs that trust localhost; a tenant that can
// make it connect there can scan that network or relay through it.
//
// The rule is applied twice: to the host a tenant writes (CheckHost, at
// creation and update, for a clear 422), and to every address the daemon
// actually connects to (Control, in the dialer, after DNS), because a name
// can resolve inward, or change what it resolves to after the check.
// Operators whose real upstreams are on a private network opt out with
// [providers] allow_private_hosts / [webhooks] allow_private_targets; what
// the operator configures itself is trusted and never passes through here.
package netpolicy

import (
	"net/netip"
)

// Internal reports whether ip is an address a tenant's upstream must not
// reach: loopback, private (RFC 1918, ULA, old site-local), link-local
// (which holds the cloud metadata service), unspecified, multicast,
// broadcast and reserved space, shared CGNAT space, and IPv6 forms that
// carry an IPv4 address (mapped, translated, NAT64, 6to4) when the IPv4
// address inside is itself internal.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return true
	}
	if ip.Is6() {
		if v4, ok := embeddedV4(ip); ok {
			return Internal(v4)
		}
	}
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

// internalPrefixes are the ranges netip has no predicate for. None of them
// holds a public mail or API server.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated; never routed)
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215): reaches the site's IPv4
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still routed inside some sites)
}

var (
	nat64WKP       = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052 well-known prefix
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 SIIT
)

// embeddedV4 extracts the IPv4 address that an IPv6 form routes to. The
// well-known NAT64 prefix is judged by its IPv4 address rather than
// refused outright: on an IPv6-only host with DNS64 every IPv4-only
// upstream has such an address, and the gateway forwards to the IPv4
// address inside, which is what matters.
func embeddedV4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	switch {
	case nat64WKP.Contains(ip), ipv4Translated.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}
