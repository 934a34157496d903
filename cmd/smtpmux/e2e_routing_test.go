package main

// End-to-end tests of the routing engine (issue 3): the real binary, two or
// more recording upstreams, driven only through SMTP and the Management API.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// ---- helpers ---------------------------------------------------------------

// must calls the Management API and fails the test unless the status is want.
func (d *proc) must(want int, method, path string, body any) map[string]any {
	d.t.Helper()
	code, resp := d.api(method, path, body)
	if code != want {
		d.t.Fatalf("%s %s: got %d, want %d: %v", method, path, code, want, resp)
	}
	return data(resp)
}

// plainProvider is a cleartext smtp provider body for up, plus extra fields.
func plainProvider(up *testpeer.Server, name string, extra map[string]any) map[string]any {
	p := map[string]any{"name": name, "type": "smtp", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// addProvider creates a provider and returns its ID.
func (d *proc) addProvider(body map[string]any) string {
	d.t.Helper()
	return d.must(201, "POST", "/providers", body)["id"].(string)
}

// managedID is the ID of the team's managed account.
func (d *proc) managedID() string {
	d.t.Helper()
	_, resp := d.api("GET", "/providers", nil)
	for _, p := range resp["data"].([]any) {
		if pm := p.(map[string]any); pm["is_shared"] == true {
			return pm["id"].(string)
		}
	}
	d.t.Fatal("no managed account listed")
	return ""
}

func (d *proc) deactivate(id string) {
	d.t.Helper()
	d.must(200, "POST", "/providers/"+id+"/deactivate", nil)
}

// sendingKey creates a sending key with scope (nil: the default, all).
func (d *proc) sendingKey(scope map[string]any) string {
	d.t.Helper()
	secret, _ := d.sendingKeyWithID(scope)
	return secret
}

// sendingKeyWithID is sendingKey that also returns the key's ID.
func (d *proc) sendingKeyWithID(scope map[string]any) (secret, id string) {
	d.t.Helper()
	body := map[string]any{"name": "routing", "type": "sending"}
	if scope != nil {
		body["send_scope"] = scope
	}
	k := d.must(201, "POST", "/api-keys", body)
	return k["key"].(string), k["id"].(string)
}

func (d *proc) provider(id string) map[string]any {
	d.t.Helper()
	return d.must(200, "GET", "/providers/"+id, nil)
}

func (d *proc) email(id string) map[string]any {
	d.t.Helper()
	return d.must(200, "GET", "/emails/"+id, nil)
}

// routedMsg is a message with a given header From and a Message-ID that
// identifies it at the upstream.
func routedMsg(from, mid string) []byte {
	return crlf(fmt.Sprintf("From: %s\nTo: user@example.net\nSubject: routing %s\nMessage-ID: <%s>\n\nbody of %s\n", from, mid, mid, mid))
}

// sendConcurrently sends n messages with key over `sessions` parallel
// sessions; message i has Message-ID <prefix-i@e2e.test>. It returns the
// eml_ IDs by index and fails the test on any refusal.
func sendConcurrently(t *testing.T, d *proc, key, prefix string, n, sessions int) []string {
	t.Helper()
	return sendConcurrentlyKeys(t, d, []string{key}, prefix, n, sessions)
}

// sendConcurrentlyKeys is sendConcurrently with session s authenticating
// with keys[s % len(keys)].
func sendConcurrentlyKeys(t *testing.T, d *proc, keys []string, prefix string, n, sessions int) []string {
	t.Helper()
	ids := make([]string, n)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		key := keys[s%len(keys)]
		go func() {
			defer wg.Done()
			c, err := dialQuiet(d, key)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
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
				id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", mid))
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("message %s: %w", mid, err))
					mu.Unlock()
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d sends failed, first: %v", len(errs), errs[0])
	}
	return ids
}

// midCounts counts the accepted messages of up by Message-ID.
func midCounts(up *testpeer.Server) map[string]int {
	out := map[string]int{}
	for _, m := range up.Messages() {
		if mm := midRe.FindSubmatch(m.Data); mm != nil {
			out[string(mm[1])]++
		}
	}
	return out
}

// waitFor polls cond until it holds or timeout passes (within, without
// the figure).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	within(t, what, timeout, cond)
}

// smtpErr returns the SMTP reply behind err, or fails the test.
func smtpErr(t *testing.T, err error) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP error reply, got %v", err)
	}
	return se
}

// wantReply checks err is the SMTP reply code (and enhanced code, if given).
func wantReply(t *testing.T, err error, code int, enhanced string, what string) *smtp.SMTPError {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %d %s", what, code, enhanced)
	}
	se := smtpErr(t, err)
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || enhanced != "" && got != enhanced {
		t.Fatalf("%s: got %d %s %q, want %d %s", what, se.Code, got, se.Message, code, enhanced)
	}
	return se
}

// explanation is the routing explanation stored with an attempt.
type explanation struct {
	ScopeType string   `json:"scope_type"`
	InScope   []string `json:"in_scope"`
	Excluded  []struct {
		ProviderID string `json:"provider_id"`
		Reason     string `json:"reason"`
	} `json:"excluded"`
	Eligible []struct {
		ProviderID string `json:"provider_id"`
		Weight     int    `json:"weight"`
	} `json:"eligible"`
	Draw    int    `json:"draw"`
	Total   int    `json:"total_weight"`
	Picked  string `json:"picked"`
	Waiting bool   `json:"waiting"`
}

// routingOf decodes attempts[i].routing of an email record.
func routingOf(t *testing.T, email map[string]any, i int) explanation {
	t.Helper()
	attempts, _ := email["attempts"].([]any)
	if len(attempts) <= i {
		t.Fatalf("email has %d attempts, want attempt %d: %v", len(attempts), i, email)
	}
	raw, _ := json.Marshal(attempts[i].(map[string]any)["routing"])
	var ex explanation
	if err := json.Unmarshal(raw, &ex); err != nil || ex.ScopeType == "" {
		t.Fatalf("attempt %d has no routing explanation: %s (%v)", i, raw, err)
	}
	return ex
}

func (ex explanation) excludedFor(id string) string {
	for _, e := range ex.Excluded {
		if e.ProviderID == id {
			return e.Reason
		}
	}
	return ""
}

// recipientProviders lists recipients[].provider_id of an email record.
func recipientProviders(email map[string]any) []string {
	var out []string
	for _, r := range email["recipients"].([]any) {
		out = append(out, fmt.Sprint(r.(map[string]any)["provider_id"]))
	}
	return out
}

