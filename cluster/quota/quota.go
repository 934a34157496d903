// Package quota makes smtpmux's quotas cluster-wide on etcd: every node
// reserves BLOCKS of a window's quota in etcd transactions and spends them
// locally, so that, in any window, everything all nodes send through a
// provider (or accept for a team, or send with one credential) is at most
// its cap, while etcd sees far fewer writes than messages.
//
// The fixed windows (minute, hour, day) are one etcd key each per counter
// and window start, whose value is the total granted to all nodes; a node
// adds a block to it with a transaction that compares the key's
// ModRevision (retried on conflict). The sliding second window is split
// between the live nodes without any write (see share.go). When etcd
// cannot be reached a node spends the grants it holds, then at most an
// equal share of what was still unallocated when it last heard from etcd
// (see outage.go), so the invariant holds through the outage.
//
// Wiring (cmd/smtpmux, cluster mode):
//
//	q := quota.New(cli, cfg.KeyPrefix, cfg.NodeID, time.Now, logger)
//	q.Start(ctx)               // membership, watch, idle returns
//	schedCfg.Quota = q         // relay.QuotaGate
//	srvCfg.ManagedGate = q.Managed()   // relay.ManagedGate
//	srvCfg.SendLimit = q.SendLimiter(func() int { return cfg.Limits.SendsPerMinute })
//	defer q.Close()            // hands back unused grants
package quota

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// Cluster is one node's view of the cluster-wide quotas. It is safe for
// concurrent use.
type Cluster struct {
	cli    *clientv3.Client
	prefix string // ends in "/"
	node   string
	now    func() time.Time
	log    *slog.Logger

	// refill is the period a block is sized to last at the node's recent
	// rate (the block is twice that rate times this period).
	refill time.Duration
	// rpcTimeout bounds one etcd round trip: past it etcd counts as
	// unreachable for this call.
	rpcTimeout time.Duration
	members    func() []string

	mu    sync.Mutex
	slots map[wkey]*slot
	// rates are each counter's units per second in its previous window,
	// to size the first block of a new one.
	rates map[rateKey]float64
	// seen is the total granted of each window key as last heard from
	// etcd (our own transactions and the watch): what the outage share
	// is computed from.
	seen map[string]int
	// jump is the largest single rise of each window key's total seen:
	// the size of a grant this node may not have heard of yet when etcd
	// goes away (the outage share keeps that much per other node aside).
	jump map[string]int
	// revs is the latest ModRevision of each window key the watch applied:
	// a refill that read an older value reads again.
	revs map[string]int64
	// watchFrom is the revision the watch started after (0: unknown):
	// values no later than it will never come through the watch.
	watchFrom int64
	draws     map[drawKey]int
	// pressed is, per counter, the start of its last ended window that
	// was pressed (a node starved in it): the next one starts with a split.
	pressed map[rateKey]int64
	// wantSeen holds the window keys some node has posted a want for
	// (value: the window's end, to forget it): one want per window.
	wantSeen map[string]time.Time
	// idle is, per counter, the nodes the latest value seen lists as idle
	// (left out of splits), and the window it was seen in.
	idle    map[rateKey]idleNodes
	second  map[string]*sliding
	leases  map[int64]clientv3.LeaseID
	lastMem []string
	// vanished is when each node of lastMem was first found missing from
	// the registrations (see memberGrace).
	vanished map[string]time.Time
	// joinedAt is when this node first saw its own registration; its
	// per-second share is nothing for joinGrace after that, so that every
	// older node has re-read the membership (and shrunk its share) before
	// this one sends: otherwise the old split and the new one overlap.
	joinedAt  time.Time
	joinGrace time.Duration
	// changed is closed and replaced whenever a refill ends or the watch
	// reports a change: blocking acquisitions wait on it.
	changed chan struct{}
	down    bool // the last etcd call failed

	// urls are the live nodes' advertise_urls, from their registrations.
	urls map[string]string
	// peersDown asks the others whether they reach etcd (peers.go);
	// vouchedUntil is until when their last "we cannot either" lets this
	// node spend its outage share, and vouchesHeld the vouch numbers it
	// got (to name in its back marker). vouchedTo is what this node told
	// each asker (its share stays out of grants until settled).
	peersDown PeersDown
	// completeRev is the revision up to which this node has heard every
	// quota change (its start-up read and the watch's events); knownRev the latest grant (a rise of a window's total) its
	// watch delivered. A
	// grant of its own the watch has not yet brought back is not in it:
	// like any grant still on its way to the others' watches when etcd
	// went away, the outage share keeps one such grant per node aside. seenEnd is when each window key in seen
	// ends, to forget it.
	completeRev  int64
	knownRev     int64
	seenEnd      map[string]time.Time
	vouchedUntil time.Time
	// vouchLive is the largest live count the vouchers named: the outage
	// share divides by at least that many.
	vouchLive int
	// vouchUnsaved: this node vouched since it last wrote its record;
	// recorded are the vouchers' records read from etcd, by voucher, and
	// settled the vouch numbers the askers' back markers settle, by
	// voucher and asker (vouch_records.go).
	vouchUnsaved bool
	// asked counts the asks of the peers that got all their answers (a
	// test waits on it).
	asked       int64
	recorded    map[string]map[string]vouch
	settled     map[string]int64
	vouchesHeld map[string]int64
	vouchSeq    int64
	vouchedTo   map[string]vouch

	stats  Stats
	writes atomic.Int64

	// onRefill is told the provider whose block arrived: a pick that was
	// refused while it was on its way may now succeed.
	onRefill func(providerID string)

	// ctx ends with Start's context or Close: background hand backs stop.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Stats are counters for metrics and the figures in docs/cluster.md.
type Stats struct {
	// Writes counts etcd writes (successful transactions that put or
	// delete, lease grants).
	Writes int64
	// Conflicts counts transactions that lost a race and were retried.
	Conflicts int64
	// OutageUnits counts units spent past held grants while etcd was
	// unreachable (the conservative share).
	OutageUnits int64
	// OutageRefusals counts takes refused because the share was spent.
	OutageRefusals int64
	// Returned counts units handed back (idle, shutdown, another node
	// starved).
	Returned int64
	// BlockWrites, HandBackWrites, WantWrites and LeaseWrites break
	// Writes down by kind (draws of {min,max} caps are the rest);
	// Splits counts the block writes that granted the remainder of a
	// window to all live nodes at once.
	BlockWrites, HandBackWrites, WantWrites, LeaseWrites, Splits int64
}

// Option changes a default of New.
type Option func(*Cluster)

// WithMembers sets where the live node IDs come from (the membership
// registry of the cluster package). By default New reads the keys under
// <prefix>nodes/ every two seconds.
func WithMembers(f func() []string) Option { return func(c *Cluster) { c.members = f } }

// WithJoinGrace sets how long after this node first sees itself in the
// membership it leaves its per-second share unused (default 3 s: the
// others' membership refresh, 2 s, and a second's margin).
func WithJoinGrace(d time.Duration) Option { return func(c *Cluster) { c.joinGrace = d } }

// WithRPCTimeout bounds one etcd call (default 2 s).
func WithRPCTimeout(d time.Duration) Option { return func(c *Cluster) { c.rpcTimeout = d } }

// New returns the quota view of node nodeID on cli under prefix (e.g.
// "/smtpmux/"); keys live under <prefix>quota/. now nil is time.Now.
// Call Start before use and Close at shutdown.
func New(cli *clientv3.Client, prefix, nodeID string, now func() time.Time, log *slog.Logger, opts ...Option) *Cluster {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	c := &Cluster{cli: cli, prefix: prefix, node: nodeID, now: now, log: log,
		refill: 10 * time.Second, rpcTimeout: 2 * time.Second, joinGrace: 3 * time.Second,
		slots: map[wkey]*slot{}, rates: map[rateKey]float64{}, seen: map[string]int{}, jump: map[string]int{}, revs: map[string]int64{},
		draws: map[drawKey]int{}, second: map[string]*sliding{}, leases: map[int64]clientv3.LeaseID{}, vanished: map[string]time.Time{},
		pressed: map[rateKey]int64{}, wantSeen: map[string]time.Time{}, idle: map[rateKey]idleNodes{}, urls: map[string]string{},
		vouchesHeld: map[string]int64{}, vouchedTo: map[string]vouch{}, seenEnd: map[string]time.Time{},
		recorded: map[string]map[string]vouch{}, settled: map[string]int64{},
		changed: make(chan struct{}), ctx: context.Background()}
	// Vouch numbers must rise across restarts: an asker's back marker
	// (it lives 25 h) names the last number it got from this node, and a
	// new process counting from 1 again would find its new vouches
	// settled by an old marker. Microseconds since the epoch at start
	// are past any number an earlier run can have reached (a few answers
	// a second), and stay exact in a JSON number.
	c.vouchSeq = now().UnixMicro()
	for _, o := range opts {
		o(c)
	}
	return c
}

// Start reads the membership, starts watching the quota keys and the
// background loop that hands back idle grants. ctx ends them (as does
// Close).
func (c *Cluster) Start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	c.refreshMembers(ctx)
	from := c.watchRev(ctx) // before any refill can read a value (and the vouchers' records)
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.watch(ctx, from) }()
	go func() { defer c.wg.Done(); c.loop(ctx) }()
}

