package quota

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// wkey names one fixed window of one counter ("p/<provider>",
// "managed/<provider>", "cred/<credential>").
type wkey struct {
	name  string
	w     routing.Window
	start int64 // unix seconds
}

type rateKey struct {
	name string
	w    routing.Window
}

// slot is this node's side of one window of one counter.
type slot struct {
	key     string // the etcd key: its value is the total granted to all nodes
	cap     int
	start   time.Time
	end     time.Time
	granted int // granted to this node (blocks taken minus handed back)
	used    int // spent by this node, outage units included
	// outage are units spent past the grants while etcd was unreachable;
	// the next transaction adds them to the total (they were within the
	// share, so the total stays within the cap).
	outage   int
	fetching bool
	// lost is a transaction on this window whose answer never came back
	// (lost.go); nil when there is none.
	lost    *lostOp
	pending int // the largest take refused while a refill was under way
	// fullUntil: etcd had no room for a take of this node; until then (or
	// until the watch reports units handed back) a take that lacks units
	// is refused without asking etcd again.
	fullUntil time.Time
	// prefetchAfter: a refill ahead of need found no room; no other is
	// started before then (or before a hand back is seen), so a window
	// that is known full costs no etcd call per take.
	prefetchAfter time.Time
	// starved: this node lacked units in this window while it was full;
	// contended: another node did (its want key was seen). Either makes
	// the next window of the counter start with a split (see grants.go).
	starved   bool
	contended bool
	wanted    bool // this node posted its want for the window
	// known is this node's entry in the window's value as this process
	// accounts for it (its own transactions and the gifts it adopted): an
	// entry seen higher is a gift still on its way through the watch.
	known    int
	lastTake time.Time
	// firstTake is when this node first spent in the window: its rate is
	// measured from there, not from the window's start (a node that
	// starts at 10:00 has not been idle since midnight).
	firstTake time.Time
	// since is when the slot was made or last given units by another
	// node: idleness counts from the later of it and the last take.
	since time.Time
	// asks counts the checks of the window (every take is checked first;
	// a check refused by another window, the per-second one, still says
	// the node has mail for the provider); asksAtTick is its value at the
	// last tick of the background loop. A node that starves, or sees
	// another node's want, hands back what it holds once it has not
	// asked for a moment: a node with mail waiting keeps its share.
	asks, asksAtTick int
}

func (s *slot) held() int { return s.granted - s.used }

// fullRecheck is how long a node that found a window full waits before
// reading it again, unless the watch reports a hand back or a gift sooner
// (which it does as they commit): a guard against a wake-up lost between
// the watch and the relay, and a read, not a write.
const fullRecheck = 2 * time.Second

// refillWait is when a take refused while a block is on its way is worth
// trying again.
const refillWait = 50 * time.Millisecond

func (c *Cluster) windowKey(k wkey) string {
	return fmt.Sprintf("%squota/%s/%s/%d", c.prefix, k.name, k.w, k.start)
}

// slotFor returns the slot of k, creating it, with its cap; c.mu is held.
func (c *Cluster) slotFor(k wkey, cap int) *slot {
	s := c.slotOf(k)
	s.cap = cap
	return s
}

// slotOf returns the slot of k, creating it (cap unknown until a check
// sets it); c.mu is held.
func (c *Cluster) slotOf(k wkey) *slot {
	s, ok := c.slots[k]
	if !ok {
		start := time.Unix(k.start, 0).UTC()
		s = &slot{key: c.windowKey(k), start: start, end: windowEnd(k.w, start), since: c.now()}
		_, s.contended = c.wantSeen[s.key] // a want posted before this node had the window
		c.slots[k] = s
	}
	return s
}

// check reports whether n units of window k (cap) can be spent now,
// starting a refill when they cannot (or when the held block runs low),
// and when to look again. c.mu is held.
func (c *Cluster) check(k wkey, cap, n int, now time.Time) (bool, time.Time) {
	s := c.slotFor(k, cap)
	s.asks++
	if s.used+n <= s.granted {
		if !c.down && !s.fetching && s.held()-n < c.lowWater(k, s, now) && !now.Before(s.fullUntil) && !now.Before(s.prefetchAfter) {
			c.startRefill(k, s, 0)
		}
		return true, time.Time{}
	}
	if c.down {
		if !s.fetching {
			c.startRefill(k, s, n) // finds out whether etcd is back
		}
		if s.used+n <= s.granted+c.outageShare(k, s) {
			return true, time.Time{}
		}
		c.stats.OutageRefusals++
		return false, earliest(s.end, now.Add(time.Second))
	}
	if now.Before(s.fullUntil) {
		return false, earliest(s.end, s.fullUntil)
	}
	if !s.fetching {
		c.startRefill(k, s, n)
	} else {
		s.pending = max(s.pending, n) // the refill under way sizes for it too
	}
	return false, now.Add(refillWait)
}