// attemptsAt counts the email's attempts that went to provider id.
func attemptsAt(email map[string]any, id string) int {
	n := 0
	for _, a := range email["attempts"].([]any) {
		if a.(map[string]any)["provider_id"] == id {
			n++
		}
	}
	return n
}

// maxInWindow is the largest number of times within any window of length w
// (a half-open span [t, t+w)).
func maxInWindow(times []time.Time, w time.Duration) int {
	ts := append([]time.Time(nil), times...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// skipNearUTCMidnight keeps tests of day quotas from straddling the UTC
// day boundary, where the day window resets under them.
func skipNearUTCMidnight(t *testing.T) { clearOfWindowEnd(t, 24*time.Hour, 2*time.Minute) }

// clearOfWindowEnd keeps a test of an hourly or daily limit from
// straddling the end of the UTC window (of length period) its counts live
// in, where they reset under it: with less than need left, it waits for
// the next window. It never skips, so a run near the top of an hour (or
// UTC midnight) tests as much as any other, only later.
func clearOfWindowEnd(t *testing.T, period, need time.Duration) {
	t.Helper()
	now := time.Now().UTC()
	left := now.Truncate(period).Add(period).Sub(now)
	if left < need {
		t.Logf("waiting %v for the next UTC %v window", left.Round(time.Millisecond), period)
		time.Sleep(left + 100*time.Millisecond)
	}
}

// sentByProvider is GET /providers/usage as provider → sent_7d.
func (d *proc) sentByProvider() map[string]int {
	d.t.Helper()
	out := map[string]int{}
	for _, it := range d.must(200, "GET", "/providers/usage", nil)["providers"].([]any) {
		m := it.(map[string]any)
		out[m["provider_id"].(string)] = int(m["sent_7d"].(float64))
	}
	return out
}

// ---- 1. weights --------------------------------------------------------------

// TestRoutingWeights70To30 sends 2,000 messages over 10 sessions to two
// providers weighted 70 and 30: the 70 one gets 70% ± 4%, and every message
// is delivered exactly once.
func TestRoutingWeights70To30(t *testing.T) {
	t.Parallel()
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "seventy", map[string]any{"percentage": 70}))
	b := d.addProvider(plainProvider(upB, "thirty", map[string]any{"percentage": 30}))
	d.deactivate(d.managedID())
	// Two keys: one key may make 1,800 transactions a minute.
	keys := []string{d.sendingKey(nil), d.sendingKey(nil)}

	const n = 2000
	start := time.Now()
	sendConcurrentlyKeys(t, d, keys, "w", n, 10)
	accepted := time.Since(start)
	waitFor(t, 40*time.Second, "all 2,000 messages at the upstreams", func() bool { return upA.Count()+upB.Count() >= n })
	time.Sleep(200 * time.Millisecond) // a duplicate would show up now
	ca, cb := midCounts(upA), midCounts(upB)
	for i := 0; i < n; i++ {
		mid := fmt.Sprintf("w-%d@e2e.test", i)
		if got := ca[mid] + cb[mid]; got != 1 {
			t.Errorf("%s delivered %d times (A %d, B %d), want exactly once", mid, got, ca[mid], cb[mid])
		}
	}
	if na, nb := upA.Count(), upB.Count(); na+nb != n {
		t.Fatalf("upstreams got %d + %d messages, want %d in total", na, nb, n)
	}
	share := float64(upA.Count()) / n
	t.Logf("2,000 messages accepted in %v, all delivered after %v: A %d (%.1f%%), B %d",
		accepted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), upA.Count(), 100*share, upB.Count())
	if math.Abs(share-0.70) > 0.04 {
		t.Fatalf("the 70%% provider got %.1f%% of the messages, want 70%% ± 4%%", 100*share)
	}
	// The daemon's own books agree with what the upstreams saw.
	waitFor(t, 10*time.Second, "usage to count every result", func() bool {
		u := d.sentByProvider()
		return u[a]+u[b] == n
	})
	if u := d.sentByProvider(); u[a] != upA.Count() || u[b] != upB.Count() {
		t.Fatalf("usage says A %d B %d, upstreams saw A %d B %d", u[a], u[b], upA.Count(), upB.Count())
	}

	// A negative weight is refused at write time.
	if code, resp := d.api("PATCH", "/providers/"+b, map[string]any{"percentage": -1}); code != 422 {
		t.Fatalf("percentage -1: %d %v, want 422", code, resp)
	}
	// Weight 0 is never picked, from the next pick on.
	d.must(200, "PATCH", "/providers/"+b, map[string]any{"percentage": 0})
	beforeA, beforeB := upA.Count(), upB.Count()
	keys = []string{d.sendingKey(nil)}
	sendConcurrently(t, d, keys[0], "w0", 200, 4)
	upA.WaitMessages(t, beforeA+200, 15*time.Second)
	if upB.Count() != beforeB {
		t.Fatalf("a provider at percentage 0 got %d messages", upB.Count()-beforeB)
	}
	// Both unset: an equal split.
	d.must(200, "PATCH", "/providers/"+a, map[string]any{"percentage": nil})
	d.must(200, "PATCH", "/providers/"+b, map[string]any{"percentage": nil})
	beforeA, beforeB = upA.Count(), upB.Count()
	const m = 1000
	sendConcurrently(t, d, keys[0], "wu", m, 10)
	waitFor(t, 20*time.Second, "the equal-split messages", func() bool { return upA.Count()+upB.Count() >= beforeA+beforeB+m })
	gotA := upA.Count() - beforeA
	t.Logf("unset weights: A %d of %d", gotA, m)
	if share := float64(gotA) / m; math.Abs(share-0.5) > 0.06 {
		t.Fatalf("with both weights unset A got %.1f%%, want 50%% ± 6%%", 100*share)
	}
}

// ---- 2. quotas ---------------------------------------------------------------

