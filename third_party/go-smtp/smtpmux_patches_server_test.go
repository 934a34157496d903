package smtp_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestServerTrickledLinesEndTheSession: a command line, or an AUTH
// continuation line, unfinished when ReadTimeout expires is answered 421
// and the connection closed; nothing the client sends after is run
// (smtpmux patches 1 and 5).
func TestServerTrickledLinesEndTheSession(t *testing.T) {
	for _, tc := range []struct{ name, before, fragment string }{
		{"command", "", "MAIL FROM:<a@exam"},
		{"AUTH continuation", "AUTH PLAIN\r\n", "AHVzZXJuYW1l"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.ReadTimeout = 300 * time.Millisecond })
			defer s.Close()
			defer c.Close()
			if tc.before != "" {
				io.WriteString(c, tc.before)
				if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "334") {
					t.Fatalf("AUTH PLAIN: %q", scanner.Text())
				}
			}
			io.WriteString(c, tc.fragment)
			// The client goes on after the timeout: the rest of its line
			// and a NOOP must not be run as commands.
			time.Sleep(500 * time.Millisecond)
			io.WriteString(c, "AAAA\r\nNOOP\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var replies []string
			for scanner.Scan() {
				replies = append(replies, scanner.Text())
			}
			if len(replies) != 1 || !strings.HasPrefix(replies[0], "421 4.4.2") {
				t.Fatalf("a line unfinished at ReadTimeout: replies %q, want one 421 4.4.2 and the connection closed", replies)
			}
		})
	}
}

// TestServerLongAuthLine: an AUTH continuation line over MaxLineLength is
// answered 500 and the connection closed.
func TestServerLongAuthLine(t *testing.T) {
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.MaxLineLength = 100 })
	defer s.Close()
	defer c.Close()
	io.WriteString(c, "AUTH PLAIN\r\n")
	if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "334") {
		t.Fatalf("AUTH PLAIN: %q", scanner.Text())
	}
	go io.WriteString(c, strings.Repeat("A", 500)+"\r\nNOOP\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, "500 5.4.0") {
		t.Fatalf("over-long AUTH line: %q, want 500 5.4.0", line)
	}
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Fatalf("after the 500 the server went on: %q", rest)
	}
}

// TestServerCommandFilter: the filter sees every verb, NOOP and RSET
// included; a command it refuses is answered with its error and not run,
// and the connection closes (smtpmux patch 9).
func TestServerCommandFilter(t *testing.T) {
	var seen []string
	_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) {
		s.CommandFilter = func(_ *smtp.Conn, cmd, _ string) error {
			seen = append(seen, cmd)
			if len(seen) > 4 { // EHLO, NOOP, RSET, VRFY pass
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Enough"}
			}
			return nil
		}
	})
	defer s.Close()
	defer c.Close()
	io.WriteString(c, "NOOP\r\nrset\r\nVRFY x\r\nNOOP\r\nQUIT\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var replies []string
	for scanner.Scan() {
		replies = append(replies, scanner.Text())
	}
	if len(replies) != 4 || !strings.HasPrefix(replies[3], "421 4.7.0 Enough") {
		t.Fatalf("replies %q: want three answers, then the filter's 421 and the connection closed", replies)
	}
	if strings.Join(seen, " ") != "EHLO NOOP RSET VRFY NOOP" {
		t.Fatalf("filter saw %q", seen)
	}
}

// TestServerCutOffBodyFailsData: a connection that ends inside a BDAT
// chunk (LAST or not), or inside DATA before <CRLF>.<CRLF>, fails the
// backend's read with io.ErrUnexpectedEOF instead of ending the body
// cleanly, and the server closes the connection (smtpmux patch 10).
// Upstream's io.Copy took the short chunk as whole, and after LAST
// closed the pipe cleanly: the backend stored a cut-off message.
func TestServerCutOffBodyFailsData(t *testing.T) {
	for _, tc := range []struct{ name, send string }{
		{"BDAT LAST", "BDAT 200 LAST\r\nSubject: x\r\n\r\nhalf"},
		{"BDAT", "BDAT 200\r\nSubject: x\r\n\r\nhalf"},
		{"BDAT after a whole chunk", "BDAT 8\r\nHey <3\r\nBDAT 200 LAST\r\nhalf"},
		{"DATA", "DATA\r\nSubject: x\r\n\r\nhalf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, s, c, scanner := testServerAuthenticated(t)
			defer s.Close()
			defer c.Close()
			be.dataErrors = make(chan error, 1)
			io.WriteString(c, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"+tc.send)
			c.(*net.TCPConn).CloseWrite() // the client's side ends mid-body
			select {
			case err := <-be.dataErrors:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("backend's Data read ended with %v, want io.ErrUnexpectedEOF", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the backend's Data never ended")
			}
			// The server ends the session: the replies up to the cut,
			// then EOF. No 250 for the body (a 250 Continue for a whole
			// first chunk is fine; after DATA the backend's error is
			// written to a client that has gone).
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var replies []string
			for scanner.Scan() {
				replies = append(replies, scanner.Text())
			}
			if err := scanner.Err(); err != nil {
				t.Fatalf("the server did not close the connection: %v (replies %q)", err, replies)
			}
			for _, r := range replies[2:] { // after MAIL and RCPT
				if strings.HasPrefix(r, "2") && !strings.HasPrefix(r, "250 2.0.0 Continue") {
					t.Fatalf("reply %q to a cut-off body (all: %q)", r, replies)
				}
			}
			if len(be.messages) != 0 {
				t.Fatalf("a cut-off body was stored: %q", be.messages[0].Data)
			}
		})
	}
}
