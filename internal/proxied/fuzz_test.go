package proxied

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzReadHeader: whatever a trusted source sends, reading its header
// never panics, a success always yields a printable address, the bytes
// past the header are handed on exactly, and only input that starts with
// a PROXY signature can succeed. (The first finding was this test's own:
// bytes past a header may still be in the connection, not yet buffered.)
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 2525\r\nEHLO x\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 ::1 40001 2525\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x9c\x41\x09\xdd"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x13\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x9c\x41\x09\xdd"))
	f.Add([]byte("EHLO client\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		server, client := net.Pipe()
		defer server.Close()
		go func() {
			client.Write(in)
			client.Close()
		}()
		remote, rest, err := readHeader(server, time.Second)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, []byte("PROXY ")) && !bytes.HasPrefix(in, []byte("\r\n\r\n\x00\r\nQUIT\n")) {
			t.Fatalf("%q read as a header", in)
		}
		if remote == nil || remote.String() == "" {
			t.Fatalf("%q: no address", in)
		}
		// What was read past the header, then what the connection still
		// holds, is the input after the header.
		more, _ := io.ReadAll(server)
		if after := append(rest, more...); !bytes.HasSuffix(in, after) {
			t.Fatalf("%q: bytes after the header %q are not the input's tail", in, after)
		}
	})
}
