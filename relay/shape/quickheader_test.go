package shape

import (
	"net/textproto"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

// FuzzQuickValuesAsGoMessage holds quickValues to go-message: it refuses
// exactly the headers parseHeader refuses, and reads From and Reply-To as
// Header.Get does.
func FuzzQuickValuesAsGoMessage(f *testing.F) {
	for _, c := range hdrcases.Edge {
		f.Add([]byte(c.Msg))
	}
	for _, s := range []string{
		"From: a@b\r\nReply-To:  r@b \r\n\r\nbody",
		"from: first@b\r\nFROM: second@b\r\n\r\n",
		" From: a@b\r\n\r\n",
		"From: a\r\n\t@b\r\n  \r\n more\r\nX: y\r\n\r\n",
		"From\r\n : a@b\r\n\r\n",
		"Fr om: a@b\r\n\r\n",
		": empty name\r\nFrom: a@b\r\n\r\n",
		"From: a@b\r",
		"From: a@b\r\r\nReply-To:\r\n\r\n",
		"From: a@b\nReply-To: \xff\x00\n\nx",
		"X-\x7f: y\r\nFrom: a@b\r\n\r\n",
		"no header\r\n\r\n",
		"\r\nFrom: body@b\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, rh, err := parseHeader(msg)
		vals, ok := quickValues(msg, rh, "From", "Reply-To")
		if ok != (err == nil) {
			t.Fatalf("%q: quickValues ok=%v, go-message error %v", msg, ok, err)
		}
		if !ok {
			return
		}
		if vals[0] != h.Get("From") || vals[1] != h.Get("Reply-To") {
			t.Fatalf("%q: quickValues %q, go-message %q %q", msg, vals, h.Get("From"), h.Get("Reply-To"))
		}
	})
}

// TestApplyDefaultsAllocations: with no default to fill, ApplyDefaults
// runs for every attempt only to read From; it must not build go-message's
// header (a field, key and value for each of these 10 fields: 94
// allocations; reading From alone takes 24, most in net/mail).
func TestApplyDefaultsAllocations(t *testing.T) {
	msg := []byte("Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
		"From: A <a@example.com>\r\nTo: b@example.com\r\nCc: c@example.com\r\n" +
		"Subject: the subject\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
		"Message-ID: <abc@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nX-Mailer: bench\r\n\r\nbody\r\n")
	var from string
	n := testing.AllocsPerRun(100, func() {
		out, f, err := ApplyDefaults(msg, SenderDefaults{})
		if err != nil || &out[0] != &msg[0] {
			t.Fatal(err)
		}
		from = f
	})
	if from != "a@example.com" {
		t.Fatalf("sent from %q", from)
	}
	if n > 30 {
		t.Errorf("%v allocations per message, want at most 30", n)
	}
}

// FuzzCanonicalKey holds scanHeader's interned keys to net/textproto.
func FuzzCanonicalKey(f *testing.F) {
	for _, k := range commonKeys {
		f.Add([]byte(k))
	}
	for _, k := range []string{"from", "FROM", "fRoM", "message-ID", "MIME-version", "\u017fubject", "Dkim-\u212aignature", "x-mailer ", "X_Mailer", "from:", ""} {
		f.Add([]byte(k))
	}
	f.Fuzz(func(t *testing.T, name []byte) {
		if got, want := canonicalKey(name), textproto.CanonicalMIMEHeaderKey(string(name)); got != want {
			t.Fatalf("%q: %q, textproto %q", name, got, want)
		}
	})
}

// BenchmarkApplyDefaults: the shaping every attempt runs when the
// provider has no sender default to fill.
func BenchmarkApplyDefaults(b *testing.B) {
	msg := []byte("Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000\r\n" +
		"From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: the subject\r\n" +
		"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <abc@example.com>\r\n\r\nbody\r\n")
	b.ReportAllocs()
	for range b.N {
		if _, _, err := ApplyDefaults(msg, SenderDefaults{}); err != nil {
			b.Fatal(err)
		}
	}
}
