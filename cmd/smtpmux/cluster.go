package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/cluster"
	"github.com/smtpmux/smtpmux/cluster/quota"
	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/store"
)

// clusterConfig turns the validated [cluster] section into the cluster
// package's settings.
func (cc *clusterConfig) nodeConfig() cluster.Config {
	return cluster.Config{
		Endpoints: cc.endpoints, TLSCA: cc.tlsCA, TLSCert: cc.tlsCert, TLSKey: cc.tlsKey,
		Username: cc.username, Password: cc.password, Prefix: cc.prefix, NodeID: cc.nodeID,
		AdvertiseURL: cc.advertiseURL, Version: version, StartedAt: time.Now().UTC(),
		IdemTeamBytes: cc.idemTeamBytes,
	}
}

// joinCluster, in cluster mode, connects to etcd, refuses a secret_key
// the cluster's secrets were not sealed with, makes the store a view of
// etcd's state of record and registers the node. Single node, it does
// nothing. The node is d.node: other cluster features (quotas, shared
// health) take its Client, Prefix and ID from there.
func (d *daemon) joinCluster(sealer *store.Sealer) error {
	cc := d.cfg.cluster
	if cc == nil {
		return nil
	}
	ncfg := cc.nodeConfig()
	ncfg.Logger = d.log
	node, err := cluster.Open(ncfg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := node.Join(d.store, sealer); err != nil {
		node.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	node.Register()
	d.node = node
	d.startedAt = ncfg.StartedAt
	d.log.Info("cluster mode", "node_id", node.ID(), "key_prefix", node.Prefix(), "etcd_revision", node.Applied())
	return nil
}

// once runs fn under the cluster's lock name (single node: just runs it),
// for start-up work that every node would otherwise do at the same time:
// creating the default team, its managed account, the first root key.
// fn must find what an earlier holder created and create only the rest.
//
// done says whether this node's view already holds what fn would create:
// then fn runs without the lock (it writes nothing), so a node that
// restarts while etcd is away is not stopped by the lock. Whether the
// view holds *some* records is not enough: once the default team exists
// every node would then skip the lock for the root key, and nodes that
// start together would each create (and print) one.
func (d *daemon) once(name string, done func() bool, fn func() error) error {
	if d.node == nil || done() {
		return fn()
	}
	return d.node.WithLock(name, fn)
}

// clusterView adapts the node to what the API shows.
type clusterView struct {
	n     *cluster.Node
	token string // [cluster] cluster_token
	// peers is the last list of the other nodes Peers got from etcd.
	peers *lastPeers
	// quota answers another node asking whether this one reaches etcd.
	quota *quota.Cluster
}

// AnswerPeer implements admin.QuotaPeer.
func (v clusterView) AnswerPeer(asker string) (down bool, seq, rev int64, live int) {
	if v.quota == nil {
		return false, 0, 0, 0
	}
	down, vouch := v.quota.AnswerPeer(asker)
	return down, vouch.Seq, vouch.Rev, vouch.Live
}

// lastPeers keeps the last list of the other nodes, so that a fan-out
// still reaches them while etcd cannot be reached (the nodes themselves
// still answer).
type lastPeers struct {
	mu    sync.Mutex
	nodes []admin.NodeInfo
	ok    bool
	at    time.Time // when nodes was read from etcd
}

// peersFresh is how long a fan-out reuses the list of nodes instead of
// reading it from etcd again: a node that goes is in it for its lease
// (10 s) anyway, and a report should not cost an etcd read per call.
const peersFresh = time.Second

func (v clusterView) Nodes(ctx context.Context) ([]admin.NodeInfo, error) {
	ms, err := v.n.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]admin.NodeInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, admin.NodeInfo{NodeID: m.NodeID, AdvertiseURL: m.AdvertiseURL, Version: m.Version,
			StartedAt: m.StartedAt, Self: m.NodeID == v.n.ID()})
	}
	return out, nil
}

func (v clusterView) Membership() (string, string) { return v.n.ID(), v.n.State() }

func (v clusterView) WaitApplied(ctx context.Context, rev int64) { v.n.WaitApplied(ctx, rev) }

