package quota

import (
	"context"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// A {min,max} cap is drawn each hour and held until the next. Every node
// must use the same draw: the first node to need it writes it with
// Compare(CreateRevision == 0) — so exactly one write wins — and the
// others read the winner's. The value written is routing's own draw (a
// hash of the provider and the hour), so a single node and a cluster
// agree; storing it makes an edit of the range mid-hour, seen by the
// nodes at slightly different times, still give one value (clamped to
// the range each node has).

type drawKey struct {
	name string
	w    routing.Window
	hour int64
}

// capOf returns the cap of l for counter name (provider id) in window w
// at now; ok is false while a drawn value is being fetched. While etcd
// is unreachable an unknown draw is the range's minimum: the one value
// no node's draw can be below. c.mu is held.
func (c *Cluster) capOf(name, id string, w routing.Window, l routing.Limit, now time.Time) (int, bool) {
	if l.Max <= l.Min {
		return l.Min, true
	}
	hour := routing.WindowStart(routing.Hour, now).Unix()
	dk := drawKey{name, w, hour}
	if v, ok := c.draws[dk]; ok {
		return min(max(v, l.Min), l.Max), true
	}
	if c.down {
		return l.Min, true
	}
	if _, ok := c.draws[drawKey{name, w, -hour}]; !ok { // -hour marks a fetch under way
		c.draws[drawKey{name, w, -hour}] = 0
		v := l.Effective(id, now)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.fetchDraw(dk, v, time.Unix(hour, 0).Add(time.Hour))
		}()
	}
	return 0, false
}

func (c *Cluster) fetchDraw(dk drawKey, v int, end time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), c.rpcTimeout)
	defer cancel()
	got, err := c.agreeDraw(ctx, dk, v, end)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.draws, drawKey{dk.name, dk.w, -dk.hour})
	if err != nil {
		c.setDown(true)
		return
	}
	c.draws[dk] = got
	for k := range c.draws {
		if k.hour > 0 && k.hour < dk.hour {
			delete(c.draws, k)
		}
	}
	c.signal()
}

// agreeDraw writes v as the hour's draw unless a node did first, and
// returns the draw in force.
func (c *Cluster) agreeDraw(ctx context.Context, dk drawKey, v int, end time.Time) (int, error) {
	key := fmt.Sprintf("%squota-draw/%s/%s/%d", c.prefix, dk.name, dk.w, dk.hour)
	lease, err := c.lease(ctx, end)
	if err != nil {
		return 0, err
	}
	tr, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, strconv.Itoa(v), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, err
	}
	if tr.Succeeded {
		c.writes.Add(1)
		return v, nil
	}
	kvs := tr.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return v, nil
	}
	return strconv.Atoi(string(kvs[0].Value))
}
