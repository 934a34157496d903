package main

import (
	"fmt"
	"testing"
	"time"
)

// TestManagedDailyLimitSurvivesRestart: mail accepted today on the managed
// account but still queued (held back by its hourly limit) keeps its place
// in the daily limit across a restart, so the daemon does not accept more
// recipients in a day than the limit after it comes back.
func TestManagedDailyLimitSurvivesRestart(t *testing.T) {
	t.Parallel()
	if now := time.Now().UTC(); now.Add(2*time.Minute).Day() != now.Day() {
		t.Skip("the UTC day ends within the test")
	}
	d := newDaemon(t, map[string]string{"": "[managed]\nhourly_limit = 1\ndaily_limit = 3"})
	key := d.sendingKey(nil) // the team's only active provider is its managed account
	c := d.client(key)
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := sendOne(c, "app@example.com", []string{fmt.Sprintf("u%d@example.net", i)}, routedMsg("app@example.com", fmt.Sprintf("daily-%d@e2e.test", i)))
		if err != nil {
			t.Fatalf("recipient %d of 3: %v", i+1, err)
		}
		ids = append(ids, id)
	}
	_, err := sendOne(c, "app@example.com", []string{"u3@example.net"}, routedMsg("app@example.com", "daily-3@e2e.test"))
	wantReply(t, err, 550, "5.7.1", "the 4th recipient of the day before the restart")
	c.Close()
	// One was sent (the hourly limit), two wait for the next hour.
	if e := d.waitEmail(ids[0]); e["status"] != "sent" {
		t.Fatalf("first message: %v", e)
	}
	for _, id := range ids[1:] {
		if e := d.email(id); e["status"] == "sent" {
			t.Fatalf("message %s was sent past the hourly limit of 1", id)
		}
	}

	d.stop()
	d.start()
	c = d.client(key)
	defer c.Close()
	_, err = sendOne(c, "app@example.com", []string{"u3@example.net"}, routedMsg("app@example.com", "daily-3b@e2e.test"))
	wantReply(t, err, 550, "5.7.1", "the 4th recipient of the day after a restart, with two still queued")
}
