package quota

import (
	"context"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Unused grants go back to etcd in three cases, so that a node never sits
// on quota another node needs: the node went idle on a window that still
// has a while to run, another node said it starves (a want key), or the
// node shuts down. A window that ends needs nothing: the next window is a
// new key, and the old one expires with its lease.

// idleAfter is how long without a take before a node hands back what it
// holds of a window, in refill periods.
const idleAfter = 2

// wantPrefix holds the "I starve" markers: quota-want/<node>/<window key>.
func (c *Cluster) wantPrefix() string { return c.prefix + "quota-want/" }

// postWant tells the other nodes that this node found window key full
// while they may hold unused grants of it. One write, only when starving.
func (c *Cluster) postWant(ctx context.Context, k wkey, key string, end time.Time) {
	lease, err := c.lease(ctx, end)
	if err != nil {
		c.failed(err)
		return
	}
	if _, err := c.cli.Put(ctx, c.wantPrefix()+c.node+"/"+key, strconv.FormatInt(c.now().UnixNano(), 10), clientv3.WithLease(lease)); err != nil {
		c.failed(err)
		return
	}
	c.writes.Add(1)
}

// returnIdle hands back idle grants (all of them when final), and forgets
// the slots of ended windows, keeping their rate for the next block size.
func (c *Cluster) returnIdle(ctx context.Context, final bool) {
	now := c.now()
	var back []wkey
	c.mu.Lock()
	for k, s := range c.slots {
		if !now.Before(s.end) {
			if !s.fetching {
				c.rates[rateKey{k.name, k.w}] = float64(s.used) / s.end.Sub(s.start).Seconds()
				delete(c.slots, k)
				delete(c.seen, s.key)
				delete(c.jump, s.key)
			}
			continue
		}
		idle := now.Sub(s.lastTake) >= idleAfter*c.refill && s.end.Sub(now) > c.refill
		if (s.held() > 0 || s.lost != nil) && !s.fetching && (final || idle) && !c.down {
			back = append(back, k)
		}
	}
	c.mu.Unlock()
	for _, k := range back {
		c.handBack(ctx, k)
	}
}

// handBack subtracts what this node holds of window k from its total in
// etcd. The units leave the node's grant before the transaction, so they
// cannot be spent meanwhile; if etcd refuses them back (or cannot be read)
// they are held again, but not when the transaction's answer was lost.
func (c *Cluster) handBack(ctx context.Context, k wkey) {
	c.mu.Lock()
	s, ok := c.slots[k]
	if ok && s.fetching && s.contended {
		s.wantPending = true // the refill under way hands back when it ends
	}
	if !ok || (s.held() <= 0 && s.lost == nil) || s.fetching {
		c.mu.Unlock()
		return
	}
	s.fetching = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	// A lost transaction first: it may change what this node holds.
	err := c.settleLost(ctx, s)
	c.mu.Lock()
	n := s.held()
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
	c.mu.Unlock()
	// lost: the transaction went out and no answer came back. etcd may
	// have applied it (a frozen or partitioned etcd applies what it had
	// read once it runs again, after the client gave up): keeping the
	// units would let them be spent twice, here and by whichever node
	// etcd grants them to next. So they count as handed back until
	// settleLost knows (lost.go).
	done, lost := false, false
	defer func() {
		c.mu.Lock()
		s.fetching = false
		if !done && !lost {
			s.granted += n
		} else if done {
			c.stats.Returned += int64(n)
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
		total, _ := strconv.Atoi(string(resp.Kvs[0].Value))
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		// WithIgnoreLease keeps the key on the lease that outlives its window.
		token := opToken()
		tr, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, strconv.Itoa(max(0, total-n)), clientv3.WithIgnoreLease()),
			clientv3.OpPut(c.opKey(key), token, clientv3.WithLease(lease))).Commit()
		if err != nil {
			lost = true
			c.mu.Lock()
			s.lost = &lostOp{rev: resp.Kvs[0].ModRevision, value: resp.Kvs[0].Value, token: token, back: n}
			c.mu.Unlock()
			c.failed(err)
			return
		}
		if tr.Succeeded {
			c.writes.Add(1)
			done = true
			c.mu.Lock()
			c.seen[key] = max(0, total-n)
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.stats.Conflicts++
		c.mu.Unlock()
	}
}

// watch follows the quota keys: totals keep the outage share current, a
// want key of another node makes this one hand back what it holds of
// that window, and any change wakes blocked acquisitions. The watch is
// re-established after etcd comes back (the client retries by itself).
func (c *Cluster) watch(ctx context.Context) {
	qp, wp := c.prefix+"quota/", c.wantPrefix()
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix+"quota", clientv3.WithPrefix())
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				switch {
				case ev.Type == clientv3.EventTypePut && strings.HasPrefix(key, qp):
					total, _ := strconv.Atoi(string(ev.Kv.Value))
					c.mu.Lock()
					if prev, ok := c.seen[key]; ok || c.ownsKey(key) {
						c.jump[key] = max(c.jump[key], total-prev)
						c.seen[key] = total
					}
					// A window this node found full changed (a hand back):
					// worth asking again now, not at the end of the back-off.
					var starved []string
					for k, s := range c.slots {
						if s.key == key && !s.fullUntil.IsZero() && total < s.cap {
							s.fullUntil = time.Time{}
							if id, ok := strings.CutPrefix(k.name, "p/"); ok {
								starved = append(starved, id)
							}
						}
					}
					notify := c.onRefill
					c.signal()
					c.mu.Unlock()
					for _, id := range starved {
						if notify != nil {
							notify(id)
						}
					}
				case ev.Type == clientv3.EventTypePut && strings.HasPrefix(key, wp):
					rest := strings.TrimPrefix(key, wp)
					node, wkeyStr, ok := strings.Cut(rest, "/")
					if !ok || node == c.node {
						continue
					}
					if k, ok := c.slotByKey(wkeyStr); ok {
						c.mu.Lock()
						c.slots[k].contended = true
						c.mu.Unlock()
						go c.handBack(ctx, k)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond): // watch lost (no leader): look again
		}
	}
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

func (c *Cluster) slotByKey(key string) (wkey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.slots {
		if s.key == key {
			return k, true
		}
	}
	return wkey{}, false
}
