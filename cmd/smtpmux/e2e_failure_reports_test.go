package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay/bounce"
)

// nullSenderMessages are the messages the upstream received with
// MAIL FROM:<> (failure reports).
func nullSenderMessages(up *testpeer.Server) []testpeer.Message {
	var out []testpeer.Message
	for _, m := range up.Messages() {
		if m.From == "" {
			out = append(out, m)
		}
	}
	return out
}

// TestFailureReports: a sending key with failure_reports=true whose
// message is refused for one recipient (550 5.1.1 at RCPT) makes smtpmux
// send one RFC 3464 report, MAIL FROM:<>, to the original envelope sender
// through the team's provider; smtpmux's own bounce parser reads the
// failed recipient and 5.1.1 out of it, and the message log shows it with
// source failure_report. A key without the opt-in, and a null-sender
// original, get no report.
func TestFailureReports(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, plainKey := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	code, resp := d.api("POST", "/api-keys", map[string]any{"name": "reports", "type": "sending", "failure_reports": true})
	if code != 201 || data(resp)["failure_reports"] != true {
		t.Fatalf("create key: %d %v", code, resp)
	}
	optedIn := data(resp)["key"].(string)
	for _, a := range []string{"gone@example.net", "gone2@example.net", "gone3@example.net"} {
		up.Always(testpeer.StepRcpt, a, testpeer.Reply(550, "5.1.1", "no such user"))
	}
	metric := func(outcome string) bool {
		return strings.Contains(d.metrics(), `smtpmux_failure_reports_total{outcome="`+outcome+`"} 1`)
	}

	c := d.client(optedIn)
	defer c.Close()
	id, err := sendOne(c, "s@example.com", []string{"ok@example.net", "gone@example.net"}, msgBody("report"))
	if err != nil {
		t.Fatal(err)
	}
	var rep testpeer.Message
	waitFor(t, 15*time.Second, "the failure report at the upstream", func() bool {
		ms := nullSenderMessages(up)
		if len(ms) > 0 {
			rep = ms[0]
		}
		return len(ms) > 0
	})
	if strings.Join(rep.To, ",") != "s@example.com" {
		t.Fatalf("report to %v", rep.To)
	}
	parsed, err := bounce.Parse(bytes.NewReader(rep.Data))
	if err != nil {
		t.Fatalf("parse report: %v\n%s", err, rep.Data)
	}
	if parsed.Kind != bounce.KindDSN || len(parsed.Recipients) != 1 {
		t.Fatalf("report: %+v\n%s", parsed, rep.Data)
	}
	if r := parsed.Recipients[0]; r.Address != "gone@example.net" || !r.Failed() || r.Status != "5.1.1" || !strings.Contains(r.Diagnostic, "no such user") {
		t.Fatalf("reported recipient %+v", r)
	}
	if !bytes.Contains(rep.Data, []byte("Subject: e2e report\r\n")) || !bytes.Contains(rep.Data, []byte("Reporting-MTA: dns;")) {
		t.Fatalf("report lacks the original's headers or Reporting-MTA:\n%s", rep.Data)
	}
	// The original names its report, which the message log shows as a
	// message of its own.
	orig := d.waitEmail(id)
	repID, _ := orig["failure_report_id"].(string)
	if repID == "" {
		t.Fatalf("original without failure_report_id: %v", orig)
	}
	if e := d.waitEmail(repID); e["source"] != "failure_report" || e["from"] != "" || e["status"] != "sent" {
		t.Fatalf("report record: %v", e)
	}
	if !metric("sent") {
		t.Fatalf("metrics:\n%s", d.metrics())
	}
	code, resp = d.api("GET", "/emails/logs?limit=100", nil)
	found := false
	for _, e := range resp["data"].([]any) {
		if em := e.(map[string]any); em["source"] == "failure_report" && em["from"] == "" {
			found = true
		}
	}
	if code != 200 || !found {
		t.Fatalf("no failure_report in the message log: %d %v", code, resp)
	}

	// No opt-in: the failure is counted, and no report follows.
	c2 := d.client(plainKey)
	defer c2.Close()
	if _, err := sendOne(c2, "s@example.com", []string{"gone2@example.net"}, msgBody("plain")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "not_opted_in counted", func() bool { return metric("not_opted_in") })

	// A null-sender original never gets one.
	if _, err := sendOne(c, "", []string{"gone3@example.net"}, msgBody("null")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "null_sender counted", func() bool { return metric("null_sender") })
	// Its only recipient was refused at RCPT, so no DATA: the report is
	// still the one null-sender message the upstream received.
	if n := len(nullSenderMessages(up)); n != 1 {
		t.Fatalf("%d null-sender messages at the upstream, want only the first report", n)
	}
}