// Close hands back the unused grants of current windows and stops the
// background work.
func (c *Cluster) Close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	c.returnIdle(context.Background(), true)
}

// OnRefill sets f to be called (from a background goroutine) with the
// provider whose block just arrived. The relay wakes that provider's
// team: its messages were told "not now" while the block was fetched.
func (c *Cluster) OnRefill(f func(providerID string)) {
	c.mu.Lock()
	c.onRefill = f
	c.mu.Unlock()
}

// Stats returns the counters so far.
func (c *Cluster) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Writes = c.writes.Load()
	return s
}

// Down reports whether the last etcd call failed (readyz: degraded).
func (c *Cluster) Down() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// loop refreshes the membership and hands back idle grants.
func (c *Cluster) loop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n++
		if n%2 == 0 {
			c.refreshMembers(ctx)
		}
		c.askPeers(ctx)
		c.settleVouches(ctx)
		c.returnIdle(ctx, false)
		c.settleIdle()
	}
}

// liveNodes returns the live node IDs, sorted, always including this one.
func (c *Cluster) liveNodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveNodesLocked()
}

func (c *Cluster) liveNodesLocked() []string {
	var ids []string
	if c.members != nil {
		ids = c.members()
	} else {
		ids = c.lastMem
	}
	out := []string{c.node}
	for _, id := range ids {
		if id != c.node {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// refreshMembers reads the node registrations (a read, not a write), with
// their advertise_urls (where to ask a peer whether it reaches etcd). On
// failure the last seen list stays: "live nodes last seen", and etcd
// counts as unreachable; an answer counts as reachable again.
func (c *Cluster) refreshMembers(ctx context.Context) {
	if c.members != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	p := c.prefix + "nodes/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		c.failed(err)
		return
	}
	var ids []string
	urls := map[string]string{}
	for _, kv := range resp.Kvs {
		if id := strings.TrimPrefix(string(kv.Key), p); id != "" && !strings.Contains(id, "/") {
			ids = append(ids, id)
			var m struct {
				URL string `json:"advertise_url"`
			}
			if json.Unmarshal(kv.Value, &m) == nil {
				urls[id] = m.URL
			}
		}
	}
	c.mu.Lock()
	c.setDown(false)
	c.lastMem = c.withVanished(ids, c.now())
	for id := range c.urls {
		if _, ok := urls[id]; !ok && !slices.Contains(c.lastMem, id) {
			delete(c.urls, id) // gone past its grace
		}
	}
	for id, u := range urls {
		c.urls[id] = u
	}
	if c.joinedAt.IsZero() && slices.Contains(ids, c.node) {
		c.joinedAt = c.now()
	}
	c.mu.Unlock()
}

// memberGrace is how long a node whose registration vanished still counts
// as live. Every share (a per-second cap's split, the outage share) is
// divided by the live count, and a share that grows on one node while the
// others still use the old split adds up to more than the cap. After etcd
// was away longer than the membership lease, every registration vanishes
// at once and the nodes register again one by one over a second or two:
// a node that read the list then would think itself (nearly) alone and
// spend the whole cap. A node that really died is dropped this much later
// (its lease, 10 s, had already passed): its share stays unused meanwhile.
const memberGrace = 10 * time.Second

// withVanished is ids plus the nodes of the last list that have been
// missing from the registrations for less than memberGrace. c.mu is held.
func (c *Cluster) withVanished(ids []string, now time.Time) []string {
	out := append([]string(nil), ids...)
	for _, id := range c.lastMem {
		if slices.Contains(ids, id) {
			delete(c.vanished, id)
			continue
		}
		since, ok := c.vanished[id]
		if !ok {
			since = now
			c.vanished[id] = now
		}
		if now.Sub(since) < memberGrace {
			out = append(out, id)
		} else {
			delete(c.vanished, id)
		}
	}
	return out
}

// signal wakes whoever waits for a change. c.mu is held.
func (c *Cluster) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// setDown records whether etcd answered. c.mu is held.
func (c *Cluster) setDown(down bool) {
	if down != c.down {
		if down {
			c.log.Warn("etcd unreachable: quotas fall back to held grants and a conservative share", "event", "quota_degraded")
		} else {
			c.log.Info("etcd reachable again: cluster quotas back", "event", "quota_recovered")
		}
	}
	c.down = down
}

// windowEnd is the end of the fixed window w starting at start.
func windowEnd(w routing.Window, start time.Time) time.Time {
	switch w {
	case routing.Minute:
		return start.Add(time.Minute)
	case routing.Hour:
		return start.Add(time.Hour)
	case routing.Day:
		return start.AddDate(0, 0, 1)
	}
	return start.Add(time.Second)
}
