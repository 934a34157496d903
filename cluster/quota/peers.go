package quota

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The outage share (window.go, outageShare) is only safe while no other
// node can grant: a node that cannot reach etcd does not know whether
// etcd is down for everyone or only for itself (a cut cable, a client
// still reconnecting after etcd came back). In the second case the others
// go on granting the whole cap among themselves, and the share would be
// spent on top of it. So:
//
//   - A node spends past its grants only while every other live node has
//     just told it that it cannot reach etcd either (each peer's /readyz,
//     asked over the nodes' own network every second; the word counts for
//     peerVouch from when the question went out). A peer it cannot reach
//     cannot vouch: then it spends only what it holds.
//   - A node that vouched keeps the asker's possible share, ceil(cap/live),
//     out of every grant it makes in a window that began before the
//     asker's spending could have ended — until the asker has written its
//     outage units into etcd and says so (its back marker, which names the
//     last vouch of each peer it spent on), or until such windows are over.
//     Units spent on a peer's word are real mail: an asker that never
//     comes back keeps its share reserved for the rest of those windows.
//
// Nothing is reserved after a failure no peer asked about, and an asker
// that reconciles right after etcd returns frees its reserve within a
// second or two.

// peerVouch is how long an "every peer cannot reach etcd" answer lets a
// node spend its outage share: the background loop asks again every
// second while etcd is away.
const peerVouch = 4 * time.Second

// vouchMargin covers a peer's answer being read and acted on later than
// the asking node's clock says (scheduling, a slow network).
const vouchMargin = 2 * time.Second

// Peer is another live node as the registrations name it.
type Peer struct {
	ID  string
	URL string // its advertise_url ("" if its registration did not say)
}

// Vouch is one peer's word that it cannot reach etcd: its number (see
// AnswerPeer) and Rev, the latest quota revision it knows of (a grant it
// made or saw). The asker's view of the windows is as fresh as the
// peer's only if the asker's watch has delivered everything up to Rev.
//
// Live is how many live nodes the peer counts: it keeps ceil(cap/Live) of
// the asker's out of its grants afterwards, so an asker that knows fewer
// nodes (one joined just before etcd went away) divides by Live instead.
type Vouch struct {
	Seq, Rev int64
	Live     int
}

// PeersDown asks each peer whether it can reach etcd. ok is true only if
// every one answered that it cannot; vouches are those given (also when
// another peer refused). Nil (the default): never, so a node spends only
// the grants it holds while etcd is away.
type PeersDown func(ctx context.Context, peers []Peer) (vouches map[string]Vouch, ok bool)

// WithPeersDown sets how a node whose etcd calls fail asks the others
// whether they fail too (cmd/smtpmux: each peer's /readyz).
func WithPeersDown(f PeersDown) Option { return func(c *Cluster) { c.peersDown = f } }

// vouch is what this node told one asker: the number of its last
// "cannot reach etcd" answer and when it gave it.
type vouch struct {
	seq int64
	at  time.Time
	// live is how many live nodes this node counted when it vouched: the
	// asker's share is at most cap over about that many, and a node that
	// joins later must not shrink the reserve below it.
	live int
}

// AnswerPeer reports whether this node cannot reach etcd, for node asker
// asking. A "cannot" answer carries a number that rises with every such
// answer; after etcd is back this node keeps the asker's share out of its
// grants until the asker's back marker names that number (or more).
//
// rev is the latest quota revision this node knows of: an asker whose
// view stops short of it has not heard of every grant this node has (it
// was cut off before the others went down), and must not spend a share
// computed from that view.
func (c *Cluster) AnswerPeer(asker string) (down bool, v Vouch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only a live node's word counts: a reserve for a name that is not
	// one would only shrink the grants (and grow this map).
	if !c.down || asker == "" || asker == c.node || !slices.Contains(c.liveNodesLocked(), asker) {
		return c.down, Vouch{}
	}
	c.vouchSeq++
	live := len(c.liveNodesLocked())
	c.vouchedTo[asker] = vouch{seq: c.vouchSeq, at: c.now(), live: live}
	c.vouchUnsaved = true
	return true, Vouch{Seq: c.vouchSeq, Rev: c.knownRev, Live: live}
}

