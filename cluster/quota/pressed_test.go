package quota

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

// press has each of the given nodes send perNode messages through
// provider id with limits l at once, as fast as the quota lets them (the
// clock moves on only when a node has to wait for a window). It returns
// the take times and the etcd writes all nodes made meanwhile.
func press(tb testing.TB, all, senders []*Cluster, clk *clock, id string, l routing.Limits, perNode int) ([]time.Time, Stats) {
	tb.Helper()
	before := sumStats(all)
	var mu sync.Mutex
	var times []time.Time
	var wg sync.WaitGroup
	for _, q := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perNode; i++ {
				at := send(tb, q, clk, id, l)
				if at.IsZero() {
					return
				}
				mu.Lock()
				times = append(times, at)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	after := sumStats(all)
	return times, Stats{Writes: after.Writes - before.Writes, BlockWrites: after.BlockWrites - before.BlockWrites,
		Splits: after.Splits - before.Splits, WantWrites: after.WantWrites - before.WantWrites,
		HandBackWrites: after.HandBackWrites - before.HandBackWrites, LeaseWrites: after.LeaseWrites - before.LeaseWrites}
}

func sumStats(qs []*Cluster) Stats {
	var s Stats
	for _, q := range qs {
		x := q.Stats()
		s.Writes += x.Writes
		s.BlockWrites += x.BlockWrites
		s.Splits += x.Splits
		s.WantWrites += x.WantWrites
		s.HandBackWrites += x.HandBackWrites
		s.LeaseWrites += x.LeaseWrites
	}
	return s
}

func (s Stats) String() string {
	return fmt.Sprintf("%d writes: %d blocks (%d splits), %d wants, %d hand backs, %d leases",
		s.Writes, s.BlockWrites, s.Splits, s.WantWrites, s.HandBackWrites, s.LeaseWrites)
}

// maxPressedWritesPerMessage is the bound on etcd writes per message when
// every node pushes at a per-minute cap of 100: issue 14's target for
// caps set. Before grants were split (blocks shrank to one unit near the
// cap, and a starving node posted a want every second that made the
// others hand back what they were about to spend) the same run cost
// 0.6-0.8 writes per message.
const maxPressedWritesPerMessage = 0.05

// TestPressedCapWritesPerMessage: three nodes push 200 messages each at a
// per-minute cap of 100 (six minutes full to the cap), then one node alone
// pushes while the other two send nothing through the provider. The cap
// holds in every minute, and etcd sees at most 0.05 writes per message in
// both runs: a pressed window costs a split and a want, not a write per
// unit.
func TestPressedCapWritesPerMessage(t *testing.T) {
	clk := newClock()
	_, qs := nodes(t, 3, clk)
	l := limits(0, 100)

	times, st := press(t, qs, qs, clk, "pressed", l, 200)
	if len(times) != 600 {
		t.Fatalf("%d messages got through, want 600", len(times))
	}
	checkWindows(t, times, 0, 100)
	ratio := float64(st.Writes) / float64(len(times))
	t.Logf("FIGURE per_minute=100, 3 nodes pushing, %d messages: %s; %.4f per message", len(times), st, ratio)
	if ratio > maxPressedWritesPerMessage {
		t.Errorf("%.4f etcd writes per message at a pressed cap (%s), want <= %.2f", ratio, st, maxPressedWritesPerMessage)
	}

	// One node alone at the cap: the others are given shares at first,
	// hand them back unspent, and are then left out of the splits.
	clk.advanceTo(clk.Now().Truncate(time.Minute).Add(time.Minute))
	times, st = press(t, qs, qs[:1], clk, "alone", l, 600)
	if len(times) != 600 {
		t.Fatalf("%d messages got through, want 600", len(times))
	}
	checkWindows(t, times, 0, 100)
	ratio = float64(st.Writes) / float64(len(times))
	t.Logf("FIGURE per_minute=100, 1 of 3 nodes pushing, %d messages: %s; %.4f per message", len(times), st, ratio)
	if ratio > maxPressedWritesPerMessage {
		t.Errorf("%.4f etcd writes per message with one node at a pressed cap (%s), want <= %.2f", ratio, st, maxPressedWritesPerMessage)
	}
}

// BenchmarkQuotaWrites reports etcd writes per message (writes/msg) for
// three quota nodes on a real 3-member etcd, b.N messages per node:
// "comfortable" sends at 4/s per node under caps of 1000/min, 20000/h and
// 200000/day; "pressed" has every node push at a per-minute cap of 100;
// "uncapped" has no caps (0 expected). Run with a fixed count, e.g.
// go test -run '^$' -bench QuotaWrites -benchtime 600x ./cluster/quota/
func BenchmarkQuotaWrites(b *testing.B) {
	b.Run("comfortable", func(b *testing.B) {
		clk := newClock()
		_, qs := nodes(b, 3, clk)
		var l routing.Limits
		l[routing.Minute] = &routing.Limit{Min: 1000, Max: 1000}
		l[routing.Hour] = &routing.Limit{Min: 20000, Max: 20000}
		l[routing.Day] = &routing.Limit{Min: 200000, Max: 200000}
		before := sumStats(qs)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, q := range qs {
				send(b, q, clk, "comfortable", l)
			}
			clk.advanceTo(clk.Now().Add(250 * time.Millisecond))
			if i%40 == 0 {
				for _, q := range qs {
					q.returnIdle(context.Background(), false)
				}
			}
		}
		b.StopTimer()
		st := sumStats(qs)
		b.ReportMetric(float64(st.Writes-before.Writes)/float64(3*b.N), "writes/msg")
	})
	b.Run("pressed", func(b *testing.B) {
		clk := newClock()
		_, qs := nodes(b, 3, clk)
		b.ResetTimer()
		times, st := press(b, qs, qs, clk, "pressed", limits(0, 100), b.N)
		b.StopTimer()
		checkWindows(b, times, 0, 100)
		b.ReportMetric(float64(st.Writes)/float64(len(times)), "writes/msg")
	})
	b.Run("uncapped", func(b *testing.B) {
		clk := newClock()
		_, qs := nodes(b, 3, clk)
		b.ResetTimer()
		_, st := press(b, qs, qs, clk, "uncapped", routing.Limits{}, b.N)
		b.StopTimer()
		b.ReportMetric(float64(st.Writes)/float64(3*b.N), "writes/msg")
	})
}
