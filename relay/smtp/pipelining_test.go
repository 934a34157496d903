package smtp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/routing"
)

// TestSendPipelinesEnvelope: to an upstream that advertises PIPELINING,
// MAIL, both RCPTs and DATA arrive before it has answered any of them (one
// round trip, RFC 2920), and the data mark is written after the 354 and
// before the body. The upstream is a raw script: it reads the four
// command lines, each within a bound, before it writes a reply, so a
// client that waits for MAIL's reply fails here instead of passing.
func TestSendPipelinesEnvelope(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var marked, bodyBeforeMark atomic.Bool
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		line := func() (string, error) {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			return r.ReadString('\n')
		}
		say := func(s string) { io.WriteString(c, s) }
		say("220 upstream\r\n")
		if _, err := line(); err != nil { // EHLO
			done <- err
			return
		}
		say("250-upstream\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		for _, want := range []string{"MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>", "DATA"} {
			got, err := line()
			if err != nil {
				done <- fmt.Errorf("waiting for %q before any reply: %v", want, err)
				return
			}
			if !strings.HasPrefix(got, want) {
				done <- fmt.Errorf("read %q, want %q", got, want)
				return
			}
		}
		say("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go on\r\n")
		for {
			got, err := line()
			if err != nil {
				done <- err
				return
			}
			if !marked.Load() {
				bodyBeforeMark.Store(true)
			}
			if got == ".\r\n" {
				break
			}
		}
		say("250 2.0.0 Ok: queued as UP1\r\n")
		done <- nil
		for { // QUIT or RSET at close
			got, err := line()
			if err != nil {
				return
			}
			if strings.HasPrefix(got, "QUIT") {
				say("221 bye\r\n")
				return
			}
			say("250 ok\r\n")
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	portN, _ := strconv.Atoi(port)
	p := newProvider(t, Config{Host: host, Port: portN, Protocol: smtpproto.None, HeloName: "relay.test",
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second})
	env := envelope("b@example.com", "c@example.com")
	env.MarkData = func() error { marked.Store(true); return nil }
	res, err := p.Send(ctxTimeout(t, 10*time.Second), env, []byte(body))
	if serr := <-done; serr != nil {
		t.Fatalf("upstream: %v", serr)
	}
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.UpstreamID != "UP1" || !marked.Load() || bodyBeforeMark.Load() {
		t.Fatalf("result %+v, marked %v, body line read before the mark %v", res, marked.Load(), bodyBeforeMark.Load())
	}
}

// TestSendPipelinedTimeoutPerReply: CommandTimeout bounds each command's
// reply, pipelined or not. An upstream that takes a while over each RCPT
// (recipient verification, tarpitting), each within the bound but all of
// them together beyond it, takes the message, as it did before
// pipelining: one deadline over the whole envelope would fail it at every
// retry although no single reply was late.
func TestSendPipelinedTimeoutPerReply(t *testing.T) {
	const (
		rcpts = 5
		gap   = 500 * time.Millisecond // per RCPT reply; rcpts*gap > the timeout
		limit = 2 * time.Second        // leaves a loaded machine 1.5 s per reply
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		line := func() (string, error) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			return r.ReadString('\n')
		}
		say := func(s string) { io.WriteString(c, s) }
		say("220 upstream\r\n")
		if _, err := line(); err != nil { // EHLO
			done <- err
			return
		}
		say("250-upstream\r\n250 PIPELINING\r\n")
		for range rcpts + 2 { // MAIL, the RCPTs, DATA
			if _, err := line(); err != nil {
				done <- err
				return
			}
		}
		say("250 2.1.0 ok\r\n")
		for range rcpts {
			time.Sleep(gap) // the upstream's own pace, not synchronisation
			say("250 2.1.5 ok\r\n")
		}
		say("354 go on\r\n")
		for {
			got, err := line()
			if err != nil {
				done <- err
				return
			}
			if got == ".\r\n" {
				break
			}
		}
		say("250 2.0.0 Ok: queued as UP2\r\n")
		done <- nil
		for {
			got, err := line()
			if err != nil {
				return
			}
			if strings.HasPrefix(got, "QUIT") {
				say("221 bye\r\n")
				return
			}
			say("250 ok\r\n")
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	portN, _ := strconv.Atoi(port)
	p := newProvider(t, Config{Host: host, Port: portN, Protocol: smtpproto.None, HeloName: "relay.test",
		DialTimeout: 2 * time.Second, CommandTimeout: limit, DataTimeout: 5 * time.Second})
	var to []string
	for i := range rcpts {
		to = append(to, fmt.Sprintf("r%d@example.com", i))
	}
	res, err := p.Send(ctxTimeout(t, 20*time.Second), envelope(to...), []byte(body))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if serr := <-done; serr != nil {
		t.Fatalf("upstream: %v", serr)
	}
	if res.UpstreamID != "UP2" {
		t.Fatalf("result %+v", res)
	}
}

// TestSendPipelinedMailRefusedThenClosed: an upstream that refuses MAIL
// and hangs up before answering the rest of the pipelined envelope fails
// the attempt with MAIL's reply, as it did unpipelined (a permanent 5xx
// stays permanent), not as a network error at RCPT, which would be
// retried as temporary on the same upstream.
func TestSendPipelinedMailRefusedThenClosed(t *testing.T) {
	// After the refused MAIL, the first RCPT's "503 need MAIL" says
	// nothing about its address: were it taken for the recipient's
	// refusal, that address would be rejected and suppressed.
	for _, rest := range []string{"", "503 5.5.1 Error: need MAIL command\r\n"} {
		t.Run(map[bool]string{true: "hangup", false: "hangup after a RCPT reply"}[rest == ""], func(t *testing.T) {
			mailRefusedThenClosed(t, rest)
		})
	}
}

func mailRefusedThenClosed(t *testing.T, rest string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		line := func() (string, error) {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			return r.ReadString('\n')
		}
		io.WriteString(c, "220 upstream\r\n")
		if _, err := line(); err != nil { // EHLO
			done <- err
			return
		}
		io.WriteString(c, "250-upstream\r\n250 PIPELINING\r\n")
		for range 4 { // MAIL, two RCPTs, DATA
			if _, err := line(); err != nil {
				done <- err
				return
			}
		}
		io.WriteString(c, "550 5.7.1 sender rejected\r\n"+rest)
		done <- nil // and the connection closes
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	portN, _ := strconv.Atoi(port)
	p := newProvider(t, Config{Host: host, Port: portN, Protocol: smtpproto.None, HeloName: "relay.test",
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second})
	_, err = p.Send(ctxTimeout(t, 10*time.Second), envelope("b@example.com", "c@example.com"), []byte(body))
	if serr := <-done; serr != nil {
		t.Fatalf("upstream: %v", serr)
	}
	derr := deliveryError(t, err)
	if f := derr.Failure; f.Phase != routing.PhaseMail || f.Code != 550 || f.Enhanced != "5.7.1" || len(derr.RcptRefused) != 0 {
		t.Fatalf("failure %+v (%v), refused %+v; want MAIL's 550 5.7.1 and no recipient refused", f, derr.Err, derr.RcptRefused)
	}
}
