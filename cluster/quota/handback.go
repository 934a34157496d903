package quota

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// Unused grants go back to etcd in three cases, so that a node never sits
// on quota another node needs: the node went idle on a window that still
// has a while to run and is short of units; a node starves in the window
// (a want key stands, or the window was split as contended) and this one
// has not asked for it for a moment; or the node shuts down. A window that ends needs nothing: the next window is a new key,
// and the old one expires with its lease.
//
// A node that holds units and keeps spending them does not hand them back
// to a starving node: under a pressed cap every node starves in turn, and
// units passed back and forth would cost writes without sending more.

// idleAfter is how long without a take before a node hands back what it
// holds of a window, in refill periods.
const idleAfter = 2

// wantPrefix holds the "I starve" markers: quota-want/<node>/<window key>.
func (c *Cluster) wantPrefix() string { return c.prefix + "quota-want/" }

// wantGrace is how long a node that sees a want waits for an ask of its
// own before it hands back what it holds of the window: half the RPC
// timeout (1 s by default), the scale at which a node whose mail is paced
// by a per-second cap asks again. Acquire waits a whole RPC timeout for
// the hand backs.
func (c *Cluster) wantGrace() time.Duration { return c.rpcTimeout / 2 }

// postWant tells the other nodes that this node found window key full
// while they may hold unused grants of it. One write, by the first node
// that starves in the window. empty: this node has had nothing of the
// window (a split left it out); the value then ends in wantEmpty.
func (c *Cluster) postWant(ctx context.Context, k wkey, key string, end time.Time, empty bool) {
	lease, err := c.lease(ctx, end)
	if err != nil {
		c.failed(err)
		return
	}
	v := strconv.FormatInt(c.now().UnixNano(), 10)
	if empty {
		v += wantEmpty
	}
	if _, err := c.cli.Put(ctx, c.wantPrefix()+c.node+"/"+key, v, clientv3.WithLease(lease)); err != nil {
		c.failed(err)
		return
	}
	c.writes.Add(1)
	c.mu.Lock()
	c.stats.WantWrites++
	c.mu.Unlock()
}

// returnIdle hands back idle grants (all of them when final), and forgets
// the slots of ended windows, keeping their rate for the next block size
// and whether they were pressed for the next window's first block.
func (c *Cluster) returnIdle(ctx context.Context, final bool) {
	now := c.now()
	var back []wkey
	c.mu.Lock()
	for key, end := range c.seenEnd {
		if !now.Before(end) && !c.ownsKey(key) {
			delete(c.seen, key)
			delete(c.jump, key)
			delete(c.revs, key)
			delete(c.seenEnd, key)
		}
	}
	for k, s := range c.slots {
		if !now.Before(s.end) {
			if !s.fetching {
				rk := rateKey{k.name, k.w}
				c.rates[rk] = float64(s.used) / s.end.Sub(s.start).Seconds()
				if s.starved || s.contended {
					c.pressed[rk] = k.start
				}
				delete(c.slots, k)
				delete(c.seen, s.key)
				delete(c.jump, s.key)
				delete(c.revs, s.key)
			}
			continue
		}
		// Idle units go back only when the window is short of them: while
		// what is left unallocated covers what this node holds, any node
		// can have as much from etcd directly, and a hand back would be a
		// write for nothing.
		idle := now.Sub(latest(s.lastTake, s.since)) >= idleAfter*c.refill && s.end.Sub(now) > c.refill &&
			s.cap-c.seen[s.key] < s.held()
		// A node starved in this window (another, or this one earlier),
		// or what is left unallocated would not cover what this node
		// holds, and this one has not asked since the last tick: what it
		// holds lies idle where another node may need it (its want, one
		// per window, may have come before this node ran out of mail).
		short := s.cap-c.seen[s.key] < s.held()
		stale := (s.contended || s.starved || short) && s.asks == s.asksAtTick
		s.asksAtTick = s.asks
		// A lost transaction (lost.go) is settled by the hand back first
		// when this node stops: a grant etcd applied goes back too.
		if (s.held() > 0 || (final && s.lost != nil)) && !s.fetching && (final || idle || stale) && !c.down {
			back = append(back, k)
		}
	}
	for key, end := range c.wantSeen {
		if !now.Before(end) {
			delete(c.wantSeen, key)
		}
	}
	c.mu.Unlock()
	for _, k := range back {
		if c.Down() {
			// One hand back found etcd away: the others would each wait
			// out the RPC timeout too (a node stopping while etcd is
			// down would take seconds per window it holds).
			return
		}
		c.handBack(ctx, k, !final)
	}
}

