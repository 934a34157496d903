package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// End-to-end tests of the abuse limits of issue 12 (items 7 and 8): the
// per-address connection cap, the pre-AUTH idle timeout, the bound on
// commands without progress, and the failed-AUTH limit under parallel
// attempts over SMTP and HTTP. Other client addresses are other loopback
// addresses (all of 127/8 is loopback on Linux).

// metricValue is the value of one series in a /metrics scrape (0 when the
// series is absent: counters with labels appear at their first count).
func metricValue(t *testing.T, scrape, series string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return int(v)
}

// TestConnectionCapPerAddress: one address holding its max_connections_per_ip
// idle connections gets 421 4.7.0 for the next one, at once and closed;
// another address is greeted and sends normally; once the first address
// lets one go, it is greeted again.
func TestConnectionCapPerAddress(t *testing.T) {
	t.Parallel()
	const perIP = 5
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"smtp": fmt.Sprintf("max_connections = 50\nmax_connections_per_ip = %d", perIP)})
	_, key := d.setupRelay(plainProvider(up, "up", nil))

	var held []*rawClient
	defer func() {
		for _, c := range held {
			c.conn.Close()
		}
	}()
	for i := 0; i < perIP; i++ {
		c, code, err := dialRaw(d.smtpAddr, "127.0.0.2")
		if err != nil || code != 220 {
			t.Fatalf("connection %d from 127.0.0.2: %d %v", i, code, err)
		}
		held = append(held, c)
	}
	// Over the cap: a 421 4.7.0 that says why, and the connection closed.
	for i := 0; i < 2; i++ {
		code, text, closed := greeting(t, d.smtpAddr, "127.0.0.2")
		if code != 421 || !strings.HasPrefix(text, "421 4.7.0 ") || !strings.Contains(text, "from your address") || !closed {
			t.Fatalf("connection %d from an address holding %d: %q (closed %v), want 421 4.7.0 naming the address and the connection closed",
				perIP+1+i, perIP, text, closed)
		}
	}

	// Another address is not locked out: it is greeted and sends.
	sendsFrom(t, d, "127.0.0.3", key, "other-address")

	// The cap counts open connections: one closed, one more is greeted.
	held[0].conn.Close()
	held = held[1:]
	waitFor(t, 10*time.Second, "a slot of 127.0.0.2 to come free", func() bool {
		c, code, err := dialRaw(d.smtpAddr, "127.0.0.2")
		if err != nil {
			return false
		}
		if code == 220 {
			held = append(held, c)
			return true
		}
		c.conn.Close()
		return false
	})
	if n := metricValue(t, d.metrics(), `smtpmux_limited_total{reason="max_connections_per_ip"}`); n < 2 {
		t.Fatalf("smtpmux_limited_total{reason=max_connections_per_ip} = %d, want >= 2", n)
	}
}

// greeting connects from localIP and returns the server's first reply and
// whether the server then closed the connection.
func greeting(t *testing.T, addr, localIP string) (int, string, bool) {
	t.Helper()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	defer conn.Close()
	code, text, err := c.reply()
	if err != nil {
		t.Fatalf("first reply: %v", err)
	}
	return code, text, c.closed(5 * time.Second)
}

// sendsFrom authenticates from localIP over STARTTLS and sends one message.
func sendsFrom(t *testing.T, d *proc, localIP, key, tag string) {
	t.Helper()
	c, code, err := dialRaw(d.smtpAddr, localIP)
	if err != nil || code != 220 {
		t.Fatalf("greeting from %s: %d %v", localIP, code, err)
	}
	defer c.conn.Close()
	if err := c.startTLS(); err != nil {
		t.Fatal(err)
	}
	if code, text, err := c.auth(key); code != 235 {
		t.Fatalf("AUTH from %s: %d %q %v", localIP, code, text, err)
	}
	if code, text, err := c.rawSend("app@example.com", "u@example.net", faultMsg(tag)); code != 250 {
		t.Fatalf("send from %s: %d %q %v", localIP, code, text, err)
	}
}

