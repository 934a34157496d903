package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	lineends "github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// SMTP smuggling (issue 12 item 2): a hostile tenant puts a bare CR or LF
// line end and a dot inside one message, hoping that an upstream taking it
// for the end of DATA runs what follows — another MAIL FROM and RCPT of
// the tenant's choosing — as a second transaction.

// smuggled is the second transaction a hostile body carries.
const smuggled = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nFrom: ceo@victim.test\r\n\r\nsmuggled\r\n"

// smuggleCases are the combinations of CR, LF and '.' around a line end
// (none contains <CRLF>.<CRLF>, which ends DATA at smtpmux itself), and
// other bare line ends a hostile client may try.
var smuggleCases = []struct{ name, mid string }{
	{"CR.CR", "\r.\r"},
	{"LF.LF", "\n.\n"},
	{"CR.LF", "\r.\n"},
	{"LF.CR", "\n.\r"},
	{"CR.CRLF", "\r.\r\n"},
	{"LF.CRLF", "\n.\r\n"},
	{"CRLF.CR", "\r\n.\r"},
	{"CRLF.LF", "\r\n.\n"},
	{"CRLF.CRCR", "\r\n.\r\r"},
	{"CRLF.LFCRLF", "\r\n.\n\r\n"},
	{"LFCRLF.LF", "\n\r\n.\n"},
	{"CRCR.CRCR", "\r\r.\r\r"},
	{"CR..CR", "\r..\r"},
	{"LF..LF", "\n..\n"},
	{"bare CR", "\r"},
	{"bare LF", "\n"},
	{"CRLF then CR", "\r\n\r"},
}

// smuggleBody is a message whose body hides smuggled behind mid.
func smuggleBody(name, mid string) string {
	return "From: app@example.com\r\nTo: u@example.net\r\nSubject: smuggle " + name +
		"\r\n\r\nhello" + mid + smuggled
}

// dataRaw runs MAIL, RCPT and DATA, then writes body exactly as given and
// the end of data, and returns the final reply.
func (c *rawClient) dataRaw(body string) (int, string, error) {
	for _, line := range []string{"MAIL FROM:<app@example.com>", "RCPT TO:<u@example.net>"} {
		if code, text, err := c.cmd(line); code != 250 {
			return code, text, err
		}
	}
	if code, text, err := c.cmd("DATA"); code != 354 {
		return code, text, err
	}
	if err := c.write([]byte(body + "\r\n.\r\n")); err != nil {
		return 0, "", err
	}
	return c.reply()
}

// bdatRaw sends body in BDAT chunks cut at the given offsets and returns
// the reply to the LAST chunk (or the first refusal).
func (c *rawClient) bdatRaw(body string, cuts ...int) (int, string, error) {
	for _, line := range []string{"MAIL FROM:<app@example.com>", "RCPT TO:<u@example.net>"} {
		if code, text, err := c.cmd(line); code != 250 {
			return code, text, err
		}
	}
	prev := 0
	for i, cut := range append(cuts, len(body)) {
		chunk := body[prev:cut]
		prev = cut
		last := ""
		if i == len(cuts) {
			last = " LAST"
		}
		if err := c.write([]byte(fmt.Sprintf("BDAT %d%s\r\n%s", len(chunk), last, chunk))); err != nil {
			return 0, "", err
		}
		code, text, err := c.reply()
		if last != "" || code != 250 {
			return code, text, err
		}
	}
	return 0, "", nil
}

