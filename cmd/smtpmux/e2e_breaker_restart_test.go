package main

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestBreakerSurvivesRestart: a provider the breaker pulled stays pulled
// across a restart of the daemon, until its time (the state is in the
// store, not only in memory): after the restart its health still says
// open with the same pulled_until, and new mail goes to the healthy
// provider without trying it again.
func TestBreakerSurvivesRestart(t *testing.T) {
	t.Parallel()
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	var mailsA atomic.Int64
	upA.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail {
			mailsA.Add(1)
			return testpeer.Reply(421, "4.3.2", "Service not available, closing transmission channel")
		}
		return testpeer.Continue
	})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "broken", map[string]any{"percentage": 90}))
	d.addProvider(plainProvider(upB, "healthy", map[string]any{"percentage": 10}))
	d.deactivate(d.managedID())
	key := d.sendingKey(nil)
	c := d.client(key)
	for i := 0; mailsA.Load() < 3; i++ {
		if i == 40 {
			t.Fatalf("A got only %d attempts for 40 messages at weight 90", mailsA.Load())
		}
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("brr-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("message %d: %v", i, e)
		}
	}
	c.Close()
	before := d.provider(a)["health"].(map[string]any)
	if before["state"] != "open" {
		t.Fatalf("after 3 failures A's health is %v, want open", before)
	}

	d.stop()
	d.start()

	after := d.provider(a)["health"].(map[string]any)
	if after["state"] != "open" || after["pulled_until"] != before["pulled_until"] || after["reason"] != before["reason"] {
		t.Fatalf("after a restart A's health is %v, want it as before the restart: %v", after, before)
	}
	until, err := time.Parse(time.RFC3339, fmt.Sprint(after["pulled_until"]))
	if err != nil || time.Until(until) < 50*time.Minute {
		t.Fatalf("pulled_until %v (%v): want about an hour ahead", after["pulled_until"], err)
	}
	ids := sendConcurrently(t, d, key, "brr-after", 10, 2)
	for _, id := range ids {
		if e := d.waitEmail(id); e["status"] != "sent" || attemptsAt(e, a) != 0 {
			t.Fatalf("after the restart: %v", e)
		}
	}
	if got := mailsA.Load(); got != 3 {
		t.Fatalf("A saw %d MAIL commands, want 3: the restart put a pulled provider back", got)
	}
}