// TestPreAuthIdleTimeout: a connection that has not authenticated is
// closed with 421 4.4.2 after pre_auth_timeout without a command, while an
// authenticated one, idle since before it, still has its read_timeout.
func TestPreAuthIdleTimeout(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"smtp": "pre_auth_timeout = \"500ms\"\nread_timeout = \"5m\""})
	_, key := d.setupRelay(plainProvider(up, "up", nil))

	authed := rawSession(t, d, key) // idle from here on
	anon, code, err := dialRaw(d.smtpAddr, "")
	if err != nil || code != 220 {
		t.Fatalf("greeting: %d %v", code, err)
	}
	defer anon.conn.Close()
	if err := anon.startTLS(); err != nil {
		t.Fatal(err)
	}
	// Nothing more is sent: the server's next words are its timeout.
	anon.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	code, text, err := anon.reply()
	if code != 421 || !strings.HasPrefix(text, "421 4.4.2") {
		t.Fatalf("idle before AUTH: %d %q %v, want 421 4.4.2", code, text, err)
	}
	if !anon.closed(5 * time.Second) {
		t.Fatal("the timed-out connection stayed open")
	}
	// The authenticated session has been idle longer and is still served.
	if code, text, err := authed.cmd("NOOP"); code != 250 {
		t.Fatalf("authenticated session after the anonymous one timed out: %d %q %v", code, text, err)
	}
	if code, text, err := authed.rawSend("app@example.com", "u@example.net", faultMsg("pre-auth-timeout")); code != 250 {
		t.Fatalf("send: %d %q %v", code, text, err)
	}
}

// TestJunkCommandLimit: NOOP and RSET keep a connection alive only up to
// max_junk_commands in a row, before and after AUTH; a client that sends
// mail is never cut, however many NOOPs it mixes in, because each queued
// message starts the count again.
func TestJunkCommandLimit(t *testing.T) {
	t.Parallel()
	const limit = 6
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"smtp": fmt.Sprintf("max_junk_commands = %d", limit)})
	_, key := d.setupRelay(plainProvider(up, "up", nil))

	// A real client: a few NOOPs and an RSET around each of 5 messages
	// (more commands than the limit in all, never that many in a row).
	c := rawSession(t, d, key)
	for i := 0; i < 5; i++ {
		for _, cmd := range []string{"NOOP", "RSET", "NOOP"} {
			if code, text, err := c.cmd(cmd); code != 250 {
				t.Fatalf("message %d, %s: %d %q %v", i, cmd, code, text, err)
			}
		}
		if code, text, err := c.rawSend("app@example.com", "u@example.net", faultMsg(fmt.Sprintf("junk-%d", i))); code != 250 {
			t.Fatalf("message %d: %d %q %v", i, code, text, err)
		}
	}

	// A client that only keeps the connection: cut after the limit.
	keepAlive := func(c *rawClient, already int) {
		t.Helper()
		for i := already; i < limit; i++ {
			cmd := []string{"NOOP", "RSET"}[i%2]
			if code, text, err := c.cmd(cmd); code != 250 {
				t.Fatalf("%s %d of %d: %d %q %v", cmd, i+1, limit, code, text, err)
			}
		}
		code, text, err := c.cmd("NOOP")
		if code != 421 || !strings.HasPrefix(text, "421 4.7.0") {
			t.Fatalf("command %d without progress: %d %q %v, want 421 4.7.0", limit+1, code, text, err)
		}
		if !c.closed(5 * time.Second) {
			t.Fatal("the connection stayed open after the 421")
		}
	}
	keepAlive(rawSession(t, d, key), 0)

	// Before AUTH: EHLO, STARTTLS and EHLO count too.
	anon, code, err := dialRaw(d.smtpAddr, "")
	if err != nil || code != 220 {
		t.Fatalf("greeting: %d %v", code, err)
	}
	defer anon.conn.Close()
	if err := anon.startTLS(); err != nil {
		t.Fatal(err)
	}
	keepAlive(anon, 3)
	if n := metricValue(t, d.metrics(), `smtpmux_limited_total{reason="junk_commands"}`); n != 2 {
		t.Fatalf("smtpmux_limited_total{reason=junk_commands} = %d, want 2", n)
	}
}

