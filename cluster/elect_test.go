package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
)

// TestLead: of two nodes leading the same job, one runs it; when that
// node goes, the other takes over.
func TestLead(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a, _ := testNode(t, etcd.Endpoints(), "a")
	b, _ := testNode(t, etcd.Endpoints(), "b")
	var running, most atomic.Int32
	var mu sync.Mutex
	ran := map[string]bool{}
	job := func(id string) func(context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			if n > most.Load() {
				most.Store(n)
			}
			mu.Lock()
			ran[id] = true
			mu.Unlock()
			<-ctx.Done()
			running.Add(-1)
		}
	}
	actx, acancel := context.WithCancel(context.Background())
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.Lead(actx, "job", job("a")) }()
	waitFor(t, "a leads", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return ran["a"] })
	go func() { defer wg.Done(); b.Lead(bctx, "job", job("b")) }()
	// b campaigns (its candidate key is in etcd) but must not run.
	waitFor(t, "b campaigns", 5*time.Second, func() bool {
		r, err := b.cli.Get(context.Background(), "/t/elections/job", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && r.Count == 2
	})
	mu.Lock()
	bRan := ran["b"]
	mu.Unlock()
	if running.Load() != 1 || bRan {
		t.Fatalf("b runs the job while a leads")
	}
	acancel() // a leaves: b must take over
	waitFor(t, "b leads after a left", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return ran["b"] })
	bcancel()
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d nodes ran the job at once", most.Load())
	}
}
