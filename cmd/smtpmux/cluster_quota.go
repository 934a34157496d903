package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpmux/smtpmux/cluster/health"
	"github.com/smtpmux/smtpmux/cluster/quota"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// clusterGates are the cluster-wide quotas and the shared breaker health
// of a node in cluster mode (docs/cluster.md, "Quotas and provider
// health"); nil single node, where the relay decides alone and keeps its
// breakers in the bbolt file.
type clusterGates struct {
	quota  *quota.Cluster
	health *health.Shared
	// ctx ends the quota's background work and the health watch; they
	// stop in close, after the scheduler has drained.
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	watch  sync.WaitGroup
}

// newClusterGates builds the quota and health views on the node's etcd
// client, key prefix and node ID, and starts the quota's membership
// reading, watch and idle hand-back. The quota reads the live node IDs
// from the same registrations as GET /operator/nodes (<prefix>nodes/),
// which it refreshes itself every two seconds: calling Members from
// under its lock would put an etcd round trip in every quota check.
func (d *daemon) newClusterGates() *clusterGates {
	if d.node == nil {
		return nil
	}
	g := &clusterGates{log: d.log}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	cli, prefix, id := d.node.Client(), d.node.Prefix(), d.node.ID()
	g.quota = quota.New(cli, prefix, id, time.Now, d.log, quota.WithPeersDown(peersDownOverHTTP(id, d.cfg.cluster.token)))
	g.quota.Start(g.ctx)
	g.health = health.New(cli, prefix, id, time.Now, d.log)
	return g
}

// schedulerConfig sets the scheduler's seams to the cluster's.
func (g *clusterGates) schedulerConfig(c *relay.SchedulerConfig) {
	if g == nil {
		return
	}
	c.Quota, c.Breakers = g.quota, startBreakers{g.health, g.log}
}

// startBreakers is the shared health as the scheduler's BreakerStore,
// except that etcd out of reach at start is not a reason to refuse to
// start (a node restarted while etcd is away runs on its last view, as
// it does for the state of record): the node starts with closed breakers
// and the health watch brings the cluster's states when etcd answers.
type startBreakers struct {
	*health.Shared
	log *slog.Logger
}

// Breakers implements relay.BreakerStore.
func (b startBreakers) Breakers() (map[string]routing.Breaker, error) {
	m, err := b.Shared.Breakers()
	if err != nil {
		b.log.Warn("shared breaker states unreadable at start (etcd unreachable?); starting with closed breakers until the health watch catches up", "err", err)
		return map[string]routing.Breaker{}, nil
	}
	return m, nil
}

// serverConfig sets the SMTP server's (and the HTTP send API's) seams:
// the managed account's daily count and the per-credential limit.
func (g *clusterGates) serverConfig(c *relay.Config, sendsPerMinute func() int) {
	if g == nil {
		return
	}
	c.ManagedGate = g.quota.Managed()
	c.SendLimit = g.quota.SendLimiter(sendsPerMinute)
}

// watchHealth applies the breaker states other nodes store to sched.
func (g *clusterGates) watchHealth(sched *relay.Scheduler) {
	if g == nil {
		return
	}
	g.watch.Add(1)
	go func() { defer g.watch.Done(); g.health.Watch(g.ctx, sched.ApplyBreaker) }()
}

// close stops the watch and hands back the quota's unused grants. It runs
// after the scheduler drained and the listeners stopped (nothing spends
// any more), before the etcd client closes (the hand-back is a write).
func (g *clusterGates) close() {
	if g == nil {
		return
	}
	g.cancel()
	g.watch.Wait()
	g.quota.Close()
}

var (
	descQuotaDown = prometheus.NewDesc("smtpmux_cluster_quota_down",
		"1 while the cluster quotas cannot reach etcd (held grants are spent, and a conservative share while every other node vouches that etcd is away for it too), else 0.", nil, nil)
	descQuotaVouched = prometheus.NewDesc("smtpmux_cluster_quota_vouched",
		"1 while etcd is unreachable and every other node has just said it cannot reach it either: only then is the conservative share spent past held grants.", nil, nil)
	descQuotaWrites = prometheus.NewDesc("smtpmux_cluster_quota_etcd_writes_total",
		"etcd writes the cluster quotas made: block grants, hand-backs, want keys, lease grants.", nil, nil)
	descQuotaConflicts = prometheus.NewDesc("smtpmux_cluster_quota_conflicts_total",
		"Quota transactions that lost a race with another node and were retried.", nil, nil)
	descQuotaOutageUnits = prometheus.NewDesc("smtpmux_cluster_quota_outage_units_total",
		"Quota units spent past held grants while etcd was unreachable.", nil, nil)
	descQuotaOutageRefusals = prometheus.NewDesc("smtpmux_cluster_quota_outage_refusals_total",
		"Sends or acceptances refused while etcd was unreachable because the conservative share was spent.", nil, nil)
	descQuotaReturned = prometheus.NewDesc("smtpmux_cluster_quota_returned_units_total",
		"Quota units handed back to the cluster (idle, shutdown, another node starved).", nil, nil)
	descQuotaWritesByKind = prometheus.NewDesc("smtpmux_cluster_quota_etcd_writes_by_kind_total",
		"The quota's etcd writes by kind: block (a grant, splits included), hand_back, want, lease.", []string{"kind"}, nil)
	descQuotaSplits = prometheus.NewDesc("smtpmux_cluster_quota_splits_total",
		"Block writes that granted what was left of a window to all live nodes at once (a window near its cap).", nil, nil)
)

// quotaCollector reports the cluster quotas' standing on each scrape.
type quotaCollector struct{ q *quota.Cluster }

func (c quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQuotaDown, descQuotaVouched, descQuotaWrites, descQuotaConflicts,
		descQuotaOutageUnits, descQuotaOutageRefusals, descQuotaReturned, descQuotaWritesByKind, descQuotaSplits} {
		ch <- d
	}
}

func (c quotaCollector) Collect(ch chan<- prometheus.Metric) {
	down := 0.0
	if c.q.Down() {
		down = 1
	}
	s := c.q.Stats()
	ch <- prometheus.MustNewConstMetric(descQuotaDown, prometheus.GaugeValue, down)
	vouched := 0.0
	if c.q.Vouched() {
		vouched = 1
	}
	ch <- prometheus.MustNewConstMetric(descQuotaVouched, prometheus.GaugeValue, vouched)
	ch <- prometheus.MustNewConstMetric(descQuotaWrites, prometheus.CounterValue, float64(s.Writes))
	ch <- prometheus.MustNewConstMetric(descQuotaConflicts, prometheus.CounterValue, float64(s.Conflicts))
	ch <- prometheus.MustNewConstMetric(descQuotaOutageUnits, prometheus.CounterValue, float64(s.OutageUnits))
	ch <- prometheus.MustNewConstMetric(descQuotaOutageRefusals, prometheus.CounterValue, float64(s.OutageRefusals))
	ch <- prometheus.MustNewConstMetric(descQuotaReturned, prometheus.CounterValue, float64(s.Returned))
	for kind, n := range map[string]int64{"block": s.BlockWrites, "hand_back": s.HandBackWrites, "want": s.WantWrites, "lease": s.LeaseWrites} {
		ch <- prometheus.MustNewConstMetric(descQuotaWritesByKind, prometheus.CounterValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(descQuotaSplits, prometheus.CounterValue, float64(s.Splits))
}
