package relay

import (
	"strings"
	"testing"
)

// FuzzEnvelopeAndHeaders feeds hostile input to the parsers the SMTP
// session runs on client data: envelope address checks and the header
// summary/From check. They must never panic, and an accepted address
// never carries whitespace, control characters or angle brackets.
func FuzzEnvelopeAndHeaders(f *testing.F) {
	f.Add("a@example.com", "From: A <a@example.com>\r\nSubject: hi\r\n\r\nbody")
	f.Add("x@[127.0.0.1]", "Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: \"q\\\"x\" <x@y>\r\n\r\n")
	f.Add("bad address@", "no header block at all")
	f.Add("\x00@\x00", "From: a@b, c@d\r\n\r\n")
	f.Fuzz(func(t *testing.T, addr, msg string) {
		if validAddress(addr) && strings.ContainsAny(addr, " \t\r\n<>\x00\x7f") {
			t.Fatalf("accepted %q", addr)
		}
		subject, _ := headerSummary([]byte(msg))
		if len(subject) > 998 {
			t.Fatalf("subject of %d bytes", len(subject))
		}
		headerFromIs([]byte(msg), addr)
	})
}
