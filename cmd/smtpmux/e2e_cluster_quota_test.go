package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// The cluster-wide quotas and shared breaker health, through three real
// nodes on real etcd (run from TestCluster, which owns the nodes). Each
// check has its own team, so they run in parallel: the per-second test
// spends most of its time waiting on the caps it checks.
func testClusterQuotas(t *testing.T, nodes []*proc) {
	t.Run("per-second and per-minute caps hold across nodes", func(t *testing.T) {
		t.Parallel()
		testClusterProviderCaps(t, nodes)
	})
	t.Run("managed daily limit holds across nodes", func(t *testing.T) {
		t.Parallel()
		testClusterManagedDaily(t, nodes)
	})
	t.Run("breaker failures on different nodes pull everywhere", func(t *testing.T) {
		t.Parallel()
		testClusterBreaker(t, nodes)
	})
}

// clusterTeam creates a team through nodes[0]'s operator API and returns
// its root key. Calls are checked with t (a subtest's), not the nodes'.
func clusterTeam(t *testing.T, d *proc, name string) string {
	t.Helper()
	code, resp := d.apiAs(testOperatorToken, "POST", "/operator/teams", map[string]any{"name": name})
	if code != 201 {
		t.Fatalf("create team %s: %d %v", name, code, resp)
	}
	return data(resp)["root_key"].(map[string]any)["key"].(string)
}

// mustAs is an API call with key that must answer want.
func mustAs(t *testing.T, d *proc, key string, want int, method, path string, body any) map[string]any {
	t.Helper()
	code, resp := d.apiAs(key, method, path, body)
	if code != want {
		t.Fatalf("%s %s: got %d, want %d: %v", method, path, code, want, resp)
	}
	return data(resp)
}

// teamProviders lists the team's provider IDs by name.
func teamProviders(t *testing.T, d *proc, key string) map[string]string {
	t.Helper()
	_, resp := d.apiAs(key, "GET", "/providers", nil)
	out := map[string]string{}
	for _, p := range resp["data"].([]any) {
		m := p.(map[string]any)
		out[m["name"].(string)] = m["id"].(string)
	}
	return out
}

