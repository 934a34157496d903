package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyProtocolConfig: proxy_protocol_from is off by default, takes
// addresses and canonical prefixes, and a bad entry fails check-config
// naming its key — including entries that would let any client choose
// its own address.
func TestProxyProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		name, toml, wantErr string
	}{
		{"default off", "", ""},
		{"smtp address and prefix", "[smtp]\nproxy_protocol_from = [\"10.0.0.5\", \"10.0.1.0/24\", \"2001:db8::/64\"]", ""},
		{"http and bounces", "[http]\nproxy_protocol_from = [\"127.0.0.1/32\"]\n[bounces]\nproxy_protocol_from = [\"::1\"]", ""},
		{"smtp not an address", "[smtp]\nproxy_protocol_from = [\"haproxy.internal\"]", `smtp.proxy_protocol_from: "haproxy.internal" is not an IP address`},
		{"smtp bad prefix", "[smtp]\nproxy_protocol_from = [\"10.0.0.0/40\"]", "smtp.proxy_protocol_from: \"10.0.0.0/40\" is not a CIDR prefix"},
		{"smtp host bits", "[smtp]\nproxy_protocol_from = [\"10.0.0.5/24\"]", "smtp.proxy_protocol_from: \"10.0.0.5/24\" has host bits set"},
		{"smtp everyone", "[smtp]\nproxy_protocol_from = [\"0.0.0.0/0\"]", "smtp.proxy_protocol_from: \"0.0.0.0/0\" trusts every address"},
		{"http everyone v6", "[http]\nproxy_protocol_from = [\"::/0\"]", "http.proxy_protocol_from: \"::/0\" trusts every address"},
		{"bounces empty entry", "[bounces]\nproxy_protocol_from = [\"\"]", "bounces.proxy_protocol_from"},
		{"not a list", "[smtp]\nproxy_protocol_from = \"10.0.0.5\"", "proxy_protocol_from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(path, []byte(tc.toml), 0o600)
			var out, errOut bytes.Buffer
			code := run([]string{"check-config", "--config", path}, &out, &errOut)
			if tc.wantErr == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
				return
			}
			if code != 1 || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 1 naming %q", code, errOut.String(), tc.wantErr)
			}
		})
	}
	cfg, err := loadConfig("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.proxyFrom.smtp) + len(cfg.proxyFrom.http) + len(cfg.proxyFrom.bounces); n != 0 {
		t.Fatalf("the example config trusts %d PROXY sources; the default must be none", n)
	}
}
