package bounce

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/smtpmux/smtpmux/relay/failreport"
)

// TestFailureReportRoundTrip: the report smtpmux sends to a sender
// (relay/failreport) is one this package's own DSN parser reads back into
// the failed recipients, actions and codes; hostile bytes in the reply
// text and the original's headers stay out of the report's header section.
func TestFailureReportRoundTrip(t *testing.T) {
	orig := "From: a@example.com\r\nTo: x@example.net\r\nSubject: hi\r\nBcc-Evil: y\n\r\nBcc: victim@evil.test\r\n\r\nbody line\r\n"
	raw, err := failreport.Compose(&failreport.Report{
		Hostname: "mx.smtpmux.test", Sender: "a@example.com", MessageID: "eml_r", OriginalID: "eml_o",
		Arrival: time.Unix(1700000000, 0), Date: time.Unix(1700000100, 0),
		Recipients: []failreport.Recipient{
			{Address: "x@example.net", Reply: "550 5.1.1 no such user\r\nBcc: victim@evil.test"},
			{Address: "y@example.org", Reply: "retries_exhausted"},
		},
		Headers: []byte(orig),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		if (raw[i] == '\n') != (i > 0 && raw[i-1] == '\r') || raw[i] == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') {
			t.Fatalf("bare CR or LF at %d", i)
		}
	}
	if bytes.Contains(raw, []byte("\r\nBcc:")) {
		t.Fatalf("an injected header line reached the report:\n%s", raw)
	}
	rep, err := Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	if rep.Kind != KindDSN || len(rep.Recipients) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	r0, r1 := rep.Recipients[0], rep.Recipients[1]
	if r0.Address != "x@example.net" || !r0.Failed() || r0.Status != "5.1.1" || !strings.Contains(r0.Diagnostic, "no such user") {
		t.Fatalf("first recipient: %+v", r0)
	}
	if r1.Address != "y@example.org" || !r1.Failed() || r1.Status != "4.4.7" {
		t.Fatalf("second recipient: %+v", r1)
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if mt, p, _ := e.Header.ContentType(); mt != "multipart/report" || p["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v", mt, p)
	}
	if e.Header.Get("Bcc") != "" || e.Header.Get("To") != "<a@example.com>" || e.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Fatalf("report header: %v", e.Header)
	}
	mr := e.MultipartReader()
	var types []string
	var quoted []byte
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		mt, _, _ := p.Header.ContentType()
		types = append(types, mt)
		if mt == "text/rfc822-headers" {
			quoted, _ = readAll(p)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts: %v", types)
	}
	if !bytes.Contains(quoted, []byte("Subject: hi\r\n")) || bytes.Contains(quoted, []byte("body line")) {
		t.Fatalf("quoted headers: %q", quoted)
	}
}

func readAll(p *message.Entity) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(p.Body)
	return b.Bytes(), err
}
