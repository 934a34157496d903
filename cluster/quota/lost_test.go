package quota

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// lossyKV is the etcd client's KV with answers that get lost: while lose
// is set, the next transaction is committed by the real etcd and then
// reported as timed out — what a client sees when etcd froze (or the
// network dropped the reply) after reading the request, and applied it
// once it ran again (observed with a SIGSTOPped etcd in
// TestClusterEtcdFrozenUnderLoad). While drop is set, the next one is
// reported as timed out without reaching etcd at all.
type lossyKV struct {
	clientv3.KV
	lose *atomic.Bool
	drop *atomic.Bool
}

func (l lossyKV) Txn(ctx context.Context) clientv3.Txn { return lossyTxn{l.KV.Txn(ctx), l} }

type lossyTxn struct {
	clientv3.Txn
	l lossyKV
}

func (t lossyTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { return lossyTxn{t.Txn.If(cs...), t.l} }
func (t lossyTxn) Then(ops ...clientv3.Op) clientv3.Txn { return lossyTxn{t.Txn.Then(ops...), t.l} }
func (t lossyTxn) Else(ops ...clientv3.Op) clientv3.Txn { return lossyTxn{t.Txn.Else(ops...), t.l} }

func (t lossyTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.l.drop.CompareAndSwap(true, false) {
		return nil, context.DeadlineExceeded
	}
	r, err := t.Txn.Commit()
	if err == nil && t.l.lose.CompareAndSwap(true, false) {
		return nil, context.DeadlineExceeded
	}
	return r, err
}

// lossyNodes are two quota nodes on real etcd, the first with a lossy
// client, and helpers on window k (a minute capped at cap).
type lossyNodes struct {
	t          *testing.T
	q1, q2     *Cluster
	lose, drop *atomic.Bool
	k          wkey
	cap        int
}

func newLossyNodes(t *testing.T, cap int) *lossyNodes {
	clk := newClock()
	_, qs := nodes(t, 2, clk)
	n := &lossyNodes{t: t, q1: qs[0], q2: qs[1], lose: new(atomic.Bool), drop: new(atomic.Bool), cap: cap,
		k: wkey{provName("p1"), routing.Minute, routing.WindowStart(routing.Minute, clk.Now()).Unix()}}
	n.q1.cli.KV = lossyKV{KV: n.q1.cli.KV, lose: n.lose, drop: n.drop}
	return n
}

// held is what q holds of the window.
func (n *lossyNodes) held(q *Cluster) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.slotFor(n.k, n.cap)
	return q.slots[n.k].held()
}

// grant asks etcd for need units for q, as a take that lacks them would.
func (n *lossyNodes) grant(q *Cluster, need int) {
	n.held(q)
	q.refillNow(n.k, need)
}

