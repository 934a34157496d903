package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the PROXY protocol on the SMTP listener: with
// [smtp] proxy_protocol_from naming 127.0.0.1, a test client plays the
// load balancer and writes the header bytes itself (v1 text, v2 binary,
// both built here by hand, not by the parser's library); other loopback
// addresses (127.0.0.5) are sources that are not trusted. The per-address
// connection cap is the observable: it counts whichever address the
// daemon believes is the client. e2e_haproxy_test.go does the same
// through a real HAProxy.

// proxyV1 is a PROXY protocol v1 line for a TCP client src (ip:port).
func proxyV1(src string) []byte {
	ap := netip.MustParseAddrPort(src)
	fam, dst := "TCP4", "127.0.0.1"
	if ap.Addr().Is6() {
		fam, dst = "TCP6", "::1"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d 2525\r\n", fam, ap.Addr(), dst, ap.Port())
}

// proxyV2 is a PROXY protocol v2 header (command PROXY, TCP) for src.
func proxyV2(src string) []byte {
	ap := netip.MustParseAddrPort(src)
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21) // version 2, PROXY
	if ap.Addr().Is4() {
		b = append(b, 0x11, 0, 12) // TCP over IPv4, 12 address bytes
		b = append(b, ap.Addr().AsSlice()...)
		b = append(b, 127, 0, 0, 1)
	} else {
		b = append(b, 0x21, 0, 36) // TCP over IPv6, 36 address bytes
		b = append(b, ap.Addr().AsSlice()...)
		b = append(b, netip.IPv6Loopback().AsSlice()...)
	}
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	return binary.BigEndian.AppendUint16(b, 2525)
}

// dialProxied connects from localIP ("" = 127.0.0.1), writes header at
// once (as a balancer does) and reads the greeting.
func dialProxied(addr, localIP string, header []byte) (*rawClient, int, string, error) {
	dialer := net.Dialer{Timeout: 10 * time.Second}
	if localIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, 0, "", err
	}
	c := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	if err := c.write(header); err != nil {
		conn.Close()
		return nil, 0, "", err
	}
	code, text, err := c.reply()
	return c, code, text, err
}

// proxiedGreeting dials with header and wants the 220 greeting.
func proxiedGreeting(t *testing.T, d *proc, header []byte) *rawClient {
	t.Helper()
	c, code, text, err := dialProxied(d.smtpAddr, "", header)
	if c != nil {
		t.Cleanup(func() { c.conn.Close() })
	}
	if err != nil || code != 220 {
		t.Fatalf("header %q: greeting %d %q %v, want 220", header, code, text, err)
	}
	return c
}

// proxiedRefused dials with header and wants the per-address 421.
func proxiedRefused(t *testing.T, d *proc, header []byte) {
	t.Helper()
	c, code, text, err := dialProxied(d.smtpAddr, "", header)
	if c != nil {
		defer c.conn.Close()
	}
	if err != nil || code != 421 || !strings.Contains(text, "from your address") {
		t.Fatalf("header %q: %d %q %v, want 421 for too many connections from the address", header, code, text, err)
	}
}

// TestProxyProtocolPerIPCap: behind a trusted balancer, the per-address
// connection cap counts the client address of the PROXY header (v1 and
// v2, IPv4 and IPv6): two clients get in at max_connections_per_ip = 1,
// the same client again is refused, and its slot comes back when its
// connection ends. The implicit-TLS listener takes the header before the
// handshake. Without the header the balancer would be one client and the
// second connection already refused.
func TestProxyProtocolPerIPCap(t *testing.T) {
	t.Parallel()
	tlsAddr := freeAddr(t)
	d := newDaemon(t, map[string]string{"smtp": fmt.Sprintf("proxy_protocol_from = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 1\nlisten_tls = [%q]", tlsAddr)})
	a := proxiedGreeting(t, d, proxyV1("203.0.113.7:40001"))
	b := proxiedGreeting(t, d, proxyV2("203.0.113.8:40002"))
	proxiedRefused(t, d, proxyV2("203.0.113.7:40003"))
	proxiedRefused(t, d, proxyV1("203.0.113.8:40004"))
	// IPv6 clients count by /64, as without a balancer.
	proxiedGreeting(t, d, proxyV2("[2001:db8:1:2::1]:40005"))
	proxiedRefused(t, d, proxyV1("[2001:db8:1:2::99]:40006"))
	proxiedGreeting(t, d, proxyV1("[2001:db8:1:3::1]:40007"))
	// On the implicit-TLS listener the header comes before the TLS
	// handshake (the balancer passes TLS through untouched).
	raw, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(proxyV2("203.0.113.20:40010"))
	tc := tls.Client(raw, insecureTLS())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	tlsClient := &rawClient{conn: tc, r: bufio.NewReader(tc)}
	if code, text, err := tlsClient.reply(); code != 220 {
		t.Fatalf("implicit TLS behind a v2 header: %d %q %v", code, text, err)
	}
	if n := metricValue(t, d.metrics(), `smtpmux_limited_total{reason="max_connections_per_ip"}`); n != 3 {
		t.Fatalf("limited by max_connections_per_ip: %d, want 3", n)
	}
	// The connections behind the header are real SMTP sessions.
	if code, text, err := b.cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO behind a v2 header: %d %q %v", code, text, err)
	}
	// 203.0.113.7 leaves: its slot is released (not leaked), and the
	// same client is greeted again once the daemon has seen the close.
	a.cmd("QUIT")
	a.conn.Close()
	waitFor(t, 10*time.Second, "the slot of 203.0.113.7 to be released", func() bool {
		c, code, _, err := dialProxied(d.smtpAddr, "", proxyV1("203.0.113.7:40008"))
		if c != nil {
			t.Cleanup(func() { c.conn.Close() })
		}
		return err == nil && code == 220
	})
}