// TestRoutingPerSecondCap sends 25 messages at once to a provider capped at
// per_second = 5: the upstream never sees more than 5 in any one-second
// window, and all 25 arrive (over-cap mail waits for room, not for the
// retry schedule, which is 10 minutes here).
func TestRoutingPerSecondCap(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"delivery": `retry_schedule = ["10m", "10m"]`})
	p, key := d.setupRelay(plainProvider(up, "capped", map[string]any{"quotas": map[string]any{"per_second": 5}}))
	if q := d.provider(p)["quotas"].(map[string]any)["per_second"]; fmt.Sprint(q) != "map[max:5 min:5]" {
		t.Fatalf("quotas.per_second reads back as %v", q)
	}

	const n = 25
	start := time.Now()
	ids := sendConcurrently(t, d, key, "ps", n, 25)
	up.WaitMessages(t, n, 20*time.Second)
	var times []time.Time
	for _, m := range up.Received() {
		times = append(times, m.Received)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	peak := maxInWindow(times, time.Second)
	t.Logf("25 messages delivered in %v; at most %d in any one-second window", time.Since(start).Round(time.Millisecond), peak)
	if peak > 5 {
		var offs []string
		for _, tm := range times {
			offs = append(offs, tm.Sub(times[0]).Round(time.Millisecond).String())
		}
		t.Fatalf("the upstream saw %d messages within one second (cap 5); arrival offsets %v", peak, offs)
	}
	if len(times) != n {
		t.Fatalf("upstream received %d bodies, want %d", len(times), n)
	}
	for _, id := range ids {
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("email %v", e)
		}
	}
}

// TestRoutingPerDayCap: per_day = 20 and 30 messages: exactly 20 are
// delivered, the other 10 stay pending, accepted and waiting, with the
// reason visible on the message.
func TestRoutingPerDayCap(t *testing.T) {
	t.Parallel()
	skipNearUTCMidnight(t)
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	p, key := d.setupRelay(plainProvider(up, "daily", map[string]any{"quotas": map[string]any{"per_day": 20}}))

	ids := sendConcurrently(t, d, key, "pd", 30, 5)
	up.WaitMessages(t, 20, 15*time.Second)
	time.Sleep(1500 * time.Millisecond) // over-cap mail must not leak out meanwhile
	if got := len(up.Received()); got != 20 {
		t.Fatalf("upstream received %d messages, want exactly 20 (per_day = 20)", got)
	}
	var pending []map[string]any
	sent := 0
	for _, id := range ids {
		e := d.email(id)
		switch e["status"] {
		case "sent":
			sent++
		case "pending":
			pending = append(pending, e)
		default:
			t.Fatalf("email %v", e)
		}
	}
	if sent != 20 || len(pending) != 10 {
		t.Fatalf("%d sent and %d pending, want 20 and 10", sent, len(pending))
	}
	for _, e := range pending {
		if e["next_attempt_at"] == nil {
			t.Fatalf("a waiting message has no next_attempt_at: %v", e)
		}
	}
	if u := d.sentByProvider(); u[p] != 20 {
		t.Fatalf("usage sent_7d = %d, want 20", u[p])
	}
	t.Run("waiting explained on the message", func(t *testing.T) {
		for _, e := range pending {
			requireWaitingExplanation(t, e, p, "over_quota")
		}
	})
}

// requireWaitingExplanation checks that a message that waits (its providers
// over quota or pulled) says why: SPEC §4 promises a routing explanation on
// GET /emails/{id}, and issue 3 "every decision explained on the message".
// Where the product puts it is its choice; the provider must appear with
// the reason somewhere in the record.
func requireWaitingExplanation(t *testing.T, e map[string]any, providerID, reason string) {
	t.Helper()
	raw, _ := json.Marshal(e)
	if !strings.Contains(string(raw), `"`+reason+`"`) || !strings.Contains(string(raw), providerID) {
		t.Fatalf("message %s is pending because provider %s is excluded (%s), but its record does not say so "+
			"(no routing explanation with reason %s): %s", e["id"], providerID, reason, reason, raw)
	}
}

// TestRoutingQuotaReleasedOnFailure: capacity is reserved at pick time and
// given back when the attempt did not consume it. With per_day = 2, a
// first attempt refused at MAIL (before any body went out) does not use up
// a unit: two messages are delivered, the third waits.
func TestRoutingQuotaReleasedOnFailure(t *testing.T) {
	t.Parallel()
	skipNearUTCMidnight(t)
	up := testpeer.Start(t, testpeer.Options{})
	up.Script(testpeer.StepMail, "", testpeer.Reply(421, "4.3.2", "not now"))
	d := newDaemon(t, nil)
	p, key := d.setupRelay(plainProvider(up, "daily2", map[string]any{"quotas": map[string]any{"per_day": 2}}))
	c := d.client(key)
	defer c.Close()
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("rel-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if i < 2 {
			if e := d.waitEmail(id); e["status"] != "sent" {
				t.Fatalf("message %d of a per_day = 2 provider whose first attempt failed before the body: %v", i, e)
			}
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if e := d.email(ids[2]); e["status"] != "pending" || up.Count() != 2 {
		t.Fatalf("third message %v; upstream has %d", e["status"], up.Count())
	}
	if u := d.sentByProvider(); u[p] != 2 {
		t.Fatalf("usage sent_7d %d, want 2", u[p])
	}
}

// TestRoutingOverQuotaSpillsToOtherProvider: a provider at its cap is only
// skipped; the rest of the traffic goes to the other provider in scope at
// once, and the capped one never gets more than its per_day.
func TestRoutingOverQuotaSpillsToOtherProvider(t *testing.T) {
	t.Parallel()
	skipNearUTCMidnight(t)
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "capped", map[string]any{"quotas": map[string]any{"per_day": 5}}))
	d.addProvider(plainProvider(upB, "open", nil))
	d.deactivate(d.managedID())
	ids := sendConcurrently(t, d, d.sendingKey(nil), "spill", 60, 10)
	for _, id := range ids {
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("email %v", e)
		}
	}
	if upA.Count() != 5 || upB.Count() != 55 {
		t.Fatalf("A (per_day 5) got %d, B %d; want 5 and 55", upA.Count(), upB.Count())
	}
	// Some message, picked after A's fifth, shows why A was skipped.
	for i := len(ids) - 1; i >= 0; i-- {
		if routingOf(t, d.email(ids[i]), 0).excludedFor(a) == "over_quota" {
			return
		}
	}
	t.Fatal("no routing explanation shows A excluded as over_quota")
}

// ---- 3. breaker --------------------------------------------------------------

// TestRoutingBreakerPullsProvider: upstream A fails every MAIL. After 3
// failures within 5 minutes A is pulled (health open, pulled_until 1 h
// ahead for a 421, 24 h for a quota block) and the traffic goes to B; every
// message is delivered by B, and A is not tried again.
func TestRoutingBreakerPullsProvider(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, enhanced, text, class, reason string
		code                                int
		pull                                time.Duration
	}{
		{"421 connection failures", "4.3.2", "Service not available, closing transmission channel", "connection", "connection_failures", 421, time.Hour},
		{"quota block", "4.7.1", "Daily sending quota exceeded for this account", "quota", "quota_block", 451, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testBreaker(t, testpeer.Reply(tc.code, tc.enhanced, tc.text), tc.code, tc.class, tc.reason, tc.pull)
		})
	}
}

