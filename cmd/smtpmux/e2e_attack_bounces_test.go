package main

import (
	"fmt"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestBounceReportFloodBounded: a VERP return path is seen by everyone
// the message reaches, so anyone who got one message of a team can send
// reports under its token. Reports that differ only in a detail the
// sender picks (the ARF Feedback-Type, the DSN status) must not each add
// an entry to the message (growing the team's record without bound) and
// a webhook event: a recipient's feedback stops at a small fixed number.
func TestBounceReportFloodBounded(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d, listener := bounceDaemon(t, "")
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, "s@example.com", []string{"reader@example.net"}, msgBody("flood"))
	if err != nil {
		t.Fatal(err)
	}
	d.waitEmail(id)
	verpAddr := lastFrom(t, up, 1)
	base := string(fixture(t, "arf-abuse.eml", verpAddr, "reader@example.net", "reader@hotmail.example"))
	for i := range 40 {
		rep := strings.Replace(base, "Feedback-Type: abuse", fmt.Sprintf("Feedback-Type: x%d", i), 1)
		if err := sendReport(listener, verpAddr, []byte(rep)); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	_, e := d.api("GET", "/emails/"+id, nil)
	fb, _ := recipientOf(t, data(e), "reader@example.net")["feedback"].([]any)
	if len(fb) == 0 || len(fb) > maxFeedbackPerRecipientForTest {
		t.Fatalf("40 reports under one token left %d feedback entries, want 1..%d", len(fb), maxFeedbackPerRecipientForTest)
	}
}

// maxFeedbackPerRecipientForTest mirrors relay/bounce's cap.
const maxFeedbackPerRecipientForTest = 8

// TestBounceListenerPostmasterHoldsNoSlot (hostile sender): a message to
// postmaster is accepted and dropped (it names no message), so it is not
// the report whose hand-over resets the junk count. Else a client could
// hold a connection slot for ever, a tiny postmaster message every few
// commands, which the junk limit exists to prevent.
func TestBounceListenerPostmasterHoldsNoSlot(t *testing.T) {
	_, listener := bounceDaemon(t, "")
	junkLoop(t, listener, "postmaster@bounces.relay.test")
}

// TestBounceListenerNonReportHoldsNoSlot: the same with a message that is
// not a report (an auto-reply, or junk) to a valid VERP address, which
// anyone who received one of the team's messages holds: it is accepted
// and dropped, and does not reset the junk count either.
func TestBounceListenerNonReportHoldsNoSlot(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d, listener := bounceDaemon(t, "")
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, "s@example.com", []string{"reader@example.net"}, msgBody("junk"))
	if err != nil {
		t.Fatal(err)
	}
	d.waitEmail(id)
	junkLoop(t, listener, lastFrom(t, up, 1))
}

// junkLoop sends tiny non-reports to rcpt on one connection until the
// listener closes it; it fails if 30 go through.
func junkLoop(t *testing.T, listener, rcpt string) {
	t.Helper()
	c, err := gosmtp.Dial(listener)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("a.example"); err != nil {
		t.Fatal(err)
	}
	var sendErr error
	for i := 0; i < 30 && sendErr == nil; i++ {
		sendErr = func() error {
			if err := c.Mail("", nil); err != nil {
				return err
			}
			if err := c.Rcpt(rcpt, nil); err != nil {
				return err
			}
			w, err := c.Data()
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte("Subject: hi\r\n\r\nstill here\r\n")); err != nil {
				return err
			}
			return w.Close()
		}()
	}
	if smtpCode(sendErr) != 421 {
		t.Fatalf("30 messages to %s on one connection: %v, want 421 (the junk limit)", rcpt, sendErr)
	}
}
