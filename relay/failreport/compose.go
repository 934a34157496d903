// Package failreport composes the RFC 3464 delivery status notification
// smtpmux sends to a message's envelope sender when the message finally
// failed and its credential opted in (failure_reports). It only builds
// the bytes; relay decides whether to send one and enqueues it.
//
// Everything that reaches the report's header section is either smtpmux's
// own text or an address the relay validated, and every value still goes
// through clean: an upstream's reply text and the original's headers are
// someone else's bytes, and a CR or LF in them must not start a header
// line of the report (header injection) or a bare line end reach an
// upstream (SMTP smuggling).
package failreport

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"github.com/smtpmux/smtpmux/internal/crlf"
)

// MaxHeaderBytes bounds the original's header section quoted in the
// report (text/rfc822-headers): enough for any real header block, and a
// report is never a way to make smtpmux send a large body.
const MaxHeaderBytes = 32 << 10

// Recipient is one recipient that finally failed.
type Recipient struct {
	Address string
	// Reply is the upstream's last reply for it ("550 5.1.1 no such
	// user"), or smtpmux's own reason (retries_exhausted).
	Reply string
}

// Report is what a failure report says.
type Report struct {
	Hostname   string    // smtpmux's name: Reporting-MTA
	Sender     string    // the original's envelope sender: the report's To (and From, see Compose)
	MessageID  string    // the report's own ID, for its Message-ID header
	OriginalID string    // the original's eml_ ID
	Arrival    time.Time // when the original was accepted
	Date       time.Time
	Recipients []Recipient
	// Headers is the original's header section (up to its blank line).
	Headers []byte
}

// enhancedRE finds an RFC 3463 code at the start of a reply's text.
var enhancedRE = regexp.MustCompile(`^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b`)

// Status is the RFC 3463 status of a reply: its enhanced code if it gave
// one, else the generic one of its class; a failure without a 5xx reply
// ran out of retries (4.4.7, delivery time expired).
func Status(reply string) string {
	if m := enhancedRE.FindStringSubmatch(strings.TrimSpace(reply)); m != nil {
		return m[1]
	}
	if len(reply) >= 3 && reply[0] == '5' && reply[1] >= '0' && reply[1] <= '9' {
		return "5.0.0"
	}
	return "4.4.7"
}

// clean makes s safe for one header line: control characters (CR and LF
// above all) become spaces, runs of space collapse, and it is cut to n bytes.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// Compose builds the report: multipart/report; report-type=delivery-status
// with a human-readable part, the message/delivery-status part and the
// original's headers (text/rfc822-headers), CRLF throughout.
//
// From is the original's envelope sender too, under a "Mail Delivery
// System" name: the report goes out through the team's own providers,
// which accept only the team's verified senders, and the sender is the
// one address of the team the report may name.
func Compose(r *Report) ([]byte, error) {
	host, sender := clean(r.Hostname, 255), clean(r.Sender, 320)
	if host == "" || sender == "" || len(r.Recipients) == 0 {
		return nil, fmt.Errorf("failreport: hostname, sender and a recipient are required")
	}
	var h message.Header
	h.Set("From", "Mail Delivery System <"+sender+">")
	h.Set("To", "<"+sender+">")
	h.Set("Subject", "Undelivered Mail Returned to Sender")
	h.Set("Date", r.Date.UTC().Format(time.RFC1123Z))
	h.Set("Message-ID", "<"+clean(r.MessageID, 100)+"@"+host+">")
	h.Set("MIME-Version", "1.0")
	// RFC 3834: an automatic reply; well-behaved software sends none back.
	h.Set("Auto-Submitted", "auto-replied")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})

	var buf bytes.Buffer
	mw, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	if err := textPart(mw, r, host); err != nil {
		return nil, err
	}
	if err := statusPart(mw, r, host); err != nil {
		return nil, err
	}
	if err := headersPart(mw, r.Headers); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return crlf.Normalize(buf.Bytes()), nil
}

func textPart(mw *message.Writer, r *Report, host string) error {
	var ph message.Header
	ph.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	ph.Set("Content-Transfer-Encoding", "quoted-printable")
	w, err := mw.CreatePart(ph)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", host)
	fmt.Fprintf(&b, "Your message %s could not be delivered to the following recipient(s):\r\n\r\n", clean(r.OriginalID, 100))
	for _, rc := range r.Recipients {
		fmt.Fprintf(&b, "<%s>: %s\r\n", clean(rc.Address, 320), clean(rc.Reply, 500))
	}
	if _, err := w.Write([]byte(b.String())); err != nil {
		return err
	}
	return w.Close()
}

func statusPart(mw *message.Writer, r *Report, host string) error {
	var ph message.Header
	ph.SetContentType("message/delivery-status", nil)
	w, err := mw.CreatePart(ph)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Reporting-MTA: dns;%s\r\n", host)
	fmt.Fprintf(&b, "X-Smtpmux-Message-ID: %s\r\n", clean(r.OriginalID, 100))
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\r\n", r.Arrival.UTC().Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		fmt.Fprintf(&b, "Final-Recipient: rfc822;%s\r\n", clean(rc.Address, 320))
		b.WriteString("Action: failed\r\n")
		fmt.Fprintf(&b, "Status: %s\r\n", Status(rc.Reply))
		if d := clean(rc.Reply, 900); d != "" {
			fmt.Fprintf(&b, "Diagnostic-Code: smtp;%s\r\n", d)
		}
	}
	if _, err := w.Write([]byte(b.String())); err != nil {
		return err
	}
	return w.Close()
}

// headersPart quotes the original's header section, cut at a line end to
// MaxHeaderBytes, with CRLF line ends (a header line of the original
// stays inside this part: the boundary is random and every line is a
// header line, never "--").
func headersPart(mw *message.Writer, headers []byte) error {
	hdr := HeaderSection(headers)
	var ph message.Header
	ph.SetContentType("text/rfc822-headers", nil)
	for _, c := range hdr {
		if c >= 0x80 {
			ph.Set("Content-Transfer-Encoding", "quoted-printable")
			break
		}
	}
	w, err := mw.CreatePart(ph)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	return w.Close()
}

// HeaderSection is the header section of body (up to, not including, the
// blank line), cut at a line end to MaxHeaderBytes, CRLF-normalised, in a
// new slice (body may be a read-only mapping of a spool file, released
// after this returns). A line starting with "--" (not a header line: a
// broken original's) is dropped so that nothing in the part can even look
// like a boundary.
func HeaderSection(body []byte) []byte {
	if len(body) > MaxHeaderBytes+4 {
		body = body[:MaxHeaderBytes+4] // only the head is ever quoted
	}
	body = crlf.Normalize(body)
	if bytes.HasPrefix(body, []byte("\r\n")) {
		return nil // no header section at all
	}
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		body = body[:i+2]
	}
	if len(body) > MaxHeaderBytes {
		body = body[:MaxHeaderBytes]
		if i := bytes.LastIndex(body, []byte("\r\n")); i >= 0 {
			body = body[:i+2]
		} else {
			body = nil
		}
	}
	var out []byte
	for _, line := range bytes.SplitAfter(body, []byte("\r\n")) {
		if len(line) == 0 || bytes.HasPrefix(line, []byte("--")) {
			continue
		}
		out = append(out, line...) // a copy: never append to body itself
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			out = append(out, '\r', '\n')
		}
	}
	return out
}