// sendSpread sends n messages (Message-ID <prefix-i@e2e.test>) with key
// over two SMTP sessions on each node at once, and returns the errors.
func sendSpread(nodes []*proc, key, prefix string, n int) []error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for s := 0; s < 2*len(nodes); s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialQuiet(nodes[s%len(nodes)], key)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					c.Quit()
					return
				}
				mid := fmt.Sprintf("%s-%d@e2e.test", prefix, i)
				if _, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", mid)); err != nil {
					fail(fmt.Errorf("message %s: %w", mid, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// perMinute counts times by UTC minute.
func perMinute(times []time.Time) map[time.Time]int {
	out := map[time.Time]int{}
	for _, ts := range times {
		out[ts.UTC().Truncate(time.Minute)]++
	}
	return out
}

// testClusterProviderCaps: a provider with per_second 5 and per_minute 100
// is fed by all three nodes at once. The upstream's receive times (not the
// daemons' word) never hold more than 5 in any one-second span; until the
// test lifts the minute cap, no UTC minute holds more than 100, and the
// cap did bind (100 arrived in one minute, then nothing more in it for
// 2 s while mail was waiting); and every message arrives exactly once.
// Without cluster-wide quotas each node would allow 5/s and 100/min.
func testClusterProviderCaps(t *testing.T, nodes []*proc) {
	const n = 110
	up := testpeer.Start(t, testpeer.Options{})
	root := clusterTeam(t, nodes[0], "caps")
	mustAs(t, nodes[0], root, 200, "POST", "/providers/"+teamProviders(t, nodes[0], root)["Managed Amazon SES"]+"/deactivate", nil)
	p := mustAs(t, nodes[0], root, 201, "POST", "/providers",
		plainProvider(up, "capped", map[string]any{"quotas": map[string]any{"per_second": 5, "per_minute": 100}}))["id"].(string)
	key := mustAs(t, nodes[0], root, 201, "POST", "/api-keys", map[string]any{"name": "caps", "type": "sending"})["key"].(string)
	within(t, "provider and key on every node", 2*time.Second, func() bool {
		for _, d := range nodes {
			if code, _ := d.apiAs(root, "GET", "/providers/"+p, nil); code != 200 {
				return false
			}
			c, err := dialQuiet(d, key)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
	// 100 messages take 20 s at 5/s: start with time for them in this
	// UTC minute, so that the minute cap binds.
	clearOfWindowEnd(t, time.Minute, 35*time.Second)
	if errs := sendSpread(nodes, key, "caps", n); len(errs) > 0 {
		t.Fatalf("%d sends refused, first: %v", len(errs), errs[0])
	}
	arrivals := func() []time.Time {
		var ts []time.Time
		for _, m := range up.Messages() {
			ts = append(ts, m.Received)
		}
		return ts
	}
	var full time.Time // the UTC minute that reached the cap
	within(t, "100 arrivals in one UTC minute", 40*time.Second, func() bool {
		for m, c := range perMinute(arrivals()) {
			if c >= 100 {
				full = m
				return true
			}
		}
		return false
	})
	// Mail is waiting; the minute holds it. Watch for 2 s (or to the
	// minute's end) that nothing more arrives in it, then lift the minute
	// cap so the rest goes now rather than at the next minute.
	holdUntil := time.Now().Add(2 * time.Second)
	for time.Now().Before(holdUntil) && time.Now().Before(full.Add(time.Minute)) {
		if c := perMinute(arrivals())[full]; c > 100 {
			t.Fatalf("%d arrivals in the UTC minute %s with per_minute 100", c, full.Format("15:04"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	lifted := time.Now()
	mustAs(t, nodes[0], root, 200, "PATCH", "/providers/"+p, map[string]any{"quotas": map[string]any{"per_second": 5, "per_minute": 1000}})
	msgs := up.WaitMessages(t, n, 30*time.Second)
	var before []time.Time
	var all []time.Time
	for _, m := range msgs {
		all = append(all, m.Received)
		if m.Received.Before(lifted) {
			before = append(before, m.Received)
		}
	}
	for m, c := range perMinute(before) {
		if c > 100 {
			t.Errorf("%d arrivals in the UTC minute %s with per_minute 100", c, m.Format("15:04"))
		}
	}
	if got := maxInWindow(all, time.Second); got > 5 {
		sorted := append([]time.Time(nil), all...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
		var rel []string
		for _, ts := range sorted {
			rel = append(rel, fmt.Sprintf("%.3f", ts.Sub(lifted).Seconds()))
		}
		t.Errorf("%d arrivals within one second with per_second 5 (arrivals, seconds after the minute cap was lifted: %s)", got, strings.Join(rel, " "))
	}
	counts := midCounts(up)
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprintf("caps-%d@e2e.test", i)]; c != 1 {
			t.Errorf("message caps-%d arrived %d times", i, c)
		}
	}
	if len(msgs) != n {
		t.Errorf("the upstream received %d messages, want %d", len(msgs), n)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
	t.Logf("%d messages over %v; the minute cap held from %s until lifted %v later",
		n, all[len(all)-1].Sub(all[0]).Round(time.Millisecond), full.Format("15:04"), lifted.Sub(full).Round(time.Second))
	w := 0
	for _, d := range nodes {
		m := d.metrics()
		if !strings.Contains(m, "\nsmtpmux_cluster_quota_down 0\n") {
			t.Errorf("node %s: smtpmux_cluster_quota_down is not 0", d.httpAddr)
		}
		w += metricValue(t, m, "smtpmux_cluster_quota_etcd_writes_total")
	}
	t.Logf("quota etcd writes on the three nodes: %d (%.2f per message)", w, float64(w)/n)
}

// testClusterManagedDaily: the managed account's daily limit (50, the
// default) counts the recipients accepted on every node: after 50 spread
// over the three, the 51st is refused with 550 5.7.1 on each of them.
// Node-local counts would have let each node accept 50.
func testClusterManagedDaily(t *testing.T, nodes []*proc) {
	skipNearUTCMidnight(t)
	root := clusterTeam(t, nodes[0], "managed-daily")
	key := mustAs(t, nodes[0], root, 201, "POST", "/api-keys", map[string]any{"name": "daily", "type": "sending"})["key"].(string)
	clients := make([]*smtp.Client, len(nodes))
	for i, d := range nodes {
		within(t, "key on "+d.httpAddr, 2*time.Second, func() bool {
			c, err := dialQuiet(d, key)
			clients[i] = c
			return err == nil
		})
		defer clients[i].Close()
	}
	// 25 messages of 2 recipients (the hourly limit is the most one
	// message may have), round-robin over the nodes.
	for i := 0; i < 25; i++ {
		to := []string{fmt.Sprintf("a%d@example.net", i), fmt.Sprintf("b%d@example.net", i)}
		if _, err := sendOne(clients[i%3], "app@example.com", to, routedMsg("app@example.com", fmt.Sprintf("daily-%d@e2e.test", i))); err != nil {
			t.Fatalf("recipients %d-%d of 50 on node %d: %v", 2*i+1, 2*i+2, i%3+1, err)
		}
	}
	for i, c := range clients {
		_, err := sendOne(c, "app@example.com", []string{"over@example.net"}, routedMsg("app@example.com", fmt.Sprintf("daily-over-%d@e2e.test", i)))
		wantReply(t, err, 550, "5.7.1", fmt.Sprintf("the 51st recipient of a daily limit of 50, on node %d", i+1))
		c.Reset()
	}
	checkClusterManagedLimits(t, nodes, root, 50)
}

// testClusterBreaker: the provider's upstream answers 421 to every MAIL.
// One message on each node, one attempt each (the cluster's retry
// schedule is a minute): no node saw three failures, yet the third pulls
// the provider on all three, and each node's health shows the failures
// the others saw. Node-local breakers would stay closed with 1 failure.
func testClusterBreaker(t *testing.T, nodes []*proc) {
	up := testpeer.Start(t, testpeer.Options{})
	var mails atomic.Int64
	up.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail {
			mails.Add(1)
			return testpeer.Reply(421, "4.3.2", "Service not available, closing transmission channel")
		}
		return testpeer.Continue
	})
	root := clusterTeam(t, nodes[0], "breaker")
	mustAs(t, nodes[0], root, 200, "POST", "/providers/"+teamProviders(t, nodes[0], root)["Managed Amazon SES"]+"/deactivate", nil)
	p := mustAs(t, nodes[0], root, 201, "POST", "/providers", plainProvider(up, "flaky", nil))["id"].(string)
	key := mustAs(t, nodes[0], root, 201, "POST", "/api-keys", map[string]any{"name": "breaker", "type": "sending"})["key"].(string)
	health := func(d *proc) map[string]any {
		_, resp := d.apiAs(root, "GET", "/providers/"+p, nil)
		h, _ := data(resp)["health"].(map[string]any)
		return h
	}
	for i, d := range nodes {
		var c *smtp.Client
		within(t, "key and provider on node", 2*time.Second, func() bool {
			var err error
			c, err = dialQuiet(d, key)
			return err == nil && health(d) != nil
		})
		_, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("breaker-%d@e2e.test", i)))
		c.Close()
		if err != nil {
			t.Fatalf("send on node %d: %v", i+1, err)
		}
		within(t, fmt.Sprintf("attempt %d at the upstream", i+1), 10*time.Second, func() bool { return mails.Load() >= int64(i+1) })
		if i == 2 {
			break
		}
		// Every node counts the failures seen so far, wherever they were.
		within(t, fmt.Sprintf("%d failure(s) on every node", i+1), 2*time.Second, func() bool {
			for _, d := range nodes {
				if h := health(d); h["state"] != "closed" || h["recent_failures"] != float64(i+1) {
					return false
				}
			}
			return true
		})
	}
	within(t, "the provider pulled on every node", 2*time.Second, func() bool {
		for _, d := range nodes {
			if health(d)["state"] != "open" {
				return false
			}
		}
		return true
	})
	if got := mails.Load(); got != 3 {
		t.Fatalf("the upstream saw %d MAIL commands, want 3 (one per node)", got)
	}
	for i, d := range nodes {
		if h := health(d); h["reason"] != "connection_failures" {
			t.Errorf("node %d: health %v", i+1, h)
		}
	}
}
