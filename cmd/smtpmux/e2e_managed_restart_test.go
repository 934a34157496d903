package main

import (
	"fmt"
	"testing"
	"time"
)

// TestManagedDailyLimitSurvivesRestart: mail accepted today on the managed
// account but still queued (held back by its hourly limit) keeps its place
// in the daily limit across a restart, no more and no less: after it, the
// daemon accepts exactly the recipients the day has left.
func TestManagedDailyLimitSurvivesRestart(t *testing.T) {
	t.Parallel()
	// The hourly limit would let more out in the next hour (and the
	// day's in the next day).
	clearOfWindowEnd(t, time.Hour, 2*time.Minute)
	d := newDaemon(t, map[string]string{"": "[managed]\nhourly_limit = 1\ndaily_limit = 4"})
	key := d.sendingKey(nil) // the team's only active provider is its managed account
	c := d.client(key)
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := sendOne(c, "app@example.com", []string{fmt.Sprintf("u%d@example.net", i)}, routedMsg("app@example.com", fmt.Sprintf("daily-%d@e2e.test", i)))
		if err != nil {
			t.Fatalf("recipient %d of 4: %v", i+1, err)
		}
		ids = append(ids, id)
	}
	c.Close()
	// The hourly limit lets one out; two wait for the next hour.
	sentCount := func() int {
		n := 0
		for _, id := range ids {
			if d.email(id)["status"] == "sent" {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "one message sent", func() bool { return sentCount() >= 1 })
	time.Sleep(300 * time.Millisecond)
	if n := sentCount(); n != 1 {
		t.Fatalf("%d of 3 messages sent with an hourly limit of 1", n)
	}

	d.stop()
	d.start()
	c = d.client(key)
	defer c.Close()
	// 1 sent + 2 reserved: one recipient left today.
	if _, err := sendOne(c, "app@example.com", []string{"u3@example.net"}, routedMsg("app@example.com", "daily-3@e2e.test")); err != nil {
		t.Fatalf("the 4th recipient of a daily limit of 4 after a restart: %v", err)
	}
	_, err := sendOne(c, "app@example.com", []string{"u4@example.net"}, routedMsg("app@example.com", "daily-4@e2e.test"))
	wantReply(t, err, 550, "5.7.1", "the 5th recipient of the day after a restart, with two still queued")
}
