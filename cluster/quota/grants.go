package quota

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpmux/smtpmux/routing"
)

// A window key's value says what each node was granted of the window, not
// just the total, so that one transaction can grant units to OTHER nodes:
// when a window is nearly exhausted (a node's appetite is at least an equal
// share of what is left) the node that finds it so grants the whole
// remainder in equal shares to the live nodes at once — one write — rather
// than every node shrinking its blocks down to one unit, a write a message.
//
// The rule that keeps the invariant: a node's entry is only ever LOWERED by
// that node (a hand back, whose units it removed from its own grant before
// the transaction); other nodes only RAISE it (a split). A node learns of
// what others gave it from the watch, as the rise of its entry in a value
// written by another node (the event's previous value is the baseline), so
// it never counts as its own what an earlier run of the same node ID was
// granted and may have spent: after a restart, those units stay granted in
// etcd and unspendable until the window ends, which errs on the safe side.

// grants is the value of a window key.
type grants struct {
	// By is the node whose transaction wrote this value: a node skips its
	// own values in the watch (its transaction's answer counted them).
	By string `json:"by"`
	// G is what each node was granted (spent or held), by node ID.
	G map[string]int `json:"g"`
	// Idle lists the nodes that handed back units they were given without
	// spending any in the window: later splits of this counter leave them
	// out (they ask for blocks themselves when they need some), so a node
	// that never sends through a provider is not handed a share of it in
	// every window only to give it back.
	Idle []string `json:"idle,omitempty"`
	// Contended: the counter's previous window was pressed, so this one
	// was split from its start; it stands for every node's want (a node
	// that starves in it posts none) and makes holders hand back what
	// they leave unspent.
	Contended bool `json:"contended,omitempty"`
}

// unreadable is the grant assumed for a value that is not one: the window
// counts as full, the one safe reading.
const unreadable = 1 << 30

// parseGrants reads a window key's value; empty is a window nobody has
// asked for yet. A bare integer (the total alone, as written by earlier
// versions) is a grant of no known node, so no one can lower it.
func parseGrants(b []byte) grants {
	g := grants{G: map[string]int{}}
	if len(b) == 0 {
		return g
	}
	if n, err := strconv.Atoi(string(b)); err == nil {
		g.G["?"] = n
		return g
	}
	if err := json.Unmarshal(b, &g); err != nil || g.G == nil {
		return grants{G: map[string]int{"?": unreadable}}
	}
	return g
}

func (g grants) encode() string {
	b, _ := json.Marshal(g) // maps of strings to ints always encode
	return string(b)
}

// total is everything granted of the window, to all nodes.
func (g grants) total() int {
	t := 0
	for _, n := range g.G {
		t += max(n, 0)
	}
	return t
}

// setIdle adds node to Idle (idle true) or removes it.
func (g *grants) setIdle(node string, idle bool) {
	i := slices.Index(g.Idle, node)
	switch {
	case idle && i < 0:
		g.Idle = append(g.Idle, node)
		slices.Sort(g.Idle)
	case !idle && i >= 0:
		g.Idle = slices.Delete(g.Idle, i, i+1)
	}
}

// split grants r units in equal shares to the live nodes that are not
// idle (self always counts): floor(r/k) each, the units left over to
// self, which is the node known to need them. It returns self's part.
func (g *grants) split(self string, live []string, r int) int {
	var to []string
	for _, n := range live {
		if n != self && !slices.Contains(g.Idle, n) {
			to = append(to, n)
		}
	}
	q := r / (len(to) + 1)
	for _, n := range to {
		g.G[n] += q
	}
	return r - q*len(to)
}

// othersHold reports whether any other node has units of the window: if
// none has, a want could not be answered.
func (g grants) othersHold(self string) bool {
	for n, v := range g.G {
		if n != self && v > 0 {
			return true
		}
	}
	return false
}

// splitters returns how many nodes a split would serve.
func (g grants) splitters(self string, live []string) int {
	k := 1
	for _, n := range live {
		if n != self && !slices.Contains(g.Idle, n) {
			k++
		}
	}
	return k
}

// parseWindowKey is the inverse of windowKey: the counter, window and
// start of a key under <prefix>quota/.
func (c *Cluster) parseWindowKey(key string) (wkey, bool) {
	rest, ok := strings.CutPrefix(key, c.prefix+"quota/")
	if !ok {
		return wkey{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return wkey{}, false
	}
	start, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return wkey{}, false
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 {
		return wkey{}, false
	}
	for w := routing.Minute; w <= routing.Day; w++ {
		if w.String() == rest[j+1:] {
			return wkey{name: rest[:j], w: w, start: start}, true
		}
	}
	return wkey{}, false
}

// idleNodes is the Idle list of the latest value seen of a counter.
type idleNodes struct {
	start int64
	nodes []string
}

// noteIdle remembers the Idle list of a value of window k, unless a later
// window's is known. c.mu is held.
func (c *Cluster) noteIdle(k wkey, nodes []string) {
	rk := rateKey{k.name, k.w}
	if cur, ok := c.idle[rk]; ok && cur.start > k.start {
		return
	}
	c.idle[rk] = idleNodes{k.start, slices.Clone(nodes)}
}

// idleHint is the Idle list a new window of k's counter starts with: the
// previous window's, so that a node that sends nothing through a provider
// is not given a share of every window only to hand it back. c.mu is held.
func (c *Cluster) idleHint(k wkey) []string {
	cur, ok := c.idle[rateKey{k.name, k.w}]
	if !ok || cur.start > k.start {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(cur.nodes), func(n string) bool { return n == c.node })
}
