package quota

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A quota transaction whose answer never came back may still be applied:
// a frozen etcd (or one behind a network that dropped the reply) applies
// what it had read once it runs again, after the client gave up. Until
// the node knows, such a grant counts as not made and such a hand back as
// done, so nothing can be spent twice; but units would then sit unused in
// the window's total until it ends (a day's quota, for a day's window).
//
// So every transaction also writes a token of its own to this node's op
// key of the window, and the node settles a lost one before its next
// transaction on that window (or within a second, in the background):
// if the window key has not moved since the lost transaction read it,
// the node moves it (same value, whatever its format), so the lost one
// can never apply, and
// knows it did not; if the key moved, the op key holds the lost token
// exactly when the lost transaction was the one that moved it.

// lostOp is a transaction on a window whose answer never came back.
type lostOp struct {
	rev   int64  // the window key's ModRevision it compared
	value []byte // the window key's value at rev (nil: absent), as read
	token string // what it put in this node's op key
	back  int    // units it handed back; 0 for a grant
	// A grant added reconcile outage units and a block (grant in all) to
	// this node's entry, making the window's total newTotal (a split's
	// shares of other nodes included).
	grant, reconcile, newTotal int
	// entry is this node's entry in the value it put (grants.go).
	entry int
}

// opKey is this node's op key of window key: <prefix>qops/<node>/<window
// key without the prefix>. Outside <prefix>quota, so the quota watch of
// every node does not carry it.
func (c *Cluster) opKey(key string) string {
	return c.prefix + "qops/" + c.node + "/" + strings.TrimPrefix(key, c.prefix)
}

// opToken is a value no other transaction writes to an op key.
func opToken() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// settleLost finds out whether the lost transaction of slot s, if any,
// was applied, and books it; granted reports a lost grant that was. An
// error leaves it unknown (etcd still out of reach). The slot is being
// fetched by the caller (s.fetching), so no other transaction of this
// node on the window runs meanwhile.
//
// The watch cannot book a lost grant instead: the value it put names this
// node as its writer (grants.By), and a node skips the rise of its own
// entry in its own values (its answer counted it) — so without this, a
// grant etcd applied after the answer was lost stays unspendable in the
// window until it ends.
func (c *Cluster) settleLost(ctx context.Context, s *slot) (granted bool, err error) {
	c.mu.Lock()
	u := s.lost
	c.mu.Unlock()
	if u == nil {
		return false, nil
	}
	lease, err := c.lease(ctx, s.end)
	if err != nil {
		return false, err
	}
	tr, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.key), "=", u.rev)).
		Then(clientv3.OpPut(s.key, string(u.value), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(c.opKey(s.key))).Commit()
	if err != nil {
		return false, err
	}
	applied := false
	if tr.Succeeded {
		c.writes.Add(1)
	} else if len(tr.Responses) > 0 {
		if kvs := tr.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 && string(kvs[0].Value) == u.token {
			applied = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setDown(false)
	s.lost = nil
	switch {
	case applied && u.back > 0:
		c.writes.Add(1) // the lost one was a write after all
		c.stats.HandBackWrites++
		c.stats.Returned += int64(u.back)
		s.known = u.entry
	case applied:
		c.writes.Add(1)
		c.stats.BlockWrites++
		s.granted += u.grant
		s.outage = max(0, s.outage-u.reconcile)
		s.known = max(s.known, u.entry)
		c.seen[s.key] = max(c.seen[s.key], u.newTotal)
		// Units came: a take refused as "full" may now go.
		s.fullUntil, s.prefetchAfter = time.Time{}, time.Time{}
		granted = u.grant > 0
	case u.back > 0:
		s.granted += u.back // etcd never took them back
	}
	c.signal()
	return granted, nil
}

// settleIdle settles, in the background, the lost transactions of windows
// no transaction is running on, so that a grant etcd did apply is not left
// unused (or handed back late) because this node has not asked again.
func (c *Cluster) settleIdle() {
	c.mu.Lock()
	var todo []wkey
	for k, s := range c.slots {
		if s.lost != nil && !s.fetching {
			s.fetching = true
			todo = append(todo, k)
		}
	}
	c.mu.Unlock()
	for _, k := range todo {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.mu.Lock()
			s := c.slots[k]
			c.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), c.rpcTimeout)
			got, err := c.settleLost(ctx, s)
			cancel()
			if err != nil {
				c.failed(err)
			}
			c.mu.Lock()
			s.fetching = false
			granted := got || s.held() > 0
			notify := c.onRefill
			c.signal()
			c.mu.Unlock()
			if id, ok := strings.CutPrefix(k.name, "p/"); ok && err == nil && granted && notify != nil {
				notify(id)
			}
		}()
	}
}
