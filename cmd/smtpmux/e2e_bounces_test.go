package main

import (
	"fmt"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// bounceDaemon starts a daemon whose SMTP deliveries use VERP return
// paths at bounces.relay.test and whose bounce listener is on its own
// address; op is the operator token.
func bounceDaemon(t *testing.T, extra string) (d *proc, bounceAddr string) {
	t.Helper()
	bounceAddr = freeAddr(t)
	d = newDaemon(t, map[string]string{"": fmt.Sprintf("operator_token = %q\n[webhooks]\nallow_private_targets = true\n[bounces]\nlisten = %q\ndomain = \"bounces.relay.test\"\nmax_message_bytes = 65536\n%s\n",
		"operator-token-0123456789", bounceAddr, extra)})
	return d, bounceAddr
}

// sendReport delivers raw to the bounce listener for rcpt, from the null
// sender, as a remote MTA does; it returns the listener's error.
func sendReport(addr, rcpt string, raw []byte) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mx.example.net"); err != nil {
		return err
	}
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
	if _, err := w.Write(raw); err != nil {
		return err
	}
	return w.Close()
}

// fixture is a report of relay/bounce/testdata with its VERP address and
// recipient replaced.
func fixture(t *testing.T, name, verpAddr, rcpt, fixtureRcpt string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../../relay/bounce/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(raw), "b+TOKEN@bounces.relay.test", verpAddr)
	s = strings.ReplaceAll(s, fixtureRcpt, rcpt)
	return []byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
}

// lastFrom is the envelope sender of the upstream's last message.
func lastFrom(t *testing.T, up *testpeer.Server, n int) string {
	t.Helper()
	msgs := up.WaitMessages(t, n, 5e9)
	return msgs[len(msgs)-1].From
}

