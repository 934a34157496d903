package proxied

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// harness is a wrapped listener on 127.0.0.1 and what it refused.
type harness struct {
	t       *testing.T
	ln      net.Listener
	refused chan error
}

func newHarness(t *testing.T, from string, opts Options) *harness {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, refused: make(chan error, 16)}
	opts.From = []netip.Prefix{netip.MustParsePrefix(from)}
	opts.Refused = func(_ net.Addr, err error) { h.refused <- err }
	h.ln = Listen(raw, opts)
	t.Cleanup(func() { h.ln.Close() })
	return h
}

// dial connects and writes b at once (as a balancer sends its header).
func (h *harness) dial(b []byte) net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			h.t.Fatal(err)
		}
	}
	return c
}

func (h *harness) accept() net.Conn {
	h.t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := h.ln.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			h.t.Fatal(r.err)
		}
		h.t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(10 * time.Second):
		h.t.Fatal("no connection accepted")
		return nil
	}
}

func (h *harness) wantRefused(want error) {
	h.t.Helper()
	select {
	case err := <-h.refused:
		if want != nil && !errors.Is(err, want) {
			h.t.Fatalf("refused with %v, want %v", err, want)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatalf("connection not refused (want %v)", want)
	}
}

// wantClosed waits for the server side to close c: EOF or a reset, not
// data and not the deadline.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open (read %d bytes, err %v)", n, err)
	}
}

func header(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// TestTrustedHeader: v1 and v2 headers (IPv4, IPv6, a v4-mapped source)
// set RemoteAddr, and client bytes sent with the header are not lost.
func TestTrustedHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version byte
		src     string
		want    string
	}{
		{"v1", 1, "203.0.113.7:40001", "203.0.113.7:40001"},
		{"v2", 2, "198.51.100.9:40002", "198.51.100.9:40002"},
		{"v2-ipv6", 2, "[2001:db8::7]:40003", "[2001:db8::7]:40003"},
		{"v1-ipv6", 1, "[2001:db8::8]:40004", "[2001:db8::8]:40004"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "127.0.0.1/32", Options{})
			dst := "127.0.0.1:587"
			if strings.HasPrefix(tc.src, "[") {
				dst = "[::1]:587"
			}
			b := append(header(t, tc.version, tc.src, dst), "EHLO client\r\n"...)
			h.dial(b)
			c := h.accept()
			if got := c.RemoteAddr().String(); got != tc.want {
				t.Fatalf("RemoteAddr %s, want %s", got, tc.want)
			}
			if got := readLine(t, c); got != "EHLO client\r\n" {
				t.Fatalf("first bytes after the header: %q", got)
			}
		})
	}
}

// TestMappedSource: a v2 TCP6 header carrying ::ffff:a.b.c.d is the IPv4
// client, so it counts (and logs) as the same client as a TCP4 header.
func TestMappedSource(t *testing.T) {
	h := newHarness(t, "127.0.0.1/32", Options{})
	hdr := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.7"), Port: 1000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("::1"), Port: 587}}
	b, err := hdr.Format()
	if err != nil {
		t.Fatal(err)
	}
	h.dial(b)
	if got := h.accept().RemoteAddr().String(); got != "203.0.113.7:1000" {
		t.Fatalf("RemoteAddr %s, want 203.0.113.7:1000", got)
	}
}

// TestLocalCommand: v2 LOCAL and v1 UNKNOWN (a balancer's health check)
// are accepted with the balancer's own address, as the spec says.
func TestLocalCommand(t *testing.T) {
	for name, b := range map[string][]byte{
		"v2-local":   {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00},
		"v1-unknown": []byte("PROXY UNKNOWN\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "127.0.0.1/32", Options{})
			client := h.dial(b)
			if got, want := h.accept().RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Fatalf("RemoteAddr %s, want the balancer's %s", got, want)
			}
		})
	}
}

// TestTrustedWithoutHeader: a trusted source must send a header; no
// header, a malformed one, a truncated one, or none in time closes the
// connection, and it never reaches Accept.
func TestTrustedWithoutHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		send string
		want error
	}{
		{"smtp-command", "EHLO client\r\n", ErrNoHeader},
		{"v1-garbage", "PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n", nil},
		{"v1-no-crlf", "PROXY TCP4 192.0.2.1 10.0.0.1 1 2\n", nil},
		{"v2-bad-version", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", nil},
		{"closed-at-once", "", ErrNoHeader},
		{"silent", "-", ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "127.0.0.1/32", Options{Timeout: 200 * time.Millisecond})
			var c net.Conn
			switch tc.send {
			case "-":
				c = h.dial(nil)
			case "":
				c = h.dial(nil)
				c.(*net.TCPConn).CloseWrite()
			default:
				c = h.dial([]byte(tc.send))
			}
			h.wantRefused(tc.want)
			wantClosed(t, c)
			// Nothing was handed to the server: a good connection after
			// it is the first Accept returns.
			h.dial(header(t, 1, "192.0.2.50:1", "127.0.0.1:25"))
			if got := h.accept().RemoteAddr().String(); got != "192.0.2.50:1" {
				t.Fatalf("next accepted %s, want the good connection", got)
			}
		})
	}
}