func testBreaker(t *testing.T, reply testpeer.Action, code int, class, reason string, pull time.Duration) {
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	var mailsA atomic.Int64
	upA.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail {
			mailsA.Add(1)
			return reply
		}
		return testpeer.Continue
	})
	d := newDaemon(t, nil)
	// A is favoured, so it gets its three failures quickly.
	a := d.addProvider(plainProvider(upA, "broken", map[string]any{"percentage": 90}))
	b := d.addProvider(plainProvider(upB, "healthy", map[string]any{"percentage": 10}))
	d.deactivate(d.managedID())
	key := d.sendingKey(nil)
	c := d.client(key)
	defer c.Close()

	// One message at a time, so the breaker sees the failures one by one:
	// A must get exactly three attempts.
	var viaA []string
	seq := 0
	for i := 0; mailsA.Load() < 3; i++ {
		seq++
		if i == 40 {
			t.Fatalf("A got only %d attempts for 40 messages at weight 90", mailsA.Load())
		}
		before := mailsA.Load()
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("br-seq-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		if e["status"] != "sent" || strings.Join(recipientProviders(e), ",") != b {
			t.Fatalf("message %d: want sent via B: %v", i, e)
		}
		if mailsA.Load() > before {
			viaA = append(viaA, id)
			// The failed attempt is recorded with its class and the message
			// moved on to B at once.
			at := e["attempts"].([]any)
			first, last := at[0].(map[string]any), at[len(at)-1].(map[string]any)
			if len(at) != 2 || first["provider_id"] != a || first["class"] != class ||
				!strings.Contains(fmt.Sprint(first["reply"]), fmt.Sprint(code)) || last["provider_id"] != b || last["status"] != "sent" {
				t.Fatalf("message that met A's %d: attempts %v", code, at)
			}
		}
		if n := mailsA.Load(); n < 3 {
			if h := d.provider(a)["health"].(map[string]any); h["state"] != "closed" || h["recent_failures"] != float64(n) {
				t.Fatalf("after %d failures A's health is %v, want closed with %d recent failures", n, h, n)
			}
		}
	}
	pA := d.provider(a)
	h, _ := pA["health"].(map[string]any)
	if h["state"] != "open" || h["reason"] != reason {
		t.Fatalf("after 3 failures A's health is %v, want state open, reason %s", h, reason)
	}
	until, err := time.Parse(time.RFC3339, fmt.Sprint(h["pulled_until"]))
	if err != nil {
		t.Fatalf("pulled_until %v: %v", h["pulled_until"], err)
	}
	if ahead := time.Until(until); ahead < pull-5*time.Minute || ahead > pull+time.Minute {
		t.Fatalf("pulled_until is %v ahead, want about %v", ahead.Round(time.Second), pull)
	}
	if pA["status"] != "active" {
		t.Fatalf("a pulled provider keeps its status; got %v", pA["status"])
	}
	if hb := d.provider(b)["health"].(map[string]any); hb["state"] != "closed" {
		t.Fatalf("B's health %v", hb)
	}

	// Now all traffic goes to B; A is not even tried.
	ids := sendConcurrently(t, d, key, "br", 30, 5)
	for _, id := range ids {
		if e := d.waitEmail(id); e["status"] != "sent" || attemptsAt(e, a) != 0 {
			t.Fatalf("after the pull: %v", e)
		}
	}
	if got := mailsA.Load(); got != 3 {
		t.Fatalf("A saw %d MAIL commands, want exactly 3 (pulled after the third failure)", got)
	}
	upB.WaitMessages(t, seq+30, 10*time.Second)
	if upA.Count() != 0 || upB.Count() != seq+30 || len(viaA) != 3 {
		t.Fatalf("A accepted %d, B %d (want 0 and %d); %d messages met A", upA.Count(), upB.Count(), seq+30, len(viaA))
	}
	ex := routingOf(t, d.email(ids[0]), 0)
	if r := ex.excludedFor(a); r != "pulled_by_breaker" {
		t.Fatalf("routing after the pull excludes A with %q, want pulled_by_breaker: %+v", r, ex)
	}

	// A key whose scope holds only the pulled provider: the mail is
	// accepted and waits (SPEC §5: only pulled or over quota → queue).
	cA := d.client(d.sendingKey(map[string]any{"type": "providers", "provider_public_ids": []string{a}}))
	defer cA.Close()
	id, err := sendOne(cA, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "br-only-a@e2e.test"))
	if err != nil {
		t.Fatalf("a scope with only a pulled provider must still accept: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	e := d.email(id)
	if e["status"] != "pending" || mailsA.Load() != 3 {
		t.Fatalf("message for the pulled provider: %v (A MAILs %d)", e, mailsA.Load())
	}
	t.Run("waiting explained on the message", func(t *testing.T) {
		requireWaitingExplanation(t, e, a, "pulled_by_breaker")
	})
}

// TestRoutingBreakerSuccessClearsHistory: failures are counted within 5
// minutes, but a success in between clears them: fail, fail, ok, fail,
// fail, ok leaves A in rotation; three failures in a row then pull it.
func TestRoutingBreakerSuccessClearsHistory(t *testing.T) {
	t.Parallel()
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	var mailsA atomic.Int64
	upA.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail {
			if n := mailsA.Add(1); n != 3 && n != 6 {
				return testpeer.Reply(421, "4.3.2", "try later")
			}
		}
		return testpeer.Continue
	})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "flaky", map[string]any{"percentage": 90}))
	d.addProvider(plainProvider(upB, "healthy", map[string]any{"percentage": 10}))
	d.deactivate(d.managedID())
	c := d.client(d.sendingKey(nil))
	defer c.Close()
	// recent failures A's health must show after each MAIL it saw.
	want := map[int64]float64{1: 1, 2: 2, 3: 0, 4: 1, 5: 2, 6: 0, 7: 1, 8: 2}
	for i := 0; mailsA.Load() < 9; i++ {
		if i == 80 {
			t.Fatalf("A got only %d attempts for 80 messages at weight 90", mailsA.Load())
		}
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("sc-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("email %v", e)
		}
		n := mailsA.Load()
		h := d.provider(a)["health"].(map[string]any)
		if n < 9 && (h["state"] != "closed" || h["recent_failures"] != want[n]) {
			t.Fatalf("after %d MAILs at A (successes at 3 and 6) health is %v, want closed with %v recent failures", n, h, want[n])
		}
		if n == 9 && h["state"] != "open" {
			t.Fatalf("after three failures in a row health is %v, want open", h)
		}
	}
	if upA.Count() != 2 {
		t.Fatalf("A accepted %d messages, want the 2 it did not refuse", upA.Count())
	}
}

