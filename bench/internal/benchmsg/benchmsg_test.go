package benchmsg

import (
	"bytes"
	"testing"
)

func TestBuildVerify(t *testing.T) {
	for _, size := range []int{0, 300, 2048, 100 * 1024, 100*1024 + 1} {
		b := &Builder{Run: "r1", From: "a@example.com", To: "b@example.com", Size: size}
		msg := b.Build(42)
		if size > 600 && (len(msg) < size || len(msg) > size+2) {
			t.Errorf("size %d: got %d bytes", size, len(msg))
		}
		for _, line := range bytes.Split(msg, []byte("\r\n")) {
			if len(line) > 998 || bytes.HasPrefix(line, []byte(".")) || bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("size %d: bad line %q", size, line)
			}
		}
		// A relay prepends trace fields: still valid.
		relayed := append([]byte("Received: from x by y; now\r\n"), msg...)
		id, err := Verify(relayed)
		if err != nil || string(id) != MessageID("r1", 42) {
			t.Fatalf("size %d: Verify = %q, %v", size, id, err)
		}
		// One flipped body byte is caught.
		bad := bytes.Clone(msg)
		bad[bytes.Index(bad, []byte("\r\n\r\n"))+6] ^= 1
		if _, err := Verify(bad); err == nil {
			t.Fatalf("size %d: corruption not detected", size)
		}
	}
}

func BenchmarkVerify2K(b *testing.B) {
	msg := bytes.Clone((&Builder{Run: "r", From: "a@x", To: "b@y", Size: 2048}).Build(1))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Verify(msg); err != nil {
			b.Fatal(err)
		}
	}
}
