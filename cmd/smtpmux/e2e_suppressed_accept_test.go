package main

import (
	"testing"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestSuppressedAccept: with [bounces] suppressed_action = "accept" a
// suppressed recipient is accepted over SMTP and HTTP and recorded as
// "suppressed" without reaching the upstream; the other recipients of
// its message are sent; a message with no other recipient is finished at
// once with status "suppressed" and no attempt. The logs filter by it.
func TestSuppressedAccept(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"": "[bounces]\nsuppressed_action = \"accept\"\n"})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	if code, resp := d.api("POST", "/suppressions", map[string]any{"email": "gone@example.net", "reason": "test"}); code != 201 {
		t.Fatalf("suppress: %d %v", code, resp)
	}
	c := d.client(key)
	defer c.Close()

	mixed, err := sendOne(c, "s@example.com", []string{"ok@example.net", "Gone@example.net"}, msgBody("mixed"))
	if err != nil {
		t.Fatalf("mixed send: %v", err)
	}
	e := d.waitEmail(mixed)
	if e["status"] != "sent" || recipientOf(t, e, "ok@example.net")["status"] != "sent" ||
		recipientOf(t, e, "Gone@example.net")["status"] != "suppressed" {
		t.Fatalf("mixed: %v", e)
	}
	msgs := up.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "ok@example.net" {
		t.Fatalf("upstream got %+v", msgs)
	}

	only, err := sendOne(c, "s@example.com", []string{"gone@example.net"}, msgBody("only"))
	if err != nil {
		t.Fatalf("suppressed-only send: %v", err)
	}
	e = d.waitEmail(only)
	if atts, _ := e["attempts"].([]any); e["status"] != "suppressed" || len(atts) != 0 {
		t.Fatalf("suppressed-only: %v", e)
	}
	c.Reset()
	code, resp := d.apiAs(key, "POST", "/emails/send", map[string]any{"from": "s@example.com", "to": "gone@example.net",
		"subject": "x", "text_body": "x"})
	if code != 200 && code != 201 && code != 202 {
		t.Fatalf("HTTP send to a suppressed recipient: %d %v", code, resp)
	}
	httpID, _ := data(resp)["message_id"].(string)
	if e := d.waitEmail(httpID); e["status"] != "suppressed" {
		t.Fatalf("HTTP suppressed-only: %v", e)
	}
	if up.Count() != 1 {
		t.Fatalf("the upstream heard of a suppressed recipient: %d messages", up.Count())
	}
	code, resp = d.api("GET", "/emails/logs?status=suppressed", nil)
	if items, _ := resp["data"].([]any); code != 200 || len(items) != 2 {
		t.Fatalf("logs ?status=suppressed: %d %v", code, resp)
	}
}
