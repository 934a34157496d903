package quota

import (
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

// Check, Take and Done are relay.QuotaGate: the scheduler asks them, under
// its own pick lock, after its local quota check passed. They never wait
// for etcd: a provider whose block is on its way is "over quota" for a
// moment (look again in refillWait), so one slow etcd call never holds
// every pick. A provider with no caps returns at once, with no etcd call.

// provName is the counter name of a provider's windows.
func provName(id string) string { return "p/" + id }

// Check reports whether n units of provider id fit in every limited
// window of l, cluster-wide, at now; if not, when to look again.
func (c *Cluster) Check(id string, l routing.Limits, n int, now time.Time) (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkAll(id, l, n, now)
}

func (c *Cluster) checkAll(id string, l routing.Limits, n int, now time.Time) (bool, time.Time) {
	ok, retry := true, time.Time{}
	later := func(t time.Time) {
		ok = false
		if t.After(retry) {
			retry = t
		}
	}
	name := provName(id)
	for w := routing.Second; w <= routing.Day; w++ {
		if l[w] == nil {
			continue
		}
		cap, known := c.capOf(name, id, w, *l[w], now)
		if !known {
			later(now.Add(refillWait))
			continue
		}
		if w == routing.Second {
			if fits, r := c.checkSecond(id, cap, n, now); !fits {
				later(r)
			}
			continue
		}
		k := wkey{name, w, routing.WindowStart(w, now).Unix()}
		if fits, r := c.check(k, cap, n, now); !fits {
			later(r)
		}
	}
	return ok, retry
}

// Take spends n units of provider id in every limited window of l, if
// they fit (Check's answer, taken under the same lock).
func (c *Cluster) Take(id string, l routing.Limits, n int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, _ := c.checkAll(id, l, n, now); !ok {
		return false
	}
	name := provName(id)
	for w := routing.Second; w <= routing.Day; w++ {
		if l[w] == nil {
			continue
		}
		if w == routing.Second {
			c.slidingFor(id).inflight += n
			continue
		}
		c.spend(wkey{name, w, routing.WindowStart(w, now).Unix()}, n, now)
	}
	return true
}

// Done ends a Take made at takenAt: consumed reports whether the upstream
// received the message. Units not consumed go back to their windows if
// those are still current; consumed ones enter the sliding second.
func (c *Cluster) Done(id string, l routing.Limits, n int, takenAt time.Time, consumed bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := provName(id)
	for w := routing.Second; w <= routing.Day; w++ {
		if l[w] == nil {
			continue
		}
		if w == routing.Second {
			s := c.slidingFor(id)
			s.inflight = max(0, s.inflight-n)
			if consumed {
				for i := 0; i < n; i++ {
					s.recent = append(s.recent, now)
				}
			}
			continue
		}
		if !consumed {
			if start := routing.WindowStart(w, takenAt); start.Equal(routing.WindowStart(w, now)) {
				c.giveBack(wkey{name, w, start.Unix()}, n)
			}
		}
	}
}
