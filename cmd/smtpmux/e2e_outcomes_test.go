package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// client opens a STARTTLS+AUTH session to the daemon, as an app would.
func (d *proc) client(key string) *smtp.Client {
	d.t.Helper()
	c, err := smtp.DialStartTLS(d.smtpAddr, insecureTLS())
	if err != nil {
		d.t.Fatal(err)
	}
	if err := c.Auth(plain(key)); err != nil {
		c.Close()
		d.t.Fatal(err)
	}
	return c
}

// insecureTLS trusts the daemon's self-signed certificate.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

func plain(key string) sasl.Client { return sasl.NewPlainClient("", "app", key) }

// sendOne runs one transaction and returns the eml_ id from the reply.
func sendOne(c *smtp.Client, from string, to []string, body []byte) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	m := emlRe.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("reply %q lacks an eml_ id", resp.StatusText)
	}
	return m[1], nil
}

func msgBody(tag string) []byte { return crlf(fmt.Sprintf(e2eMessage, tag, tag, tag)) }

func TestUpstreamOutcomes(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()

	t.Run("451 then 250 is delivered on retry", func(t *testing.T) {
		up.Script(testpeer.StepData, "retry@example.com", testpeer.Reply(451, "4.3.0", "try again"))
		id, err := sendOne(c, "retry@example.com", []string{"a@example.net"}, msgBody("retry"))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		attempts := e["attempts"].([]any)
		if e["status"] != "sent" || len(attempts) != 2 {
			t.Fatalf("email %v", e)
		}
		if first := attempts[0].(map[string]any); !strings.Contains(fmt.Sprint(first["reply"]), "451") {
			t.Fatalf("first attempt should record the 451: %v", first)
		}
	})

	t.Run("550 on one RCPT rejects that recipient only", func(t *testing.T) {
		up.Always(testpeer.StepRcpt, "nobody@example.net", testpeer.Reply(550, "5.1.1", "no such user"))
		before := up.Count()
		id, err := sendOne(c, "partial@example.com", []string{"ok1@example.net", "nobody@example.net", "ok2@example.net"}, msgBody("partial"))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		statuses := map[string]string{}
		for _, r := range e["recipients"].([]any) {
			rm := r.(map[string]any)
			statuses[rm["email"].(string)] = rm["status"].(string)
		}
		if e["status"] != "sent" || statuses["nobody@example.net"] != "rejected" || statuses["ok1@example.net"] != "sent" || statuses["ok2@example.net"] != "sent" {
			t.Fatalf("email %v", e)
		}
		msgs := up.WaitMessages(t, before+1, 5e9)
		if got := msgs[len(msgs)-1].To; len(got) != 2 {
			t.Fatalf("upstream got recipients %v", got)
		}
	})

	t.Run("drop after body is failed uncertain and never resent", func(t *testing.T) {
		up.Script(testpeer.StepData, "drop@example.com", testpeer.Drop)
		id, err := sendOne(c, "drop@example.com", []string{"a@example.net"}, msgBody("drop"))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		if e["status"] != "failed" || e["reason"] != "uncertain" || len(e["attempts"].([]any)) != 1 {
			t.Fatalf("email %v", e)
		}
		n := 0
		for _, m := range up.Received() {
			if m.From == "drop@example.com" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("upstream saw the uncertain message %d times, want 1", n)
		}
	})

	t.Run("550 at DATA rejects the message", func(t *testing.T) {
		up.Script(testpeer.StepData, "spam@example.com", testpeer.Reply(554, "5.7.1", "looks like spam"))
		id, err := sendOne(c, "spam@example.com", []string{"a@example.net"}, msgBody("spam"))
		if err != nil {
			t.Fatal(err)
		}
		if e := d.waitEmail(id); e["status"] != "rejected" {
			t.Fatalf("email %v", e)
		}
	})

	t.Run("451 forever fails after the schedule", func(t *testing.T) {
		up.Always(testpeer.StepData, "forever@example.com", testpeer.Reply(451, "4.3.0", "later"))
		id, err := sendOne(c, "forever@example.com", []string{"a@example.net"}, msgBody("forever"))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		// retry_schedule has two steps: three attempts, then failed.
		if e["status"] != "failed" || len(e["attempts"].([]any)) != 3 {
			t.Fatalf("email %v", e)
		}
	})
}

func TestUpstreamAuthFailureSetsErrorStatus(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{Username: "relay", Password: "right"})
	// A schedule long enough for the operator's fix to land before it ends.
	d := newDaemon(t, map[string]string{"delivery": `retry_schedule = ["2s", "2s"]`})
	provID, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(),
		"smtp_protocol": "none", "smtp_username": "relay", "smtp_password": "wrong"})
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("auth"))
	if err != nil {
		t.Fatal(err)
	}
	// The only provider failed auth: the message has nowhere to go and
	// waits on the retry schedule; the provider is now in error.
	_, resp := d.api("GET", "/providers/"+provID, nil)
	for i := 0; i < 200 && data(resp)["status"] != "error"; i++ {
		time.Sleep(20 * time.Millisecond)
		_, resp = d.api("GET", "/providers/"+provID, nil)
	}
	if p := data(resp); p["status"] != "error" || !strings.Contains(fmt.Sprint(p["status_reason"]), "535") {
		_, e := d.api("GET", "/emails/"+id, nil)
		t.Fatalf("provider %v\nemail %v\nlog %s", p, e, d.logText())
	}
	// Fix the password; activate returns it to rotation; the message goes.
	if code, r := d.api("PATCH", "/providers/"+provID, map[string]any{"smtp_password": "right"}); code != 200 {
		t.Fatalf("patch: %d %v", code, r)
	}
	if code, r := d.api("POST", "/providers/"+provID+"/activate", nil); code != 200 {
		t.Fatalf("activate: %d %v", code, r)
	}
	if e := d.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	var _ io.Reader
}
