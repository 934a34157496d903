package relay

import (
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"
)

// errNonASCIIAddr answers an envelope address with non-ASCII characters:
// smtpmux does not offer SMTPUTF8, so such an address could not be
// relayed as written (RFC 6531 §3.5 gives 553 5.6.7).
var errNonASCIIAddr = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
	Message: "Non-ASCII address needs SMTPUTF8, which is not offered"}

// addressError checks an envelope address and returns the reply that
// refuses it, or nil. go-smtp has already unquoted a quoted local part and
// refused source routes (PATCHES.md 8).
func addressError(a string) *smtp.SMTPError {
	for i := 0; i < len(a); i++ {
		if a[i] >= 0x80 {
			return errNonASCIIAddr
		}
	}
	if !validAddress(a) {
		return errBadAddr
	}
	return nil
}

// validAddress is a strict check of an envelope address: one mailbox,
// local@domain within RFC 5321 lengths, a dot-atom local part (so
// "<a@x,b@y>", which go-smtp reads as the local part "a" at the domain
// "x,b@y", and quoted local parts with specials or spaces are refused) and
// an ASCII host name or an IP address literal.
func validAddress(a string) bool {
	if len(a) > 254 {
		return false
	}
	at := strings.IndexByte(a, '@')
	if at < 1 || at > 64 || at == len(a)-1 {
		return false
	}
	return dotAtom(a[:at]) && validDomain(a[at+1:])
}

// dotAtom reports whether s is an RFC 5322 dot-atom of ASCII atext.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
			return false
		}
	}
	return true
}

// validDomain accepts an ASCII host name (letters, digits, hyphens, dots,
// no empty label) or an address literal ([192.0.2.1], [IPv6:2001:db8::1]).
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return false
		}
		lit := d[1 : len(d)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			ip, err := netip.ParseAddr(v6)
			return err == nil && ip.Is6() && ip.Zone() == ""
		}
		ip, err := netip.ParseAddr(lit)
		return err == nil && ip.Is4()
	}
	if d == "" || len(d) > 253 || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
