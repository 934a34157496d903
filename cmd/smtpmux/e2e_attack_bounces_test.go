package main

import (
	"fmt"
	"strings"
	"testing"

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
