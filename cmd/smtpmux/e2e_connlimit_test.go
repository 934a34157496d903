package main

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestUpstreamConnectionLimitIsNotAFailure: an upstream account that
// allows 3 connections (Microsoft 365's limit) and answers a 4th with 421,
// below the default 20 connections per provider: every message is
// delivered on its first attempt, the provider's breaker records no
// failure and it stays active.
func TestUpstreamConnectionLimitIsNotAFailure(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	refused := up.LimitConnections(3)
	d := newDaemon(t, nil)
	id, key := d.setupRelay(map[string]any{"name": "three-conns", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	ids := sendConcurrently(t, d, key, "connlimit", 100, 10)
	for _, mid := range ids {
		e := d.waitEmail(mid)
		if e["status"] != "sent" || len(e["attempts"].([]any)) != 1 {
			t.Fatalf("email %v: want sent on its first attempt", e)
		}
	}
	p := d.provider(id)
	if h := p["health"].(map[string]any); p["status"] != "active" || h["state"] != "closed" || h["recent_failures"] != float64(0) {
		t.Fatalf("provider after the upstream turned away connections: status %v, health %v", p["status"], h)
	}
	// Each refusal lowers the pool's limit by one: from the default 20 to
	// the upstream's 3, no more are needed.
	if n := refused.Load(); n > 17 {
		t.Errorf("%d connections turned away: the pool kept opening past the upstream's limit", n)
	}
	// The operator can see it happen: /metrics has the learned limit.
	m := regexp.MustCompile(`smtpmux_provider_connection_limit\{provider="` + regexp.QuoteMeta(id) + `"\} (\d+)`).FindStringSubmatch(d.metrics())
	if m == nil {
		t.Errorf("/metrics has no connection limit for %s", id)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 || n > 3 {
		t.Errorf("/metrics connection limit of %s: %d, want 1 to 3", id, n)
	}
	t.Logf("100 messages over an upstream limited to 3 connections: %d connections turned away", refused.Load())
}

// TestProviderTestDeferredOn4xx: a connection test the upstream answers
// with a 4xx at its opening (here: all the account's connections are in
// use) is "deferred", like a timeout: the provider keeps its status. A 5xx
// still sets it to error.
func TestProviderTestDeferredOn4xx(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	id, _ := d.setupRelay(map[string]any{"name": "busy", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	up.Always(testpeer.StepConnect, "", testpeer.Reply(421, "4.7.0", "Too many concurrent SMTP connections"))
	res := d.must(200, "POST", "/providers/"+id+"/test", nil)
	if res["success"] != false || res["deferred"] != true {
		t.Fatalf("test against a 421: %v, want success false, deferred true", res)
	}
	if p := d.provider(id); p["status"] != "active" {
		t.Fatalf("a deferred test changed the status to %v (%v)", p["status"], p["status_reason"])
	}
	up.ClearScript()
	up.Always(testpeer.StepConnect, "", testpeer.Reply(554, "5.7.1", "Access denied"))
	if res := d.must(200, "POST", "/providers/"+id+"/test", nil); res["success"] != false || res["deferred"] != false {
		t.Fatalf("test against a 554: %v, want success false, deferred false", res)
	}
	if p := d.provider(id); p["status"] != "error" {
		t.Fatalf("after a 554 the status is %v, want error", p["status"])
	}
}
