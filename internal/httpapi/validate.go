package httpapi

import (
	"net"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field error codes inside a 422's errors[]. Like the top-level codes they
// are part of the contract.
const (
	FieldRequired     = "required"
	FieldInvalid      = "invalid"
	FieldTooLong      = "too_long"
	FieldOutOfRange   = "out_of_range"
	FieldInvalidEmail = "invalid_email"
	FieldInvalidHost  = "invalid_hostname"
	FieldNotSupported = "not_supported"
	FieldUnknownRef   = "unknown_reference"
	FieldNotEditable  = "not_editable"
)

// CheckName validates a display name of a resource: 1..max characters
// after trimming, no control characters (they break logs and UIs).
func CheckName(v *Validator, field, s string, max int) string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		v.Add(field, FieldRequired, field+" must not be empty")
	case utf8.RuneCountInString(s) > max:
		v.Add(field, FieldTooLong, field+" must be at most "+strconv.Itoa(max)+" characters")
	case HasControl(s):
		v.Add(field, FieldInvalid, field+" must not contain control characters")
	}
	return s
}

// CheckText validates an optional free-text value that ends up in a mail
// header or an SMTP command (display names, usernames): CR, LF and other
// control characters would allow header or command injection.
func CheckText(v *Validator, field, s string, max int) string {
	switch {
	case utf8.RuneCountInString(s) > max:
		v.Add(field, FieldTooLong, field+" must be at most "+strconv.Itoa(max)+" characters")
	case HasControl(s):
		v.Add(field, FieldInvalid, field+" must not contain control characters")
	case HasBidiControl(s):
		v.Add(field, FieldInvalid, field+" must not contain bidirectional control or line separator characters")
	}
	return s
}

// HasBidiControl reports bidirectional controls (U+202A–U+202E,
// U+2066–U+2069, LRM/RLM/ALM) and the line/paragraph separators: in a
// display name that reaches a header they reorder or split what a mail
// client shows ("Bob <bob@x>" rendering as someone else). Other format
// characters, such as the zero-width joiner inside emoji, are allowed.
func HasBidiControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.Is(unicode.Bidi_Control, r) || unicode.In(r, unicode.Zl, unicode.Zp)
	})
}

// HasFormatChar reports any Unicode format character (category Cf, which
// includes U+202E RIGHT-TO-LEFT OVERRIDE and zero-width characters) or
// line/paragraph separator: in a file name they disguise the real
// extension ("invoice\u202Efdp.exe" shows as "invoiceexe.pdf").
func HasFormatChar(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) })
}

// HasControl reports whether s holds any control character (line breaks
// and tabs too) or is not valid UTF-8.
func HasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return !utf8.ValidString(s)
}

// CheckEmail validates a bare address (no display name, no angle
// brackets): it becomes an envelope/header value, so "Bob <b@x>" is
// refused rather than silently split.
func CheckEmail(v *Validator, field, s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || len(s) > 254 {
		v.Add(field, FieldInvalidEmail, field+" must be a valid email address like name@example.com")
		return s
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !ValidHostname(s[at+1:]) {
		v.Add(field, FieldInvalidEmail, field+" must be a valid email address like name@example.com")
	}
	return s
}

// ValidHost accepts an IP address or a DNS hostname, nothing else: no
// scheme, port, path or whitespace, because the value is handed to the
// dialer as-is and a "smtp://host:25" would fail only at send time.
func ValidHost(s string) bool {
	return net.ParseIP(s) != nil || ValidHostname(s)
}

// ValidHostname checks RFC 1123 syntax: labels of letters, digits and
// inner hyphens, 1–63 characters each, 253 in total; one trailing dot
// (a fully qualified name) is tolerated.
func ValidHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ValidDomain is a hostname with at least two labels that is not an IP
// address: what a tracking domain (a DNS name the team points at us) must
// be.
func ValidDomain(s string) bool {
	return net.ParseIP(s) == nil && ValidHostname(s) && strings.Contains(strings.TrimSuffix(s, "."), ".")
}