// spend takes n units of k after check said yes. c.mu is held.
func (c *Cluster) spend(k wkey, n int, now time.Time) {
	s := c.slots[k]
	before := max(0, s.used-s.granted)
	s.used += n
	s.lastTake = now
	if s.firstTake.IsZero() {
		s.firstTake = now
	}
	if extra := max(0, s.used-s.granted) - before; extra > 0 {
		s.outage += extra
		c.stats.OutageUnits += int64(extra)
	}
}

// giveBack returns n units spent at `at` that the upstream never got, if
// their window is still the current one: they are held again by this
// node (handed back to etcd when it goes idle, or, in a window a node
// starves in, when this one stops asking for a moment). c.mu is held.
func (c *Cluster) giveBack(k wkey, n int) {
	s, ok := c.slots[k]
	if !ok {
		return
	}
	if s.outage > 0 {
		d := min(s.outage, n)
		s.outage -= d
	}
	s.used = max(0, s.used-n)
	if s.contended && !c.down {
		c.handBackLater(k, s.asks, false)
	}
	c.signal()
}

// outageShare is what this node may spend past its grants while etcd is
// unreachable: an equal share, among the live nodes last seen, of what
// was not yet granted when it last heard of the window. Every node
// computes its share of the same remainder, so together they stay within
// the cap. A grant another node got just before the outage may not have
// reached this node's watch: one such grant per other node, as large as
// the largest rise of the total seen, is kept aside. c.mu is held.
//
// A node the splits leave out (marked idle) gets no share: a split it did
// not hear of gave it nothing, while every other node's part of it is at
// least the share it computes from the total before the split.
//
// And only while every other live node says it cannot reach etcd either
// (peers.go): otherwise they may be granting the whole cap meanwhile.
func (c *Cluster) outageShare(k wkey, s *slot) int {
	if !c.vouched(c.now()) {
		return 0
	}
	if cur, ok := c.idle[rateKey{k.name, k.w}]; ok && slices.Contains(cur.nodes, c.node) {
		return 0
	}
	// Divided among at least as many nodes as any voucher counts: each
	// keeps ceil(cap/its count) out for this node afterwards.
	live := max(len(c.liveNodesLocked()), c.vouchLive)
	total := max(c.seen[s.key], s.granted) + (live-1)*c.jump[s.key]
	return max(0, s.cap-total) / live
}

// lowWater: a refill starts in the background when less than this is
// held, so that a busy node rarely waits for etcd.
func (c *Cluster) lowWater(k wkey, s *slot, now time.Time) int {
	period := c.refill
	if k.w >= routing.Hour {
		period = 6 * c.refill
	}
	return int(math.Ceil(c.rate(k, s, now) * period.Seconds() / 2))
}

// rate is the counter's recent units per second on this node.
func (c *Cluster) rate(k wkey, s *slot, now time.Time) float64 {
	from := s.start
	if s.firstTake.After(from) {
		from = s.firstTake
	}
	el := max(now.Sub(from), time.Second)
	r := float64(s.used) / el.Seconds()
	return max(r, c.rates[rateKey{k.name, k.w}])
}

// blockSize is how much to ask for: twice the recent rate over a refill
// period, but at most an equal share of what remains among the nodes a
// split would serve, and at least what this take lacks. When that
// appetite is at least the equal share — the window is nearly exhausted
// for the demand on it — or when the counter's previous window was
// pressed (some node found it full), the node grants the whole remainder
// at once in equal shares (g.split): one write where shrinking blocks
// would cost one per unit near the cap. The shares of the other nodes are
// added to g; the result is this node's part. c.mu is held.
func (c *Cluster) blockSize(k wkey, s *slot, g *grants, remaining, deficit int, now time.Time) (block int, split bool) {
	period := min(c.refill, s.end.Sub(s.start))
	if k.w >= routing.Hour {
		// Long windows have room to spare for longer blocks: an hour or
		// a day is rarely near its cap at the scale of a minute, and the
		// hand backs (idle, starving nodes) return what is not needed.
		period = 6 * c.refill
	}
	want := int(math.Ceil(2 * c.rate(k, s, now) * period.Seconds()))
	live := c.liveNodesLocked()
	n := g.splitters(c.node, live)
	per := (remaining + n - 1) / n
	pressed := c.pressedBefore(k, s)
	if (want >= per || pressed) && deficit <= remaining/n {
		g.Contended = g.Contended || pressed
		return g.split(c.node, live, remaining), true
	}
	b := max(min(want, per), deficit, 1)
	return min(b, remaining), false
}