// ---- 4. auth fault -----------------------------------------------------------

// TestRoutingAuthFaultFailsOver: upstream A refuses the provider's password
// (535). A goes to status error with the 535 in status_reason, the message
// is delivered by B, and A is tried once for it and never again.
func TestRoutingAuthFaultFailsOver(t *testing.T) {
	t.Parallel()
	upA := testpeer.Start(t, testpeer.Options{Username: "relay", Password: "right"})
	var authA atomic.Int64
	upA.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepAuth {
			authA.Add(1)
		}
		return testpeer.Continue
	})
	upB := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "wrong-password", map[string]any{
		"percentage": 90, "smtp_username": "relay", "smtp_password": "wrong"}))
	b := d.addProvider(plainProvider(upB, "fine", map[string]any{"percentage": 10}))
	d.deactivate(d.managedID())
	key := d.sendingKey(nil)
	c := d.client(key)
	defer c.Close()

	var victim map[string]any
	for i := 0; victim == nil; i++ {
		if i == 30 {
			t.Fatal("A was never picked in 30 messages at weight 90")
		}
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("auth-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		e := d.waitEmail(id)
		if e["status"] != "sent" || strings.Join(recipientProviders(e), ",") != b {
			t.Fatalf("message %d: want sent via B: %v", i, e)
		}
		if authA.Load() > 0 {
			victim = e
		}
	}
	if n := attemptsAt(victim, a); n != 1 {
		t.Fatalf("A was tried %d times for the message, want once: %v", n, victim["attempts"])
	}
	first := victim["attempts"].([]any)[0].(map[string]any)
	if first["provider_id"] != a || first["class"] != "auth" || !strings.Contains(fmt.Sprint(first["reply"]), "535") {
		t.Fatalf("first attempt %v, want A failing auth with 535", first)
	}
	pA := d.provider(a)
	if pA["status"] != "error" || !strings.Contains(fmt.Sprint(pA["status_reason"]), "535") {
		t.Fatalf("A: status %v, reason %v; want error mentioning 535", pA["status"], pA["status_reason"])
	}
	// A is out of rotation: more mail goes to B, A sees no further AUTH.
	ids := sendConcurrently(t, d, key, "auth-more", 20, 4)
	for _, id := range ids {
		if e := d.waitEmail(id); e["status"] != "sent" || attemptsAt(e, a) != 0 {
			t.Fatalf("after A's auth fault: %v", e)
		}
	}
	if got := authA.Load(); got != 1 {
		t.Fatalf("A saw %d AUTH attempts, want 1", got)
	}
	if upA.Count() != 0 {
		t.Fatalf("A accepted %d messages", upA.Count())
	}
	if ex := routingOf(t, d.email(ids[0]), 0); ex.excludedFor(a) != "status_error" {
		t.Fatalf("routing does not exclude A for its error status: %+v", ex)
	}
	// A key whose scope is only A (in error) has no active provider.
	cA := d.client(d.sendingKey(map[string]any{"type": "providers", "provider_public_ids": []string{a}}))
	defer cA.Close()
	wantReply(t, cA.Mail("app@example.com", nil), 451, "4.3.0", "MAIL with a scope of one provider in error")
}

// ---- 5. group isolation ------------------------------------------------------

