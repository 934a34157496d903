package proxied

import (
	"net"
	"net/netip"
	"testing"
)

// benchAccept connects, writes hdr and accepts, b.N times: the cost of a
// connection through the listener (dial and accept over loopback
// included, so compare the two benchmarks, not the absolute figure).
func benchAccept(b *testing.B, from []netip.Prefix, hdr []byte) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ln := Listen(raw, Options{From: from})
	defer ln.Close()
	buf := make([]byte, 1)
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c.Write(hdr)
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Read(buf); err != nil { // the first byte after any header
			b.Fatal(err)
		}
		s.Close()
		c.Close()
	}
}

func BenchmarkAcceptPlain(b *testing.B) { benchAccept(b, nil, []byte("E")) }

func BenchmarkAcceptV2(b *testing.B) {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x9c\x41\x09\xddE")
	benchAccept(b, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, h)
}

func BenchmarkAcceptV1(b *testing.B) {
	benchAccept(b, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 2525\r\nE"))
}
