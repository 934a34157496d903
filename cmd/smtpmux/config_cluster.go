package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/smtpmux/smtpmux/cluster"
)

// clusterFileConfig is [cluster] as written. Cluster mode is on when
// etcd_endpoints is set; with it empty (the default) every other key must
// be unset too, so a half-written section is an error instead of a
// single-node daemon that looks clustered.
type clusterFileConfig struct {
	EtcdEndpoints []string `toml:"etcd_endpoints"`
	EtcdTLSCA     string   `toml:"etcd_tls_ca"`
	EtcdTLSCert   string   `toml:"etcd_tls_cert"`
	EtcdTLSKey    string   `toml:"etcd_tls_key"`
	EtcdUsername  string   `toml:"etcd_username"`
	EtcdPassword  string   `toml:"etcd_password"`
	KeyPrefix     string   `toml:"key_prefix"`
	NodeID        string   `toml:"node_id"`
	AdvertiseURL  string   `toml:"advertise_url"`
	ClusterToken  string   `toml:"cluster_token"`
	// IdempotencyTeamBytes is each team's budget of Idempotency-Key
	// records kept in etcd per 24 h; 0 turns it off.
	IdempotencyTeamBytes int64 `toml:"idempotency_team_bytes"`
}

// clusterConfig is the validated [cluster] section.
type clusterConfig struct {
	endpoints          []string
	tlsCA, tlsCert     string
	tlsKey             string
	username, password string
	prefix             string
	nodeID             string
	advertiseURL       string
	token              string
	idemTeamBytes      int64 // < 0: no budget
}

// maxNodeID bounds node_id: it is part of etcd keys and message IDs.
const maxNodeID = 32

// validNodeID reports whether id is lowercase letters, digits and '-',
// starting with a letter or digit: safe in an etcd key (no '/'), in a
// message ID and in a URL path without escaping.
func validNodeID(id string) bool {
	if id == "" || len(id) > maxNodeID || id[0] == '-' {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validateCluster checks [cluster]; it leaves c.cluster nil when cluster
// mode is off.
func (c *config) validateCluster(fc *fileConfig) error {
	cc := fc.Cluster
	if len(cc.EtcdEndpoints) == 0 {
		for key, v := range map[string]string{
			"etcd_tls_ca": cc.EtcdTLSCA, "etcd_tls_cert": cc.EtcdTLSCert, "etcd_tls_key": cc.EtcdTLSKey,
			"etcd_username": cc.EtcdUsername, "etcd_password": cc.EtcdPassword, "node_id": cc.NodeID,
			"advertise_url": cc.AdvertiseURL, "cluster_token": cc.ClusterToken,
		} {
			if v != "" {
				return &configError{"cluster." + key, "is set but cluster.etcd_endpoints is empty (cluster mode is off)"}
			}
		}
		if cc.IdempotencyTeamBytes != cluster.DefaultIdemTeamBytes {
			return &configError{"cluster.idempotency_team_bytes", "is set but cluster.etcd_endpoints is empty (cluster mode is off)"}
		}
		if cc.KeyPrefix != "/smtpmux/" {
			return &configError{"cluster.key_prefix", "is set but cluster.etcd_endpoints is empty (cluster mode is off)"}
		}
		return nil
	}
	out := &clusterConfig{tlsCA: cc.EtcdTLSCA, tlsCert: cc.EtcdTLSCert, tlsKey: cc.EtcdTLSKey,
		username: cc.EtcdUsername, password: cc.EtcdPassword, prefix: cc.KeyPrefix, token: cc.ClusterToken}
	tlsWanted := cc.EtcdTLSCA != "" || cc.EtcdTLSCert != ""
	for _, e := range cc.EtcdEndpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return &configError{"cluster.etcd_endpoints", fmt.Sprintf("%q is not an etcd client URL like \"https://10.0.0.1:2379\"", e)}
		}
		if tlsWanted && u.Scheme != "https" {
			return &configError{"cluster.etcd_endpoints", fmt.Sprintf("%q is plain http but etcd TLS files are set", e)}
		}
		out.endpoints = append(out.endpoints, e)
	}
	if (cc.EtcdTLSCert == "") != (cc.EtcdTLSKey == "") {
		return &configError{"cluster.etcd_tls_cert", "etcd_tls_cert and etcd_tls_key go together"}
	}
	if (cc.EtcdUsername == "") != (cc.EtcdPassword == "") {
		return &configError{"cluster.etcd_username", "etcd_username and etcd_password go together"}
	}
	p := cc.KeyPrefix
	if len(p) < 2 || !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || strings.Contains(p, "//") ||
		strings.ContainsAny(p, " \t\r\n\x00") {
		return &configError{"cluster.key_prefix", fmt.Sprintf("%q must start and end with \"/\", like \"/smtpmux/\"", p)}
	}
	id := cc.NodeID
	if id == "" {
		h, err := os.Hostname()
		if err != nil {
			return &configError{"cluster.node_id", "empty and the host name is unknown: " + err.Error()}
		}
		// Host names may carry upper case and dots; node IDs do not.
		id = strings.ReplaceAll(strings.ToLower(h), ".", "-")
		if !validNodeID(id) {
			return &configError{"cluster.node_id", fmt.Sprintf("empty, and the host name %q does not make one: set it", h)}
		}
	} else if !validNodeID(id) {
		return &configError{"cluster.node_id", fmt.Sprintf("%q: use 1 to %d of a-z, 0-9 and '-', not starting with '-'", id, maxNodeID)}
	}
	out.nodeID = id
	if a := cc.AdvertiseURL; a != "" {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return &configError{"cluster.advertise_url", fmt.Sprintf("%q is not a URL like \"https://node1.example:8025\"", a)}
		}
		out.advertiseURL = strings.TrimSuffix(a, "/")
	} else if derived, why := advertiseFromListen(fc.HTTP.Listen); why == "" {
		out.advertiseURL = derived
	} else {
		return &configError{"cluster.advertise_url", fmt.Sprintf("is required in cluster mode: the other nodes call this node's API there "+
			"(GET /emails/{id}, the cluster-wide logs and reports, which answer 503 without it); http.listen %q %s, "+
			"so set advertise_url to an address they reach, like \"http://10.0.0.1:8025\"", fc.HTTP.Listen, why)}
	}
	switch b := cc.IdempotencyTeamBytes; {
	case b == 0:
		out.idemTeamBytes = -1
	case b < 1<<20:
		return &configError{"cluster.idempotency_team_bytes", "must be 0 (no budget) or at least 1048576 (1 MiB)"}
	default:
		out.idemTeamBytes = b
	}
	if t := cc.ClusterToken; t != "" && len(t) < 16 {
		return &configError{"cluster.cluster_token", "must be at least 16 characters"}
	}
	c.cluster = out
	return nil
}

// advertiseFromListen derives advertise_url from [http] listen when that
// names one address other nodes can reach: a specific, non-loopback IP or
// host name with a fixed port. Otherwise why says why it cannot: a
// wildcard address says nothing of where the node is reached, and a
// loopback one would make every node call itself (its own mail counted
// as another node's part of a report).
func advertiseFromListen(listen string) (url, why string) {
	host, port, err := net.SplitHostPort(listen)
	switch {
	case err != nil:
		return "", "is not host:port"
	case host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		return "", "listens on every interface"
	case loopbackAddr(listen):
		return "", "is a loopback address"
	case port == "0":
		return "", "has no fixed port"
	}
	// The API listener is plain HTTP (TLS, if any, is a proxy in front,
	// whose address only the operator knows).
	return "http://" + net.JoinHostPort(host, port), ""
}
