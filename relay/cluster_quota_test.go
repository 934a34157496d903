package relay

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	clusterhealth "github.com/smtpmux/smtpmux/cluster/health"
	"github.com/smtpmux/smtpmux/cluster/quota"
	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

var (
	_ QuotaGate    = (*quota.Cluster)(nil)
	_ ManagedGate  = (*quota.Managed)(nil)
	_ SendLimiter  = (*quota.SendLimiter)(nil)
	_ BreakerStore = (*clusterhealth.Shared)(nil)
)

// TestClusterQuotaGate: a scheduler whose QuotaGate is cluster/quota on a
// real etcd shares a provider's per-minute cap with another node: what
// the other node spent in the minute is not sent here, the rest waits
// for the next minute (and then goes).
func TestClusterQuotaGate(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	clock := &testClock{t: time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)}
	gate := func(node string) *quota.Cluster {
		cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		q := quota.New(cli, "/smtpmux/", node, clock.now, slog.New(slog.DiscardHandler),
			quota.WithMembers(func() []string { return []string{"n1", "n2"} }))
		q.Start(context.Background())
		t.Cleanup(q.Close)
		return q
	}
	here, other := gate("n1"), gate("n2")
	h := newHarnessClock(t, nil, func(c *SchedulerConfig) { c.Quota = here }, clock.now)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerMinute = &store.Range{Min: 10, Max: 10} })

	// The other node sends 7 through the same provider this minute.
	var l routing.Limits
	l[routing.Minute] = &routing.Limit{Min: 10, Max: 10}
	for sent := 0; sent < 7; {
		now := clock.now()
		if ok, _ := other.Check(h.provID, l, 1, now); ok && other.Take(h.provID, l, 1, now) {
			other.Done(h.provID, l, 1, now, true, now)
			sent++
			continue
		}
		waitFor(t, 5*time.Second, "a block for the other node", func() bool {
			ok, _ := other.Check(h.provID, l, 1, clock.now())
			return ok
		})
	}

	ids := h.sendN(h.secret, 6)
	waitFor(t, 10*time.Second, "3 sent here, 3 waiting for the next minute", func() bool {
		sent, waiting := 0, 0
		for _, id := range ids {
			m, _ := h.store.Message(id)
			switch {
			case m.State == store.StateDone:
				sent++
			case m.State == store.StateQueued && len(m.Waiting) > 0:
				waiting++
			}
		}
		return sent == 3 && waiting == 3
	})
	if n := h.fake.count(); n != 3 {
		t.Fatalf("upstream got %d this minute, want 3 (cap 10, 7 sent by the other node)", n)
	}
	clock.set(clock.now().Truncate(time.Minute).Add(time.Minute))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("here %+v other %+v", here.Stats(), other.Stats())
			for _, id := range ids {
				m, _ := h.store.Message(id)
				t.Logf("END %s %v next %v %.80s", id, m.State, m.NextAttemptAt, m.Waiting)
			}
		}
	})
	waitFor(t, 10*time.Second, "the rest sent in the next minute", func() bool { return h.allSent(ids) })
}
