package health

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/routing"
)

// node is one node's copy of the breakers, kept as the relay keeps it:
// its own outcomes go through UpdateBreaker (the stored result is
// adopted), other nodes' arrive through Watch.
type node struct {
	s  *Shared
	mu sync.Mutex
	bs map[string]routing.Breaker
}

func (n *node) apply(id string, b routing.Breaker) {
	n.mu.Lock()
	n.bs[id] = b
	n.mu.Unlock()
}

func (n *node) get(id string) routing.Breaker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bs[id]
}

func startNodes(t *testing.T, count int) (*etcdtest.Cluster, []*node) {
	ec := etcdtest.Start(t, 3)
	var out []*node
	for i := 0; i < count; i++ {
		cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		n := &node{s: New(cli, "/smtpmux/", fmt.Sprintf("node%d", i+1), nil, slog.New(slog.DiscardHandler)), bs: map[string]routing.Breaker{}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.s.Watch(ctx, n.apply); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		out = append(out, n)
	}
	return ec, out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFailuresOnDifferentNodesPullEverywhere: three connection failures,
// one on each of three nodes, pull the provider on all three; an
// operator's reset on one node puts it back on all.
func TestFailuresOnDifferentNodesPullEverywhere(t *testing.T) {
	_, ns := startNodes(t, 3)
	const id = "dprov_shared"
	for i, n := range ns {
		b, err := n.s.UpdateBreaker(id, func(b *routing.Breaker) { b.Record(routing.Connection, time.Now()) })
		if err != nil {
			t.Fatal(err)
		}
		n.apply(id, b)
		if want := i + 1; len(b.Failures) != want && !(i == 2 && b.Pulled(time.Now())) {
			t.Fatalf("after the failure on node %d the stored state is %+v, want %d failures", i+1, b, want)
		}
		// Each node sees the others' failures before its own is recorded,
		// as it would with time between attempts.
		for _, o := range ns {
			waitFor(t, "the failure seen by every node", func() bool {
				b := o.get(id)
				return len(b.Failures) == i+1 || b.Pulled(time.Now())
			})
		}
	}
	for i, n := range ns {
		if b := n.get(id); !b.Pulled(time.Now()) || b.Reason != "connection_failures" {
			t.Fatalf("node %d: breaker %+v, want pulled for connection failures", i+1, b)
		}
	}
	// A success on one node does not end a pull (only its end does); an
	// operator's reset does, everywhere.
	if _, err := ns[1].s.UpdateBreaker(id, func(b *routing.Breaker) { b.Reset() }); err != nil {
		t.Fatal(err)
	}
	for i, n := range ns {
		waitFor(t, fmt.Sprintf("node %d sees the reset", i+1), func() bool {
			b := n.get(id)
			return !b.Pulled(time.Now()) && len(b.Failures) == 0
		})
	}
	// A node that starts later reads the state at start.
	bs, err := ns[0].s.Breakers()
	if err != nil {
		t.Fatal(err)
	}
	if b := bs[id]; b.Pulled(time.Now()) {
		t.Fatalf("stored state after the reset: %+v", b)
	}
}

// TestWatchCatchesUpAfterOutage: a pull stored while a node's etcd was
// away (here: all of etcd, restarted) reaches it when etcd returns.
func TestWatchCatchesUpAfterOutage(t *testing.T) {
	ec, ns := startNodes(t, 2)
	ec.StopAll()
	if _, err := ns[0].s.UpdateBreaker("p", func(b *routing.Breaker) { b.Record(routing.Connection, time.Now()) }); err == nil {
		t.Fatal("UpdateBreaker succeeded with etcd stopped")
	}
	ec.StartAll()
	b := routing.Breaker{PulledUntil: time.Now().Add(time.Hour), Reason: "connection_failures"}
	waitFor(t, "a write once etcd is back", func() bool {
		_, err := ns[0].s.UpdateBreaker("p", func(s *routing.Breaker) { *s = b })
		return err == nil
	})
	waitFor(t, "node2 sees the pull", func() bool { b := ns[1].get("p"); return b.Pulled(time.Now()) })
}