// TestRoutingGroupIsolation: a key scoped to group G1 {A} reaches only A, a
// key scoped to providers [B] only B, a mailbox scoped to G2 {B} only B
// (with the managed account active all along), and a key whose scope names
// only an inactive provider is refused at MAIL with 451 4.3.0
// no_active_providers. Moving a provider between groups and deleting a
// group take effect on the next message; scopes naming missing or foreign
// providers and groups are refused at write time.
func TestRoutingGroupIsolation(t *testing.T) {
	t.Parallel()
	upA, upB, upC := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	const opToken = "e2e-operator-token-0123456789"
	d := newDaemon(t, map[string]string{"": fmt.Sprintf("operator_token = %q", opToken)})
	g1 := d.must(201, "POST", "/delivery-groups", map[string]any{"name": "transactional"})["id"].(string)
	g2 := d.must(201, "POST", "/delivery-groups", map[string]any{"name": "bulk"})["id"].(string)
	a := d.addProvider(plainProvider(upA, "A", map[string]any{"group_id": g1}))
	b := d.addProvider(plainProvider(upB, "B", map[string]any{"group_id": g2}))
	cID := d.addProvider(plainProvider(upC, "C", nil))
	d.deactivate(cID)
	managed := d.managedID() // stays active: scopes must still keep mail off it
	if ids := d.must(200, "GET", "/delivery-groups/"+g1, nil)["provider_ids"]; fmt.Sprint(ids) != "["+a+"]" {
		t.Fatalf("group G1 lists %v, want [%s]", ids, a)
	}
	if code, resp := d.api("PATCH", "/providers/"+managed, map[string]any{"group_id": g1}); code != 422 {
		t.Fatalf("managed account joining a group: %d %v, want 422", code, resp)
	}

	// Write-time checks: missing and foreign references are 422.
	_, resp := d.apiAs(opToken, "POST", "/operator/teams", map[string]any{"name": "other-team"})
	rootB, _ := data(resp)["root_key"].(map[string]any)
	if rootB == nil {
		t.Fatalf("create team: %v", resp)
	}
	otherRoot := rootB["key"].(string)
	for _, tc := range []struct {
		key   string
		scope map[string]any
	}{
		{testRootKey, map[string]any{"type": "providers", "provider_public_ids": []string{"dprov_000000000000000000000000"}}},
		{testRootKey, map[string]any{"type": "group", "group_public_ids": []string{"dgrp_000000000000000000000000"}}},
		{otherRoot, map[string]any{"type": "providers", "provider_public_ids": []string{a}}},
		{otherRoot, map[string]any{"type": "group", "group_public_ids": []string{g1}}},
	} {
		if code, resp := d.apiAs(tc.key, "POST", "/api-keys", map[string]any{"name": "bad", "type": "sending", "send_scope": tc.scope}); code != 422 {
			t.Fatalf("scope %v: %d %v, want 422", tc.scope, code, resp)
		}
	}

	kG1, kG1ID := d.sendingKeyWithID(map[string]any{"type": "group", "group_public_ids": []string{g1}})
	kB := d.sendingKey(map[string]any{"type": "providers", "provider_public_ids": []string{b}})
	kC := d.sendingKey(map[string]any{"type": "providers", "provider_public_ids": []string{cID}})
	mb := d.must(201, "POST", "/mailboxes", map[string]any{"address": "news@example.com",
		"send_scope": map[string]any{"type": "group", "group_public_ids": []string{g2}}})
	mbPW := d.must(201, "POST", "/mailboxes/"+mb["id"].(string)+"/passwords", map[string]any{"name": "n"})["password"].(string)

	idsG1 := sendConcurrently(t, d, kG1, "g1", 20, 4)
	idsB := sendConcurrently(t, d, kB, "pb", 20, 4)
	cm := d.client(mbPW)
	var idsMB []string
	for i := 0; i < 5; i++ {
		mid := fmt.Sprintf("mb-%d@e2e.test", i)
		id, err := sendOne(cm, "news@example.com", []string{"user@example.net"}, routedMsg("news@example.com", mid))
		if err != nil {
			t.Fatal(err)
		}
		idsMB = append(idsMB, id)
	}
	cm.Quit()
	upA.WaitMessages(t, 20, 15*time.Second)
	upB.WaitMessages(t, 25, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	for mid := range midCounts(upA) {
		if !strings.HasPrefix(mid, "g1-") {
			t.Errorf("A (group G1) got %s", mid)
		}
	}
	for mid := range midCounts(upB) {
		if !strings.HasPrefix(mid, "pb-") && !strings.HasPrefix(mid, "mb-") {
			t.Errorf("B got %s", mid)
		}
	}
	if upA.Count() != 20 || upB.Count() != 25 || upC.Count() != 0 {
		t.Fatalf("A %d, B %d, C %d; want 20, 25, 0", upA.Count(), upB.Count(), upC.Count())
	}
	for _, id := range idsG1 {
		if e := d.waitEmail(id); e["status"] != "sent" || strings.Join(recipientProviders(e), ",") != a {
			t.Fatalf("G1 message %v", e)
		}
	}
	for _, id := range append(idsB, idsMB...) {
		if e := d.waitEmail(id); e["status"] != "sent" || strings.Join(recipientProviders(e), ",") != b {
			t.Fatalf("B-scoped message %v", e)
		}
	}
	ex := routingOf(t, d.email(idsG1[0]), 0)
	if ex.ScopeType != "group" || strings.Join(ex.InScope, ",") != a || ex.Picked != a {
		t.Fatalf("routing of a G1 message: %+v", ex)
	}
	if u := d.sentByProvider(); u[managed] != 0 || u[cID] != 0 {
		t.Fatalf("usage: %v", u)
	}

	// No active provider in scope: refused at MAIL, nothing queued.
	c := d.client(kC)
	defer c.Close()
	se := wantReply(t, c.Mail("app@example.com", nil), 451, "4.3.0", "MAIL with a scope of one inactive provider")
	if !strings.Contains(se.Message, "no_active_providers") {
		t.Fatalf("reply text %q, want no_active_providers", se.Message)
	}
	// Once C is active again the same key sends.
	d.must(200, "POST", "/providers/"+cID+"/activate", nil)
	if _, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "c-1@e2e.test")); err != nil {
		t.Fatal(err)
	}
	upC.WaitMessages(t, 1, 10*time.Second)

	// B joins G1: the G1 key now reaches both A and B.
	d.must(200, "PATCH", "/providers/"+b, map[string]any{"group_id": g1})
	beforeA, beforeB := upA.Count(), upB.Count()
	sendConcurrently(t, d, kG1, "g1-moved", 40, 4)
	waitFor(t, 15*time.Second, "the G1 messages after the move", func() bool { return upA.Count()+upB.Count() >= beforeA+beforeB+40 })
	if upA.Count() == beforeA || upB.Count() == beforeB {
		t.Fatalf("after B joined G1: A got %d, B got %d of 40", upA.Count()-beforeA, upB.Count()-beforeB)
	}

	// Deleting G1 moves its providers out and reports the keys naming it;
	// the G1 key then has no provider.
	del := d.must(200, "DELETE", "/delivery-groups/"+g1, nil)
	if moved := fmt.Sprint(del["moved_providers"]); !strings.Contains(moved, a) || !strings.Contains(moved, b) {
		t.Fatalf("delete G1: moved_providers %v", del["moved_providers"])
	}
	if keys := fmt.Sprint(del["affected_api_keys"]); !strings.Contains(keys, kG1ID) {
		t.Fatalf("delete G1: affected_api_keys %v, want %s", del["affected_api_keys"], kG1ID)
	}
	cg := d.client(kG1)
	defer cg.Close()
	wantReply(t, cg.Mail("app@example.com", nil), 451, "4.3.0", "MAIL with a scope naming a deleted group")

	// The other team's key of scope "all" never reaches this team's providers.
	code, r := d.apiAs(otherRoot, "POST", "/api-keys", map[string]any{"name": "t2", "type": "sending"})
	if code != 201 {
		t.Fatalf("other team's key: %d %v", code, r)
	}
	before := upA.Count() + upB.Count() + upC.Count()
	c2 := d.client(data(r)["key"].(string))
	defer c2.Close()
	id2, err := sendOne(c2, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "t2@e2e.test"))
	if err != nil {
		t.Fatal(err)
	}
	code, r = d.apiAs(otherRoot, "GET", "/emails/"+id2, nil)
	for i := 0; i < 100 && code == 200 && data(r)["status"] == "pending"; i++ {
		time.Sleep(50 * time.Millisecond)
		code, r = d.apiAs(otherRoot, "GET", "/emails/"+id2, nil)
	}
	if e := data(r); code != 200 || e["status"] != "sent" {
		t.Fatalf("other team's message: %d %v", code, r)
	} else if ex := routingOf(t, e, 0); strings.Contains(strings.Join(ex.InScope, ","), a) || ex.Picked == a || ex.Picked == b || ex.Picked == cID {
		t.Fatalf("other team's routing sees this team's providers: %+v", ex)
	}
	if upA.Count()+upB.Count()+upC.Count() != before {
		t.Fatal("the other team's message reached this team's upstreams")
	}
	if code, _ := d.api("GET", "/emails/"+id2, nil); code != 404 {
		t.Fatalf("this team reads the other team's email: %d, want 404", code)
	}
}

