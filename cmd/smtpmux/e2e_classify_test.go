package main

// End-to-end test of the failure classification (issue 12, item 12): a
// recipient's or a message's problem never pulls a provider.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestRecipientFailuresNeverPullProvider: both upstreams answer RCPT for a
// full mailbox with "452 4.2.2 mailbox over quota" and the end of DATA of
// an oversized message with "552 5.3.4 message size limit exceeded", as a
// real smarthost would for any relay. Four of each — more than the
// breaker's threshold of three — leave both providers closed with no
// recent failure (Management API health), each such message has exactly
// one attempt (no failover: the next provider is not asked to fail too),
// the 452 is deferred as a temporary recipient failure, the 552 rejected,
// and ordinary mail still goes.
func TestRecipientFailuresNeverPullProvider(t *testing.T) {
	t.Parallel()
	const full, big = "full@example.net", "big@example.com"
	ups := []*testpeer.Server{testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})}
	for _, up := range ups {
		up.Always(testpeer.StepRcpt, full, testpeer.Reply(452, "4.2.2", "<"+full+">: Recipient address rejected: mailbox over quota"))
		up.Always(testpeer.StepData, big, testpeer.Reply(552, "5.3.4", "message size limit exceeded"))
	}
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(ups[0], "relay-a", nil))
	b := d.addProvider(plainProvider(ups[1], "relay-b", nil))
	d.deactivate(d.managedID())
	c := d.client(d.sendingKey(nil))
	defer c.Close()

	const n = 4
	for i := 0; i < n; i++ {
		// The over-quota mailbox: deferred on the retry schedule.
		id, err := sendOne(c, "app@example.com", []string{full}, routedMsg("app@example.com", fmt.Sprintf("cl-full-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		at := waitSettledAttempt(t, d, id)
		if at["status"] != "deferred" || at["class"] != "transient" || !strings.Contains(fmt.Sprint(at["reply"]), "452") {
			t.Fatalf("452 4.2.2 at RCPT: attempt %v, want deferred, class transient", at)
		}

		// The oversized message: rejected once, not retried.
		id, err = sendOne(c, big, []string{"user@example.net"}, routedMsg(big, fmt.Sprintf("cl-big-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		ats := e["attempts"].([]any)
		if e["status"] != "rejected" || len(ats) != 1 || ats[0].(map[string]any)["class"] != "permanent" {
			t.Fatalf("552 5.3.4 at DATA: %v, want rejected after one attempt", e)
		}
	}

	for _, p := range []string{a, b} {
		h := d.provider(p)["health"].(map[string]any)
		if h["state"] != "closed" || h["recent_failures"] != float64(0) {
			t.Fatalf("provider %s health after %d recipient and %d message failures: %v, want closed with no recent failure", p, n, n, h)
		}
	}

	// Both providers still deliver.
	for i := 0; i < 6; i++ {
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("cl-ok-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("ordinary mail after the refusals: %v", e)
		}
	}
}

// waitSettledAttempt waits until email id has a settled first attempt
// while it is still pending, and returns that attempt. It fails the test
// if the message has more than one attempt: a recipient's temporary
// failure is retried on the schedule (minutes away), never at once on
// another provider.
func waitSettledAttempt(t *testing.T, d *proc, id string) map[string]any {
	t.Helper()
	var last map[string]any
	waitFor(t, 15*time.Second, "a settled attempt of "+id, func() bool {
		code, resp := d.api("GET", "/emails/"+id, nil)
		if code != 200 {
			return false
		}
		last = data(resp)
		ats, _ := last["attempts"].([]any)
		if len(ats) == 0 {
			return false
		}
		return ats[len(ats)-1].(map[string]any)["status"] != "in_progress"
	})
	if ats := last["attempts"].([]any); len(ats) != 1 || last["status"] != "pending" {
		t.Fatalf("email %s: %v, want pending after exactly one attempt", id, last)
	}
	return last["attempts"].([]any)[0].(map[string]any)
}