// handBackIfIdle hands back what this node holds of window k if it has
// not asked for the window since its asks counter was at `asks` (when a
// want arrived, or units came back from a send that failed). want: a node
// that has had nothing of the window starves in it (its want arrived);
// then a node that did ask keeps what it spends in a refill period at its
// rate and hands back the rest. Without that, a node that a split left
// out — one restarted (its earlier run's grant cannot be its own again),
// one that joined, one marked idle — would get nothing until the window
// ends while the others, each with mail waiting, sat on shares they need
// most of it to spend. A node that had its share and spent it gets
// nothing so: under a pressed cap every node starves in turn, and units
// passed back and forth would cost writes without sending more. One want
// per node per window bounds what this costs.
func (c *Cluster) handBackIfIdle(ctx context.Context, k wkey, asks int, want bool) {
	c.mu.Lock()
	s, ok := c.slots[k]
	keep := 0
	if ok && s.asks != asks {
		keep = s.held() // it asked: it keeps what it holds, unless
		if want {
			keep = int(math.Ceil(c.rate(k, s, c.now()) * c.refill.Seconds()))
		}
	}
	back := ok && s.held() > keep
	c.mu.Unlock()
	if back {
		c.handBackKeep(ctx, k, keep == 0, keep)
	}
}

// handBack lowers this node's entry in window k's grants by what it holds.
// The units leave the node's grant before the transaction, so they cannot
// be spent meanwhile; if etcd refuses them back (or cannot be read) they
// are held again, but not when the transaction's answer was lost: then
// they count as handed back until settleLost knows (lost.go). markIdle: a
// node that spent nothing in the window says so (grants.Idle), so splits
// leave it out.
func (c *Cluster) handBack(ctx context.Context, k wkey, markIdle bool) {
	c.handBackKeep(ctx, k, markIdle, 0)
}

// handBackKeep is handBack of all but keep units of what the node holds.
func (c *Cluster) handBackKeep(ctx context.Context, k wkey, markIdle bool, keep int) {
	c.mu.Lock()
	s, ok := c.slots[k]
	if !ok || (s.held() <= keep && s.lost == nil) || s.fetching {
		c.mu.Unlock()
		return
	}
	s.fetching = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	// A lost transaction first: it may change what this node holds.
	_, err := c.settleLost(ctx, s)
	c.mu.Lock()
	n := s.held() - keep
	if err != nil || n <= 0 {
		s.fetching = false
		c.signal()
		c.mu.Unlock()
		if err != nil {
			c.failed(err)
		}
		return
	}
	s.granted -= n
	key := s.key
	idle := markIdle && s.used == 0
	c.mu.Unlock()
	// lost: the transaction went out and no answer came back. etcd may
	// have applied it (a frozen or partitioned etcd applies what it had
	// read once it runs again, after the client gave up): keeping the
	// units would let them be spent twice, here and by whichever node
	// etcd grants them to next. So they count as handed back until
	// settleLost knows (lost.go).
	restore := true
	defer func() {
		c.mu.Lock()
		s.fetching = false
		if restore {
			s.granted += n
		}
		c.signal()
		c.mu.Unlock()
	}()
	lease, err := c.lease(ctx, s.end)
	if err != nil {
		c.failed(err)
		return
	}
	for try := 0; try < 8; try++ {
		resp, err := c.cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			if err != nil {
				c.failed(err)
			}
			return
		}
		g := parseGrants(resp.Kvs[0].Value)
		g.By = c.node
		g.G[c.node] = max(0, g.G[c.node]-n)
		g.setIdle(c.node, idle)
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		// WithIgnoreLease keeps the key on the lease that outlives its window.
		token := opToken()
		tr, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, g.encode(), clientv3.WithIgnoreLease()),
			clientv3.OpPut(c.opKey(key), token, clientv3.WithLease(lease))).Commit()
		if err != nil {
			restore = false // it may have committed: settleLost finds out
			c.mu.Lock()
			s.lost = &lostOp{rev: resp.Kvs[0].ModRevision, value: resp.Kvs[0].Value, token: token, back: n, entry: g.G[c.node]}
			c.mu.Unlock()
			c.failed(err)
			return
		}
		if tr.Succeeded {
			c.writes.Add(1)
			c.log.Debug("quota hand back", "key", key, "units", n, "grants", g.encode())
			restore = false
			c.mu.Lock()
			c.stats.Returned += int64(n)
			c.stats.HandBackWrites++
			c.seen[key] = g.total()
			s.known = g.G[c.node]
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.stats.Conflicts++
		c.mu.Unlock()
	}
}

