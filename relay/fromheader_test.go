package relay

import "testing"

// TestMailboxHeaders: a mailbox password's message names only the mailbox
// (issue 12 item 6). Each refused case was accepted by the lenient check
// that read the first From that parsed.
func TestMailboxHeaders(t *testing.T) {
	const mb = "bob@allowed.test"
	for _, c := range []struct {
		name, head string
		ok         bool
	}{
		{"plain", "From: bob@allowed.test\r\nSubject: x\r\n\r\nbody\r\n", true},
		{"display name", "From: \"Bob\" <Bob@Allowed.test>\r\n\r\nbody\r\n", true},
		{"folded", "Subject: x\r\nFrom: Bob\r\n <bob@allowed.test>\r\n\r\n", true},
		{"reply-to elsewhere", "From: bob@allowed.test\r\nReply-To: help@other.test\r\n\r\n", true},
		{"sender is mailbox", "From: bob@allowed.test\r\nSender: bob@allowed.test\r\n\r\n", true},
		{"headers only", "From: bob@allowed.test\r\nSubject: x\r\n", true},
		{"second From", "From: bob@allowed.test\r\nFrom: ceo@victim.test\r\n\r\n", false},
		{"second from, lower case", "From: bob@allowed.test\r\nfrom: ceo@victim.test\r\n\r\n", false},
		{"garbage before spoofed From", "garbage line\r\nFrom: ceo@victim.test\r\n\r\n", false},
		{"garbage between", "From: bob@allowed.test\r\ngarbage line\r\nFrom: ceo@victim.test\r\n\r\n", false},
		{"obsolete From :", "From : ceo@victim.test\r\nFrom: bob@allowed.test\r\n\r\n", false},
		{"obsolete From : alone", "From : bob@allowed.test\r\n\r\n", false},
		{"two addresses", "From: bob@allowed.test, ceo@victim.test\r\n\r\n", false},
		{"group", "From: staff: bob@allowed.test;\r\n\r\n", false},
		{"no From", "Subject: x\r\n\r\n", false},
		{"other From", "From: ceo@victim.test\r\n\r\n", false},
		{"spoofed Sender", "From: bob@allowed.test\r\nSender: ceo@victim.test\r\n\r\n", false},
		{"two Senders", "From: bob@allowed.test\r\nSender: bob@allowed.test\r\nSender: bob@allowed.test\r\n\r\n", false},
		{"spoofed Resent-From", "From: bob@allowed.test\r\nResent-From: ceo@victim.test\r\n\r\n", false},
		{"continuation first", " From: bob@allowed.test\r\nFrom: ceo@victim.test\r\n\r\n", false},
		{"empty header", "\r\nFrom: bob@allowed.test\r\n\r\n", false},
		{"non-ASCII field name", "Fröm: x\r\nFrom: bob@allowed.test\r\n\r\n", false},
		{"bare CR fold", "From: bob@allowed.test\r\nSubject: x\rFrom: ceo@victim.test\r\n\r\n", false},
		{"quoted comma in display name", "From: \"Smith, Bob\" <bob@allowed.test>\r\n\r\n", true},
		{"trailing comma", "From: bob@allowed.test,\r\n\r\n", false},
		{"leading comma", "From: , bob@allowed.test\r\n\r\n", false},
		{"Sender trailing comma", "From: bob@allowed.test\r\nSender: bob@allowed.test,\r\n\r\n", false},
		{"non-ASCII domain", "From: bob@allowed.te\u017ft\r\n\r\n", false},
		{"non-ASCII Sender", "From: bob@allowed.test\r\nSender: b\u00f6b@allowed.test\r\n\r\n", false},
	} {
		if got := headerFromIs([]byte(c.head), mb); got != c.ok {
			t.Errorf("%s: %q accepted=%v, want %v", c.name, c.head, got, c.ok)
		}
	}
	// Unicode case folding would take these lookalikes for the mailbox
	// sk@allowed.test (U+017F LATIN SMALL LETTER LONG S, U+212A KELVIN
	// SIGN); only ASCII folding applies.
	for _, c := range []struct {
		head string
		ok   bool
	}{
		{"From: SK@Allowed.TEST\r\n\r\n", true},
		{"From: \u017fK@allowed.test\r\n\r\n", false},
		{"From: s\u212a@allowed.test\r\n\r\n", false},
		{"From: \u017f\u212a@allowed.test\r\n\r\n", false},
		{"From: sk@allowed.test\r\nSender: \u017fk@allowed.test\r\n\r\n", false},
	} {
		if got := headerFromIs([]byte(c.head), "sk@allowed.test"); got != c.ok {
			t.Errorf("%q accepted=%v, want %v", c.head, got, c.ok)
		}
	}
	// A header block not ended within the bytes read is not trusted.
	if mailboxHeadersOK([]byte("From: bob@allowed.test\r\nX: y"), mb, false) {
		t.Error("an unfinished header block of a spooled message was accepted")
	}
}

// TestEnvelopeAddresses: envelope addresses are one ASCII mailbox each
// (issue 12 item 11); the reply says which rule refused them.
func TestEnvelopeAddresses(t *testing.T) {
	for _, c := range []struct {
		addr string
		code int
	}{
		{"a@example.com", 0},
		{"first.last+tag@sub.example.com", 0},
		{"o'neil@example.com", 0},
		{"x@[192.0.2.1]", 0},
		{"x@[IPv6:2001:db8::1]", 0},
		{"a@x,b@y.test", 553},
		{"a@x.test,b@y.test", 553},
		{"a,b@y.test", 553},
		{"a@b@y.test", 553},
		{"a b@y.test", 553},
		{".a@y.test", 553},
		{"a..b@y.test", 553},
		{"a@y..test", 553},
		{"a@[not-an-ip]", 553},
		{"a@[1.2.3.4", 553},
		{"a@-", 0}, // a label may be odd; DNS decides
		{"ü@example.com", 553},
		{"a@bücher.example", 553},
	} {
		err := addressError(c.addr)
		switch {
		case c.code == 0 && err != nil:
			t.Errorf("%q refused: %v", c.addr, err)
		case c.code != 0 && (err == nil || err.Code != c.code):
			t.Errorf("%q: %v, want %d", c.addr, err, c.code)
		}
	}
	if err := addressError("ü@example.com"); err != errNonASCIIAddr {
		t.Errorf("non-ASCII address: %v, want 553 5.6.7", err)
	}
}
