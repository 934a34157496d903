package main

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// Issue 5: mail queued behind a stopped upstream drains as soon as the
// upstream is back and the operator says so, not an hour later.

// downUpstream is a peer that drops every connection before its greeting
// (a dead upstream) until ClearScript, and a daemon relaying to it with
// the SPEC's retry schedule (5 min → 2 h → 12 h), so that nothing in the
// test can go through a quick retry. More attempts run at once than the
// provider has connections, so that some always wait for one (as with a
// real queue): the test's own write to the provider must not fail them.
func downUpstream(t *testing.T) (*testpeer.Server, *proc, string, string) {
	up := testpeer.Start(t, testpeer.Options{})
	up.Always(testpeer.StepConnect, "", testpeer.Drop)
	d := newDaemon(t, map[string]string{"delivery": "retry_schedule = [\"5m\", \"2h\", \"12h\"]\nmax_inflight = 16\nconnections_per_provider = 2"})
	p := d.addProvider(plainProvider(up, "down", nil))
	d.deactivate(d.managedID())
	return up, d, p, d.sendingKey(nil)
}

// emailLogs returns the message log (status and attempt count of every
// message) by ID, a page of 100 per call, so that watching hundreds of
// messages stays within the Management API's rate limit.
func (d *proc) emailLogs() map[string]map[string]any {
	d.t.Helper()
	out := map[string]map[string]any{}
	cursor := ""
	for {
		code, resp := d.api("GET", "/emails/logs?limit=100&cursor="+cursor, nil)
		if code != 200 {
			d.t.Fatalf("GET /emails/logs: %d %v", code, resp)
		}
		for _, it := range resp["data"].([]any) {
			m := it.(map[string]any)
			out[m["id"].(string)] = m
		}
		pg, _ := resp["pagination"].(map[string]any)
		if pg["has_more"] != true {
			return out
		}
		cursor = fmt.Sprint(pg["next_cursor"])
	}
}

// waitQueuedBehind waits until the provider is pulled and the scheduler has
// looked at every message: each pending, with at most one attempt (SPEC
// §5: connection failures count toward the breaker; the message waits, it
// does not burn retries), and saying why it waits.
func waitQueuedBehind(t *testing.T, d *proc, provider string, ids []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for d.provider(provider)["health"].(map[string]any)["state"] != "open" {
		if time.Now().After(deadline) {
			t.Fatalf("provider not pulled: %v", d.provider(provider)["health"])
		}
		sleepMS(50)
	}
	for {
		logs, settled := d.emailLogs(), 0
		for _, id := range ids {
			if e := logs[id]; e["status"] != "pending" || e["attempts"].(float64) > 1 {
				t.Fatalf("message %s while the upstream is down: %v", id, e)
			}
		}
		// Every message is looked at in turn; the last ones settle last.
		for _, id := range ids[len(ids)-min(len(ids), 5):] {
			if d.email(id)["waiting"] != nil {
				settled++
			}
		}
		if settled == min(len(ids), 5) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last messages do not say why they wait")
		}
		sleepMS(100)
	}
}

var benchMsgID = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)

// requireDeliveredOnce waits (within limit) until every message is sent,
// with at most two attempts each, and checks that the upstream accepted
// each exactly once.
func requireDeliveredOnce(t *testing.T, d *proc, up *testpeer.Server, ids []string, limit time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		logs, sent := d.emailLogs(), 0
		for _, id := range ids {
			if e := logs[id]; e["status"] == "sent" {
				if e["attempts"].(float64) > 2 {
					t.Fatalf("message %s took %v attempts", id, e["attempts"])
				}
				sent++
			} else if e["status"] != "pending" {
				t.Fatalf("message %s: %v", id, e)
			}
		}
		if sent == len(ids) {
			break
		}
		if took := time.Since(start); took > limit {
			for _, id := range ids {
				if logs[id]["status"] != "sent" {
					t.Fatalf("%d of %d messages sent %v after recovery; first still pending: %v",
						sent, len(ids), took.Round(time.Millisecond), d.email(id))
				}
			}
		}
		sleepMS(100)
	}
	seen := map[string]int{}
	for _, m := range up.Messages() {
		if m.Accepted() {
			if mm := benchMsgID.FindSubmatch(m.Data); mm != nil {
				seen[string(mm[1])]++
			} else {
				t.Fatalf("upstream message without Message-ID: %q", bytes.SplitN(m.Data, []byte("\r\n\r\n"), 2)[0])
			}
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("upstream accepted %d distinct messages, want %d", len(seen), len(ids))
	}
	for mid, n := range seen {
		if n != 1 {
			t.Fatalf("%s accepted %d times", mid, n)
		}
	}
}

// TestQueuedBehindDeadUpstreamDrainsAfterTest: 300 messages arrive while the
// only provider's upstream is down. After the upstream is back, a
// successful POST /providers/{id}/test clears the breaker (SPEC §3, §5 "a
// success clears the history") and every message is delivered within
// seconds, exactly once, including those whose own attempt failed and
// that would otherwise wait for the 5-minute retry.
func TestQueuedBehindDeadUpstreamDrainsAfterTest(t *testing.T) {
	t.Parallel()
	up, d, p, key := downUpstream(t)
	ids := sendConcurrently(t, d, key, "queued", 300, 8)
	waitQueuedBehind(t, d, p, ids)

	up.ClearScript()
	res := d.must(200, "POST", "/providers/"+p+"/test", nil)
	if res["success"] != true {
		t.Fatalf("test with the upstream back: %v", res)
	}
	if h := d.provider(p)["health"].(map[string]any); h["state"] != "closed" {
		t.Fatalf("health after a successful test: %v, want closed", h)
	}
	requireDeliveredOnce(t, d, up, ids, 10*time.Second)
}

// TestWaitingMailGoesAfterRestart: the breaker's state survives a
// restart (issue 14), so mail that waited for the pulled provider still
// waits after it — the restart proves nothing about the upstream — and the
// provider's successful test releases all of it, the mail that waited and
// the mail whose own attempt failed, each delivered once.
func TestWaitingMailGoesAfterRestart(t *testing.T) {
	t.Parallel()
	up, d, p, key := downUpstream(t)
	failed := sendConcurrently(t, d, key, "restart-failed", 3, 1)
	waitQueuedBehind(t, d, p, failed)
	waiting := sendConcurrently(t, d, key, "restart-waiting", 12, 3)
	waitQueuedBehind(t, d, p, waiting)
	for _, id := range waiting {
		if at := d.email(id)["attempts"].([]any); len(at) != 0 {
			t.Fatalf("message %s sent after the pull was attempted: %v", id, at)
		}
	}
	pulled := d.provider(p)["health"].(map[string]any)
	d.stop()
	up.ClearScript()
	d.start()
	if h := d.provider(p)["health"].(map[string]any); h["state"] != "open" || h["pulled_until"] != pulled["pulled_until"] {
		t.Fatalf("health after restart: %v, want still pulled as before: %v", h, pulled)
	}
	for _, id := range failed {
		if e := d.email(id); e["status"] != "pending" || len(e["attempts"].([]any)) != 1 {
			t.Fatalf("message %s that failed before the restart: %v", id, e)
		}
	}
	if res := d.must(200, "POST", "/providers/"+p+"/test", nil); res["success"] != true {
		t.Fatalf("test: %v", res)
	}
	requireDeliveredOnce(t, d, up, append(waiting, failed...), 10*time.Second)
	if n := fmt.Sprint(d.provider(p)["health"].(map[string]any)["state"]); n != "closed" {
		t.Fatalf("health after the test: %s", n)
	}
}
