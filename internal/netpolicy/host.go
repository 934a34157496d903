package netpolicy

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Reasons CheckHost gives; an API names the field and quotes one of these.
var (
	// ErrInternalHost: the host is, or names, an internal address.
	ErrInternalHost = errors.New("must not be a loopback, private, link-local or otherwise internal address")
	// ErrLocalName: a name that only means something inside the operator's
	// network (localhost, a single label the resolver completes with its
	// search domains, .internal, .local, …).
	ErrLocalName = errors.New("must be a public host name (a fully qualified domain name)")
	// ErrNumericName: a numeric form that is not a canonical IP literal
	// (2130706433, 0177.0.0.1, 0x7f.1, 127.1). C resolvers read these as
	// IPv4 addresses, and no real host is written that way.
	ErrNumericName = errors.New("must be a host name or an IP address in standard notation")
)

// localSuffixes are DNS suffixes reserved for, or conventionally used by,
// private networks; metadata.google.internal is one of them.
var localSuffixes = []string{"localhost", "local", "internal", "localdomain", "home.arpa", "lan", "intranet", "corp", "private"}

// CheckHost judges a host as a tenant wrote it (a name or an IP literal,
// IPv6 with or without brackets, trailing dots allowed). It does not
// resolve names: DNS can change after the check, so the dialer checks
// every address it connects to (Control). Syntax beyond what is judged
// here is the caller's business.
func CheckHost(host string) error {
	h := strings.ToLower(strings.TrimSpace(host))
	h = strings.TrimRight(h, ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return ErrLocalName
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" || Internal(ip) {
			return ErrInternalHost
		}
		return nil
	}
	if strings.Contains(h, ":") {
		return ErrNumericName // not a valid IPv6 literal and not a name either
	}
	labels := strings.Split(h, ".")
	if numericLabel(labels[len(labels)-1]) {
		// No top-level domain is numeric: this is an IPv4 address in one
		// of inet_aton's forms, or nothing.
		if ip, ok := parseLegacyV4(h); ok && Internal(ip) {
			return ErrInternalHost
		}
		return ErrNumericName
	}
	if len(labels) < 2 {
		return ErrLocalName
	}
	for _, s := range localSuffixes {
		if h == s || strings.HasSuffix(h, "."+s) {
			return ErrLocalName
		}
	}
	return nil
}

// numericLabel reports a label made of a decimal, octal or hex number.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if strings.HasPrefix(l, "0x") {
		_, err := strconv.ParseUint(l[2:], 16, 64)
		return err == nil || l == "0x"
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseLegacyV4 parses the IPv4 forms of inet_aton(3): one to four parts,
// each decimal, octal (leading 0) or hex (0x), the last filling the
// remaining bytes. Judging what a C resolver would connect to lets the
// refusal say "internal" rather than just "odd".
func parseLegacyV4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case strings.HasPrefix(p, "0x"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*uint(i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*uint(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
