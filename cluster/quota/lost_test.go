package quota

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// lossyKV is the etcd client's KV with answers that get lost: while lose
// is set, the next transaction is committed by the real etcd and then
// reported as timed out — what a client sees when etcd froze (or the
// network dropped the reply) after reading the request, and applied it
// once it ran again (observed with a SIGSTOPped etcd in
// TestClusterEtcdFrozenUnderLoad).
type lossyKV struct {
	clientv3.KV
	lose *atomic.Bool
}

func (l lossyKV) Txn(ctx context.Context) clientv3.Txn { return lossyTxn{l.KV.Txn(ctx), l.lose} }

type lossyTxn struct {
	clientv3.Txn
	lose *atomic.Bool
}

func (t lossyTxn) If(cs ...clientv3.Cmp) clientv3.Txn { return lossyTxn{t.Txn.If(cs...), t.lose} }
func (t lossyTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return lossyTxn{t.Txn.Then(ops...), t.lose}
}
func (t lossyTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return lossyTxn{t.Txn.Else(ops...), t.lose}
}

func (t lossyTxn) Commit() (*clientv3.TxnResponse, error) {
	r, err := t.Txn.Commit()
	if err == nil && t.lose.CompareAndSwap(true, false) {
		return nil, context.DeadlineExceeded
	}
	return r, err
}

// TestLostHandBackAnswerIsNotSpentTwice: node1 holds 5 units of a minute
// capped at 5 and hands them back; etcd applies the hand back but the
// answer is lost. node1 must not hold them again: node2 is now granted
// them, and the two together could spend 10 in a minute capped at 5.
func TestLostHandBackAnswerIsNotSpentTwice(t *testing.T) {
	const cap = 5
	clk := newClock()
	_, qs := nodes(t, 2, clk)
	q1, q2 := qs[0], qs[1]
	var lose atomic.Bool
	q1.cli.KV = lossyKV{KV: q1.cli.KV, lose: &lose}
	k := wkey{provName("p1"), routing.Minute, routing.WindowStart(routing.Minute, clk.Now()).Unix()}
	held := func(q *Cluster) int {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.slotFor(k, cap)
		return q.slots[k].held()
	}
	held(q1)
	q1.refillNow(k, cap)
	if got := held(q1); got != cap {
		t.Fatalf("node1 holds %d after asking for the whole cap, want %d", got, cap)
	}
	lose.Store(true)
	q1.handBack(context.Background(), k)
	if lose.Load() {
		t.Fatal("the hand back made no transaction")
	}
	resp, err := q2.cli.Get(context.Background(), q1.windowKey(k))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("window key: %v %v", resp, err)
	}
	if total, _ := strconv.Atoi(string(resp.Kvs[0].Value)); total != 0 {
		t.Fatalf("etcd's total after the hand back: %d, want 0 (the lossy client must really commit)", total)
	}
	held(q2)
	q2.refillNow(k, cap)
	if h1, h2 := held(q1), held(q2); h1+h2 > cap {
		t.Fatalf("node1 holds %d and node2 %d of a window capped at %d", h1, h2, cap)
	}
}