// pressedBefore reports whether the window before k's was pressed: this
// node starved in it or saw another node's want. c.mu is held.
func (c *Cluster) pressedBefore(k wkey, s *slot) bool {
	prev := routing.WindowStart(k.w, s.start.Add(-time.Second)).Unix()
	if ps, ok := c.slots[wkey{k.name, k.w, prev}]; ok {
		return ps.starved || ps.contended
	}
	return c.pressed[rateKey{k.name, k.w}] == prev
}

func (c *Cluster) startRefill(k wkey, s *slot, need int) {
	s.fetching = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.refillNow(k, need)
	}()
}

// refillNow adds a block to window k's grants in etcd and to this node's
// grant: Get, then a transaction that puts the new grants if the key's
// ModRevision did not move (another node's grant), retried on conflict.
// The block is sized under c.mu from the value read. A node that finds
// the window full writes nothing, except the window's one want key if no
// node has posted it yet.
func (c *Cluster) refillNow(k wkey, need int) {
	ctx, cancel := context.WithTimeout(context.Background(), c.rpcTimeout)
	defer cancel()
	wake := false // the provider's messages may go: tell the relay once the refill is over
	defer func() {
		c.mu.Lock()
		if s, ok := c.slots[k]; ok {
			s.fetching = false
		}
		c.signal()
		notify := c.onRefill
		c.mu.Unlock()
		// After fetching is cleared: a pick the wake-up runs at once must
		// not find the refill still under way (it would be told "in
		// 50 ms", and nothing would wake it again).
		if id, ok := strings.CutPrefix(k.name, "p/"); ok && wake && notify != nil {
			notify(id)
		}
	}()
	c.mu.Lock()
	s0, ok := c.slots[k]
	c.mu.Unlock()
	if !ok {
		return
	}
	// A lost transaction first: the value it would write decides what
	// this one reads and grants.
	got, err := c.settleLost(ctx, s0)
	if err != nil {
		c.failed(err)
		return
	}
	wake = got
	// What this node vouched must be in etcd before it grants: a node that
	// restarts or joins then keeps those shares out too.
	if err := c.saveVouches(ctx); err != nil {
		c.failed(err)
		return
	}
	for try := 0; try < 8; try++ {
		c.mu.Lock()
		s, ok := c.slots[k]
		c.mu.Unlock()
		if !ok {
			return
		}
		resp, err := c.cli.Get(ctx, s.key)
		if err != nil {
			c.failed(err)
			return
		}
		var g grants
		rev, value := int64(0), []byte(nil)
		if len(resp.Kvs) > 0 {
			value = resp.Kvs[0].Value
			g, rev = parseGrants(value), resp.Kvs[0].ModRevision
		} else {
			g = parseGrants(nil)
		}
		total := g.total()
		now := c.now()
		c.mu.Lock()
		if c.revs[s.key] > rev && try < 7 {
			// The watch has already applied a later value (a hand back
			// or a gift): what was read is stale, and deciding "full" on
			// it would miss the wake-up that value brought.
			c.mu.Unlock()
			continue
		}
		c.setDown(false)
		c.seen[s.key] = max(c.seen[s.key], total)
		if rev == 0 {
			g.Idle = c.idleHint(k) // carried from the counter's previous window
		}
		c.noteIdle(k, g.Idle)
		if g.Contended {
			s.contended = true
			c.wantSeen[s.key] = s.end
		}
		reconcile := s.outage
		need = max(need, s.pending)
		s.pending = 0
		// Nodes that spent their outage share on this node's word that
		// etcd was away may still be spending it (peers.go).
		remaining := s.cap - total - reconcile - c.recoveryReserve(s)
		deficit := need - max(0, s.held())
		if need > 0 && deficit <= 0 {
			deficit = 0 // a hand back while we waited covers it
		}
		mine := g.G[c.node]
		block, split, postWant, empty := 0, false, false, false
		switch {
		case remaining >= max(deficit, 1):
			block, split = c.blockSize(k, s, &g, remaining, deficit, now)
		case deficit > 0:
			// Only a take that lacks units makes the window "full" for
			// this node. It asks no more until a hand back or a gift
			// shows in the watch, or the window ends.
			s.starved = true
			s.fullUntil = earliest(s.end, now.Add(fullRecheck))
			// One want per node per window: the others keep handing back
			// whatever lies idle while it stands. None if the window was
			// split as contended from its start (that split stands for
			// every node's want), none if no other node has anything to
			// hand back, none while this node's entry is above what it
			// knows of in a value the watch has yet to bring (a gift on
			// its way; in a value from before the watch began, the rise
			// is an earlier run's grant, lost to this one).
			gift := mine > s.known && rev > max(c.revs[s.key], c.watchFrom)
			// A contended split stands for the wants of the nodes it
			// served, not of one it left out (restarted, joined since,
			// marked idle): one that has had nothing of the window posts.
			if !s.wanted && (!g.Contended || s.granted == 0) && !gift && g.othersHold(c.node) {
				s.wanted, postWant, empty = true, true, s.granted == 0
			}
		default:
			s.prefetchAfter = earliest(s.end, now.Add(fullRecheck))
		}
		end := s.end
		c.mu.Unlock()
		c.log.Debug("quota refill", "key", s.key, "need", need, "deficit", deficit, "remaining", remaining, "block", block, "want", postWant, "rev", rev)
		if block == 0 && reconcile == 0 {
			if postWant {
				c.postWant(ctx, k, s.key, end, empty)
			}
			return
		}
		lease, err := c.lease(ctx, end)
		if err != nil {
			c.failed(err)
			return
		}
		g.By = c.node
		g.G[c.node] = mine + reconcile + block
		if block > 0 {
			g.setIdle(c.node, false)
		}
		cmp := clientv3.Compare(clientv3.ModRevision(s.key), "=", rev)
		token := opToken()
		tr, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(s.key, g.encode(), clientv3.WithLease(lease)),
			clientv3.OpPut(c.opKey(s.key), token, clientv3.WithLease(lease))).Commit()
		if err != nil {
			// Not granted until settleLost knows (lost.go).
			c.mu.Lock()
			s.lost = &lostOp{rev: rev, value: value, token: token, grant: reconcile + block, reconcile: reconcile,
				newTotal: g.total(), entry: g.G[c.node]}
			c.mu.Unlock()
			c.failed(err)
			return
		}
		if !tr.Succeeded {
			c.mu.Lock()
			c.stats.Conflicts++
			c.mu.Unlock()
			continue
		}
		c.writes.Add(1)
		c.log.Debug("quota block", "key", s.key, "block", block, "split", split, "grants", g.encode())
		c.mu.Lock()
		c.stats.BlockWrites++
		if split {
			c.stats.Splits++
		}
		c.seen[s.key] = max(c.seen[s.key], g.total())
		if cur, ok := c.slots[k]; ok && cur == s {
			s.granted += reconcile + block
			s.outage -= reconcile
			s.known = g.G[c.node]
		}
		c.mu.Unlock()
		wake = wake || block > 0
		return
	}
}

// failed notes an etcd call that did not answer.
func (c *Cluster) failed(err error) {
	c.mu.Lock()
	c.setDown(true)
	c.mu.Unlock()
	c.log.Debug("etcd call failed", "err", err)
}

// lease returns a lease that outlives a window ending at end: one lease
// per hour of expiry serves every key whose window ends before it, so a
// node grants about one lease an hour, not one per window. Keys of ended
// windows then expire with it.
func (c *Cluster) lease(ctx context.Context, end time.Time) (clientv3.LeaseID, error) {
	bucket := end.Add(10 * time.Minute).Truncate(time.Hour).Add(time.Hour).Unix()
	c.mu.Lock()
	id, ok := c.leases[bucket]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	ttl := max(bucket-c.now().Unix(), 60)
	g, err := c.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	c.writes.Add(1)
	c.mu.Lock()
	c.stats.LeaseWrites++
	c.leases[bucket] = g.ID
	for b := range c.leases {
		if b < c.now().Unix() {
			delete(c.leases, b)
		}
	}
	c.mu.Unlock()
	return g.ID, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