// TestAuthFailureLimitUnderParallelAttempts: 60 wrong keys tried at the
// same moment from one address against auth_fail_limit = 20: at most 20
// are checked (535), the others are refused unchecked (421 4.7.0), and
// /metrics counts the same. Counting after the check (which takes
// auth_fail_delay) let all 60 be checked.
func TestAuthFailureLimitUnderParallelAttempts(t *testing.T) {
	t.Parallel()
	const n, limit = 60, 20
	d := newDaemon(t, map[string]string{"smtp": fmt.Sprintf("auth_fail_limit = %d\nauth_fail_delay = \"1s\"\nmax_connections_per_ip = 100", limit)})

	clients := make([]*rawClient, n)
	for i := range clients {
		c, code, err := dialRaw(d.smtpAddr, "127.0.0.4")
		if err != nil || code != 220 {
			t.Fatalf("greeting %d: %d %v", i, code, err)
		}
		defer c.conn.Close()
		if err := c.startTLS(); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i], _, _ = c.auth(fmt.Sprintf("smx_live_parallelGuess%03dxxxxxxxxxxxxxxxxxxxxxxxxx", i))
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[535] > limit || count[535]+count[421] != n {
		t.Fatalf("60 parallel wrong keys: replies %v; want at most %d answered 535 and the rest 421", count, limit)
	}
	scrape := d.metrics()
	checked := metricValue(t, scrape, "smtpmux_smtp_auth_failures_total")
	refused := metricValue(t, scrape, `smtpmux_limited_total{reason="auth_failures"}`)
	if checked != count[535] || refused != count[421] {
		t.Fatalf("/metrics: %d failed checks and %d refused unchecked; the replies were %v", checked, refused, count)
	}
	t.Logf("60 parallel wrong keys from one address, limit 20: %d checked, %d refused unchecked", checked, refused)
}

// TestHTTPSendAuthFailureLimit: bad bearer tokens on the Sending API from
// one address hit the same per-address limit as SMTP AUTH (one count for
// both): 60 in parallel against a limit of 20, at most 20 are checked
// (401), the rest get 429 rate_limit_exceeded with Retry-After in the
// API's error envelope. SMTP AUTH from that address is refused too;
// another address sends over HTTP as before.
func TestHTTPSendAuthFailureLimit(t *testing.T) {
	t.Parallel()
	const n, limit = 60, 20
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"smtp": fmt.Sprintf("auth_fail_limit = %d\nauth_fail_delay = \"1s\"", limit)})
	_, key := d.setupRelay(plainProvider(up, "up", nil))

	type answer struct {
		status     int
		retryAfter string
		body       map[string]any
	}
	post := func(from, bearer string) answer {
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		body := `{"from":{"email":"app@example.com"},"to":{"email":"u@example.net"},"subject":"s","text_body":"t"}`
		req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://"+d.httpAddr+"/api/v1/emails/send", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return answer{}
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		a := answer{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After")}
		json.Unmarshal(raw, &a.body)
		return a
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = post("127.0.0.5", fmt.Sprintf("smx_live_httpGuess%03dxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, a := range answers {
		count[a.status]++
		if a.status != 429 {
			continue
		}
		e, _ := a.body["error"].(map[string]any)
		if a.body["ok"] != false || e["code"] != "rate_limit_exceeded" || e["retryable"] != true || e["message"] == "" {
			t.Fatalf("429 body %v: want the error envelope with rate_limit_exceeded, retryable", a.body)
		}
		if s, err := strconv.Atoi(a.retryAfter); err != nil || s < 1 || s > 60 {
			t.Fatalf("429 Retry-After %q: want 1 to 60 seconds", a.retryAfter)
		}
	}
	if count[401] > limit || count[401]+count[429] != n {
		t.Fatalf("60 parallel bad bearer tokens: statuses %v; want at most %d answered 401 and the rest 429", count, limit)
	}
	if checked := metricValue(t, d.metrics(), "smtpmux_smtp_auth_failures_total"); checked != count[401] {
		t.Fatalf("/metrics: %d failed checks for %d answers 401", checked, count[401])
	}

	// The same address over SMTP: refused without a check.
	c, code, err := dialRaw(d.smtpAddr, "127.0.0.5")
	if err != nil || code != 220 {
		t.Fatalf("greeting: %d %v", code, err)
	}
	defer c.conn.Close()
	if err := c.startTLS(); err != nil {
		t.Fatal(err)
	}
	if code, text, _ := c.auth(key); code != 421 {
		t.Fatalf("SMTP AUTH from the address the HTTP limit holds: %d %q, want 421", code, text)
	}
	// Another address is not affected.
	if a := post("127.0.0.6", key); a.status != 200 {
		t.Fatalf("send from another address: %d %v", a.status, a.body)
	}
	t.Logf("60 parallel bad bearer tokens from one address, limit 20: %v", count)
}
