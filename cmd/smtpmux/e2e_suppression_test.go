package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// recipientOf returns the recipient entry addr of an email view.
func recipientOf(t *testing.T, e map[string]any, addr string) map[string]any {
	t.Helper()
	for _, r := range e["recipients"].([]any) {
		if rm := r.(map[string]any); rm["email"] == addr {
			return rm
		}
	}
	t.Fatalf("no recipient %s in %v", addr, e)
	return nil
}

// TestSyncBounceSuppresses: an upstream's 550 5.1.1 at RCPT is a hard
// bounce of that recipient, recorded on the message with its source and
// code; the address lands on the team's suppression list, and the next
// send to it is refused at RCPT (SMTP) and with 422 (HTTP) without
// reaching the upstream. A policy refusal (554 5.7.1) suppresses no one.
// Soft bounces (452 4.2.2 until retries run out) suppress after
// soft_bounce_limit in a row.
func TestSyncBounceSuppresses(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"": "[webhooks]\nallow_private_targets = true\n[bounces]\nsoft_bounce_limit = 2\n"})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	hook := subscribeHook(t, d, "message.bounced")
	c := d.client(key)
	defer c.Close()

	up.Always(testpeer.StepRcpt, "gone@example.net", testpeer.Reply(550, "5.1.1", "no such user"))
	id, err := sendOne(c, "s@example.com", []string{"ok@example.net", "gone@example.net"}, msgBody("hard"))
	if err != nil {
		t.Fatal(err)
	}
	e := d.waitEmail(id)
	fb, _ := recipientOf(t, e, "gone@example.net")["feedback"].([]any)
	if len(fb) != 1 {
		t.Fatalf("feedback of the refused recipient: %v", e)
	}
	if f := fb[0].(map[string]any); f["kind"] != "bounce" || f["type"] != "hard" || f["source"] != "smtp" || f["status"] != "5.1.1" {
		t.Fatalf("feedback %v", f)
	}
	if fb, _ := recipientOf(t, e, "ok@example.net")["feedback"].([]any); len(fb) != 0 {
		t.Fatalf("delivered recipient has feedback %v", fb)
	}
	if ev := hook.wait(t, "message.bounced", func(d map[string]any) bool { return d["message_id"] == id }); ev["bounce_type"] != "hard" ||
		ev["source"] != "smtp" || fmt.Sprint(ev["recipients"]) != "[gone@example.net]" {
		t.Fatalf("message.bounced %v", ev)
	}
	code, resp := d.api("GET", "/suppressions/gone@example.net", nil)
	if sup := data(resp); code != 200 || sup["reason"] != "hard_bounce" || sup["source"] != "smtp" || sup["message_id"] != id {
		t.Fatalf("suppression: %d %v", code, resp)
	}

	before := up.Count()
	_, err = sendOne(c, "s@example.com", []string{"GONE@example.net"}, msgBody("again"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || !strings.Contains(se.Message, "suppression") {
		t.Fatalf("send to a suppressed recipient: %v", err)
	}
	c.Reset()
	code, resp = d.apiAsBad(key, "POST", "/emails/send", map[string]any{"from": "s@example.com", "to": "gone@example.net",
		"subject": "x", "text_body": "x"})
	if code != 422 || !strings.Contains(fmt.Sprint(resp), "recipient_suppressed") {
		t.Fatalf("HTTP send to a suppressed recipient: %d %v", code, resp)
	}
	if up.Count() != before {
		t.Fatal("the upstream heard of a suppressed recipient")
	}

	// Removing the entry lets mail be accepted again (this upstream
	// still refuses it, which suppresses it again).
	if code, resp := d.api("DELETE", "/suppressions/gone@example.net", nil); code != 200 {
		t.Fatalf("delete: %d %v", code, resp)
	}
	if id, err := sendOne(c, "s@example.com", []string{"gone@example.net"}, msgBody("back")); err != nil {
		t.Fatalf("after delete: %v", err)
	} else {
		d.waitEmail(id)
	}

	// A policy refusal is not the address's fault.
	up.Always(testpeer.StepData, "spam@example.com", testpeer.Reply(554, "5.7.1", "looks like spam"))
	if id, err := sendOne(c, "spam@example.com", []string{"reader@example.net"}, msgBody("spam")); err != nil {
		t.Fatal(err)
	} else if e := d.waitEmail(id); e["status"] != "rejected" {
		t.Fatalf("spam: %v", e)
	}
	if code, _ := d.api("GET", "/suppressions/reader@example.net", nil); code != 404 {
		t.Fatalf("a policy refusal suppressed the recipient: %d", code)
	}

	// Soft: 452 4.2.2 at every attempt; the second message in a row
	// that ends so suppresses.
	up.Always(testpeer.StepRcpt, "full@example.net", testpeer.Reply(452, "4.2.2", "mailbox full"))
	for i := range 2 {
		if code, _ := d.api("GET", "/suppressions/full@example.net", nil); code != 404 {
			t.Fatalf("suppressed after %d soft bounces", i)
		}
		id, err := sendOne(c, "s@example.com", []string{"full@example.net"}, msgBody(fmt.Sprint("soft", i)))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		fb, _ := recipientOf(t, e, "full@example.net")["feedback"].([]any)
		if e["status"] != "failed" || len(fb) != 1 || fb[0].(map[string]any)["type"] != "soft" {
			t.Fatalf("soft %d: %v", i, e)
		}
	}
	if ev := hook.wait(t, "message.bounced", func(d map[string]any) bool { return d["bounce_type"] == "soft" }); fmt.Sprint(ev["recipients"]) != "[full@example.net]" {
		t.Fatalf("soft message.bounced %v", ev)
	}
	code, resp = d.api("GET", "/suppressions/full@example.net", nil)
	if code != 200 || data(resp)["reason"] != "soft_bounces" {
		t.Fatalf("after 2 soft bounces: %d %v", code, resp)
	}
	if !strings.Contains(d.metrics(), `smtpmux_feedback_total{provider=`) {
		t.Fatalf("no feedback metric:\n%s", d.metrics())
	}
}
