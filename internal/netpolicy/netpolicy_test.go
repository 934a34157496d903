package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestInternal(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		internal bool
	}{
		{"127.0.0.1", true}, {"127.255.255.254", true}, {"10.1.2.3", true}, {"172.16.0.1", true},
		{"192.168.1.1", true}, {"169.254.169.254", true}, {"100.64.0.1", true}, {"0.0.0.0", true},
		{"255.255.255.255", true}, {"224.0.0.1", true}, {"198.18.0.1", true},
		{"::1", true}, {"::", true}, {"fe80::1", true}, {"fc00::1", true}, {"fd00:ec2::254", true},
		{"fec0::1", true}, {"ff02::1", true},
		{"::ffff:127.0.0.1", true}, {"::ffff:10.0.0.1", true}, {"::ffff:0:7f00:1", true}, // mapped, translated
		{"::127.0.0.1", true}, {"::7f00:1", true}, {"::8.8.8.8", true}, // IPv4-compatible: never routed
		{"64:ff9b::127.0.0.1", true}, {"64:ff9b::a9fe:a9fe", true}, {"64:ff9b::10.0.0.1", true},
		{"64:ff9b:1::8.8.8.8", true}, {"64:ff9b:1:ffff::1", true},
		{"2002:7f00:1::1", true}, {"2002:a00:1::", true}, {"2002:a9fe:a9fe::1", true},
		{"2001:0:4136:e378::1", true}, {"2001:db8::1", true},
		{"8.8.8.8", false}, {"93.184.216.34", false}, {"2606:4700::1111", false},
		{"::ffff:8.8.8.8", false}, {"64:ff9b::8.8.8.8", false}, {"2002:808:808::1", false},
	} {
		if got := Internal(netip.MustParseAddr(tc.addr)); got != tc.internal {
			t.Errorf("Internal(%s) = %v, want %v", tc.addr, got, tc.internal)
		}
	}
}

// TestCheckHostHostile is what a hostile tenant writes into smtp_host or a
// webhook URL's host to reach the operator's network.
func TestCheckHostHostile(t *testing.T) {
	for _, tc := range []struct {
		host string
		want error
	}{
		{"127.0.0.1", ErrInternalHost}, {"127.0.0.1.", ErrInternalHost}, {"10.0.0.5", ErrInternalHost},
		{"169.254.169.254", ErrInternalHost}, {"::1", ErrInternalHost}, {"[::1]", ErrInternalHost},
		{"[::ffff:127.0.0.1]", ErrInternalHost}, {"::ffff:7f00:1", ErrInternalHost}, {"0:0:0:0:0:0:0:1", ErrInternalHost},
		{"[fe80::1%25eth0]", ErrInternalHost}, {"fe80::1%eth0", ErrInternalHost}, {"[0::]", ErrInternalHost},
		{"0.0.0.0", ErrInternalHost}, {"64:ff9b::7f00:1", ErrInternalHost}, {"2002:7f00:1::", ErrInternalHost},
		{"fec0::1", ErrInternalHost}, {"::127.0.0.1", ErrInternalHost},
		{"2130706433", ErrInternalHost}, {"0177.0.0.1", ErrInternalHost}, {"0x7f.1", ErrInternalHost},
		{"0x7f000001", ErrInternalHost}, {"127.1", ErrInternalHost}, {"017700000001", ErrInternalHost},
		{"10.1", ErrInternalHost}, {"0", ErrInternalHost}, {"0251.0376.0251.0376", ErrInternalHost},
		{"localhost", ErrLocalName}, {"LOCALHOST", ErrLocalName}, {"localhost.", ErrLocalName},
		{"localhost..", ErrLocalName}, {"smtp.localhost", ErrLocalName}, {"mailhog", ErrLocalName},
		{"metadata.google.internal", ErrLocalName}, {"metadata.google.internal.", ErrLocalName},
		{"printer.local", ErrLocalName}, {"", ErrLocalName}, {".", ErrLocalName},
		{"134744072", ErrNumericName}, {"1.2.3.999", ErrNumericName}, {"8.8.8.08", ErrNumericName},
		{"a.b.123", ErrNumericName}, {"::1::", ErrNumericName},
	} {
		if got := CheckHost(tc.host); !errors.Is(got, tc.want) {
			t.Errorf("CheckHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	for _, ok := range []string{"smtp.example.com", "smtp.example.com.", "SMTP.Example.COM", "8.8.8.8",
		"2606:4700::1111", "[2606:4700::1111]", "email-smtp.us-east-1.amazonaws.com", "mail.1and1.com", "x.123abc"} {
		if err := CheckHost(ok); err != nil {
			t.Errorf("CheckHost(%q) = %v, want nil", ok, err)
		}
	}
}

func TestAWSSESEndpoint(t *testing.T) {
	for _, ok := range []string{"https://email.us-east-1.amazonaws.com", "https://email.eu-west-1.amazonaws.com/",
		"https://email-fips.us-gov-west-1.amazonaws.com", "https://email.cn-north-1.amazonaws.com.cn",
		"https://EMAIL.us-east-1.amazonaws.com:443"} {
		if !AWSSESEndpoint(ok) {
			t.Errorf("AWSSESEndpoint(%q) = false", ok)
		}
	}
	for _, bad := range []string{"http://email.us-east-1.amazonaws.com", "https://127.0.0.1:8005",
		"https://email.us-east-1.amazonaws.com.evil.example", "https://evil.example/email.us-east-1.amazonaws.com",
		"https://email.us-east-1.amazonaws.com:8443", "https://u:p@email.us-east-1.amazonaws.com",
		"https://email.us-east-1.amazonaws.com/x", "https://email.localhost.amazonaws.com", "https://sqs.us-east-1.amazonaws.com",
		"https://email.us-east-1.amazonaws.com?x=1", "email.us-east-1.amazonaws.com"} {
		if AWSSESEndpoint(bad) {
			t.Errorf("AWSSESEndpoint(%q) = true", bad)
		}
	}
}

// TestDialerRefusesNamesResolvingInward: the check at dial time judges the
// address a name resolved to, so "localhost" (which CheckHost refuses by
// name) and any other name pointing at 127.0.0.1 are refused before
// connect, with an error that names no address; with allowPrivate the same
// dial connects.
func TestDialerRefusesNamesResolvingInward(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, host := range []string{"localhost", "127.0.0.1", "[::ffff:127.0.0.1]"} {
		addr := host + ":" + port
		_, err := DialFunc(5*time.Second, false)(ctx, "tcp", addr)
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("dial %s: %v, want ErrRefused", addr, err)
		}
	}
	c, err := DialFunc(5*time.Second, true)(ctx, "tcp", "localhost:"+port)
	if err != nil {
		t.Fatalf("allowPrivate dial: %v", err)
	}
	c.Close()
}
