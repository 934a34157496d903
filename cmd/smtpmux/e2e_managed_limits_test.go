package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestManagedUsageCountsQueuedRecipients: a team whose managed account
// accepted its 50 recipients of the day, of which the hourly limit of 2
// let only 2 out, is at its limit: GET /providers/limits says usage 50
// (48 of them reserved, still queued) and is_at_limit, as the 51st
// recipient's 550 does, and the increase request that usage allows is
// filed, not refused as "2 of 50 used".
func TestManagedUsageCountsQueuedRecipients(t *testing.T) {
	t.Parallel()
	// The queued mail must stay queued (the next hour lets two more out)
	// and the day must not roll: one UTC hour for all of it.
	clearOfWindowEnd(t, time.Hour, 2*time.Minute)
	d := newDaemon(t, map[string]string{"": "[managed]\nhourly_limit = 2\ndaily_limit = 50"})
	key := d.sendingKey(nil) // the team's only active provider is its managed account
	c := d.client(key)
	defer c.Close()
	var ids []string
	for i := 0; i < 25; i++ {
		id, err := sendOne(c, "app@example.com", []string{fmt.Sprintf("a%d@example.net", i), fmt.Sprintf("b%d@example.net", i)},
			routedMsg("app@example.com", fmt.Sprintf("usage-%d@e2e.test", i)))
		if err != nil {
			t.Fatalf("recipients %d-%d of 50: %v", 2*i+1, 2*i+2, err)
		}
		ids = append(ids, id)
	}
	_, err := sendOne(c, "app@example.com", []string{"over@example.net"}, routedMsg("app@example.com", "usage-over@e2e.test"))
	wantReply(t, err, 550, "5.7.1", "the 51st recipient of a daily limit of 50")

	// The hourly limit lets one 2-recipient message out; 24 wait.
	sent := func() int {
		n := 0
		for _, id := range ids {
			if d.email(id)["status"] == "sent" {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "one message sent", func() bool { return sent() >= 1 })
	limits := d.must(200, "GET", "/providers/limits", nil)["shared_amazon_ses"].(map[string]any)
	want := map[string]any{"usage": 50.0, "reserved": 48.0, "max_allowed": 50.0, "is_at_limit": true,
		"is_near_limit": true, "can_request_increase": true, "sent_today": 50.0}
	for k, v := range want {
		if limits[k] != v {
			t.Errorf("shared_amazon_ses.%s = %v, want %v (snapshot %v)", k, limits[k], v, limits)
		}
	}
	hourly, _ := limits["hourly"].(map[string]any)
	if hourly["limit"] != 2.0 || hourly["usage"] != 50.0 || hourly["reserved"] != 48.0 || hourly["is_at_limit"] != true {
		t.Errorf("shared_amazon_ses.hourly = %v, want limit 2, usage 50 (48 reserved), at limit", hourly)
	}
	if n := sent(); n != 1 {
		t.Fatalf("%d messages of 2 recipients sent with an hourly limit of 2", n)
	}
	code, resp := d.api("POST", "/providers/shared-amazon-ses-limit-request", map[string]any{"reason": "launch"})
	if code != 201 || data(resp)["usage"] != 50.0 {
		t.Fatalf("increase request at 50 of 50 accepted: %d %v", code, resp)
	}
}

// TestManagedHourlyLimitRefusesOversizedMessage: with an hourly limit of
// 2, the 3rd recipient of one message is refused at RCPT with 452 4.5.3
// (the message could never go out within an hour); the message goes out
// to the 2 accepted recipients, and the hour's usage is 2.
func TestManagedHourlyLimitRefusesOversizedMessage(t *testing.T) {
	t.Parallel()
	clearOfWindowEnd(t, time.Hour, time.Minute)
	d := newDaemon(t, map[string]string{"": "[managed]\nhourly_limit = 2\ndaily_limit = 50"})
	key := d.sendingKey(nil)
	c := d.client(key)
	defer c.Close()
	if err := c.Mail("app@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"one@example.net", "two@example.net"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s within the hourly limit: %v", r, err)
		}
	}
	wantReply(t, c.Rcpt("three@example.net", nil), 452, "4.5.3", "the 3rd recipient of a message, hourly limit 2")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(routedMsg("app@example.com", "hourly-3@e2e.test"))
	reply, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("DATA of the 2 accepted recipients: %v", err)
	}
	m := emlRe.FindStringSubmatch(reply.StatusText)
	if m == nil {
		t.Fatalf("reply %q lacks an eml_ id", reply.StatusText)
	}
	e := d.waitEmail(m[1])
	if e["status"] != "sent" || len(e["recipients"].([]any)) != 2 {
		t.Fatalf("email %v: want sent to 2 recipients", e)
	}
	hourly := d.must(200, "GET", "/providers/limits", nil)["shared_amazon_ses"].(map[string]any)["hourly"].(map[string]any)
	if hourly["usage"] != 2.0 || hourly["reserved"] != 0.0 || hourly["is_at_limit"] != true {
		t.Fatalf("hourly snapshot %v: want usage 2 (sent), nothing reserved", hourly)
	}

	// Over HTTP such a message is refused whole: 422, nothing queued.
	code, body := postSend(t, d, key, "hourly-http-1", `{"from":{"email":"app@example.com"},"to":"one@example.net",
		"cc":["two@example.net","three@example.net"],"subject":"three","text_body":"hi"}`)
	if code != 422 || !strings.Contains(string(body), "hourly sending limit") {
		t.Fatalf("HTTP send to 3 recipients, hourly limit 2: %d %s", code, body)
	}
}
