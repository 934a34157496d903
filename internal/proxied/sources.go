package proxied

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseSources reads a list of trusted balancer addresses: CIDR prefixes
// ("10.0.0.0/24") or single addresses ("10.0.0.5", "2001:db8::5"). It is
// strict because a mistake widens who may choose their own address: a
// prefix with host bits set ("10.0.0.5/24", a /32 mistyped?) and a prefix
// that covers every address ("0.0.0.0/0") are errors, as are zones and
// IPv4-mapped IPv6 forms.
func ParseSources(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := parseSource(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseSource(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix such as \"10.0.0.5\" or \"10.0.0.0/24\"", s)
		}
		if a.Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write an IPv4 address as %s", s, a.Unmap())
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"10.0.0.0/24\"", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write an IPv4 prefix in IPv4 form", s)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%q trusts every address, so any client could claim any address; list the balancers", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: write %s for the network, or %s/%d for the one address",
			s, m, p.Addr(), p.Addr().BitLen())
	}
	return p, nil
}
