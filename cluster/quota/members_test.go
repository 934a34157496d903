package quota

import (
	"context"
	"testing"
	"time"
)

// TestVanishedRegistrationsStillCount: after etcd was away longer than the
// membership lease every registration is gone, and the nodes register
// again one by one. A node that reads the list in between must not think
// the others dead: its per-second share (and its outage share) would grow
// while theirs did not, and together they would pass the cap. A node that
// stays away is dropped after memberGrace.
func TestVanishedRegistrationsStillCount(t *testing.T) {
	clk := newClock()
	_, qs := nodes(t, 3, clk)
	q := qs[0]
	cli := q.cli
	ctx := context.Background()
	const cap = 6
	l := limits(cap, 0)
	share := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.secondShare("p1", cap, clk.Now())
	}
	if got := share(); got != cap/3 {
		t.Fatalf("share with 3 nodes: %d", got)
	}
	// node2 and node3's registrations expire (as after a long outage);
	// node2 registers again a moment later.
	for _, id := range []string{"node2", "node3"} {
		if _, err := cli.Delete(ctx, prefix+"nodes/"+id); err != nil {
			t.Fatal(err)
		}
	}
	q.refreshMembers(ctx)
	if got := len(q.liveNodes()); got != 3 {
		t.Fatalf("%d live nodes right after two registrations vanished, want 3 (they may be re-registering)", got)
	}
	if _, err := cli.Put(ctx, prefix+"nodes/node2", "{}"); err != nil {
		t.Fatal(err)
	}
	clk.advanceTo(clk.Now().Add(2 * time.Second))
	q.refreshMembers(ctx)
	if got, s := len(q.liveNodes()), share(); got != 3 || s != cap/3 {
		t.Fatalf("with node2 back and node3 missing for 2 s: %d live, per-second share %d; want 3 and %d", got, s, cap/3)
	}
	// Sending at the share: 2 in the second, the third waits.
	now := clk.Now()
	for i := 0; i < cap/3; i++ {
		if !q.Take("p1", l, 1, now) {
			t.Fatalf("take %d of the share refused", i+1)
		}
	}
	if q.Take("p1", l, 1, now) {
		t.Fatal("a take past the per-second share of 3 nodes was allowed")
	}
	// node3 stays away: after memberGrace it no longer counts.
	clk.advanceTo(clk.Now().Add(memberGrace))
	q.refreshMembers(ctx)
	if got := len(q.liveNodes()); got != 2 {
		t.Fatalf("%d live nodes with node3 missing for %v, want 2", got, memberGrace+2*time.Second)
	}
}
