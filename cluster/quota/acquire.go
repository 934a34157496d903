package quota

import (
	"context"
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

// Acquire is the blocking form for answers given to a client while it
// waits (a recipient of the managed account before the 250, a send
// against the per-credential limit): it spends n units of counter name's
// window w (cap) at now, waiting for a block from etcd, or for other
// nodes to hand back what they hold when the window looks full, at most
// until ctx ends or a short deadline. ok false: the window has no room
// (or, with etcd down, this node's share is spent); retry is when it may.
func (c *Cluster) Acquire(ctx context.Context, name string, w routing.Window, cap, n int) (ok bool, retry time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 2*c.rpcTimeout)
	defer cancel()
	starvedOnce := false
	// wantTotal is the window's total (as last heard) when this node
	// found it full and asked the others to hand back: while hand-backs
	// keep lowering it, the others are still answering the want (each
	// hands back in its own transaction), so a window that is full again
	// after the first of them is not yet a refusal.
	wantTotal := -1
	for {
		now := c.now()
		k := wkey{name, w, routing.WindowStart(w, now).Unix()}
		c.mu.Lock()
		fits, r := c.check(k, cap, n, now)
		if fits {
			c.spend(k, n, now)
			c.mu.Unlock()
			return true, time.Time{}
		}
		s := c.slots[k]
		full := now.Before(s.fullUntil)
		down, fetching := c.down, s.fetching
		ch := c.changed
		c.mu.Unlock()
		if down && !fetching {
			return false, r
		}
		if full && !fetching {
			c.mu.Lock()
			total := c.seen[s.key]
			c.mu.Unlock()
			if starvedOnce && total >= wantTotal {
				return false, windowEnd(w, routing.WindowStart(w, now))
			}
			// The others were told (want key): give them a moment to
			// hand back, then ask once more.
			starvedOnce, wantTotal = true, total
			c.mu.Lock()
			s.fullUntil = time.Time{}
			c.mu.Unlock()
			// Any quota key's change wakes ch (another counter, another
			// node's refill): only a fall of this window's total (a hand
			// back) or the end of the moment is worth asking again for.
			timer := time.NewTimer(c.rpcTimeout) // wantGrace, then the hand back's transaction
		wait:
			for {
				select {
				case <-ch:
					c.mu.Lock()
					fell := c.seen[s.key] < wantTotal
					ch = c.changed
					c.mu.Unlock()
					if fell {
						break wait
					}
				case <-ctx.Done():
					timer.Stop()
					return false, r
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false, r
		}
	}
}

// Release gives back n units of counter name's window w spent at `at`
// (a transaction that did not complete), if that window is current.
func (c *Cluster) Release(name string, w routing.Window, n int, at time.Time) {
	if n <= 0 {
		return
	}
	start := routing.WindowStart(w, at)
	if !start.Equal(routing.WindowStart(w, c.now())) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.giveBack(wkey{name, w, start.Unix()}, n)
}

// Managed is the managed account's acceptance limit across the cluster
// (relay.ManagedGate): recipients reserved before the 250 count against
// the team's daily limit on every node.
func (c *Cluster) Managed() *Managed { return &Managed{c: c} }

// Managed reserves managed-account recipients cluster-wide.
type Managed struct{ c *Cluster }

// Accept reserves n recipients on managed provider id's UTC day, whose
// limit is daily; false means the day is full across the cluster.
func (m *Managed) Accept(ctx context.Context, id string, daily, n int) bool {
	if daily <= 0 {
		return true
	}
	ok, _ := m.c.Acquire(ctx, "managed/"+id, routing.Day, daily, n)
	return ok
}

// Release gives back n recipients reserved at acceptedAt whose message
// was not queued.
func (m *Managed) Release(id string, n int, acceptedAt time.Time) {
	m.c.Release("managed/"+id, routing.Day, n, acceptedAt)
}

// SendLimiter is the per-credential sends-per-minute limit across the
// cluster (relay.SendLimiter); limit is read at each call, so a config
// reload applies. Windows are UTC minutes.
func (c *Cluster) SendLimiter(limit func() int) *SendLimiter {
	return &SendLimiter{c: c, limit: limit}
}

// SendLimiter counts each credential's sends per minute cluster-wide.
type SendLimiter struct {
	c     *Cluster
	limit func() int
}

// Allow counts one send of credential key and reports whether it is
// within the limit, and if not how long until the window resets.
func (s *SendLimiter) Allow(key string) (bool, time.Duration) {
	l := s.limit()
	if l <= 0 {
		return true, 0
	}
	ok, retry := s.c.Acquire(context.Background(), "cred/"+key, routing.Minute, l, 1)
	if ok {
		return true, 0
	}
	return false, max(retry.Sub(s.c.now()), time.Second)
}