// TestSmuggleRejected: with the default bare_newlines = "reject", every
// hostile body, through DATA and through BDAT with a CR at a chunk
// boundary, gets 554 5.6.0 and nothing is stored; NUL bytes too; the
// session stays usable.
func TestSmuggleRejected(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	// One session sends every refused case in turn: without progress that
	// many commands would meet the junk-command limit, which is not what
	// this test is about (TestJunkCommandLimit is).
	d := newDaemon(t, map[string]string{"smtp": "max_junk_commands = 0"})
	_, key := d.setupRelay(plainProvider(up, "up", nil))
	c := rawSession(t, d, key)
	for _, tc := range smuggleCases {
		code, text, err := c.dataRaw(smuggleBody(tc.name, tc.mid))
		if code != 554 || !strings.Contains(text, "5.6.0") {
			t.Errorf("DATA %s: %d %q %v, want 554 5.6.0", tc.name, code, text, err)
		}
		body := smuggleBody(tc.name, tc.mid)
		cut := strings.Index(body, "hello") + len("hello") + 1 // inside mid
		code, text, err = c.bdatRaw(body, cut)
		if code != 554 || !strings.Contains(text, "5.6.0") {
			t.Errorf("BDAT %s cut at %d: %d %q %v, want 554 5.6.0", tc.name, cut, code, text, err)
		}
	}
	for _, body := range []string{"Subject: nul\r\n\r\na\x00b\r\n", "Subject: fold\r\n x\ry\r\n\r\nb\r\n"} {
		if code, text, err := c.dataRaw(body); code != 554 || !strings.Contains(text, "5.6.0") {
			t.Errorf("DATA %q: %d %q %v, want 554 5.6.0", body, code, text, err)
		}
	}
	// A CR ending one BDAT chunk and its LF opening the next is a CRLF.
	if code, text, err := c.bdatRaw("Subject: split\r\n\r\nline one\r\nline two\r\n", 28, 29); code != 250 {
		t.Fatalf("BDAT with CRLF split over chunks: %d %q %v", code, text, err)
	}
	msgs := up.WaitMessages(t, 1, 15*time.Second)
	if got := string(msgs[0].Data); got != "Subject: split\r\n\r\nline one\r\nline two\r\n" {
		t.Fatalf("BDAT split CRLF relayed as %q", got)
	}
	if n := len(allEmails(t, d)); n != 1 {
		t.Fatalf("%d messages stored, want only the clean one", n)
	}
	if m := d.metrics(); !strings.Contains(m, `reason="bare_newline"`) || !strings.Contains(m, `reason="nul_byte"`) {
		t.Errorf("metrics do not count the refusals:\n%s", grepLines(m, "refused"))
	}
}

// TestSmuggleNormalized: with bare_newlines = "normalize" every hostile
// body is accepted as one message, reaches a byte-recording upstream with
// only CRLF line ends and correct dot-stuffing (one message each, the
// smuggled lines still in the body), and reaches an upstream that splits
// on bare CR and LF as exactly one transaction each, from the real sender.
func TestSmuggleNormalized(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	lax := testpeer.StartLax(t)
	d := newDaemon(t, map[string]string{"smtp": `bare_newlines = "normalize"`})
	recID, key := d.setupRelay(plainProvider(up, "recording", nil))

	sendAll := func(tag string) {
		c := rawSession(t, d, key)
		for _, tc := range smuggleCases {
			body := smuggleBody(tag+" "+tc.name, tc.mid)
			if code, text, err := c.dataRaw(body); code != 250 {
				t.Fatalf("DATA %s: %d %q %v", tc.name, code, text, err)
			}
			cut := strings.Index(body, "hello") + len("hello") + 1
			if code, text, err := c.bdatRaw(body, cut); code != 250 {
				t.Fatalf("BDAT %s: %d %q %v", tc.name, code, text, err)
			}
		}
	}
	n := 2 * len(smuggleCases)
	sendAll("recorded")
	for _, m := range up.WaitMessages(t, n, 30*time.Second) {
		if !lineends.Clean(m.Data) {
			t.Errorf("upstream got a bare CR or LF: %q", m.Data)
		}
		if m.From != "app@example.com" || len(m.To) != 1 || m.To[0] != "u@example.net" {
			t.Errorf("envelope %s %v", m.From, m.To)
		}
		if !strings.Contains(string(m.Data), "\r\nMAIL FROM:<evil@attacker.test>\r\n") {
			t.Errorf("the body lost its content: %q", m.Data)
		}
	}
	if got := up.Count(); got != n {
		t.Fatalf("recording upstream got %d messages, want %d", got, n)
	}

	d.deactivate(recID)
	d.addProvider(map[string]any{"name": "lax", "type": "smtp", "smtp_host": lax.Host(), "smtp_port": lax.Port(), "smtp_protocol": "none"})
	sendAll("lax")
	waitFor(t, 30*time.Second, "every message at the lax upstream", func() bool { return len(lax.Transactions()) >= n })
	for _, tx := range lax.Transactions() {
		if tx.From != "<app@example.com>" {
			t.Errorf("lax upstream ran a transaction from %s: smuggled", tx.From)
		}
	}
	// Every attempt is over (the count reached n and each was from the
	// real sender); a smuggled one would have made it n+1 at least.
	for _, e := range allEmails(t, d) {
		if e["status"] != "sent" {
			waitFor(t, 15*time.Second, "all sent", func() bool { return d.email(e["id"].(string))["status"] == "sent" })
		}
	}
	if got := len(lax.Transactions()); got != n {
		t.Fatalf("lax upstream saw %d transactions for %d messages", got, n)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
