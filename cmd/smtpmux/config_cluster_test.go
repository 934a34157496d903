package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterConfig: [cluster] is off by default and unchanged single-node;
// every key is checked when it is on.
func TestClusterConfig(t *testing.T) {
	const ep = "[cluster]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n"
	const adv = "advertise_url = \"http://127.0.0.1:8025/\"\n"
	tests := []struct {
		name, toml, wantErr string
		wantAdvertise       string
	}{
		{"off by default", "", "", ""},
		{"on", ep + adv + "node_id = \"n1\"", "", "http://127.0.0.1:8025"},
		// Without advertise_url, fan-outs and forwarded GET /emails/{id}
		// would answer 503 as soon as a second node registers: refused,
		// unless [http] listen names an address other nodes can reach.
		{"no advertise_url, loopback listen", ep + "node_id = \"n1\"", "cluster.advertise_url: is required in cluster mode", ""},
		{"no advertise_url, wildcard listen", "[http]\nlisten = \"0.0.0.0:8025\"\n" + ep + "node_id = \"n1\"", "every interface", ""},
		{"no advertise_url, empty host", "[http]\nlisten = \":8025\"\n" + ep + "node_id = \"n1\"", "every interface", ""},
		{"no advertise_url, IPv6 wildcard", "[http]\nlisten = \"[::]:8025\"\n" + ep + "node_id = \"n1\"", "every interface", ""},
		{"no advertise_url, localhost", "[http]\nlisten = \"localhost:8025\"\n" + ep + "node_id = \"n1\"", "loopback", ""},
		{"advertise_url from a specific listen", "[http]\nlisten = \"10.0.0.1:8025\"\n" + ep + "node_id = \"n1\"", "", "http://10.0.0.1:8025"},
		{"advertise_url from an IPv6 listen", "[http]\nlisten = \"[fd00::1]:8025\"\n" + ep + "node_id = \"n1\"", "", "http://[fd00::1]:8025"},
		{"advertise_url set wins", "[http]\nlisten = \"0.0.0.0:8025\"\n" + ep + "node_id = \"n1\"\nadvertise_url = \"https://node1.example:8443\"", "", "https://node1.example:8443"},
		{"key without endpoints", "[cluster]\nnode_id = \"n1\"", "cluster.node_id", ""},
		{"prefix without endpoints", "[cluster]\nkey_prefix = \"/x/\"", "cluster.key_prefix", ""},
		{"endpoint not a URL", "[cluster]\netcd_endpoints = [\"127.0.0.1:2379\"]\nnode_id = \"n1\"", "cluster.etcd_endpoints", ""},
		{"endpoint with path", "[cluster]\netcd_endpoints = [\"http://h:2379/x\"]\nnode_id = \"n1\"", "cluster.etcd_endpoints", ""},
		{"http with TLS files", ep + "node_id = \"n1\"\netcd_tls_ca = \"/ca.pem\"", "cluster.etcd_endpoints", ""},
		{"cert without key", "[cluster]\netcd_endpoints = [\"https://h:2379\"]\nnode_id = \"n1\"\netcd_tls_cert = \"/c.pem\"", "cluster.etcd_tls_cert", ""},
		{"user without password", ep + "node_id = \"n1\"\netcd_username = \"u\"", "cluster.etcd_username", ""},
		{"prefix without trailing slash", ep + "node_id = \"n1\"\nkey_prefix = \"/smtpmux\"", "cluster.key_prefix", ""},
		{"prefix without leading slash", ep + "node_id = \"n1\"\nkey_prefix = \"smtpmux/\"", "cluster.key_prefix", ""},
		{"prefix root", ep + "node_id = \"n1\"\nkey_prefix = \"/\"", "cluster.key_prefix", ""},
		{"node id with slash", ep + "node_id = \"a/b\"", "cluster.node_id", ""},
		{"node id upper case", ep + "node_id = \"Node1\"", "cluster.node_id", ""},
		{"node id too long", ep + "node_id = \"" + strings.Repeat("a", 33) + "\"", "cluster.node_id", ""},
		{"advertise not a URL", ep + "node_id = \"n1\"\nadvertise_url = \"node1:8025\"", "cluster.advertise_url", ""},
		{"short token", ep + adv + "node_id = \"n1\"\ncluster_token = \"short\"", "cluster.cluster_token", ""},
		{"unknown key", ep + adv + "node_id = \"n1\"\netcd_timeout = 3", "cluster.etcd_timeout: unknown key", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(path, []byte(tc.toml), 0o600)
			cfg, err := loadConfig(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if (cfg.cluster != nil) != strings.Contains(tc.toml, "etcd_endpoints") {
					t.Fatalf("cluster mode %v for %q", cfg.cluster != nil, tc.toml)
				}
				if cfg.cluster != nil && cfg.cluster.advertiseURL != tc.wantAdvertise {
					t.Fatalf("advertise_url %q; want %q", cfg.cluster.advertiseURL, tc.wantAdvertise)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v; want one naming %q", err, tc.wantErr)
			}
		})
	}
}
