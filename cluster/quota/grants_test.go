package quota

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// TestGrantsValue: the split hands every live node that is not idle an
// equal share (the leftover to the node splitting), and a value that is
// not a grants object counts as it must: a bare total (earlier versions)
// as granted to no node, anything unreadable as a full window.
func TestGrantsValue(t *testing.T) {
	g := parseGrants([]byte(`{"by":"n2","g":{"n1":10,"n2":5},"idle":["n4"]}`))
	mine := g.split("n1", []string{"n1", "n2", "n3", "n4"}, 11)
	if mine != 5 || g.G["n2"] != 8 || g.G["n3"] != 3 || g.G["n4"] != 0 || g.total() != 21 {
		t.Fatalf("split of 11 among n1..n3 (n4 idle; self's part is the caller's to add): self %d, grants %v", mine, g.G)
	}
	if n := g.splitters("n1", []string{"n1", "n2", "n3", "n4"}); n != 3 {
		t.Fatalf("%d nodes served by a split, want 3", n)
	}
	if back := parseGrants([]byte(g.encode())); back.total() != 21 || back.By != "n2" || len(back.Idle) != 1 {
		t.Fatalf("round trip: %+v", back)
	}
	if old := parseGrants([]byte("42")); old.total() != 42 || old.G["n1"] != 0 {
		t.Fatalf("a bare total: %+v", old)
	}
	if bad := parseGrants([]byte("{not json")); bad.total() < 1<<20 {
		t.Fatalf("an unreadable value leaves room: %+v", bad)
	}
}

// TestRestartedNodeDoesNotReuseItsGrant: a node killed mid-window (no hand
// back) comes back with the same node ID. What its earlier run was granted
// stays counted, spent or not: the new run spends only new blocks, so the
// minute never passes its cap however much the first run had sent.
func TestRestartedNodeDoesNotReuseItsGrant(t *testing.T) {
	clk := newClock()
	ec, qs := nodes(t, 2, clk)
	l := limits(0, 10)
	// A node alone on the provider, then killed: its grant covers the
	// whole minute (a split, with the other node's share handed over).
	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	first := New(cli, prefix, "node1", clk.Now, slog.New(slog.DiscardHandler), WithRPCTimeout(700*time.Millisecond), WithJoinGrace(0))
	first.Start(context.Background())
	sent := 0
	for ; sent < 4; sent++ {
		send(t, first, clk, "p", l)
	}
	first.cancel() // kill -9: no hand back
	first.wg.Wait()
	first.mu.Lock()
	granted := first.slots[wkey{provName("p"), routing.Minute, clk.Now().Truncate(time.Minute).Unix()}].granted
	first.mu.Unlock()
	if granted <= sent {
		t.Fatalf("the first run holds nothing unspent (granted %d, sent %d): the test shows nothing", granted, sent)
	}
	// The new run of node1 and node2 take what they can this minute.
	again := qs[0]
	took := 0
	for _, q := range []*Cluster{again, qs[1]} {
		for {
			ok, _, err := takeNoWait(q, clk, "p", l)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			took++
		}
	}
	if sent+took > 10 {
		t.Fatalf("the first run sent %d, then %d more went in the same minute: %d, cap 10", sent, took, sent+took)
	}
	t.Logf("first run: granted %d, sent %d; after the restart %d more", granted, sent, took)
}
