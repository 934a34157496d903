package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The upstream in these tests is Postfix's smtp-sink, an SMTP server
// nobody here wrote: real Postfix replies, PIPELINING and ENHANCEDSTATUSCODES
// announced, and its own ways of refusing (-f hard, -r soft, -Q 421 and
// hang up, -q hang up without a reply).

// startSmtpSink runs smtp-sink on a free loopback port with the given
// options, dumping each transaction it accepts into a file of dir.
func startSmtpSink(t *testing.T, opts ...string) (host string, port int, dir string) {
	t.Helper()
	bin := requirePeer(t, "smtp-sink")
	// Not t.TempDir: its parent is private to the test's user, and as
	// root smtp-sink drops to nobody, who must reach and write the dumps.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	args := []string{"-d", filepath.Join(dir, "%H%M%S.")}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-u", "nobody") // smtp-sink will not run as root
	}
	addr := freeAddr(t)
	args = append(append(args, opts...), addr, "64")
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("smtp-sink's output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not listen on %s: %s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	h, p, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(p)
	return h, port, dir
}

// sinkDumps returns the transactions smtp-sink dumped into dir.
func sinkDumps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, e := range mustReadDir(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestRelayToPostfixSmtpSink: mail relayed through smtpmux reaches
// Postfix's smtp-sink with its envelope and its lines as sent (a line
// starting with a dot included), over pooled connections.
func TestRelayToPostfixSmtpSink(t *testing.T) {
	t.Parallel()
	host, port, dir := startSmtpSink(t)
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "smtp-sink", "smtp_host": host, "smtp_port": port, "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()
	const n = 10
	ids := map[string]string{}
	for i := 0; i < n; i++ {
		mid := fmt.Sprintf("sink-%d@e2e.test", i)
		body := crlf(fmt.Sprintf("From: app@example.com\nTo: u%d@example.net\nSubject: sink %d\nMessage-ID: <%s>\n\nline one\n.a line that starts with a dot\nlast line %d\n", i, i, mid, i))
		id, err := sendOne(c, "app@example.com", []string{fmt.Sprintf("u%d@example.net", i)}, body)
		if err != nil {
			t.Fatal(err)
		}
		ids[mid] = id
	}
	for mid, id := range ids {
		e := d.waitEmail(id)
		at := e["attempts"].([]any)
		if e["status"] != "sent" || len(at) != 1 || !strings.HasPrefix(fmt.Sprint(at[0].(map[string]any)["reply"]), "250 2.0.0") {
			t.Fatalf("%s: %v", mid, e)
		}
	}
	dumps := sinkDumps(t, dir)
	if len(dumps) != n {
		t.Fatalf("smtp-sink dumped %d transactions, want %d", len(dumps), n)
	}
	for i := 0; i < n; i++ {
		mid := fmt.Sprintf("sink-%d@e2e.test", i)
		found := 0
		for _, dump := range dumps {
			if !strings.Contains(dump, "<"+mid+">") {
				continue
			}
			found++
			for _, want := range []string{"X-Mail-Args: <app@example.com>", fmt.Sprintf("X-Rcpt-Args: <u%d@example.net>", i),
				"\nline one\n.a line that starts with a dot\n" + fmt.Sprintf("last line %d\n", i)} {
				if !strings.Contains(strings.ReplaceAll(dump, "\r\n", "\n"), want) {
					t.Errorf("dump of %s lacks %q:\n%s", mid, want, dump)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s dumped %d times, want once", mid, found)
		}
	}
}

// TestPostfixSmtpSinkRefusals: smtp-sink's refusals end as SPEC §5 says
// for each kind: a hard RCPT refusal rejects the recipient, a soft MAIL
// refusal is retried through the schedule, and a hang-up right after the
// final dot, before any reply, is failed "uncertain" and never resent.
func TestPostfixSmtpSinkRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, opt        string
		status, reason   string
		attempts, dumped int
		reply            string
	}{
		{name: "hard RCPT", opt: "-f RCPT", status: "rejected", attempts: 1, reply: "500 5.3.0"},
		{name: "soft MAIL", opt: "-r MAIL", status: "failed", attempts: 3, reply: "450 4.3.0"},
		{name: "hang-up after the dot", opt: "-q .", status: "failed", reason: "uncertain", attempts: 1, dumped: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := strings.Fields(tc.opt)
			host, port, dir := startSmtpSink(t, f...)
			d := newDaemon(t, nil)
			_, key := d.setupRelay(map[string]any{"name": "smtp-sink", "smtp_host": host, "smtp_port": port, "smtp_protocol": "none"})
			c := d.client(key)
			defer c.Close()
			id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, msgBody("sink-"+strings.ReplaceAll(tc.name, " ", "-")))
			if err != nil {
				t.Fatal(err)
			}
			e := d.waitEmail(id)
			at := e["attempts"].([]any)
			if e["status"] != tc.status || tc.reason != "" && e["reason"] != tc.reason || len(at) != tc.attempts {
				t.Fatalf("email %v; want status %s reason %q after %d attempts", e, tc.status, tc.reason, tc.attempts)
			}
			if last := at[len(at)-1].(map[string]any); tc.reply != "" && !strings.HasPrefix(fmt.Sprint(last["reply"]), tc.reply) {
				t.Fatalf("last attempt's reply %v, want %s…", last["reply"], tc.reply)
			}
			// Give a resend, if there were one, time to arrive.
			time.Sleep(time.Second)
			if got := len(sinkDumps(t, dir)); got != tc.dumped {
				t.Fatalf("smtp-sink dumped %d transactions, want %d", got, tc.dumped)
			}
		})
	}
}