// TestBounceListener walks the asynchronous path through the binary: a
// delivery carries a VERP return path; a Postfix-shaped DSN sent to it
// marks the recipient hard-bounced (source dsn) and suppressed, and the
// next send is refused; a delayed-delivery notice records nothing; an
// ARF report is a complaint. Then the hostile side: forged, altered and
// unknown tokens get 550 at RCPT, an oversized report 552, and a report
// under a valid token that names a recipient the token's message was not
// sent to (another team's) changes nothing.
func TestBounceListener(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d, listener := bounceDaemon(t, "")
	provID, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	hook := subscribeHook(t, d, "message.bounced", "message.complained")
	c := d.client(key)
	defer c.Close()

	id, err := sendOne(c, "s@example.com", []string{"Nobody@Example.net"}, msgBody("dsn"))
	if err != nil {
		t.Fatal(err)
	}
	if e := d.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	verpAddr := lastFrom(t, up, 1)
	if !strings.HasPrefix(verpAddr, "b+") || !strings.HasSuffix(verpAddr, "@bounces.relay.test") {
		t.Fatalf("envelope sender %q is not a VERP return path", verpAddr)
	}

	// Hostile: tokens not minted here are refused at RCPT.
	tok := strings.TrimSuffix(strings.TrimPrefix(verpAddr, "b+"), "@bounces.relay.test")
	parts := strings.Split(tok, "-")
	altered := "b+" + parts[0] + "-" + parts[1] + "-" + "zzzzzz" + "-" + parts[3] + "@bounces.relay.test"
	for _, rcpt := range []string{"b+forged-0-abc-aaaaaaaaaaaaaaaa@bounces.relay.test", altered} {
		if err := sendReport(listener, rcpt, []byte("Subject: x\r\n\r\nx\r\n")); smtpCode(err) != 550 {
			t.Fatalf("RCPT %s: %v, want 550", rcpt, err)
		}
	}
	big := fixture(t, "postfix-unknown-user.eml", verpAddr, "nobody@example.net", "nobody@example.net")
	big = append(big, []byte(strings.Repeat(strings.Repeat("x", 76)+"\r\n", 1000))...)
	if err := sendReport(listener, verpAddr, big); smtpCode(err) != 552 {
		t.Fatalf("oversized report: %v, want 552", err)
	}

	// A delayed-delivery notice is not a failure.
	if err := sendReport(listener, verpAddr, fixture(t, "postfix-delayed.eml", verpAddr, "nobody@example.net", "slow@example.org")); err != nil {
		t.Fatalf("delayed notice: %v", err)
	}
	// A report naming another recipient than the token's: ignored.
	if err := sendReport(listener, verpAddr, fixture(t, "postfix-unknown-user.eml", verpAddr, "victim@example.org", "nobody@example.net")); err != nil {
		t.Fatalf("report for another recipient: %v", err)
	}
	_, e := d.api("GET", "/emails/"+id, nil)
	if fb, _ := recipientOf(t, data(e), "Nobody@Example.net")["feedback"].([]any); len(fb) != 0 {
		t.Fatalf("feedback after a delay notice and a foreign report: %v", fb)
	}
	if code, _ := d.api("GET", "/suppressions/victim@example.org", nil); code != 404 {
		t.Fatal("a report under this message's token suppressed an address it was not sent to")
	}

	// The real thing.
	if err := sendReport(listener, verpAddr, fixture(t, "postfix-unknown-user.eml", verpAddr, "nobody@example.net", "nobody@example.net")); err != nil {
		t.Fatalf("DSN: %v", err)
	}
	_, e = d.api("GET", "/emails/"+id, nil)
	fb, _ := recipientOf(t, data(e), "Nobody@Example.net")["feedback"].([]any)
	if len(fb) != 1 || fb[0].(map[string]any)["source"] != "dsn" || fb[0].(map[string]any)["type"] != "hard" || fb[0].(map[string]any)["status"] != "5.1.1" {
		t.Fatalf("feedback after the DSN: %v", fb)
	}
	code, resp := d.api("GET", "/suppressions/nobody@example.net", nil)
	if code != 200 || data(resp)["source"] != "dsn" || data(resp)["message_id"] != id {
		t.Fatalf("suppression: %d %v", code, resp)
	}
	if _, err := sendOne(c, "s@example.com", []string{"nobody@example.net"}, msgBody("again")); smtpCode(err) != 550 {
		t.Fatalf("send after the DSN: %v", err)
	}
	c.Reset()
	// The same DSN again records nothing more.
	if err := sendReport(listener, verpAddr, fixture(t, "postfix-unknown-user.eml", verpAddr, "nobody@example.net", "nobody@example.net")); err != nil {
		t.Fatal(err)
	}
	_, e = d.api("GET", "/emails/"+id, nil)
	if fb, _ := recipientOf(t, data(e), "Nobody@Example.net")["feedback"].([]any); len(fb) != 1 {
		t.Fatalf("a repeated DSN was recorded twice: %v", fb)
	}

	// A complaint.
	id2, err := sendOne(c, "s@example.com", []string{"reader@example.net"}, msgBody("arf"))
	if err != nil {
		t.Fatal(err)
	}
	d.waitEmail(id2)
	verp2 := lastFrom(t, up, 2)
	if err := sendReport(listener, verp2, fixture(t, "arf-abuse.eml", verp2, "reader@example.net", "reader@hotmail.example")); err != nil {
		t.Fatalf("ARF: %v", err)
	}
	code, resp = d.api("GET", "/suppressions/reader@example.net", nil)
	if code != 200 || data(resp)["reason"] != "complaint" || data(resp)["source"] != "arf" || data(resp)["detail"] != "abuse" {
		t.Fatalf("complaint suppression: %d %v", code, resp)
	}
	// The provider's own return-path domain wins over [bounces] domain;
	// a null sender stays null.
	if code, resp := d.api("PATCH", "/providers/"+provID, map[string]any{"return_path_domain": "rp.example.org"}); code != 200 {
		t.Fatalf("patch: %d %v", code, resp)
	}
	if id, err := sendOne(c, "s@example.com", []string{"a@example.net"}, msgBody("rp")); err != nil {
		t.Fatal(err)
	} else {
		d.waitEmail(id)
	}
	if from := lastFrom(t, up, 3); !strings.HasPrefix(from, "b+") || !strings.HasSuffix(from, "@rp.example.org") {
		t.Fatalf("envelope sender %q: want a token at rp.example.org", from)
	}
	if id, err := sendOne(c, "", []string{"a@example.net"}, msgBody("null")); err != nil {
		t.Fatal(err)
	} else {
		d.waitEmail(id)
	}
	if from := lastFrom(t, up, 4); from != "" {
		t.Fatalf("a null sender became %q", from)
	}
	// Several recipients in one transaction keep the sender's own
	// envelope: a token every recipient sees, good for all of them, would
	// let one forge bounces and complaints about the others.
	if id, err := sendOne(c, "s@example.com", []string{"a@example.net", "b@example.net"}, msgBody("two")); err != nil {
		t.Fatal(err)
	} else {
		d.waitEmail(id)
	}
	if from := lastFrom(t, up, 5); from != "s@example.com" {
		t.Fatalf("a two-recipient transaction's envelope sender is %q, want the sender's own", from)
	}
	// Signed webhooks for both.
	ev := hook.wait(t, "message.bounced", func(d map[string]any) bool { return d["message_id"] == id })
	if ev["bounce_type"] != "hard" || ev["source"] != "dsn" || ev["status"] != "5.1.1" || !strings.Contains(fmt.Sprint(ev["diagnostic_code"]), "unknown user") {
		t.Fatalf("message.bounced %v", ev)
	}
	ev = hook.wait(t, "message.complained", func(d map[string]any) bool { return d["message_id"] == id2 })
	if ev["feedback_type"] != "abuse" || ev["source"] != "arf" || fmt.Sprint(ev["recipients"]) != "[reader@example.net]" {
		t.Fatalf("message.complained %v", ev)
	}
	m := d.metrics()
	for _, want := range []string{`source="dsn",type="hard"`, `source="arf",type="complaint"`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBounceListenerLimits: the listener is on the open Internet: one
// client address gets at most max_connections_per_ip connections (the
// next is told 421 at once), and a connection that guesses tokens is
// closed after three wrong ones.
func TestBounceListenerLimits(t *testing.T) {
	d, listener := bounceDaemon(t, "max_connections_per_ip = 2\n")
	_ = d
	var open []*gosmtp.Client
	for range 2 {
		c, err := gosmtp.Dial(listener)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("a.example"); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if c, err := gosmtp.Dial(listener); err == nil {
		err = c.Hello("a.example")
		c.Close()
		if smtpCode(err) != 421 {
			t.Fatalf("third connection: %v, want 421", err)
		}
	} else if smtpCode(err) != 421 {
		t.Fatalf("third connection: %v, want 421", err)
	}
	c := open[0]
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := c.Rcpt(fmt.Sprintf("b+guess%d-0-zz-aaaaaaaaaaaaaaaa@bounces.relay.test", i), nil)
		if want := map[bool]int{true: 421, false: 550}[i == 2]; smtpCode(err) != want {
			t.Fatalf("guess %d: %v, want %d", i, err, want)
		}
	}
	// The guesser's connection is closed: its slot is free again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2, err := gosmtp.Dial(listener)
		if err == nil {
			err = c2.Hello("a.example")
			c2.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guesser's connection still holds its slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range open {
		c.Close()
	}
}

// TestBounceListenerPostmasterAndJunk: postmaster is accepted without a
// token; commands that hand over nothing are bounded.
func TestBounceListenerPostmasterAndJunk(t *testing.T) {
	_, listener := bounceDaemon(t, "")

	// postmaster is accepted (RFC 5321 §4.5.1) at any domain,
	// and needs no token.
	for _, rcpt := range []string{"postmaster@bounces.relay.test", "PostMaster@other.example"} {
		if err := sendReport(listener, rcpt, []byte("Subject: hello\r\n\r\nabuse desk here\r\n")); err != nil {
			t.Fatalf("report to %s: %v", rcpt, err)
		}
	}

	// Commands that hand over no report are bounded: a client cannot
	// hold its slot with NOOPs.
	c, err := gosmtp.Dial(listener)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("a.example"); err != nil {
		t.Fatal(err)
	}
	var noopErr error
	for i := 0; i < 100 && noopErr == nil; i++ {
		noopErr = c.Noop()
	}
	if smtpCode(noopErr) != 421 {
		t.Fatalf("100 NOOPs: %v, want 421", noopErr)
	}

	// The same before EHLO, which go-smtp serves NOOP and RSET without
	// (there is no session yet to count them on).
	raw, err := textproto.Dial("tcp", listener)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, _, err := raw.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	code := 0
	for i := 0; i < 100 && code != 421; i++ {
		if err := raw.PrintfLine("NOOP"); err != nil {
			break
		}
		code, _, _ = raw.ReadResponse(0)
	}
	if code != 421 {
		t.Fatalf("100 NOOPs before EHLO: last answer %d, want 421", code)
	}
}
