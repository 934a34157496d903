package quota

import (
	"context"
	"fmt"
	"math"
	"strconv"
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
	// fullUntil: etcd had no room for this node; until then a take is
	// refused without asking again.
	fullUntil time.Time
	wanted    time.Time // when this node last said it starves (want key)
	// wantedRev is the window key's ModRevision when it did: the same
	// total can hide a change (one node handed back, another took it),
	// the same revision cannot, so a want is posted again when it moved.
	wantedRev int64
	// wantPending: another node's want arrived while this node was
	// fetching (handBack skips then); the hand back runs when it ends.
	wantPending bool
	// contended: another node starved in this window, so units this node
	// gives back go straight back to etcd rather than staying held.
	contended bool
	lastTake  time.Time
	// firstTake is when this node first spent in the window: its rate is
	// measured from there, not from the window's start (a node that
	// starts at 10:00 has not been idle since midnight).
	firstTake time.Time
}

func (s *slot) held() int { return s.granted - s.used }

// fullBackoff is how long a node that found a window full waits before
// asking etcd again (unless the watch reports a hand back sooner).
const fullBackoff = time.Second

// refillWait is when a take refused while a block is on its way is worth
// trying again.
const refillWait = 50 * time.Millisecond

func (c *Cluster) windowKey(k wkey) string {
	return fmt.Sprintf("%squota/%s/%s/%d", c.prefix, k.name, k.w, k.start)
}

// slotFor returns the slot of k, creating it; c.mu is held.
func (c *Cluster) slotFor(k wkey, cap int) *slot {
	s, ok := c.slots[k]
	if !ok {
		start := time.Unix(k.start, 0).UTC()
		s = &slot{key: c.windowKey(k), start: start, end: windowEnd(k.w, start)}
		c.slots[k] = s
	}
	s.cap = cap
	return s
}

// check reports whether n units of window k (cap) can be spent now,
// starting a refill when they cannot (or when the held block runs low),
// and when to look again. c.mu is held.
func (c *Cluster) check(k wkey, cap, n int, now time.Time) (bool, time.Time) {
	s := c.slotFor(k, cap)
	if s.used+n <= s.granted {
		if !c.down && !s.fetching && s.held()-n < c.lowWater(k, s, now) && !now.Before(s.fullUntil) {
			c.startRefill(k, s, 0)
		}
		return true, time.Time{}
	}
	if c.down {
		if !s.fetching {
			c.startRefill(k, s, n) // finds out whether etcd is back
		}
		if s.used+n <= s.granted+c.outageShare(s) {
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
// node (handed back to etcd only when idle or asked). c.mu is held.
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
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.handBack(context.Background(), k) }()
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
func (c *Cluster) outageShare(s *slot) int {
	live := len(c.liveNodesLocked())
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
// period, but at most an equal share of what remains among the live
// nodes (near the cap blocks shrink to 1, so no node sits on what
// another needs); at least what this take lacks. c.mu is held.
func (c *Cluster) blockSize(k wkey, s *slot, remaining, deficit int, now time.Time) int {
	period := min(c.refill, s.end.Sub(s.start))
	if k.w >= routing.Hour {
		// Long windows have room to spare for longer blocks: an hour or
		// a day is rarely near its cap at the scale of a minute, and the
		// hand backs (idle, want) return what is not needed.
		period = 6 * c.refill
	}
	want := int(math.Ceil(2 * c.rate(k, s, now) * period.Seconds()))
	per := (remaining + len(c.liveNodesLocked()) - 1) / len(c.liveNodesLocked())
	b := max(min(want, per), deficit, 1)
	return min(b, remaining)
}

func (c *Cluster) startRefill(k wkey, s *slot, need int) {
	s.fetching = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.refillNow(k, need)
	}()
}

// refillNow adds a block to window k's total in etcd and to this node's
// grant: Get, then a transaction that puts total+block if the key's
// ModRevision did not move (another node's grant), retried on conflict.
// The block is sized under c.mu from the value read.
func (c *Cluster) refillNow(k wkey, need int) {
	ctx, cancel := context.WithTimeout(context.Background(), c.rpcTimeout)
	defer cancel()
	defer func() {
		c.mu.Lock()
		handBack := false
		if s, ok := c.slots[k]; ok {
			s.fetching = false
			handBack, s.wantPending = s.wantPending, false
		}
		c.signal()
		c.mu.Unlock()
		if handBack {
			// Another node starved while this refill ran: what this
			// node holds now goes back, as the want asked.
			c.handBack(context.Background(), k)
		}
	}()
	c.mu.Lock()
	s0, ok := c.slots[k]
	c.mu.Unlock()
	if !ok {
		return
	}
	if err := c.settleLost(ctx, s0); err != nil {
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
		total, rev, value := 0, int64(0), []byte(nil)
		if len(resp.Kvs) > 0 {
			value = resp.Kvs[0].Value
			total, _ = strconv.Atoi(string(resp.Kvs[0].Value))
			rev = resp.Kvs[0].ModRevision
		}
		now := c.now()
		c.mu.Lock()
		c.setDown(false)
		c.seen[s.key] = max(c.seen[s.key], total)
		reconcile := s.outage
		need = max(need, s.pending)
		s.pending = 0
		remaining := s.cap - total - reconcile
		deficit := need - max(0, s.held())
		if need > 0 && deficit <= 0 {
			deficit = 0 // a hand back while we waited covers it
		}
		block := 0
		starving := false
		if remaining >= max(deficit, 1) {
			block = c.blockSize(k, s, remaining, deficit, now)
		} else if deficit > 0 {
			// Only a take that lacks units makes the window "full" for
			// this node; a prefetch that found no room changes nothing.
			starving = true
			s.fullUntil = now.Add(fullBackoff)
		}
		postWant := starving && (s.wanted.IsZero() || now.Sub(s.wanted) >= fullBackoff || s.wantedRev != rev)
		if postWant {
			s.wanted, s.wantedRev = now, rev
		}
		end := s.end
		c.mu.Unlock()
		if block == 0 && reconcile == 0 {
			if postWant {
				c.postWant(ctx, k, s.key, end)
			}
			return
		}
		lease, err := c.lease(ctx, end)
		if err != nil {
			c.failed(err)
			return
		}
		newTotal := total + reconcile + block
		cmp := clientv3.Compare(clientv3.ModRevision(s.key), "=", rev)
		token := opToken()
		tr, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(s.key, strconv.Itoa(newTotal), clientv3.WithLease(lease)),
			clientv3.OpPut(c.opKey(s.key), token, clientv3.WithLease(lease))).Commit()
		if err != nil {
			// Not granted until settleLost knows (lost.go).
			c.mu.Lock()
			s.lost = &lostOp{rev: rev, value: value, token: token, grant: reconcile + block, reconcile: reconcile, newTotal: newTotal}
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
		c.mu.Lock()
		c.seen[s.key] = max(c.seen[s.key], newTotal)
		if cur, ok := c.slots[k]; ok && cur == s {
			s.granted += reconcile + block
			s.outage -= reconcile
		}
		notify := c.onRefill
		c.mu.Unlock()
		if id, ok := strings.CutPrefix(k.name, "p/"); ok && notify != nil && block > 0 {
			notify(id)
		}
		if postWant {
			c.postWant(ctx, k, s.key, end)
		}
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
