// Package bounce is the bounce listener of SPEC §13: an SMTP server for
// the VERP return-path domain that accepts mail only for its own,
// unexpired tokens (internal/verp), reads the delivery report or
// feedback report in it, and records each bounce or complaint against
// the message and recipient the token names, which puts the recipient on
// its team's suppression list (store) and emits message.bounced or
// message.complained.
//
// report.go reads the reports: RFC 3464 delivery status notifications
// (multipart/report; report-type=delivery-status), RFC 5965 ARF feedback
// reports (report-type=feedback-report), and the common bounces that are
// plain text (qmail's, older Exim's, assorted gateways').
package bounce

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Kinds of report.
const (
	KindDSN  = "dsn"  // RFC 3464
	KindARF  = "arf"  // RFC 5965
	KindText = "text" // a bounce without a machine-readable part
)

// Limits on what a report may make the parser do. Reports come from
// anyone on the Internet who has a token (any recipient's server), so a
// report's size is capped by the listener and its shape here.
const (
	maxParts     = 32       // MIME parts looked at, in all
	maxDepth     = 4        // multipart nesting followed
	maxPartBytes = 64 << 10 // bytes read of one part
	maxRcpts     = 50       // per-recipient blocks read of one DSN
)

// Recipient is one recipient's outcome in a report.
type Recipient struct {
	// Address is the Final-Recipient (or Original-Recipient) address,
	// lower-cased; "" when a text bounce named none.
	Address string
	// Action is the RFC 3464 action (failed, delayed, delivered,
	// relayed, expanded), lower-case.
	Action string
	// Status is the RFC 3463 code ("5.1.1"), "" if none could be found.
	Status string
	// Diagnostic is the remote server's reply, as reported.
	Diagnostic string
}

// Failed reports whether the report says delivery to r finally failed
// (a delayed-delivery notice is not a failure).
func (r Recipient) Failed() bool { return r.Action == "failed" }

// Report is what a parsed report says.
type Report struct {
	Kind string
	// Recipients of a DSN or text bounce.
	Recipients []Recipient
	// FeedbackType of an ARF report ("abuse", "fraud", …), lower-case.
	FeedbackType string
	// ComplaintRcpts are the ARF report's Original-Rcpt-To addresses.
	ComplaintRcpts []string
	// Source names where the report came from on the feedback it adds
	// and in the report counter ("ses"); "" means the listener's own
	// ("dsn" for bounces, "arf" for complaints).
	Source string
}

// ErrNotReport is a message that is neither a report nor a recognisable
// bounce (an auto-reply, spam to the bounce address).
var ErrNotReport = errors.New("not a delivery or feedback report")

// Parse reads one report from r (a whole message, header and body).
func Parse(r io.Reader) (*Report, error) {
	e, err := message.Read(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, ErrNotReport
	}
	p := &parser{}
	p.walk(e, 0)
	switch {
	case p.arf != nil:
		return p.arf, nil
	case p.dsn != nil && len(p.dsn.Recipients) > 0:
		return p.dsn, nil
	}
	if rs := textBounce(p.text.String()); len(rs) > 0 {
		return &Report{Kind: KindText, Recipients: rs}, nil
	}
	return nil, ErrNotReport
}

// parser walks a message's parts once, keeping the first report part of
// each kind and the text of text/plain parts for the fallback.
type parser struct {
	parts int
	dsn   *Report
	arf   *Report
	text  bytes.Buffer
}

func (p *parser) walk(e *message.Entity, depth int) {
	p.parts++
	if p.parts > maxParts {
		return
	}
	mt, _, _ := e.Header.ContentType()
	if mt == "" {
		mt = "text/plain"
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxDepth {
			return
		}
		for p.parts < maxParts {
			part, err := mr.NextPart()
			if err != nil && part == nil {
				return
			}
			p.walk(part, depth+1)
		}
		return
	}
	body, _ := io.ReadAll(io.LimitReader(e.Body, maxPartBytes))
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		if p.dsn == nil {
			p.dsn = &Report{Kind: KindDSN, Recipients: parseDeliveryStatus(body)}
		}
	case "message/feedback-report":
		if p.arf == nil {
			p.arf = parseFeedback(body)
		}
	case "text/plain":
		if p.text.Len() < maxPartBytes {
			p.text.Write(body[:min(len(body), maxPartBytes-p.text.Len())])
			p.text.WriteByte('\n')
		}
	}
}

