package failreport

import (
	"bytes"
	"strings"
	"testing"
)

// TestHeaderSection: the quoted headers stop at the blank line, are
// CRLF-normalised, drop boundary-like lines, are capped at a line end,
// and are a copy: the input (a read-only mapping in production) is never
// written, not even past its length.
func TestHeaderSection(t *testing.T) {
	buf := []byte("Subject: a\r\nY: c" + "TAIL")
	if got := HeaderSection(buf[:len(buf)-4]); string(got) != "Subject: a\r\nY: c\r\n" || string(buf[len(buf)-4:]) != "TAIL" {
		t.Fatalf("cut input: %q, buffer now %q", got, buf)
	}
	in := []byte("Subject: a\nX: b\r\n--evil\r\nY: c\r\n\r\nbody\r\n")
	if got := HeaderSection(in); string(got) != "Subject: a\r\nX: b\r\nY: c\r\n" {
		t.Fatalf("whole: %q", got)
	}
	if got := HeaderSection([]byte("\r\nbody\r\n\r\nmore\r\n")); got != nil {
		t.Fatalf("no headers: %q", got)
	}
	big := strings.Repeat("X-Long: "+strings.Repeat("a", 990)+"\r\n", 100) + "\r\nbody"
	got := HeaderSection([]byte(big))
	if len(got) > MaxHeaderBytes || !bytes.HasSuffix(got, []byte("a\r\n")) || len(got) < MaxHeaderBytes-1000 {
		t.Fatalf("capped: %d bytes, ends %q", len(got), got[len(got)-5:])
	}
}

// TestStatus: the enhanced code of a reply, else its class's generic one;
// no 5xx at all means retries ran out.
func TestStatus(t *testing.T) {
	for reply, want := range map[string]string{
		"550 5.1.1 no such user": "5.1.1", "550-5.7.1 policy": "5.7.1", "554 rejected": "5.0.0",
		"452 4.2.2 mailbox full": "4.2.2", "retries_exhausted": "4.4.7", "": "4.4.7",
	} {
		if got := Status(reply); got != want {
			t.Errorf("Status(%q) = %q, want %q", reply, got, want)
		}
	}
}