// askPeers runs from the background loop: while etcd is away it asks the
// other live nodes and, if they all say they cannot reach etcd either,
// lets this node spend its outage share until peerVouch after the
// question went out.
func (c *Cluster) askPeers(ctx context.Context) {
	c.mu.Lock()
	down, ask := c.down, c.peersDown
	if !down || ask == nil {
		c.vouchedUntil = time.Time{}
		c.mu.Unlock()
		return
	}
	start := c.now()
	var peers []Peer
	for _, id := range c.liveNodesLocked() {
		if id != c.node {
			peers = append(peers, Peer{ID: id, URL: c.urls[id]})
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	vouches, ok := map[string]Vouch{}, true
	if len(peers) > 0 {
		vouches, ok = ask(ctx, peers)
	}
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	// Every vouch heard is named in the back marker, also those of an
	// ask that another peer refused: the voucher keeps this node's share
	// out until a marker names its latest vouch, and a vouch left out
	// (peers reconnecting one by one) would keep it out until its
	// windows end (a day).
	vouchLive := 0
	for id, v := range vouches {
		c.vouchesHeld[id] = max(c.vouchesHeld[id], v.Seq)
		vouchLive = max(vouchLive, v.Live)
		// A peer that knows of a later quota revision than this node's
		// watch delivered has heard of grants this node has not.
		ok = ok && v.Rev <= c.completeRev
	}
	if !ok {
		c.vouchedUntil = time.Time{}
		return
	}
	c.vouchedUntil = start.Add(peerVouch)
	c.vouchLive = vouchLive
}

// Vouched reports whether this node may spend its outage share now: etcd
// is away and every other live node just said it is away for it too.
func (c *Cluster) Vouched() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vouched(c.now())
}

// vouched reports whether the outage share may be spent at now. c.mu is
// held.
func (c *Cluster) vouched(now time.Time) bool { return now.Before(c.vouchedUntil) }

// recoveryReserve is what this node leaves out of a grant of window s:
// the share of each node it vouched for that may have been spent in s and
// not yet written to etcd (see the top of this file). c.mu is held.
func (c *Cluster) recoveryReserve(s *slot) int {
	if len(c.vouchedTo) == 0 && len(c.recorded) == 0 {
		return 0
	}
	// Per asker, once, however many nodes vouched for it: the share it
	// computed over the live count of then (a node that joined since does
	// not shrink it, one that left does not grow it).
	per := map[string]int{}
	c.activeVouches(func(_, asker string, v vouch) {
		if s.start.Before(v.at.Add(peerVouch + vouchMargin)) {
			l := max(1, v.live)
			per[asker] = max(per[asker], (s.cap+l-1)/l)
		}
	})
	n := 0
	for _, share := range per {
		n += share
	}
	return n
}

// backPrefix holds each node's back marker: the last vouch number of each
// peer whose word it spent on, written once its outage units are in etcd.
func (c *Cluster) backPrefix() string { return c.prefix + "quota-back/" }

// settleVouches runs from the background loop while etcd answers. As a
// node that spent on others' word: write its outage units into etcd
// (each window's reconciling refill), then its back marker. As a node
// that vouched: read the others' markers and drop the reserves they
// settle, and those whose windows (a day at most) are over.
func (c *Cluster) settleVouches(ctx context.Context) {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return
	}
	now := c.now()
	for id, v := range c.vouchedTo {
		if now.Sub(v.at) > peerVouch+vouchMargin+25*time.Hour {
			delete(c.vouchedTo, id)
		}
	}
	held := make(map[string]int64, len(c.vouchesHeld))
	for id, seq := range c.vouchesHeld {
		held[id] = seq
	}
	var owed []wkey
	for k, s := range c.slots {
		if s.outage > 0 && now.Before(s.end) && !s.fetching {
			owed = append(owed, k)
		}
	}
	pending := false
	c.activeVouches(func(string, string, vouch) { pending = true })
	c.mu.Unlock()

	if len(held) > 0 {
		for _, k := range owed {
			c.mu.Lock()
			s, ok := c.slots[k]
			if ok && !s.fetching {
				s.fetching = true
				c.wg.Add(1)
			} else {
				ok = false
			}
			c.mu.Unlock()
			if ok {
				c.refillNow(k, 0) // need 0: only the outage units are written
				c.wg.Done()
			}
		}
		// Every current window, not only those reconciled here: a window
		// whose refill was under way (one started during the outage, say)
		// was skipped above and may still hold units etcd has not heard
		// of. A marker written now would let the vouchers grant them
		// again.
		c.mu.Lock()
		left := false
		now := c.now()
		for _, s := range c.slots {
			if s.outage > 0 && now.Before(s.end) {
				left = true
			}
		}
		c.mu.Unlock()
		if !left && c.putBack(ctx, held) {
			c.mu.Lock()
			for id, seq := range held {
				if c.vouchesHeld[id] == seq {
					delete(c.vouchesHeld, id)
				}
			}
			c.mu.Unlock()
		}
	}
	if pending {
		c.readBacks(ctx)
	}
}

// putBack writes this node's back marker naming held.
func (c *Cluster) putBack(ctx context.Context, held map[string]int64) bool {
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	lease, err := c.lease(ctx, c.now().Add(25*time.Hour))
	if err != nil {
		c.failed(err)
		return false
	}
	b, _ := json.Marshal(held) // a map of strings to integers always encodes
	if _, err := c.cli.Put(ctx, c.backPrefix()+c.node, string(b), clientv3.WithLease(lease)); err != nil {
		c.failed(err)
		return false
	}
	c.writes.Add(1)
	return true
}

// readBacks drops the reserves the others' back markers settle.
func (c *Cluster) readBacks(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.backPrefix(), clientv3.WithPrefix())
	if err != nil {
		c.failed(err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), c.backPrefix())
		var held map[string]int64
		if json.Unmarshal(kv.Value, &held) != nil {
			continue
		}
		if v, ok := c.vouchedTo[id]; ok && held[c.node] >= v.seq {
			delete(c.vouchedTo, id)
		}
		for voucher, seq := range held {
			k := voucher + "\x00" + id
			c.settled[k] = max(c.settled[k], seq)
		}
	}
}
