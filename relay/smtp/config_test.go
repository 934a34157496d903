package smtp

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/internal/testpeer"
)

func TestNewValidation(t *testing.T) {
	ok := Config{Host: "smtp.example.com", Port: 587, Protocol: "starttls"}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		err    string // "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"protocol case and spaces", func(c *Config) { c.Protocol = " SSL " }, ""},
		{"ipv6 in brackets", func(c *Config) { c.Host = "[::1]" }, ""},
		{"no host", func(c *Config) { c.Host = " " }, "host is required"},
		{"host with port", func(c *Config) { c.Host = "smtp.example.com:587" }, "must not include a port"},
		{"host with space", func(c *Config) { c.Host = "smtp example.com" }, "invalid host"},
		{"port 0", func(c *Config) { c.Port = 0 }, "out of range"},
		{"port 65536", func(c *Config) { c.Port = 65536 }, "out of range"},
		{"no protocol", func(c *Config) { c.Protocol = "" }, "protocol is required"},
		{"bad protocol", func(c *Config) { c.Protocol = "smtps" }, "unknown protocol"},
		{"user without password", func(c *Config) { c.Username = "u" }, "set together"},
		{"password without user", func(c *Config) { c.Password = "p" }, "set together"},
		{"newline in password", func(c *Config) { c.Username, c.Password = "u", "p\r\nQUIT" }, "line breaks"},
		{"bad mechanism", func(c *Config) { c.AuthMech = "CRAM-MD5" }, "unsupported auth mechanism"},
		{"bad helo", func(c *Config) { c.HeloName = "a b" }, "invalid helo"},
		{"negative timeout", func(c *Config) { c.DataTimeout = -time.Second }, "negative data timeout"},
		{"negative max conns", func(c *Config) { c.MaxConns = -1 }, "negative max conns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			_, err := New(cfg)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("New: %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	p, err := New(Config{Host: "smtp.example.com", Port: 465, Protocol: "TLS"})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config()
	if c.Protocol != smtpproto.TLS || c.DialTimeout != DefaultDialTimeout || c.CommandTimeout != DefaultCommandTimeout ||
		c.DataTimeout != DefaultDataTimeout || c.MaxConns != DefaultMaxConns || c.IdleTimeout != DefaultIdleTimeout ||
		c.TLSConfig.ServerName != "smtp.example.com" || c.HeloName == "" || c.Addr() != "smtp.example.com:465" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestTestLatency(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{TLS: testpeer.TLSImplicit})
	p := newProvider(t, configFor(s, testpeer.TLSImplicit, "", ""))
	d, err := p.Test(ctxTimeout(t, 5*time.Second))
	if err != nil || d <= 0 {
		t.Fatalf("Test = %v, %v", d, err)
	}
	if n := len(p.slots); n != 0 {
		t.Errorf("Test took %d pool slots", n)
	}
}