// TestRoutingMailboxScopeChangeOnOpenSession: a mailbox's send_scope is
// the credential's scope; like a suspension, a change of it applies to the
// next transaction of a session that is already open.
func TestRoutingMailboxScopeChangeOnOpenSession(t *testing.T) {
	t.Parallel()
	upA, upB := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "A", nil))
	b := d.addProvider(plainProvider(upB, "B", nil))
	d.deactivate(d.managedID())
	mb := d.must(201, "POST", "/mailboxes", map[string]any{"address": "ops@example.com",
		"send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{a}}})
	mbID := mb["id"].(string)
	pw := d.must(201, "POST", "/mailboxes/"+mbID+"/passwords", map[string]any{"name": "n"})["password"].(string)
	c := d.client(pw)
	defer c.Close()
	send := func(mid string) map[string]any {
		id, err := sendOne(c, "ops@example.com", []string{"user@example.net"}, routedMsg("ops@example.com", mid))
		if err != nil {
			t.Fatal(err)
		}
		return d.waitEmail(id)
	}
	if e := send("scope-1@e2e.test"); strings.Join(recipientProviders(e), ",") != a {
		t.Fatalf("before the change: %v", e)
	}
	d.must(200, "PATCH", "/mailboxes/"+mbID, map[string]any{"send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{b}}})
	// A new session follows the new scope...
	c2 := d.client(pw)
	id, err := sendOne(c2, "ops@example.com", []string{"user@example.net"}, routedMsg("ops@example.com", "scope-new-session@e2e.test"))
	c2.Close()
	if err != nil {
		t.Fatal(err)
	}
	if e := d.waitEmail(id); strings.Join(recipientProviders(e), ",") != b {
		t.Fatalf("new session after the change: %v", e)
	}
	// ...and so must the session that was open before the change.
	e := send("scope-2@e2e.test")
	if got := strings.Join(recipientProviders(e), ","); got != b {
		ex := routingOf(t, e, 0)
		t.Fatalf("after PATCH send_scope → [B], the open session's next message went to %s with scope %v (in_scope %v): "+
			"the session keeps the scope read at AUTH", got, ex.ScopeType, ex.InScope)
	}
}

// ---- 6. mailboxes ------------------------------------------------------------

// TestRoutingMailboxSenderRule: a mailbox password sends only as the
// mailbox address (envelope and header From), a suspended mailbox cannot
// send (open session and new AUTH: 535) until resumed, and a revoked
// password is refused.
func TestRoutingMailboxSenderRule(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	d.setupRelay(plainProvider(up, "up", nil))
	mb := d.must(201, "POST", "/mailboxes", map[string]any{"address": "sales@example.com", "display_name": "Sales"})
	mbID := mb["id"].(string)
	pw := d.must(201, "POST", "/mailboxes/"+mbID+"/passwords", map[string]any{"name": "crm"})
	secret, pwID := pw["password"].(string), pw["id"].(string)

	c := d.client(secret)
	defer c.Close()
	rcpt := []string{"user@example.net"}
	wantReply(t, c.Mail("other@example.com", nil), 550, "5.7.1", "MAIL FROM another address")
	_, err := sendOne(c, "sales@example.com", rcpt, routedMsg("Other <other@example.com>", "mb-wrong-header@e2e.test"))
	wantReply(t, err, 550, "5.7.1", "header From another address")
	id, err := sendOne(c, "sales@example.com", rcpt, routedMsg("Sales <sales@example.com>", "mb-ok-1@e2e.test"))
	if err != nil {
		t.Fatalf("correct sender: %v", err)
	}
	if e := d.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}

	// Suspended: the open session's next transaction and a new AUTH get 535.
	if st := d.must(200, "POST", "/mailboxes/"+mbID+"/suspend", nil)["status"]; st != "suspended" {
		t.Fatalf("suspend: status %v", st)
	}
	wantReply(t, c.Mail("sales@example.com", nil), 535, "", "MAIL on an open session of a suspended mailbox")
	if c2, err := dialQuiet(d, secret); err == nil {
		c2.Close()
		t.Fatal("AUTH with a suspended mailbox's password succeeded")
	} else {
		wantReply(t, err, 535, "5.7.8", "AUTH of a suspended mailbox")
	}

	// Resumed: works again.
	d.must(200, "POST", "/mailboxes/"+mbID+"/resume", nil)
	c3, err := dialQuiet(d, secret)
	if err != nil {
		t.Fatalf("AUTH after resume: %v", err)
	}
	defer c3.Close()
	if _, err := sendOne(c3, "sales@example.com", rcpt, routedMsg("sales@example.com", "mb-ok-2@e2e.test")); err != nil {
		t.Fatalf("send after resume: %v", err)
	}

	// Revoked: the open session and a new AUTH are refused.
	if st := d.must(200, "DELETE", "/mailboxes/"+mbID+"/passwords/"+pwID, nil)["status"]; st != "revoked" {
		t.Fatalf("revoke: status %v", st)
	}
	wantReply(t, c3.Mail("sales@example.com", nil), 535, "", "MAIL on an open session after revocation")
	if c4, err := dialQuiet(d, secret); err == nil {
		c4.Close()
		t.Fatal("AUTH with a revoked password succeeded")
	} else {
		wantReply(t, err, 535, "5.7.8", "AUTH with a revoked password")
	}

	up.WaitMessages(t, 2, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	got := midCounts(up)
	if len(got) != 2 || got["mb-ok-1@e2e.test"] != 1 || got["mb-ok-2@e2e.test"] != 1 {
		t.Fatalf("upstream got %v, want only the two correct messages", got)
	}
}

// ---- 7. rate limit -----------------------------------------------------------

// TestRoutingRateLimit1800PerMinute: with the default limit, 1,800
// transactions of one key within a minute succeed, the 1,801st gets
// 451 4.7.1 with a retry hint, and another key still sends.
func TestRoutingRateLimit1800PerMinute(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(plainProvider(up, "up", nil))
	other := d.sendingKey(nil)

	start := time.Now()
	sendConcurrently(t, d, key, "rl", 1800, 6)
	took := time.Since(start)
	if took > 50*time.Second {
		// Too close to the window's end to test its edge. Under CI this
		// is a failure, not a quiet skip: the suite must not go green by
		// testing less.
		if os.Getenv("CI") == "true" {
			t.Fatalf("1,800 sends took %v: too slow to test the one-minute window's edge", took)
		}
		t.Skipf("1,800 sends took %v: too close to the one-minute window to test its edge", took)
	}
	c := d.client(key)
	defer c.Close()
	se := wantReply(t, c.Mail("app@example.com", nil), 451, "4.7.1", "transaction 1,801 of the minute")
	if !strings.Contains(strings.ToLower(se.Message), "retry") {
		t.Fatalf("451 text %q has no retry hint", se.Message)
	}
	// Another credential has its own budget.
	c2 := d.client(other)
	defer c2.Close()
	if _, err := sendOne(c2, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "rl-other@e2e.test")); err != nil {
		t.Fatalf("second key: %v", err)
	}
	up.WaitMessages(t, 1801, 30*time.Second)
	t.Logf("1,800 transactions in %v", took.Round(time.Millisecond))
}

// ---- 8. routing explanation ----------------------------------------------

// TestRoutingExplanation: GET /emails/{id} shows, per attempt, the scope,
// each excluded provider with its reason, the eligible providers with their
// weights, the draw and the pick.
func TestRoutingExplanation(t *testing.T) {
	t.Parallel()
	skipNearUTCMidnight(t)
	upA, upB, upZ, upQ := testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{}),
		testpeer.Start(t, testpeer.Options{}), testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	a := d.addProvider(plainProvider(upA, "A", map[string]any{"percentage": 60}))
	b := d.addProvider(plainProvider(upB, "B", map[string]any{"percentage": 40}))
	z := d.addProvider(plainProvider(upZ, "Z", map[string]any{"percentage": 0}))
	q := d.addProvider(plainProvider(upQ, "Q", map[string]any{"quotas": map[string]any{"per_day": 1}})) // weight unset
	managed := d.managedID()
	d.deactivate(managed)

	// Q's one message of the day, through a key scoped to Q alone.
	kq := d.sendingKey(map[string]any{"type": "providers", "provider_public_ids": []string{q}})
	cq := d.client(kq)
	defer cq.Close()
	idQ, err := sendOne(cq, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "ex-q@e2e.test"))
	if err != nil {
		t.Fatal(err)
	}
	eq := d.waitEmail(idQ)
	exq := routingOf(t, eq, 0)
	if exq.ScopeType != "providers" || strings.Join(exq.InScope, ",") != q || len(exq.Eligible) != 1 ||
		exq.Eligible[0].ProviderID != q || exq.Eligible[0].Weight != 100 || exq.Picked != q || exq.Total != 100 {
		t.Fatalf("explanation for a Q-scoped message (unset weight counts as 100): %+v", exq)
	}

	// Then a message of scope "all".
	c := d.client(d.sendingKey(nil))
	defer c.Close()
	id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "ex-all@e2e.test"))
	if err != nil {
		t.Fatal(err)
	}
	e := d.waitEmail(id)
	if e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	ex := routingOf(t, e, 0)
	raw, _ := json.Marshal(e["attempts"].([]any)[0].(map[string]any)["routing"])
	t.Logf("routing explanation: %s", raw)
	in := append([]string(nil), ex.InScope...)
	sort.Strings(in)
	want := []string{a, b, z, q, managed}
	sort.Strings(want)
	if ex.ScopeType != "all" || strings.Join(in, ",") != strings.Join(want, ",") {
		t.Fatalf("scope %q in_scope %v, want all of %v", ex.ScopeType, ex.InScope, want)
	}
	for id, reason := range map[string]string{managed: "inactive", z: "zero_weight", q: "over_quota"} {
		if got := ex.excludedFor(id); got != reason {
			t.Errorf("provider %s excluded with %q, want %q", id, got, reason)
		}
	}
	if len(ex.Excluded) != 3 {
		t.Errorf("excluded %+v, want exactly managed, Z and Q", ex.Excluded)
	}
	weights := map[string]int{}
	for _, w := range ex.Eligible {
		weights[w.ProviderID] = w.Weight
	}
	if len(weights) != 2 || weights[a] != 60 || weights[b] != 40 || ex.Total != 100 {
		t.Fatalf("eligible %+v total %d, want A 60 and B 40 of 100", ex.Eligible, ex.Total)
	}
	if ex.Draw < 0 || ex.Draw >= ex.Total {
		t.Fatalf("draw %d outside [0, %d)", ex.Draw, ex.Total)
	}
	// The pick is where the draw falls on the cumulative weights, in the
	// order the explanation lists them.
	acc, wantPick := 0, ""
	for _, w := range ex.Eligible {
		acc += w.Weight
		if ex.Draw < acc {
			wantPick = w.ProviderID
			break
		}
	}
	first := e["attempts"].([]any)[0].(map[string]any)
	if ex.Picked != wantPick || first["provider_id"] != ex.Picked || strings.Join(recipientProviders(e), ",") != ex.Picked {
		t.Fatalf("draw %d over %+v should pick %s; explanation picked %s, attempt went to %v", ex.Draw, ex.Eligible, wantPick, ex.Picked, first["provider_id"])
	}
	if upZ.Count() != 0 || upQ.Count() != 1 {
		t.Fatalf("Z got %d, Q got %d", upZ.Count(), upQ.Count())
	}
}