// watch follows the quota keys: totals keep the outage share current, a
// rise of this node's entry written by another node is a gift (a split)
// this node may spend, a fall of a window's total below its cap (a hand
// back) makes a node that found it full ask again, a want key of another
// node marks the window contended, and any change wakes blocked
// acquisitions. The watch is re-established after etcd comes back (the
// client retries by itself), from the revision after the last one seen.
func (c *Cluster) watch(ctx context.Context, next int64) { // next: revision to resume from; 0: now
	for ctx.Err() == nil {
		if next == 0 {
			next = c.watchRev(ctx)
		}
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
		if next > 0 {
			opts = append(opts, clientv3.WithRev(next))
		}
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix+"quota", opts...)
		for resp := range wch {
			if resp.Err() != nil {
				if resp.CompactRevision > 0 {
					next = 0 // what was missed is gone: from now on
				}
				break
			}
			if resp.IsProgressNotify() {
				// Every change up to this revision has been delivered.
				c.mu.Lock()
				c.completeRev = max(c.completeRev, resp.Header.Revision)
				c.mu.Unlock()
			}
			for _, ev := range resp.Events {
				c.apply(ctx, ev)
				next = max(next, ev.Kv.ModRevision+1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond): // watch lost (no leader): look again
		}
	}
}

// apply handles one watch event.
func (c *Cluster) apply(ctx context.Context, ev *clientv3.Event) {
	qp, wp := c.prefix+"quota/", c.wantPrefix()
	key := string(ev.Kv.Key)
	switch {
	case ev.Type == clientv3.EventTypePut && strings.HasPrefix(key, qp):
		g := parseGrants(ev.Kv.Value)
		total := g.total()
		// The gift is the rise of this node's entry in a value another
		// node wrote, against the value before it. Without the previous
		// value (a key created here has none) nothing is assumed.
		gift := 0
		if g.By != c.node {
			var prev grants
			switch {
			case ev.PrevKv != nil:
				prev = parseGrants(ev.PrevKv.Value)
			case ev.IsCreate():
				prev = parseGrants(nil)
			default:
				prev = grants{G: map[string]int{c.node: g.G[c.node]}}
			}
			gift = max(0, g.G[c.node]-prev.G[c.node])
		}
		now := c.now()
		c.mu.Lock()
		c.revs[key] = max(c.revs[key], ev.Kv.ModRevision)
		c.completeRev = max(c.completeRev, ev.Kv.ModRevision)
		k, kok := c.parseWindowKey(key)
		// Every window's total, not only this node's: a node that never
		// sent through a provider may have to, with etcd away, and its
		// outage share must count what the others were granted.
		if prev, ok := c.seen[key]; ok || c.ownsKey(key) || kok {
			if ok {
				c.jump[key] = max(c.jump[key], total-prev)
			}
			c.seen[key] = total
			// Only a rise (a grant) is what an asker must have heard of
			// to take this node's word (peers.go): one that missed a hand
			// back counts more granted than there is, the safe side.
			var before int
			if ev.PrevKv != nil {
				before = parseGrants(ev.PrevKv.Value).total()
			}
			if kok && total > before {
				c.knownRev = max(c.knownRev, ev.Kv.ModRevision)
			}
			if kok {
				c.seenEnd[key] = windowEnd(k.w, time.Unix(k.start, 0))
			}
		}
		if kok {
			c.noteIdle(k, g.Idle)
			if g.Contended {
				c.wantSeen[key] = windowEnd(k.w, time.Unix(k.start, 0))
				if s, ok := c.slots[k]; ok {
					s.contended = true
				}
			}
		}
		var wake []string
		passive := false
		if gift > 0 && kok && now.Before(windowEnd(k.w, time.Unix(k.start, 0))) {
			s := c.slotOf(k)
			s.granted += gift
			// max: this node's own transaction may have read the gift and
			// been answered before the watch brought it (known is then
			// already past this value).
			s.known = max(s.known, g.G[c.node])
			s.since = now
			s.fullUntil, s.prefetchAfter = time.Time{}, time.Time{}
			c.seen[key] = total
			if id, ok := strings.CutPrefix(k.name, "p/"); ok {
				wake = append(wake, id)
			}
			// A node that spent nothing of the counter's previous window
			// gives a share back at once (and is marked idle, so the
			// splits leave it out): waiting to find it idle would keep
			// the units from the node that needs them for a while.
			passive = s.used == 0 && c.unusedBefore(k)
		}
		// A window this node found full changed (a hand back): worth
		// asking again now, not at the end of the back-off.
		for k, s := range c.slots {
			if s.key != key || total >= s.cap {
				continue
			}
			s.prefetchAfter = time.Time{}
			if !s.fullUntil.IsZero() {
				s.fullUntil = time.Time{}
				if id, ok := strings.CutPrefix(k.name, "p/"); ok {
					wake = append(wake, id)
				}
			}
		}
		notify := c.onRefill
		c.signal()
		c.mu.Unlock()
		if passive {
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.handBack(ctx, k, true) }()
		}
		for _, id := range wake {
			if notify != nil {
				notify(id)
			}
		}
	case strings.HasPrefix(key, c.vouchRecordPrefix()):
		c.applyVouchRecord(ev)
	case ev.Type == clientv3.EventTypePut && strings.HasPrefix(key, wp):
		node, wkeyStr, ok := strings.Cut(strings.TrimPrefix(key, wp), "/")
		if !ok {
			return
		}
		k, kok := c.parseWindowKey(wkeyStr)
		if !kok {
			return
		}
		c.mu.Lock()
		c.wantSeen[wkeyStr] = windowEnd(k.w, time.Unix(k.start, 0))
		s, have := c.slots[k]
		asks := 0
		if have && node != c.node {
			s.contended = true
			asks = s.asks
		}
		c.mu.Unlock()
		if !have || node == c.node {
			return
		}
		// Hand back what lies idle here: all of it if this node does not
		// ask for the window for a moment; a node with mail waiting keeps
		// it, or, when the wanting node has had nothing of the window,
		// what it spends in a refill period, handing back the rest.
		c.handBackLater(k, asks, strings.HasSuffix(string(ev.Kv.Value), wantEmpty))
	}
}

