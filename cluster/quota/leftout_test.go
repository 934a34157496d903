package quota

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// TestRestartedNodeGetsUnitsFromBusyNodes: a pressed minute is split
// between node1 and node2, node1 is killed (its share stays counted,
// unusable by its next run) and comes back. node2 has mail waiting and
// keeps asking. The new run of node1 finds the window full: it must post
// its want (its entry in etcd is its earlier run's grant, not a gift on
// its way through the watch), and node2, asking all the time, must still
// hand back what it holds beyond a refill period's spending. Otherwise
// node1 answers "rate limited" until the window ends, as seen through
// real daemons in TestClusterKill9UnderLoad.
func TestRestartedNodeGetsUnitsFromBusyNodes(t *testing.T) {
	clk := newClock()
	ec, qs := nodes(t, 2, clk)
	first, busy := qs[0], qs[1]
	l := limits(0, 10)
	k := wkey{provName("p"), routing.Minute, routing.WindowStart(routing.Minute, clk.Now()).Unix()}
	first.mu.Lock()
	first.pressed[rateKey{k.name, k.w}] = routing.WindowStart(routing.Minute, clk.Now().Add(-time.Minute)).Unix()
	first.mu.Unlock()
	send(t, first, clk, "p", l) // the split: 5 each
	held := func(q *Cluster) int {
		q.mu.Lock()
		defer q.mu.Unlock()
		if s, ok := q.slots[k]; ok {
			return s.held()
		}
		return 0
	}
	if !eventually(10*time.Second, func() bool { return held(busy) == 5 }) {
		t.Fatalf("node2 holds %d after node1's split of 10, want 5", held(busy))
	}
	send(t, busy, clk, "p", l)
	send(t, busy, clk, "p", l)
	first.cancel() // kill -9: no hand back
	first.wg.Wait()
	clk.advanceTo(clk.Now().Add(10 * time.Second)) // node2's rate: 2 in 10 s

	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	again := New(cli, prefix, "node1", clk.Now, slog.New(slog.DiscardHandler), WithRPCTimeout(700*time.Millisecond), WithJoinGrace(0))
	again.Start(context.Background())
	t.Cleanup(again.Close)

	// node2 has mail waiting: it checks the window all the time.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // a busy node's pace
			}
			busy.Check("p", l, 1, clk.Now())
		}
	}()
	defer func() { close(stop); <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, _, err := takeNoWait(again, clk, "p", l)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			again.mu.Lock()
			st := again.stats
			again.mu.Unlock()
			t.Fatalf("the restarted node1 got nothing in 10 s while node2 holds %d (node1 wants posted: %d)", held(busy), st.WantWrites)
		}
		select {
		case <-again.changedCh():
		case <-time.After(200 * time.Millisecond): // or look again
		}
	}
	if h := held(busy); h < 1 {
		t.Fatalf("node2, spending, kept %d: it should keep a refill period's worth", h)
	}
}
