package relay

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// TestTruncatedBodyIsNotQueued: a client whose connection ends in the
// middle of DATA (before <CRLF>.<CRLF>) or of a BDAT chunk never got a
// 250, so it will send the message again. The part it did send must not
// be stored, nor delivered: the recipient would get a cut-off copy and
// then the whole one. Small bodies (read into memory) and large ones
// (spooled to disk) follow the same rule.
func TestTruncatedBodyIsNotQueued(t *testing.T) {
	head := "From: a@example.com\r\nTo: b@example.org\r\nSubject: wire transfer\r\n\r\n"
	small := head + "Please pay 1000 EUR to account DE12 3456 78"
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < store.InlineLimit+100<<10 {
		fmt.Fprintf(&b, "line %d of a large body, long enough to need a spool file\r\n", b.Len())
	}
	large := b.String() + "and the last line is cut o"
	for _, tc := range []struct{ name, send string }{
		{"DATA", "DATA\r\n" + small},
		{"DATA spooled", "DATA\r\n" + large},
		{"BDAT LAST", fmt.Sprintf("BDAT %d LAST\r\n%s", len(small)+100, small)},
		{"BDAT LAST spooled", fmt.Sprintf("BDAT %d LAST\r\n%s", len(large)+100, large)},
		{"BDAT", fmt.Sprintf("BDAT %d\r\n%s", len(small)+100, small)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxMessageBytes = 1 << 20 })
			replies := sendCutOff(t, h.addr, h.secret, tc.send)
			for _, r := range replies {
				if strings.HasPrefix(r, "2") {
					t.Errorf("reply %q to a cut-off body (all: %q)", r, replies)
				}
			}
			// The server has closed the connection, so the session and its
			// Data call are over: a message it queued would be in the
			// store now.
			var stored []string
			if err := h.store.MessagesSince(h.team, time.Time{}, func(m *store.Message) bool {
				stored = append(stored, m.ID)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(stored) != 0 {
				t.Fatalf("a cut-off body was stored as %q", stored)
			}
			if n := h.fake.count(); n != 0 {
				t.Fatalf("a cut-off body was delivered %d time(s)", n)
			}
			if n, err := h.store.SweepSpool(); err != nil || n != 0 {
				t.Fatalf("the aborted spool file was left behind (%d, %v)", n, err)
			}
		})
	}
}

// sendCutOff runs a session up to RCPT on a raw socket, sends body (a
// DATA or BDAT command and less than it announces), shuts the sending
// side as a dropped connection does, and reads replies until the server
// closes the connection. It returns the reply lines read after the body.
func sendCutOff(t *testing.T, addr, secret, body string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	var replies []string
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (replies %q)", err, replies)
			}
			replies = append(replies, strings.TrimRight(line, "\r\n"))
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("got %q, want %s", line, prefix)
			}
			if len(line) > 3 && line[3] == ' ' {
				return
			}
		}
	}
	cmd := func(s, want string) {
		t.Helper()
		if _, err := io.WriteString(conn, s+"\r\n"); err != nil {
			t.Fatal(err)
		}
		expect(want)
	}
	expect("220")
	cmd("EHLO client.test", "250")
	cmd("AUTH PLAIN "+b64("\x00u\x00"+secret), "235")
	cmd("MAIL FROM:<a@example.com>", "250")
	cmd("RCPT TO:<b@example.org>", "250")
	if strings.HasPrefix(body, "DATA\r\n") {
		cmd("DATA", "354")
		body = strings.TrimPrefix(body, "DATA\r\n")
	}
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite() // the connection drops mid-body
	replies = replies[:0]
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			return replies // the server ended the session
		}
		if err != nil {
			t.Fatalf("waiting for the server to close the connection: %v (replies %q)", err, replies)
		}
		replies = append(replies, strings.TrimRight(line, "\r\n"))
	}
}
