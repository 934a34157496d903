package bounce

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseFixtures reads real-world-shaped reports (testdata/*.eml) into
// the right kind, recipient, action and status. Delayed-delivery notices
// and auto-replies are not failures.
func TestParseFixtures(t *testing.T) {
	cases := []struct {
		file, kind, rcpt, action, status string
	}{
		{"postfix-unknown-user.eml", KindDSN, "nobody@example.net", "failed", "5.1.1"},
		{"postfix-delayed.eml", KindDSN, "slow@example.org", "delayed", "4.4.1"},
		{"gmail-nosuchuser.eml", KindDSN, "missing.person@gmail.com", "failed", "5.1.1"},
		{"outlook-ndr.eml", KindDSN, "gone.user@contoso.com", "failed", "5.1.10"},
		{"exim-dsn.eml", KindDSN, "full@example.org", "failed", "5.2.2"}, // Status 5.0.0 refined by the diagnostic
		{"exim-text.eml", KindText, "olduser@example.org", "failed", "5.1.1"},
		{"qmail.eml", KindText, "nosuch@example.com", "failed", "5.1.1"},
	}
	for _, c := range cases {
		raw, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Parse(bytes.NewReader(raw))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if rep.Kind != c.kind || len(rep.Recipients) != 1 {
			t.Errorf("%s: kind %q, recipients %+v", c.file, rep.Kind, rep.Recipients)
			continue
		}
		r := rep.Recipients[0]
		if r.Address != c.rcpt || r.Action != c.action || r.Status != c.status {
			t.Errorf("%s: %+v, want %s %s %s", c.file, r, c.rcpt, c.action, c.status)
		}
		if r.Failed() != (c.action == "failed") {
			t.Errorf("%s: Failed() = %v", c.file, r.Failed())
		}
	}
	raw, _ := os.ReadFile("testdata/arf-abuse.eml")
	rep, err := Parse(bytes.NewReader(raw))
	if err != nil || rep.Kind != KindARF || rep.FeedbackType != "abuse" || len(rep.ComplaintRcpts) != 1 || rep.ComplaintRcpts[0] != "reader@hotmail.example" {
		t.Fatalf("arf: %+v %v", rep, err)
	}
	raw, _ = os.ReadFile("testdata/autoreply.eml")
	if rep, err := Parse(bytes.NewReader(raw)); err != ErrNotReport {
		t.Fatalf("auto-reply: %+v %v", rep, err)
	}
}

// TestParseHostileShapes: deep nesting, many parts and many recipient
// blocks are cut at the limits instead of being followed.
func TestParseHostileShapes(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status; boundary=b0\r\n\r\n")
	depth := 200
	for i := 0; i < depth; i++ {
		b.WriteString("--b" + itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + itoa(i+1) + "\r\n\r\n")
	}
	b.WriteString("--b" + itoa(depth) + "\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; deep@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n")
	if rep, err := Parse(strings.NewReader(b.String())); err == nil && rep.Kind == KindDSN {
		t.Fatalf("a report nested %d deep was followed: %+v", depth, rep)
	}
	b.Reset()
	b.WriteString("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n")
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status; boundary=z\r\n\r\n--z\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n")
	for i := 0; i < 500; i++ {
		b.WriteString("\r\nFinal-Recipient: rfc822; r" + itoa(i) + "@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n")
	}
	b.WriteString("\r\n--z--\r\n")
	raw := b.String()
	raw = raw[strings.Index(raw, "Content-Type: multipart"):]
	rep, err := Parse(strings.NewReader(raw))
	if err != nil || len(rep.Recipients) != maxRcpts {
		t.Fatalf("500 recipient blocks: %d recipients, %v", len(rep.Recipients), err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}

// FuzzParse: no input makes the parser panic, hang or name a recipient
// that is not an address.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, fn := range files {
		raw, _ := os.ReadFile(fn)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := Parse(bytes.NewReader(raw))
		if err != nil {
			return
		}
		for _, r := range rep.Recipients {
			if r.Address != "" && (!strings.Contains(r.Address, "@") || strings.ContainsAny(r.Address, " <>")) {
				t.Fatalf("recipient %q is not an address", r.Address)
			}
		}
		if len(rep.Recipients) > maxRcpts || len(rep.ComplaintRcpts) > maxRcpts {
			t.Fatalf("%d recipients", len(rep.Recipients))
		}
	})
}
