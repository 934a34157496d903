package main

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestTruncatedBodyNotRelayed: a client whose connection ends half way
// through DATA (no <CRLF>.<CRLF>) or through a BDAT LAST chunk never got a
// 250 and will send the message again. The daemon must store nothing and
// relay nothing of the part it did get, or the recipient reads a cut-off
// copy and then the whole one.
func TestTruncatedBodyNotRelayed(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(plainProvider(up, "up", nil))
	body := "From: app@example.com\r\nTo: u@example.net\r\nSubject: wire transfer\r\n\r\n" +
		"Please pay 1000 EUR to account DE12 3456 7890 1234 5678 90\r\n"
	half := body[:len(body)/2]

	for _, mode := range []string{"DATA", "BDAT"} {
		c := rawSession(t, d, key)
		for _, line := range []string{"MAIL FROM:<app@example.com>", "RCPT TO:<u@example.net>"} {
			if code, text, err := c.cmd(line); code != 250 {
				t.Fatalf("%s: %s: %d %q %v", mode, line, code, text, err)
			}
		}
		cutOff := half
		if mode == "DATA" {
			if code, text, err := c.cmd("DATA"); code != 354 {
				t.Fatalf("DATA: %d %q %v", code, text, err)
			}
		} else {
			cutOff = fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), half)
		}
		if err := c.write([]byte(cutOff)); err != nil {
			t.Fatal(err)
		}
		// The connection ends: close_notify, so the daemon reads a
		// clean end of stream in the middle of the body.
		if err := c.conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// Whatever the daemon answers, it must not be a 250, and then it
		// ends the session; by then a message it had queued would be
		// stored.
		for {
			code, text, err := c.reply()
			if err != nil {
				break
			}
			if code/100 == 2 {
				t.Errorf("%s cut off: reply %d %q", mode, code, text)
			}
		}
		if !c.closed(10 * time.Second) {
			t.Fatalf("%s cut off: the daemon did not close the connection", mode)
		}
		if n := len(allEmails(t, d)); n != 0 {
			t.Fatalf("%s cut off: %d message(s) in /emails/logs, want none", mode, n)
		}
	}

	// A whole message after them goes through, and is the only one
	// stored and relayed (the store check above is what rules out a
	// queued cut-off copy; this shows the session path still delivers).
	c := rawSession(t, d, key)
	if code, text, err := c.dataRaw(strings.TrimSuffix(body, "\r\n")); code != 250 {
		t.Fatalf("whole message: %d %q %v", code, text, err)
	}
	msgs := up.WaitMessages(t, 1, 15*time.Second)
	if string(msgs[0].Data) != body {
		t.Fatalf("upstream got %q", msgs[0].Data)
	}
	if n := len(allEmails(t, d)); n != 1 {
		t.Fatalf("%d messages in /emails/logs, want only the whole one", n)
	}
	if n := up.Count(); n != 1 {
		t.Fatalf("upstream got %d messages, want only the whole one", n)
	}
}
