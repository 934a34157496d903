package gctune

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// harness drives a Tuner tick by tick and records what it did.
type harness struct {
	t        *testing.T
	tick     chan time.Time
	events   chan string
	activity atomic.Int64
	live     atomic.Uint64
}

func start(t *testing.T) *harness {
	h := &harness{t: t, tick: make(chan time.Time), events: make(chan string, 16)}
	h.live.Store(10 << 20)
	tu := New(h.activity.Load)
	tu.Interval, tu.QuietAfter = time.Second, 3*time.Second
	tu.setPercent = func(p int) int { h.events <- fmt.Sprint(p); return 0 }
	tu.liveHeap = h.live.Load
	tu.ticks = func(time.Duration) (<-chan time.Time, func()) { return h.tick, func() {} }
	tu.tickDone = func() { h.events <- "tick" }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tu.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if e := h.next(); e != "50" {
		t.Fatalf("at start the tuner did %q, want 50", e)
	}
	return h
}

func (h *harness) next() string {
	h.t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(10 * time.Second):
		h.t.Fatal("the tuner did nothing")
		return ""
	}
}

// steps delivers n ticks, expecting the tuner to do want in the last and
// nothing before.
func (h *harness) steps(n int, want ...string) {
	h.t.Helper()
	for i := range n {
		h.tick <- time.Time{}
		var did []string
		for e := h.next(); e != "tick"; e = h.next() {
			did = append(did, e)
		}
		if i < n-1 && len(did) > 0 {
			h.t.Fatalf("tick %d of %d: tuner did %q, want nothing yet", i+1, n, did)
		}
		if i == n-1 && !slices.Equal(did, want) {
			h.t.Fatalf("tick %d: tuner did %q, want %q", n, did, want)
		}
	}
}

// TestTunerFollowsActivity: +100 % at the first tick that sees a write,
// +50 % only after QuietAfter of ticks without one,
// and nothing set twice in a row.
func TestTunerFollowsActivity(t *testing.T) {
	h := start(t)
	h.steps(2) // quiet ticks: nothing

	h.activity.Add(5)
	h.steps(1, "100")
	for range 3 { // writes go on: stays so, sets nothing again
		h.activity.Add(1)
		h.steps(1)
	}

	h.steps(2) // two ticks still, then a write: the count starts again
	h.activity.Add(1)
	h.steps(1)

	h.steps(3, "50") // quiet at the third still tick (QuietAfter 3 s)
	h.steps(3)       // and stays so

	h.activity.Add(1)
	h.steps(1, "100")
}

// TestTunerCapsTheHeap: while active the goal stays within HeapCap (24
// MiB), never under +50 %; the percentage follows the live heap.
func TestTunerCapsTheHeap(t *testing.T) {
	h := start(t)
	for _, c := range []struct {
		live uint64
		want []string
	}{
		{12 << 20, []string{"100"}}, // 24 MiB at +100 %: the cap exactly
		{10 << 20, nil},             // under: still +100
		{15 << 20, []string{"60"}},  // 24/15 = 1.6
		{16 << 20, []string{"50"}},  // 24/16 = 1.5: the floor
		{40 << 20, nil},             // far over: the floor, never less
		{8 << 20, []string{"100"}},
	} {
		h.live.Store(c.live)
		h.activity.Add(1)
		h.steps(1, c.want...)
	}
	// Quiet from +100: back to 50; from 50 (capped) there is nothing
	// to change.
	h.steps(3, "50")
	h.live.Store(30 << 20)
	h.activity.Add(1)
	h.steps(1) // capped to the floor, which is in force
	h.steps(3)
}

func TestBusyPercent(t *testing.T) {
	tu := New(nil)
	for live, want := range map[uint64]int{0: 100, 1: 100, 12 << 20: 100, 13 << 20: 84, 20 << 20: 50, 1 << 40: 50} {
		if got := tu.busyPercent(live); got != want {
			t.Errorf("busyPercent(%d) = %d, want %d", live, got, want)
		}
	}
	tu.HeapCap = 0 // no cap
	if got := tu.busyPercent(1 << 40); got != 100 {
		t.Errorf("uncapped busyPercent = %d, want 100", got)
	}
}
