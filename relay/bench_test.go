package relay

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkSessionTransaction measures one inbound SMTP transaction over
// loopback on a reused, authenticated session: MAIL, RCPT, DATA, the
// durable enqueue and the 250 (delivery runs in the background to a fake
// upstream).
func BenchmarkSessionTransaction(b *testing.B) {
	for _, size := range []int{2 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			t := &testing.T{}
			h := newHarness(t, func(c *Config) { c.MaxMessageBytes = 1 << 20 })
			c := dialAuthed(b, h)
			body := []byte("From: a@example.com\r\nSubject: bench\r\n\r\n" + string(bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), size/64)))
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := send(c, "a@example.com", []string{"b@example.com"}, string(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// dialAuthed opens an SMTP session to h authenticated with its sending
// key, closed when b ends.
func dialAuthed(b *testing.B, h *harness) *smtp.Client {
	b.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Auth(plainAuth(h.secret)); err != nil {
		b.Fatal(err)
	}
	return c
}