// Peers lists the other registered nodes; while etcd cannot be reached,
// the last list it got (none yet: the error).
// A degraded node does not try etcd (each try would make the client wait
// for the etcd timeout).
func (v clusterView) Peers(ctx context.Context) ([]admin.NodeInfo, error) {
	p := v.peers
	p.mu.Lock()
	if p.ok && (time.Since(p.at) < peersFresh || v.n.State() != "member") {
		defer p.mu.Unlock()
		return p.nodes, nil
	}
	p.mu.Unlock()
	all, err := v.Nodes(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.ok {
			return p.nodes, nil
		}
		return nil, err
	}
	out := make([]admin.NodeInfo, 0, len(all))
	for _, m := range all {
		if !m.Self {
			out = append(out, m)
		}
	}
	p.nodes, p.ok, p.at = out, true, time.Now()
	return out, nil
}

// forwardClient makes node-to-node calls: short, because a client waits.
var forwardClient = &http.Client{Timeout: 5 * time.Second}

// Forward asks node nodeID's API (its advertise_url) for path with the
// caller's Authorization.
func (v clusterView) Forward(ctx context.Context, nodeID, path, authorization string) (int, []byte, bool, error) {
	ms, err := v.n.Members(ctx)
	if err != nil {
		return 0, nil, false, err
	}
	var base string
	for _, m := range ms {
		if m.NodeID == nodeID {
			base = m.AdvertiseURL
		}
	}
	if base == "" {
		// Not registered (down longer than its lease) or no
		// advertise_url: the message cannot be reached now.
		return 0, nil, false, fmt.Errorf("node %s is not registered with an advertise_url", nodeID)
	}
	status, body, err := v.Ask(ctx, base, path, authorization)
	return status, body, err == nil, err
}

// Ask sends a GET of path to the node whose API is at base, with the
// caller's Authorization, as a node: the forwarded mark, this node's
// applied revision (the receiver catches up to it before it
// authenticates) and the cluster token.
func (v clusterView) Ask(ctx context.Context, base, path, authorization string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set(admin.ForwardedHeader, v.n.ID())
	req.Header.Set(admin.RevisionHeader, strconv.FormatInt(v.n.Applied(), 10))
	if v.token != "" {
		req.Header.Set(admin.TokenHeader, v.token)
	}
	resp, err := forwardClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// clusterOption is the API's ClusterView: nil single node.
func (d *daemon) clusterOption() admin.ClusterView {
	if d.node == nil {
		return nil
	}
	v := clusterView{n: d.node, token: d.cfg.cluster.token, peers: &lastPeers{}}
	if d.gates != nil {
		v.quota = d.gates.quota
	}
	return v
}

// idempotencyRecords is where Idempotency-Key records live: etcd in
// cluster mode (a retry may land on any node), nil (the store) single
// node.
func (d *daemon) idempotencyRecords() httpapi.IdempotencyRecords {
	if d.node == nil {
		return nil
	}
	return d.node.Idempotency()
}

// oauthStates keeps pending OAuth connect flows in etcd in cluster mode
// (the provider's redirect may reach another node than the start); nil
// (in memory) single node.
func (d *daemon) oauthStates(sealer *store.Sealer) oauth.StateStore {
	if d.node == nil {
		return nil
	}
	return cluster.NewOAuthStates(d.node, sealer, oauth.StateTTL, nil)
}

// nodeID is the node_id message IDs carry; "" single node.
func (d *daemon) nodeID() string {
	if d.node == nil {
		return ""
	}
	return d.node.ID()
}

var (
	descClusterMember = prometheus.NewDesc("smtpmux_cluster_member",
		"1 while this node is in the cluster (lease alive, view following etcd), 0 while degraded.", nil, nil)
	descClusterWrites = prometheus.NewDesc("smtpmux_cluster_etcd_write_txns_total",
		"etcd write transactions this node made for management writes of the state of record.", nil, nil)
	descClusterRev = prometheus.NewDesc("smtpmux_cluster_applied_revision",
		"The etcd revision this node's view of the state of record has applied.", nil, nil)
)

// clusterCollector reports the node's standing on each scrape.
type clusterCollector struct{ n *cluster.Node }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descClusterMember
	ch <- descClusterWrites
	ch <- descClusterRev
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	member := 0.0
	if c.n.State() == "member" {
		member = 1
	}
	ch <- prometheus.MustNewConstMetric(descClusterMember, prometheus.GaugeValue, member)
	ch <- prometheus.MustNewConstMetric(descClusterWrites, prometheus.CounterValue, float64(c.n.EtcdWrites()))
	ch <- prometheus.MustNewConstMetric(descClusterRev, prometheus.GaugeValue, float64(c.n.Applied()))
}

// clusterToken is [cluster] cluster_token; "" single node.
func (d *daemon) clusterToken() string {
	if d.cfg.cluster == nil {
		return ""
	}
	return d.cfg.cluster.token
}