// watchRev reads the current revision and keeps it as watchFrom; the
// watch starts after it. A value no later than it came before the watch,
// so a rise of this node's entry in it is no gift on its way (an earlier
// run's grant, or one the watch missed) and must not hold back a want
// (refillNow). 0 if etcd does not answer: the watch starts from now.
//
// It reads every window's total as of that revision too (what the watch
// will not bring again), so that this node's outage share of a window it
// never asked for counts what the others were granted; the watch then
// keeps those totals current.
func (c *Cluster) watchRev(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	// One read (at start etcd may be away: each call waits its timeout)
	// for the windows and the vouchers' records (vouch_records.go).
	r, err := c.cli.Get(ctx, c.prefix+"quota", clientv3.WithPrefix())
	if err != nil {
		return 0
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchFrom = r.Header.Revision
	for _, kv := range r.Kvs {
		key := string(kv.Key)
		if voucher, ok := strings.CutPrefix(key, c.vouchRecordPrefix()); ok {
			c.noteVouchRecord(voucher, kv.Value)
			continue
		}
		k, ok := c.parseWindowKey(key)
		if !ok || !now.Before(windowEnd(k.w, time.Unix(k.start, 0))) {
			continue
		}
		c.seen[key] = max(c.seen[key], parseGrants(kv.Value).total())
		c.seenEnd[key] = windowEnd(k.w, time.Unix(k.start, 0))
		c.knownRev = max(c.knownRev, kv.ModRevision)
	}
	c.completeRev = max(c.completeRev, r.Header.Revision)
	return r.Header.Revision + 1
}

// wantEmpty ends the value of a want posted by a node that has had
// nothing of the window.
const wantEmpty = "/empty"

// handBackLater hands back what this node holds of window k after
// wantGrace, if it did not ask for the window meanwhile (asks is its asks
// counter now); want: another node that has had nothing of the window
// starves in it, so a node that did ask still hands back what it holds
// beyond a refill period's spending. It runs in the background.
func (c *Cluster) handBackLater(k wkey, asks int, want bool) {
	ctx := c.ctx // set by Start before any caller runs
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(c.wantGrace())
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.handBackIfIdle(ctx, k, asks, want)
	}()
}

// unusedBefore reports whether this node was given units of k's counter
// in an earlier window and spent none. A counter this node never had a
// window of is not "unused": it may be about to send (the first window
// after a start). c.mu is held.
func (c *Cluster) unusedBefore(k wkey) bool {
	prev := routing.WindowStart(k.w, time.Unix(k.start, 0).Add(-time.Second)).Unix()
	if ps, ok := c.slots[wkey{k.name, k.w, prev}]; ok {
		return ps.used == 0
	}
	r, ok := c.rates[rateKey{k.name, k.w}]
	return ok && r == 0
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ownsKey reports whether key belongs to a slot of this node. c.mu is held.
func (c *Cluster) ownsKey(key string) bool {
	for _, s := range c.slots {
		if s.key == key {
			return true
		}
	}
	return false
}