// total is the window's total in etcd.
func (n *lossyNodes) total() int {
	n.t.Helper()
	resp, err := n.q2.cli.Get(context.Background(), n.q1.windowKey(n.k))
	if err != nil {
		n.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return parseGrants(resp.Kvs[0].Value).total()
}

// TestLostHandBackAnswerIsNotSpentTwice: node1 holds 5 units of a minute
// capped at 5 and hands them back; etcd applies the hand back but the
// answer is lost. node1 must not hold them again: node2 is now granted
// them, and the two together could spend 10 in a minute capped at 5.
func TestLostHandBackAnswerIsNotSpentTwice(t *testing.T) {
	n := newLossyNodes(t, 5)
	n.grant(n.q1, 5)
	if got := n.held(n.q1); got != 5 {
		t.Fatalf("node1 holds %d after asking for the whole cap, want 5", got)
	}
	n.lose.Store(true)
	n.q1.handBack(context.Background(), n.k, false)
	if n.lose.Load() {
		t.Fatal("the hand back made no transaction")
	}
	if got := n.total(); got != 0 {
		t.Fatalf("etcd's total after the hand back: %d, want 0 (the lossy client must really commit)", got)
	}
	n.grant(n.q2, 5)
	if h1, h2 := n.held(n.q1), n.held(n.q2); h1+h2 > 5 {
		t.Fatalf("node1 holds %d and node2 %d of a window capped at 5", h1, h2)
	}
}

// TestLostAnswersAreSettled: a grant etcd applied but whose answer was
// lost is not left unused in the total until the window ends, and a hand
// back that never reached etcd is held again: at node1's next
// transaction on the window (or within a second, in the background), it
// holds exactly what etcd counts for it.
func TestLostAnswersAreSettled(t *testing.T) {
	n := newLossyNodes(t, 10)
	n.lose.Store(true)
	n.grant(n.q1, 3)
	if n.lose.Load() || n.total() != 3 || n.held(n.q1) != 0 {
		t.Fatalf("lost grant: total %d, node1 holds %d; want 3 and 0 until it knows", n.total(), n.held(n.q1))
	}
	// In the background: the loop settles it within a second or two.
	if !eventually(10*time.Second, func() bool { return n.held(n.q1) == 3 }) {
		t.Fatalf("node1 holds %d of a lost grant of 3 that etcd applied", n.held(n.q1))
	}
	// At the next transaction: a lost grant, then another take.
	n.lose.Store(true)
	n.grant(n.q1, 5) // 3 held: a block of at least 2 more
	lostTotal := n.total()
	n.grant(n.q1, n.held(n.q1)+1)
	if got, want := n.held(n.q1), n.total(); got != want || lostTotal <= 3 {
		t.Fatalf("after a lost grant and another: node1 holds %d, etcd counts %d (the lost one made it %d)", got, want, lostTotal)
	}
	// A hand back that never reached etcd: the units are held again.
	before := n.held(n.q1)
	n.drop.Store(true)
	n.q1.handBack(context.Background(), n.k, false)
	if n.drop.Load() || n.held(n.q1) != 0 {
		t.Fatalf("dropped hand back: node1 holds %d, want 0 until it knows", n.held(n.q1))
	}
	n.grant(n.q1, before) // settles first
	if got := n.held(n.q1); got < before || got != n.total() {
		t.Fatalf("after a hand back of %d that never reached etcd: node1 holds %d, etcd counts %d", before, got, n.total())
	}
}

// entry is q's entry in the window's grants value in etcd.
func (n *lossyNodes) entry(q *Cluster) int {
	n.t.Helper()
	resp, err := n.q2.cli.Get(context.Background(), n.q1.windowKey(n.k))
	if err != nil {
		n.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return parseGrants(resp.Kvs[0].Value).G[q.node]
}

// TestLostSplitIsSettled: node1 splits the remainder of a pressed window
// (its previous window was pressed) between itself and node2, and the
// answer is lost though etcd applied it. node2 learns of its share from
// the watch, as of any split; node1 cannot (the value names node1 as its
// writer, and a node takes no gift from its own values), so only the
// settling makes its share its own before the window ends. Neither node
// asks for the window afterwards, so each may hand its share back (the
// split was contended): what each holds plus what it handed back is its
// share, and etcd counts exactly what they hold.
func TestLostSplitIsSettled(t *testing.T) {
	n := newLossyNodes(t, 10)
	n.q1.mu.Lock()
	prev := routing.WindowStart(routing.Minute, time.Unix(n.k.start, 0).Add(-time.Second)).Unix()
	n.q1.pressed[rateKey{n.k.name, n.k.w}] = prev
	n.q1.mu.Unlock()
	n.lose.Store(true)
	n.grant(n.q1, 1)
	if n.lose.Load() || n.total() != 10 || n.entry(n.q2) != 5 {
		t.Fatalf("lost split: total %d, node2's entry %d; want the cap, 10, split 5 and 5", n.total(), n.entry(n.q2))
	}
	if got := n.held(n.q1); got != 0 {
		t.Fatalf("node1 holds %d of a split whose answer was lost; want 0 until it knows", got)
	}
	share := func(q *Cluster) int {
		h := n.held(q)
		q.mu.Lock()
		defer q.mu.Unlock()
		return h + int(q.stats.Returned)
	}
	if !eventually(10*time.Second, func() bool {
		return share(n.q1) == 5 && share(n.q2) == 5 && n.total() == n.held(n.q1)+n.held(n.q2)
	}) {
		t.Fatalf("node1 holds %d (entry %d), node2 %d (entry %d), etcd counts %d: a share of the lost split left unused",
			n.held(n.q1), n.entry(n.q1), n.held(n.q2), n.entry(n.q2), n.total())
	}
}
