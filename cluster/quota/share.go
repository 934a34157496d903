package quota

import (
	"slices"
	"time"
)

// The per-second window is sliding (routing.Usage): an upstream must never
// see more than the cap in any one-second span. Blocks of fixed seconds
// could not promise that across nodes (5 at the end of one second on one
// node, 5 at the start of the next on another), and a write per node per
// second would cost more than the messages. So the second's cap is split
// between the live nodes with no write at all: each node gets cap/live,
// and the cap%live units left over go round the nodes in turns of
// shareTurn, each turn starting with a second in which nobody uses the
// turn's units (the previous holder's last use is then more than a second
// old). Each node keeps its own sliding log against its share, so the sum
// over nodes in any one-second span is at most the cap — with etcd down
// too, since the split needs no etcd.
//
// The price is that one busy node cannot borrow the second-window share
// of an idle one: per-second throughput of a single node is cap/live (+1
// in its turns). The minute, hour and day windows have no such limit.

// shareTurn is how long a node holds one of the leftover units.
const shareTurn = 10 * time.Second

// sliding is this node's per-second use of one provider.
type sliding struct {
	inflight int
	recent   []time.Time // completions within the last second, oldest first
	// share and since: when the split grows (a node left) the larger share
	// is used only a second after it was first seen, so a node that still
	// had the old split cannot overlap with it.
	share int
	since time.Time
}

func (s *sliding) roll(now time.Time) {
	cut := now.Add(-time.Second)
	i := 0
	for i < len(s.recent) && !s.recent[i].After(cut) {
		i++
	}
	s.recent = s.recent[i:]
}

// secondShare is this node's share of a per-second cap at now. c.mu is held.
func (c *Cluster) secondShare(id string, cap int, now time.Time) int {
	if c.members == nil && c.joinGrace > 0 && (c.joinedAt.IsZero() || now.Sub(c.joinedAt) < c.joinGrace) {
		// Not yet registered, or the older nodes may not have seen this
		// one: they still use the split without it.
		return 0
	}
	live := c.liveNodesLocked()
	n := len(live)
	idx := slices.Index(live, c.node)
	share := cap / n
	if r := cap % n; r > 0 {
		turn := now.Unix() / int64(shareTurn/time.Second)
		turnStart := time.Unix(turn*int64(shareTurn/time.Second), 0)
		if (idx-int(turn%int64(n))+n)%n < r && now.Sub(turnStart) >= time.Second {
			share++
		}
	}
	st := c.slidingFor(id)
	switch {
	case share < st.share || st.since.IsZero():
		st.share, st.since = share, now
	case share > st.share:
		if st.since.After(now) || now.Sub(st.since) < time.Second {
			return st.share
		}
		st.share, st.since = share, now
	}
	return st.share
}

func (c *Cluster) slidingFor(id string) *sliding {
	s, ok := c.second[id]
	if !ok {
		s = &sliding{}
		c.second[id] = s
	}
	return s
}

// checkSecond reports whether n more units fit in this node's share of
// provider id's per-second cap, and if not when to look again. c.mu is held.
func (c *Cluster) checkSecond(id string, cap, n int, now time.Time) (bool, time.Time) {
	share := c.secondShare(id, cap, now)
	s := c.slidingFor(id)
	s.roll(now)
	used := s.inflight + len(s.recent)
	if used+n <= share {
		return true, time.Time{}
	}
	if len(s.recent) > 0 {
		return false, s.recent[0].Add(time.Second)
	}
	return false, now.Add(refillWait)
}