// TestProxyProtocolTrustedMustSendHeader: a connection from a trusted
// balancer without a valid header — an SMTP command, a malformed header,
// nothing at all — is closed without a greeting (the last after the 5 s
// header timeout); none of them holds a connection slot afterwards.
func TestProxyProtocolTrustedMustSendHeader(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, map[string]string{"smtp": "proxy_protocol_from = [\"127.0.0.1/32\"]\nmax_connections = 2\nmax_connections_per_ip = 1"})
	// The harness's start-up probe connected without a header: that is
	// one refusal, counted before we begin.
	waitFor(t, 10*time.Second, "the start-up probe's refusal", func() bool {
		return metricValue(t, d.metrics(), `smtpmux_limited_total{reason="proxy_header"}`) == 1
	})
	for name, send := range map[string]string{
		"smtp-command":    "EHLO client.test\r\n",
		"bad-v1":          "PROXY TCP4 203.0.113.300 127.0.0.1 1 2525\r\n",
		"v1-without-cr":   "PROXY TCP4 203.0.113.7 127.0.0.1 1 2525\n",
		"silent-balancer": "",
	} {
		c, code, text, err := dialProxied(d.smtpAddr, "", []byte(send))
		if err == nil || code != 0 {
			t.Fatalf("%s: %d %q %v; want the connection closed without a greeting", name, code, text, err)
		}
		c.conn.Close()
	}
	waitFor(t, 10*time.Second, "4 more proxy_header refusals", func() bool {
		return metricValue(t, d.metrics(), `smtpmux_limited_total{reason="proxy_header"}`) == 5
	})
	// max_connections is 2: both slots are free for two clients.
	proxiedGreeting(t, d, proxyV1("198.51.100.1:1"))
	proxiedGreeting(t, d, proxyV2("198.51.100.2:1"))
}

// TestProxyProtocolUntrustedSource: a PROXY header from an address not in
// proxy_protocol_from is never believed. The connection counts as its real
// address (127.0.0.5 holding its one slot is refused, whatever the header
// claims); with its slot free, it is greeted (the header is only seen
// after the greeting) and then closed without a reply, counted as
// proxy_untrusted.
func TestProxyProtocolUntrustedSource(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, map[string]string{"smtp": "proxy_protocol_from = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 1"})
	const untrusted = "127.0.0.5"
	first, code, err := dialRaw(d.smtpAddr, untrusted)
	if err != nil || code != 220 {
		t.Fatalf("plain connection from %s: %d %v", untrusted, code, err)
	}
	c, code, text, err := dialProxied(d.smtpAddr, untrusted, proxyV1("203.0.113.9:1"))
	if err != nil || code != 421 || !strings.Contains(text, "from your address") {
		t.Fatalf("header claiming another client from %s holding its slot: %d %q %v, want 421 for its own address", untrusted, code, text, err)
	}
	c.conn.Close()
	first.conn.Close()
	for i, header := range [][]byte{proxyV1("203.0.113.9:2"), proxyV2("203.0.113.9:3")} {
		waitFor(t, 10*time.Second, "the slot of "+untrusted+" to be released", func() bool {
			var err error
			c, code, _, err = dialProxied(d.smtpAddr, untrusted, header)
			if err == nil && code != 220 {
				c.conn.Close()
			}
			return err == nil && code == 220
		})
		code, text, err := c.reply()
		c.conn.Close()
		if err == nil {
			t.Fatalf("header %d from %s: answered %d %q; want the connection closed", i, untrusted, code, text)
		}
	}
	waitFor(t, 10*time.Second, "2 proxy_untrusted refusals", func() bool {
		return metricValue(t, d.metrics(), `smtpmux_limited_total{reason="proxy_untrusted"}`) == 2
	})
	// The harness's start-up probe (127.0.0.1, trusted, no header) is the
	// only other refusal.
	waitFor(t, 10*time.Second, "proxy_header refusals to be the start-up probe's alone", func() bool {
		return metricValue(t, d.metrics(), `smtpmux_limited_total{reason="proxy_header"}`) == 1
	})
}

// TestProxyProtocolBounceListener: the bounce listener takes PROXY
// headers from [bounces] proxy_protocol_from the same way: its per-address
// cap (max_connections_per_ip = 1) counts the proxied clients, a second
// connection of the same client is refused, and the connection behind the
// header speaks SMTP.
func TestProxyProtocolBounceListener(t *testing.T) {
	t.Parallel()
	bounceAddr := freeAddr(t)
	newDaemon(t, map[string]string{"": fmt.Sprintf("[bounces]\nlisten = %q\nmax_connections_per_ip = 1\nproxy_protocol_from = [\"127.0.0.1\"]\n", bounceAddr)})
	dial := func(header []byte) (*rawClient, int, string) {
		t.Helper()
		c, code, text, err := dialProxied(bounceAddr, "", header)
		if c != nil {
			t.Cleanup(func() { c.conn.Close() })
		}
		if err != nil {
			t.Fatalf("bounce listener, header %q: %v", header, err)
		}
		return c, code, text
	}
	a, code, text := dial(proxyV2("192.0.2.25:1"))
	if code != 220 {
		t.Fatalf("first MTA: %d %q, want 220", code, text)
	}
	if _, code, text := dial(proxyV1("192.0.2.26:1")); code != 220 {
		t.Fatalf("second MTA: %d %q, want 220", code, text)
	}
	if _, code, text := dial(proxyV1("192.0.2.25:2")); code != 421 {
		t.Fatalf("first MTA again: %d %q, want 421", code, text)
	}
	if code, text, err := a.cmd("EHLO mta.example"); code != 250 {
		t.Fatalf("EHLO behind the header: %d %q %v", code, text, err)
	}
}
