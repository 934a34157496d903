// Package smtpproto names the connection protocols of a Custom SMTP
// provider (SPEC §2: smtp_protocol), in one place for the API that
// validates the field and the provider that dials with it.
//
// It is a leaf (imports nothing) so that admin need not import the
// relay/smtp provider to validate input. The values are wire names.
package smtpproto

// Protocols accepted in smtp_protocol.
const (
	None     = "none"     // cleartext
	Plain    = "plain"    // cleartext, same as none
	STARTTLS = "starttls" // cleartext upgraded with STARTTLS; required
	TLS      = "tls"      // implicit TLS from the first byte
	SSL      = "ssl"      // implicit TLS, same as tls
)

// Default is the protocol of a provider created without one.
const Default = STARTTLS

// All returns every accepted protocol, in the order error texts list them.
func All() []string { return []string{None, Plain, STARTTLS, TLS, SSL} }

// Valid reports whether p is an accepted protocol (exact, lower case).
func Valid(p string) bool {
	switch p {
	case None, Plain, STARTTLS, TLS, SSL:
		return true
	}
	return false
}

// ImplicitTLS reports whether p speaks TLS from the first byte.
func ImplicitTLS(p string) bool { return p == TLS || p == SSL }