// parseDeliveryStatus reads the body of a message/delivery-status part:
// per-message fields, then one block of fields per recipient (RFC 3464
// §2.2, §2.3), each block a header block ended by an empty line.
func parseDeliveryStatus(body []byte) []Recipient {
	br := bufio.NewReader(bytes.NewReader(body))
	if _, err := textproto.ReadHeader(br); err != nil { // per-message fields
		return nil
	}
	var out []Recipient
	for len(out) < maxRcpts {
		// Blank lines between blocks are tolerated (some MTAs add more).
		for {
			b, err := br.Peek(1)
			if err != nil {
				return out
			}
			if b[0] != '\r' && b[0] != '\n' {
				break
			}
			br.ReadByte()
		}
		h, err := textproto.ReadHeader(br)
		if err != nil && h.Len() == 0 {
			return out
		}
		r := Recipient{
			Address:    typedAddress(h.Get("Final-Recipient")),
			Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
			Status:     statusCode(h.Get("Status")),
			Diagnostic: strings.TrimSpace(collapse(h.Get("Diagnostic-Code"))),
		}
		if r.Address == "" {
			r.Address = typedAddress(h.Get("Original-Recipient"))
		}
		if r.Status == "" || r.Status == "5.0.0" || r.Status == "4.0.0" {
			// The diagnostic often says more than a generic status.
			if s := statusCode(firstEnhanced(r.Diagnostic)); s != "" {
				r.Status = s
			}
		}
		if r.Address != "" || r.Action != "" {
			out = append(out, r)
		}
		if err != nil {
			return out
		}
	}
	return out
}

// parseFeedback reads a message/feedback-report part (RFC 5965 §3.1).
func parseFeedback(body []byte) *Report {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	if err != nil && h.Len() == 0 {
		return &Report{Kind: KindARF, FeedbackType: "abuse"}
	}
	r := &Report{Kind: KindARF, FeedbackType: strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))}
	if r.FeedbackType == "" || len(r.FeedbackType) > 32 || !token(r.FeedbackType) {
		r.FeedbackType = "abuse"
	}
	for _, v := range h.Values("Original-Rcpt-To") {
		if a := bareAddress(v); a != "" && len(r.ComplaintRcpts) < maxRcpts {
			r.ComplaintRcpts = append(r.ComplaintRcpts, a)
		}
	}
	return r
}

// typedAddress reads "rfc822; user@example.com" (RFC 3464's
// address-type; address); other address types are not mail addresses.
func typedAddress(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok {
		return bareAddress(v)
	}
	if t := strings.ToLower(strings.TrimSpace(typ)); t != "rfc822" && t != "utf-8" {
		return ""
	}
	return bareAddress(addr)
}

// bareAddress lower-cases an address and drops angle brackets; anything
// that is not local@domain without spaces gives "".
func bareAddress(v string) string {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>"))
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || len(v) > 254 || strings.ContainsAny(v, " \t<>\"\\,;") {
		return ""
	}
	return v
}

var (
	enhancedRe = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
	replyRe    = regexp.MustCompile(`\b([45]\d\d)[ -]`)
)

// statusCode returns a well-formed RFC 3463 code at the start of v, or "".
func statusCode(v string) string {
	v = strings.TrimSpace(v)
	if f := strings.Fields(v); len(f) > 0 {
		v = f[0]
	}
	if m := enhancedRe.FindString(v); m != "" && m == v {
		return m
	}
	return ""
}

// firstEnhanced finds an enhanced code in text, else turns a bare reply
// code (550) into its class's generic one (5.0.0).
func firstEnhanced(text string) string {
	if m := enhancedRe.FindString(text); m != "" {
		return m
	}
	if m := replyRe.FindStringSubmatch(text); m != nil {
		return m[1][:1] + ".0.0"
	}
	return ""
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

func token(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