// ---- 9. quota counters across a restart -----------------------------------

// TestRoutingDayQuotaSurvivesRestart: per_day = 3; three messages go, the
// daemon restarts (graceful stop, same config and data), and the fourth
// waits instead of being delivered.
func TestRoutingDayQuotaSurvivesRestart(t *testing.T) {
	t.Parallel()
	skipNearUTCMidnight(t)
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	p, key := d.setupRelay(plainProvider(up, "daily3", map[string]any{"quotas": map[string]any{"per_day": 3}}))
	c := d.client(key)
	for i := 0; i < 3; i++ {
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", fmt.Sprintf("rs-%d@e2e.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("email %v", e)
		}
	}
	c.Quit()

	d.stop()
	d.start()

	c = d.client(key)
	defer c.Close()
	id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "rs-after-restart@e2e.test"))
	if err != nil {
		t.Fatalf("the fourth message must be accepted and queued: %v", err)
	}
	time.Sleep(2 * time.Second)
	if got := up.Count(); got != 3 {
		t.Fatalf("upstream got %d messages; per_day = 3 must hold across the restart", got)
	}
	e := d.email(id)
	if e["status"] != "pending" || e["next_attempt_at"] == nil {
		t.Fatalf("fourth message: %v", e)
	}
	t.Run("waiting explained on the message", func(t *testing.T) {
		requireWaitingExplanation(t, e, p, "over_quota")
	})
}
