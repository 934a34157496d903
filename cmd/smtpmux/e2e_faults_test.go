package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// The upstream fault suite of issue 8: a scripted upstream hangs, drops,
// trickles, refuses TLS, says 421/452 or sends garbage, and the daemon
// must classify the attempt as SPEC §5.5 says, keep serving, and deliver
// once the upstream is well again when the class allows a retry.
//
// Each case runs its own daemon (in parallel) so that one case's breaker
// and retry state cannot leak into another's. A hang is ended by
// [delivery] attempt_timeout = "2s".

// faultsDelivery is the [delivery] section of the fault cases: a short
// attempt timeout for the hangs and a retry step long enough to observe
// the first attempt before the second.
const faultsDelivery = "attempt_timeout = \"2s\"\nretry_schedule = [\"500ms\", \"500ms\"]"

// attemptTimeout is faultsDelivery's attempt_timeout.
const attemptTimeout = 2 * time.Second

// faultMsg is a small message whose envelope sender names the case.
func faultMsg(tag string) []byte {
	return crlf(fmt.Sprintf("From: app@example.com\nTo: u@example.net\nSubject: fault %s\nMessage-ID: <%s@fault.e2e>\n\nbody of %s\n", tag, tag, tag))
}

// attempts returns the email's attempts as maps.
func attempts(e map[string]any) []map[string]any {
	var out []map[string]any
	for _, a := range e["attempts"].([]any) {
		out = append(out, a.(map[string]any))
	}
	return out
}

// waitAttemptDone polls until the email's attempt n (1-based) exists and
// is no longer in progress, and returns the email.
func waitAttemptDone(t *testing.T, d *proc, id string, n int, timeout time.Duration) map[string]any {
	t.Helper()
	var e map[string]any
	waitFor(t, timeout, fmt.Sprintf("attempt %d of %s to end", n, id), func() bool {
		e = d.email(id)
		at := attempts(e)
		return len(at) >= n && at[n-1]["status"] != "in_progress"
	})
	return e
}

// checkFirstAttempt checks the class of the first attempt and, for hangs,
// that attempt_timeout (not some longer protocol timeout) ended it.
func checkFirstAttempt(t *testing.T, e map[string]any, class string, hung bool) {
	t.Helper()
	at := attempts(e)
	if len(at) == 0 {
		t.Fatalf("no attempts: %v", e)
	}
	first := at[0]
	t.Logf("first attempt: status %v, class %v, %v ms, reply %q", first["status"], first["class"], first["duration_ms"], first["reply"])
	if first["class"] != class {
		t.Fatalf("first attempt class %v, want %s: %v", first["class"], class, first)
	}
	if hung {
		ms := time.Duration(first["duration_ms"].(float64)) * time.Millisecond
		if ms < attemptTimeout-100*time.Millisecond || ms > attemptTimeout+3*time.Second {
			t.Fatalf("hung attempt lasted %v, want about attempt_timeout %v: %v", ms, attemptTimeout, first)
		}
	}
}

// sendFault sends one message with a fresh session and returns its id.
func sendFault(t *testing.T, d *proc, key, from string, to []string, body []byte) string {
	t.Helper()
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, from, to, body)
	if err != nil {
		t.Fatalf("send %s: %v", from, err)
	}
	return id
}

// followUp checks the daemon still relays through the same provider.
func followUp(t *testing.T, d *proc, key, tag string) map[string]any {
	t.Helper()
	id := sendFault(t, d, key, tag+"@example.com", []string{"u@example.net"}, faultMsg(tag))
	e := d.waitEmail(id)
	if e["status"] != "sent" {
		t.Fatalf("follow-up %s: %v", tag, e)
	}
	return e
}

// endOf is when an attempt ended, by the daemon's own clock.
func endOf(t *testing.T, a map[string]any) time.Time {
	t.Helper()
	start, err := time.Parse(time.RFC3339Nano, fmt.Sprint(a["started_at"]))
	if err != nil {
		t.Fatalf("started_at %v: %v", a["started_at"], err)
	}
	return start.Add(time.Duration(a["duration_ms"].(float64)) * time.Millisecond)
}

// receivedFrom counts the bodies the testpeer read in full from sender.
func receivedFrom(up *testpeer.Server, from string) int {
	n := 0
	for _, m := range up.Received() {
		if m.From == from {
			n++
		}
	}
	return n
}

