// Package dnscheck tells a team which DNS records to publish for a sending
// domain and checks that they are there (SPEC §6, POST /domains and
// POST /domains/{id}/verify).
//
// It imports nothing of smtpmux: the domain's token, selector and DKIM
// public key come from the caller (relay/shape generates the key), and the
// resolver address is a plain setting, so tests point it at a DNS server
// on 127.0.0.1 (see package dnstest).
package dnscheck

import (
	"fmt"
	"strings"
)

// Check names, shared by Record.Purpose and Check.Name, as the API
// reports them.
const (
	CheckVerification = "verification_txt"
	CheckDKIM         = "dkim"
	CheckSPF          = "spf"
	CheckDMARC        = "dmarc"
)

// VerificationPrefix starts the ownership TXT value; the token follows.
const VerificationPrefix = "smtpmux-verification="

// zoneTTL is the TTL suggested in the zone snippet: an hour lets a team fix
// a typo without waiting long for caches.
const zoneTTL = 3600

// Record is one DNS record the team should publish.
type Record struct {
	Purpose  string `json:"purpose"`  // one of the Check* names
	Type     string `json:"type"`     // always "TXT" for now
	Name     string `json:"name"`     // fully qualified, without the trailing dot
	Value    string `json:"value"`    // the whole TXT value; see ZoneFile for the split form
	Required bool   `json:"required"` // whether verification depends on it
}

// Records returns the records to publish for domain: the ownership TXT at
// _smtpmux.<domain>, the DKIM key at <selector>._domainkey.<domain> (dkimTXT
// as produced by shape.GenerateKey), a suggested SPF record and a
// monitoring-only DMARC policy. spfIncludes are the include: mechanisms of
// the upstream providers the team sends through (e.g. "amazonses.com" for
// SES); without them the suggestion authorises the domain's MX hosts only.
// SPF and DMARC are suggestions: verification needs only the first two.
// domain and selector must satisfy ValidDomain.
func Records(domain, selector, verificationToken, dkimTXT string, spfIncludes ...string) []Record {
	domain = normalize(domain)
	spf := "v=spf1 mx"
	for _, inc := range spfIncludes {
		spf += " include:" + inc
	}
	spf += " ~all"
	return []Record{
		{CheckVerification, "TXT", "_smtpmux." + domain, VerificationPrefix + verificationToken, true},
		{CheckDKIM, "TXT", normalize(selector) + "._domainkey." + domain, dkimTXT, true},
		{CheckSPF, "TXT", domain, spf, false},
		// p=none: start by collecting reports without affecting delivery;
		// relaxed alignment accepts our d=<domain> signatures on subdomains.
		{CheckDMARC, "TXT", "_dmarc." + domain, "v=DMARC1; p=none; adkim=r; aspf=r", false},
	}
}

// ZoneFile renders records as a BIND zone-file snippet with absolute names.
// Values over 255 bytes are split into several quoted strings in one
// record, as a TXT record requires (RFC 1035 §3.3.14); verifiers join them.
func ZoneFile(records []Record) string {
	var b strings.Builder
	b.WriteString("; DNS records for smtpmux; paste into the zone and reload.\n")
	for _, r := range records {
		fmt.Fprintf(&b, "; %s", r.Purpose)
		if !r.Required {
			b.WriteString(" (suggested)")
		}
		b.WriteString("\n")
		chunks := splitTXT(r.Value)
		quoted := make([]string, len(chunks))
		for i, c := range chunks {
			quoted[i] = quoteTXT(c)
		}
		val := quoted[0]
		if len(quoted) > 1 {
			val = "( " + strings.Join(quoted, "\n\t\t") + " )"
		}
		fmt.Fprintf(&b, "%s.\t%d\tIN\t%s\t%s\n", r.Name, zoneTTL, r.Type, val)
	}
	return b.String()
}

// ValidDomain reports whether d is a host name we can publish records
// under: LDH labels of 1-63 bytes, 253 bytes in all, at least two labels
// for a domain. Internationalised names must be given in A-label
// (xn--) form; converting them needs a table this package does not carry.
func ValidDomain(d string) bool {
	d = normalize(d)
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// normalize lower-cases a name and drops a trailing dot: DNS names compare
// case-insensitively, and our Record names are written without it.
func normalize(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// splitTXT cuts a value into the ≤255-byte character-strings one DNS
// TXT record is made of (RFC 1035 §3.3.14); verifiers concatenate them
// back (RFC 6376 §3.6.2.2), so the split may fall anywhere.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// quoteTXT writes a character-string in zone-file syntax (RFC 1035 §5.1).
func quoteTXT(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