// TestUntrustedNeverRead: a source outside From keeps its own address,
// and a connection of its that starts with a PROXY header (v1 or v2) is
// closed on its first read, the header never parsed; other bytes pass
// through untouched.
func TestUntrustedNeverRead(t *testing.T) {
	for name, b := range map[string][]byte{
		"v1": header(t, 1, "203.0.113.7:40001", "127.0.0.1:587"),
		"v2": header(t, 2, "203.0.113.7:40001", "127.0.0.1:587"),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "192.0.2.0/24", Options{})
			client := h.dial(b)
			c := h.accept()
			if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Fatalf("RemoteAddr %s, want the real %s", got, want)
			}
			if n, err := c.Read(make([]byte, 512)); n != 0 || !errors.Is(err, ErrUntrusted) {
				t.Fatalf("server read %d bytes, %v; want nothing and ErrUntrusted", n, err)
			}
			h.wantRefused(ErrUntrusted)
			wantClosed(t, client)
		})
	}
	t.Run("plain", func(t *testing.T) {
		h := newHarness(t, "192.0.2.0/24", Options{})
		h.dial([]byte("PROXYISH words\r\n"))
		if got := readLine(t, h.accept()); got != "PROXYISH words\r\n" {
			t.Fatalf("server read %q", got)
		}
		select {
		case err := <-h.refused:
			t.Fatalf("plain bytes refused: %v", err)
		default:
		}
	})
}

// TestSlowBalancerDoesNotBlock: a trusted connection that has not sent
// its header does not hold up the accepts behind it.
func TestSlowBalancerDoesNotBlock(t *testing.T) {
	h := newHarness(t, "127.0.0.1/32", Options{Timeout: time.Minute})
	silent := h.dial(nil)
	h.dial(header(t, 2, "192.0.2.60:1", "127.0.0.1:25"))
	if got := h.accept().RemoteAddr().String(); got != "192.0.2.60:1" {
		t.Fatalf("accepted %s, want the connection that sent its header", got)
	}
	// Closing the listener closes the connection still waiting.
	h.ln.Close()
	wantClosed(t, silent)
	if _, err := h.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestMaxPending: connections waiting for a header are capped.
func TestMaxPending(t *testing.T) {
	h := newHarness(t, "127.0.0.1/32", Options{Timeout: time.Minute, MaxPending: 1})
	h.dial(nil)
	over := h.dial(nil)
	h.wantRefused(ErrTooManyPending)
	wantClosed(t, over)
}

// TestOff: no trusted source leaves the listener as it was.
func TestOff(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if ln := Listen(raw, Options{}); ln != raw {
		t.Fatal("Listen without sources wrapped the listener")
	}
}

func TestParseSources(t *testing.T) {
	good := map[string]string{
		"10.0.0.5":       "10.0.0.5/32",
		"10.0.0.0/24":    "10.0.0.0/24",
		" 10.0.0.5/32 ":  "10.0.0.5/32",
		"2001:db8::5":    "2001:db8::5/128",
		"2001:db8::/64":  "2001:db8::/64",
		"127.0.0.1/32":   "127.0.0.1/32",
		"192.168.0.0/16": "192.168.0.0/16",
	}
	for in, want := range good {
		got, err := ParseSources([]string{in})
		if err != nil || len(got) != 1 || got[0].String() != want {
			t.Errorf("ParseSources(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for in, wantMsg := range map[string]string{
		"10.0.0.5/24":         "host bits set: write 10.0.0.0/24 for the network, or 10.0.0.5/32",
		"0.0.0.0/0":           "trusts every address",
		"::/0":                "trusts every address",
		"10.0.0.300":          "not an IP address",
		"10.0.0.0/33":         "not a CIDR prefix",
		"balancer.internal":   "not an IP address",
		"fe80::1%eth0":        "not an IP address",
		"::ffff:10.0.0.5":     "write an IPv4 address as 10.0.0.5",
		"::ffff:10.0.0.0/120": "IPv4 form",
		"":                    "not an IP address",
	} {
		_, err := ParseSources([]string{"10.0.0.1", in})
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("ParseSources(%q): %v, want an error saying %q", in, err, wantMsg)
		}
	}
}