func TestUpstreamFaults(t *testing.T) {
	t.Parallel()

	// Hang after connect: no greeting. The attempt is a connection failure
	// ended by attempt_timeout; other mail is not held up meanwhile, and
	// the retry finds the upstream well again.
	t.Run("hang after connect", func(t *testing.T) {
		t.Parallel()
		up := testpeer.Start(t, testpeer.Options{})
		up.Script(testpeer.StepConnect, "", testpeer.Hang)
		d := newDaemon(t, map[string]string{"delivery": faultsDelivery})
		_, key := d.setupRelay(plainProvider(up, "hangs", nil))
		id := sendFault(t, d, key, "hang-connect@example.com", []string{"u@example.net"}, faultMsg("hang-connect"))
		// A second message while the first waits for a greeting that never
		// comes: it goes on another connection at once.
		waitFor(t, 5*time.Second, "the hung connection", func() bool { return up.Conns() >= 1 })
		other := followUp(t, d, key, "during-hang")
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", true)
		at := attempts(e)
		if e["status"] != "sent" || len(at) != 2 || at[1]["status"] != "sent" {
			t.Fatalf("after the hang the retry should deliver: %v", e)
		}
		if o := attempts(other)[0]; !endOf(t, o).Before(endOf(t, at[0])) {
			t.Fatalf("the message sent during the hang finished at %v, after the hung attempt (%v): it was held up",
				endOf(t, o), endOf(t, at[0]))
		}
		if n := receivedFrom(up, "hang-connect@example.com"); n != 1 {
			t.Fatalf("upstream got the message %d times", n)
		}
		up.ReleaseHangs()
		followUp(t, d, key, "after-hang-connect")
	})

	// Hang after DATA: the body went out, no final reply. That is
	// uncertain: failed, never resent, even though the upstream recovers.
	t.Run("hang after DATA", func(t *testing.T) {
		t.Parallel()
		up := testpeer.Start(t, testpeer.Options{})
		up.Script(testpeer.StepData, "hang-data@example.com", testpeer.Hang)
		d := newDaemon(t, map[string]string{"delivery": faultsDelivery})
		_, key := d.setupRelay(plainProvider(up, "hangs", nil))
		id := sendFault(t, d, key, "hang-data@example.com", []string{"u@example.net"}, faultMsg("hang-data"))
		waitFor(t, 5*time.Second, "the body at the upstream", func() bool { return receivedFrom(up, "hang-data@example.com") == 1 })
		other := followUp(t, d, key, "during-hang")
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "uncertain", true)
		if e["status"] != "failed" || e["reason"] != "uncertain" || len(attempts(e)) != 1 {
			t.Fatalf("want failed/uncertain after one attempt: %v", e)
		}
		if o := attempts(other)[0]; !endOf(t, o).Before(endOf(t, attempts(e)[0])) {
			t.Fatal("the message sent during the hang was held up by it")
		}
		up.ReleaseHangs()
		// Longer than the retry schedule: still one attempt, one copy.
		time.Sleep(1500 * time.Millisecond)
		if e := d.email(id); len(attempts(e)) != 1 || e["status"] != "failed" {
			t.Fatalf("an uncertain message was tried again: %v", e)
		}
		if n := receivedFrom(up, "hang-data@example.com"); n != 1 {
			t.Fatalf("upstream read the uncertain message %d times, want 1", n)
		}
		followUp(t, d, key, "after-hang-data")
	})

	// Drop in the middle of the body: the upstream closes after 64 KiB of
	// an 8 MiB body. The whole body never went out, so nothing can have
	// been accepted: a connection failure, retried, delivered intact.
	t.Run("drop mid-body", func(t *testing.T) {
		t.Parallel()
		up, d, key := firstConnFaultDaemon(t, rawCutBody, "cuts")
		var big bytes.Buffer
		big.Write(faultMsg("mid-body"))
		line := strings.Repeat("0123456789abcdef", 6) + "\r\n" // 98 bytes
		for big.Len() < 8<<20 {
			big.WriteString(line)
		}
		id := sendFault(t, d, key, "mid-body@example.com", []string{"u@example.net"}, big.Bytes())
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", false)
		wantSentOnRetry(t, e)
		got := up.bodiesFrom("mid-body@example.com")
		if len(got) != 1 || !bytes.Equal(got[0], big.Bytes()) {
			t.Fatalf("upstream accepted %d copies; first intact: %v", len(got), len(got) > 0 && bytes.Equal(got[0], big.Bytes()))
		}
		followUp(t, d, key, "after-mid-body")
	})

	// Silence after the DATA command: the relay marked the attempt as
	// entering the data phase, but no 354 came and no body byte went out.
	// Nothing can have been accepted, so this is a connection failure and
	// is retried, not flagged uncertain.
	t.Run("hang before 354", func(t *testing.T) {
		t.Parallel()
		up, d, key := firstConnFaultDaemon(t, rawHangData, "no354")
		id := sendFault(t, d, key, "no354@example.com", []string{"u@example.net"}, faultMsg("no354"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", true)
		wantSentOnRetry(t, e)
		if n := len(up.bodiesFrom("no354@example.com")); n != 1 {
			t.Fatalf("upstream accepted %d copies", n)
		}
		followUp(t, d, key, "after-no354")
	})

	// Replies one byte a second: the greeting alone outlasts the attempt
	// timeout. A connection failure; the next connection is fast.
	t.Run("one byte per second", func(t *testing.T) {
		t.Parallel()
		up, d, key := firstConnFaultDaemon(t, rawSlow, "slow")
		id := sendFault(t, d, key, "slow@example.com", []string{"u@example.net"}, faultMsg("slow"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", true)
		wantSentOnRetry(t, e)
		if n := len(up.bodiesFrom("slow@example.com")); n != 1 {
			t.Fatalf("upstream accepted %d copies", n)
		}
		followUp(t, d, key, "after-slow")
	})

	// TLS handshake failure: the provider says implicit TLS, the upstream
	// speaks cleartext. A connection failure; once the operator fixes the
	// protocol the retry delivers.
	t.Run("TLS handshake failure", func(t *testing.T) {
		t.Parallel()
		up := testpeer.Start(t, testpeer.Options{})
		d := newDaemon(t, map[string]string{"delivery": "attempt_timeout = \"2s\"\nretry_schedule = [\"1500ms\", \"1500ms\"]"})
		provID, key := d.setupRelay(plainProvider(up, "wrong-tls", map[string]any{"smtp_protocol": "tls"}))
		id := sendFault(t, d, key, "tls@example.com", []string{"u@example.net"}, faultMsg("tls"))
		e := waitAttemptDone(t, d, id, 1, 10*time.Second)
		checkFirstAttempt(t, e, "connection", false)
		if e["status"] != "pending" || up.Count() != 0 {
			t.Fatalf("after a failed handshake the message must wait: %v", e)
		}
		d.must(200, "PATCH", "/providers/"+provID, map[string]any{"smtp_protocol": "none"})
		e = d.waitEmail(id)
		at := attempts(e)
		if e["status"] != "sent" || at[len(at)-1]["status"] != "sent" {
			t.Fatalf("after the fix the retry should deliver: %v", e)
		}
		for _, a := range at[:len(at)-1] {
			if a["class"] != "connection" {
				t.Fatalf("failed attempt %v, want class connection", a)
			}
		}
		followUp(t, d, key, "after-tls")
	})

	// 421 as the greeting: the service is unavailable, a connection
	// failure; the retry delivers.
	t.Run("421 on connect", func(t *testing.T) {
		t.Parallel()
		up := testpeer.Start(t, testpeer.Options{})
		up.Script(testpeer.StepConnect, "", testpeer.Reply(421, "4.3.2", "Service not available, closing channel"))
		d := newDaemon(t, map[string]string{"delivery": faultsDelivery})
		_, key := d.setupRelay(plainProvider(up, "busy", nil))
		id := sendFault(t, d, key, "busy@example.com", []string{"u@example.net"}, faultMsg("busy"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", false)
		at := attempts(e)
		if e["status"] != "sent" || len(at) != 2 || !strings.Contains(fmt.Sprint(at[0]["reply"]), "421") {
			t.Fatalf("want the 421 recorded and the retry sent: %v", e)
		}
		followUp(t, d, key, "after-421")
	})

	// 452 to RCPT: a transient refusal of that recipient. With one
	// recipient the attempt is deferred (class transient) and retried; with
	// two, the other goes at once and the refused one follows on the retry.
	t.Run("452 on RCPT", func(t *testing.T) {
		t.Parallel()
		up := testpeer.Start(t, testpeer.Options{})
		up.Script(testpeer.StepRcpt, "full@example.net", testpeer.Reply(452, "4.2.2", "Mailbox full, try later"))
		d := newDaemon(t, map[string]string{"delivery": faultsDelivery})
		_, key := d.setupRelay(plainProvider(up, "full", nil))
		id := sendFault(t, d, key, "rcpt452@example.com", []string{"full@example.net"}, faultMsg("rcpt452"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "transient", false)
		if at := attempts(e); e["status"] != "sent" || len(at) != 2 || !strings.Contains(fmt.Sprint(at[0]["reply"]), "452") {
			t.Fatalf("want the 452 recorded and the retry sent: %v", e)
		}

		up.Script(testpeer.StepRcpt, "full@example.net", testpeer.Reply(452, "4.2.2", "Mailbox full, try later"))
		id = sendFault(t, d, key, "partial452@example.com", []string{"ok@example.net", "full@example.net"}, faultMsg("partial452"))
		e = d.waitEmail(id)
		at := attempts(e)
		if e["status"] != "sent" || len(at) != 2 || at[0]["status"] != "partial" || at[1]["status"] != "sent" {
			t.Fatalf("want a partial attempt, then the refused recipient on the retry: %v", e)
		}
		for _, r := range e["recipients"].([]any) {
			if rm := r.(map[string]any); rm["status"] != "sent" {
				t.Fatalf("recipient %v", rm)
			}
		}
		var tos []string
		for _, m := range up.Messages() {
			if m.From == "partial452@example.com" {
				tos = append(tos, strings.Join(m.To, ","))
			}
		}
		if strings.Join(tos, " ") != "ok@example.net full@example.net" {
			t.Fatalf("upstream transactions had recipients %q, want ok@ then full@ (each once)", tos)
		}
		followUp(t, d, key, "after-452")
	})

	// Garbage instead of the greeting: not SMTP, nothing sent, a
	// connection failure; the next connection is sane.
	t.Run("garbage greeting", func(t *testing.T) {
		t.Parallel()
		_, d, key := firstConnFaultDaemon(t, rawGarbageGreeting, "garbage")
		id := sendFault(t, d, key, "garbage@example.com", []string{"u@example.net"}, faultMsg("garbage"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "connection", false)
		wantSentOnRetry(t, e)
		followUp(t, d, key, "after-garbage")
	})

	// Garbage instead of the reply to the final dot: the body went out and
	// no real answer came back. Uncertain, never resent.
	t.Run("garbage final reply", func(t *testing.T) {
		t.Parallel()
		up, d, key := firstConnFaultDaemon(t, rawGarbageFinal, "garbage")
		id := sendFault(t, d, key, "garbage-final@example.com", []string{"u@example.net"}, faultMsg("garbage-final"))
		e := d.waitEmail(id)
		checkFirstAttempt(t, e, "uncertain", false)
		if e["status"] != "failed" || e["reason"] != "uncertain" || len(attempts(e)) != 1 {
			t.Fatalf("want failed/uncertain after one attempt: %v", e)
		}
		time.Sleep(1500 * time.Millisecond)
		if e := d.email(id); len(attempts(e)) != 1 {
			t.Fatalf("an uncertain message was tried again: %v", e)
		}
		if n := up.readFrom("garbage-final@example.com"); n != 1 {
			t.Fatalf("upstream read the uncertain message %d times, want 1", n)
		}
		followUp(t, d, key, "after-garbage-final")
	})
}

// firstConnFaultDaemon starts a raw upstream whose first connection
// misbehaves as fault (the later ones are normal) and a daemon relaying
// to it through a provider called name.
func firstConnFaultDaemon(t *testing.T, fault rawFault, name string) (*rawPeer, *proc, string) {
	up := startRawPeer(t, func(conn int) rawFault {
		if conn == 0 {
			return fault
		}
		return rawNormal
	})
	d := newDaemon(t, map[string]string{"delivery": faultsDelivery})
	_, key := d.setupRelay(up.provider(name))
	return up, d, key
}

// wantSentOnRetry checks that the message went on its second attempt.
func wantSentOnRetry(t *testing.T, e map[string]any) {
	t.Helper()
	if at := attempts(e); e["status"] != "sent" || len(at) != 2 {
		t.Fatalf("want sent on the retry: %v", e)
	}
}

// rawFault is how a rawPeer connection misbehaves.
type rawFault int

const (
	rawNormal          rawFault = iota
	rawCutBody                  // close after rawCutAfter bytes of the body
	rawSlow                     // every reply trickled one byte a second
	rawGarbageGreeting          // "xyz" instead of the 220 greeting
	rawGarbageFinal             // "xyz" instead of the reply to the final dot
	rawHangData                 // no 354: silence after the DATA command
)

const rawCutAfter = 64 << 10

// rawPeer is a minimal hand-written SMTP upstream for faults a go-smtp
// server cannot be scripted to produce: a cut in the middle of the body,
// trickled replies, replies that are not SMTP. fault decides per
// connection (0-based accept order).
type rawPeer struct {
	t     *testing.T
	ln    net.Listener
	fault func(conn int) rawFault
	done  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	nconn  int
	open   map[net.Conn]bool
	bodies map[string][][]byte // sender → bodies answered with 250
	read   map[string]int      // sender → bodies read in full
}

func startRawPeer(t *testing.T, fault func(conn int) rawFault) *rawPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, ln: ln, fault: fault, done: make(chan struct{}), open: map[net.Conn]bool{},
		bodies: map[string][][]byte{}, read: map[string]int{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			n := p.nconn
			p.nconn++
			p.open[c] = true
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c, p.fault(n))
				c.Close()
				p.mu.Lock()
				delete(p.open, c)
				p.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *rawPeer) provider(name string) map[string]any {
	addr := p.ln.Addr().(*net.TCPAddr)
	return map[string]any{"name": name, "type": "smtp", "smtp_host": addr.IP.String(), "smtp_port": addr.Port, "smtp_protocol": "none"}
}

func (p *rawPeer) bodiesFrom(from string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.bodies[from]...)
}

func (p *rawPeer) readFrom(from string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.read[from]
}

// serve runs one connection. Every read and write is bounded so a relay
// that stops talking cannot keep the goroutine.
func (p *rawPeer) serve(c net.Conn, fault rawFault) {
	r := bufio.NewReader(c)
	reply := func(s string) bool {
		if fault == rawSlow {
			for i := 0; i < len(s); i++ {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte{s[i]}); err != nil {
					return false
				}
				select {
				case <-p.done:
					return false
				case <-time.After(time.Second):
				}
			}
			return true
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := io.WriteString(c, s)
		return err == nil
	}
	if fault == rawGarbageGreeting {
		reply("xyz\r\n")
		// Give the relay the chance to read it before the close.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, r)
		return
	}
	if !reply("220 raw.test ESMTP\r\n") {
		return
	}
	from := ""
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		var ok bool
		switch verb {
		case "EHLO", "HELO":
			ok = reply("250 raw.test\r\n")
		case "MAIL":
			from = strings.TrimSpace(line)
			if i, j := strings.Index(from, "<"), strings.Index(from, ">"); i >= 0 && j > i {
				from = from[i+1 : j]
			}
			ok = reply("250 2.1.0 Ok\r\n")
		case "RCPT":
			ok = reply("250 2.1.5 Ok\r\n")
		case "RSET", "NOOP":
			ok = reply("250 2.0.0 Ok\r\n")
		case "QUIT":
			reply("221 2.0.0 Bye\r\n")
			return
		case "DATA":
			if fault == rawHangData {
				select { // silent until the relay gives up (EOF) or the test ends
				case <-p.done:
				case <-readEOF(c, r):
				}
				return
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>\r\n") {
				return
			}
			body, complete := p.readBody(r, fault == rawCutBody)
			if !complete {
				return // rawCutBody: close with the rest of the body unread
			}
			p.mu.Lock()
			p.read[from]++
			p.mu.Unlock()
			if fault == rawGarbageFinal {
				reply("xyz\r\n")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, r)
				return
			}
			p.mu.Lock()
			p.bodies[from] = append(p.bodies[from], body)
			p.mu.Unlock()
			ok = reply("250 2.0.0 Ok: queued as RAW\r\n")
		default:
			ok = reply("502 5.5.2 Command not recognized\r\n")
		}
		if !ok {
			return
		}
	}
}

// readEOF reports when the other side closes (anything it sends is
// discarded), within 30 s.
func readEOF(c net.Conn, r *bufio.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, r)
	}()
	return ch
}

// readBody reads a dot-terminated body and undoes dot-stuffing. With cut
// it stops after rawCutAfter bytes and reports the body incomplete.
func (p *rawPeer) readBody(r *bufio.Reader, cut bool) ([]byte, bool) {
	var body bytes.Buffer
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, false
		}
		n += len(line)
		if cut && n >= rawCutAfter {
			return nil, false
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			return body.Bytes(), true
		}
		if line[0] == '.' {
			line = line[1:]
		}
		body.Write(line)
	}
}
