package main

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// loopSubjectRe finds the per-message tag the crash loop puts in Subject
// and Message-ID, so that stored records and upstream copies of one client
// message can be matched even when the client never saw its 250.
var loopSubjectRe = regexp.MustCompile(`^loop (\S+)$`)

// TestCrashLoopKill9 is the crash suite of issue 8: rounds of load from
// concurrent SMTP clients, each ended by SIGKILL at a random moment (a
// random delay or a random number of accepted messages) and a restart on
// the same data_dir. After the last round the queue is drained and:
//
//   - the store opened every time (every restart came up);
//   - every message that got a 250 is in the store, and is either sent or
//     failed with reason "uncertain" (the kill fell between the durable
//     data-phase mark and the upstream's reply);
//   - per client message, the upstream got at least one copy for every
//     stored record that says sent, and no more than the stored records
//     that could have gone out (sent or uncertain): the relay never sent a
//     record twice. A client resend after a cut transaction makes a second
//     record, which may legitimately be delivered too.
//
// SMTPMUX_CRASH_SEED replays a run; the seed is logged.
func TestCrashLoopKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop is long")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SMTPMUX_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SMTPMUX_CRASH_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	up := testpeer.Start(t, testpeer.Options{})
	// A final reply that takes a few milliseconds keeps attempts between
	// their data-phase mark and the upstream's 250 when the kill comes.
	up.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepData {
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		}
		return testpeer.Continue
	})
	// The per-key send limit would turn this load into 451s.
	d := newDaemon(t, map[string]string{"": "[limits]\nsends_per_minute = 1000000"})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})

	const (
		clients   = 5
		maxRounds = 20
		budget    = 16 * time.Second // for the rounds; the drain comes after
	)
	var (
		mu        sync.Mutex
		accepted  = map[string]string{} // eml id → tag, for every 250 a client got
		tries     = map[string]int{}    // tag → transactions started for it
		nAccepted atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
		clientErr = make(chan error, clients)
	)
	for s := 0; s < clients; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for i := 0; !stop.Load(); i++ {
				tag := fmt.Sprintf("c%d-m%d", s, i)
				body := crlf(fmt.Sprintf("From: app@example.com\nTo: u@example.net\nSubject: loop %s\nMessage-ID: <%s@loop.e2e>\n\nbody of %s\n", tag, tag, tag))
				// A client keeps a message until it gets its 250, as real
				// senders do; the daemon is down at most a few seconds.
				giveUp := time.Now().Add(30 * time.Second)
				for {
					if time.Now().After(giveUp) {
						clientErr <- fmt.Errorf("message %s never accepted in 30 s", tag)
						return
					}
					if c == nil {
						var err error
						if c, err = dialQuiet(d, key); err != nil {
							c = nil
							time.Sleep(10 * time.Millisecond)
							continue
						}
					}
					mu.Lock()
					tries[tag]++
					mu.Unlock()
					id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, body)
					if err != nil {
						c.Close()
						c = nil
						continue
					}
					mu.Lock()
					accepted[id] = tag
					mu.Unlock()
					nAccepted.Add(1)
					break
				}
			}
		}(s)
	}
	stopClients := func() {
		stop.Store(true)
		wg.Wait()
		close(clientErr)
		for err := range clientErr {
			t.Error(err)
		}
	}

	began := time.Now()
	rounds := 0
	for rounds < maxRounds && time.Since(began) < budget {
		// A random moment: after a random delay, or after a random number
		// of messages got their 250 in this round.
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		} else {
			target := nAccepted.Load() + int64(1+rng.IntN(60))
			until := time.Now().Add(2 * time.Second)
			for nAccepted.Load() < target && time.Now().Before(until) {
				time.Sleep(time.Millisecond)
			}
		}
		d.kill9()
		rounds++
		if err := d.tryStart(); err != nil {
			stopClients()
			t.Fatalf("round %d: the daemon did not restart after kill -9 (store did not open?): %v", rounds, err)
		}
	}
	stopClients()
	if t.Failed() {
		t.FailNow()
	}
	if rounds < 5 {
		t.Fatalf("only %d rounds fit in %v", rounds, budget)
	}
	if n := strings.Count(d.logText(), `"msg":"smtpmux started"`); n != rounds+1 {
		t.Fatalf("%d starts logged for %d rounds", n, rounds)
	}
	for _, line := range strings.Split(d.logText(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "panic") {
			t.Errorf("daemon log: %s", line)
		}
	}

	// Drain: every stored message reaches a final status.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, resp := d.api("GET", "/emails/logs?status=pending&limit=1", nil)
		if code != 200 {
			t.Fatalf("pending messages: %d %v", code, resp)
		}
		if len(resp["data"].([]any)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages still pending 30 s after the last restart, e.g. %v", resp["data"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	stored := allEmails(t, d)

	type rec struct{ sent, uncertain, other int }
	byTag := map[string]*rec{}
	status := map[string]map[string]any{}
	for _, e := range stored {
		id := e["id"].(string)
		status[id] = e
		m := loopSubjectRe.FindStringSubmatch(fmt.Sprint(e["subject"]))
		if m == nil {
			t.Fatalf("stored message %s has subject %v", id, e["subject"])
		}
		r := byTag[m[1]]
		if r == nil {
			r = &rec{}
			byTag[m[1]] = r
		}
		switch {
		case e["status"] == "sent":
			r.sent++
		case e["status"] == "failed" && e["reason"] == "uncertain":
			r.uncertain++
		default:
			r.other++
		}
	}
	// Report at most 20 findings one by one; the summary counts them all.
	reported := 0
	report := func(format string, args ...any) {
		if reported++; reported <= 20 {
			t.Errorf(format, args...)
		} else {
			t.Fail()
		}
	}
	lost, bad, uncertain := 0, 0, 0
	for id, tag := range accepted {
		e, ok := status[id]
		switch {
		case !ok:
			lost++
			report("message %s (%s) got 250 but is not in the store", id, tag)
		case e["status"] == "sent":
		case e["status"] == "failed" && e["reason"] == "uncertain":
			uncertain++
		default:
			bad++
			report("message %s (%s) got 250 and ended %v / %v", id, tag, e["status"], e["reason"])
		}
	}
	seen := map[string]int{}
	for _, m := range up.Messages() {
		if mm := midRe.FindSubmatch(m.Data); mm != nil {
			seen[strings.TrimSuffix(string(mm[1]), "@loop.e2e")]++
		}
	}
	dups, missing, clientDups := 0, 0, 0
	for tag, r := range byTag {
		n := seen[tag]
		if r.other > 0 {
			report("%s: %d stored records ended neither sent nor uncertain", tag, r.other)
		}
		if n < r.sent {
			missing += r.sent - n
			report("%s: %d records say sent, the upstream got %d copies", tag, r.sent, n)
		}
		if n > r.sent+r.uncertain {
			dups += n - r.sent - r.uncertain
			report("%s: the upstream got %d copies of %d records that could have gone out (tries %d): the relay sent one twice",
				tag, n, r.sent+r.uncertain, tries[tag])
		}
		if ok := min(n, r.sent+r.uncertain); ok > 1 {
			clientDups += ok - 1 // copies of the client's own resends
		}
	}
	for tag := range seen {
		if byTag[tag] == nil {
			report("the upstream got %s, which the store does not know", tag)
		}
	}
	retried := 0
	for _, n := range tries {
		retried += n - 1
	}
	t.Logf("%d rounds of kill -9 in %v: %d messages got 250 (%d stored records, %d client retries), "+
		"%d flagged uncertain, %d lost, %d wrong, %d relay duplicates, %d extra copies from client resends",
		rounds, time.Since(began).Round(time.Millisecond), len(accepted), len(stored), retried, uncertain, lost, bad, dups, clientDups)
	if missing > 0 {
		t.Errorf("%d records marked sent never reached the upstream", missing)
	}
}

// allEmails pages through GET /emails/logs and returns every message.
func allEmails(t *testing.T, d *proc) []map[string]any {
	t.Helper()
	var out []map[string]any
	cursor := ""
	for page := 0; page < 1000; page++ {
		path := "/emails/logs?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		code, resp := d.api("GET", path, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %v", path, code, resp)
		}
		for _, it := range resp["data"].([]any) {
			out = append(out, it.(map[string]any))
		}
		pg, _ := resp["pagination"].(map[string]any)
		if pg["has_more"] != true {
			return out
		}
		cursor = fmt.Sprint(pg["next_cursor"])
	}
	t.Fatal("more than 1000 pages of messages")
	return nil
}
