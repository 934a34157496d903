package relay

import (
	"mime"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

// mapSummary is headerSummary read off readHeader's map, as it was before
// it walked the fields itself: FuzzHeaderSummaryAsMap holds it to that.
func mapSummary(body []byte) (string, string) {
	h := readHeader(body)
	subject := h.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	if len(subject) > 998 {
		subject = subject[:998]
	}
	return subject, strings.Trim(h.Get("Message-Id"), "<> ")
}

func FuzzHeaderSummaryAsMap(f *testing.F) {
	for _, c := range hdrcases.Edge {
		f.Add([]byte(c.Msg))
	}
	f.Add([]byte("subject: a\r\nSUBJECT: b\r\nMessage-ID: <x@y>\r\nmessage-id: <z@y>\r\n\r\n"))
	f.Add([]byte("Sub ject: a\r\nSubject : b\r\n\r\n"))
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\nMessage-Id:\r\n <a@b>\r\n\r\n"))
	f.Add([]byte("Subject: a\r\nbad line\r\nMessage-Id: <late@b>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, id := headerSummary(b)
		ws, wid := mapSummary(b)
		if s != ws || id != wid {
			t.Fatalf("%q: (%q, %q), from the map (%q, %q)", b, s, id, ws, wid)
		}
	})
}

// TestHeaderSummaryAllocations: the summary runs for every accepted
// message and keeps two fields, so it must not build the whole header
// (map entries, keys, values and unfolded lines: 60 allocations for this
// one; walking it takes 8).
func TestHeaderSummaryAllocations(t *testing.T) {
	msg := []byte("Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
		"From: A <a@example.com>\r\nTo: b@example.com\r\nCc: c@example.com\r\n" +
		"Subject: the subject\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
		"Message-ID: <abc@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nX-Mailer: bench\r\n\r\nbody\r\n")
	var s, id string
	n := testing.AllocsPerRun(100, func() { s, id = headerSummary(msg) })
	if s != "the subject" || id != "abc@example.com" {
		t.Fatalf("summary (%q, %q)", s, id)
	}
	if n > 8 {
		t.Errorf("%v allocations per summary, want at most 8", n)
	}
}
