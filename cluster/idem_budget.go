package cluster

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultIdemTeamBytes is the default per-team budget of Idempotency-Key
// records kept in etcd per 24 h (cluster.idempotency_team_bytes): 64 MiB,
// about 55,000 keyed sends a day at ~1.2 KB a record, so that 30 teams at
// their budget still leave etcd's default 2 GiB quota room for every
// team's management writes.
const DefaultIdemTeamBytes = 64 << 20

// recordOverhead is what etcd spends on a record beyond its key and
// value (revision, lease, index), counted so that many tiny records are
// not free.
const recordOverhead = 128

// idemBudget bounds the etcd space one team's idempotency records take:
// every node counts, in memory, the bytes of the records it kept for each
// team in each hour, and admits a new claim while its last 24 hours stay
// within its share of the team's budget (the budget split between the
// live nodes). Counting per node costs no etcd round trip; a balancer
// that spreads one team over the nodes spreads its records as well, and
// a node that restarts forgets its counts, which at worst lets a team
// keep one more budget's worth (the restart is the operator's, not the
// tenant's). In-flight claims are not charged (they end with the request
// or the membership lease), so concurrent requests can overshoot by one
// record each.
type idemBudget struct {
	n     *Node
	total int64 // bytes per team per 24 h, all nodes; ≤ 0: no budget

	mu    sync.Mutex
	teams map[string]*[24]hourUse

	nodesMu sync.Mutex // held over the recount, not under mu
	nodes   int        // live nodes when last counted
	at      time.Time  // when nodes was counted
}

// hourUse is the bytes kept in one hour (unix hour number).
type hourUse struct {
	hour  int64
	bytes int64
}

// nodesEvery is how often the live nodes are recounted for the split.
const nodesEvery = 30 * time.Second

// share is this node's part of the budget.
func (b *idemBudget) share() int64 {
	b.nodesMu.Lock()
	defer b.nodesMu.Unlock()
	if time.Since(b.at) > nodesEvery || b.nodes == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), b.n.opTimeout)
		resp, err := b.n.cli.Get(ctx, b.n.cfg.Prefix+"nodes/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			b.nodes, b.at = max(int(resp.Count), 1), time.Now()
		} else if b.nodes == 0 {
			b.nodes = 1 // the claim itself will say etcd is away
		}
	}
	return b.total / int64(b.nodes)
}

// admit reports whether team may have one more record kept now; when
// not, how long until its oldest counted hour leaves the 24 h window.
func (b *idemBudget) admit(team string, now time.Time) (bool, time.Duration) {
	if b.total <= 0 || team == "" {
		return true, 0
	}
	b.mu.Lock()
	use := b.teams[team]
	h := now.Unix() / 3600
	var sum int64
	oldest := h
	if use != nil {
		for _, u := range use {
			if u.bytes > 0 && u.hour > h-24 {
				sum += u.bytes
				oldest = min(oldest, u.hour)
			}
		}
	}
	b.mu.Unlock()
	if sum == 0 || sum < b.share() {
		return true, 0
	}
	return false, time.Unix((oldest+24)*3600, 0).Sub(now)
}

// charge counts a record of size bytes kept for team now.
func (b *idemBudget) charge(team string, now time.Time, size int) {
	if b.total <= 0 || team == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	use := b.teams[team]
	if use == nil {
		use = new([24]hourUse)
		b.teams[team] = use
	}
	h := now.Unix() / 3600
	u := &use[h%24]
	if u.hour != h {
		*u = hourUse{hour: h}
	}
	u.bytes += int64(size + recordOverhead)
}
