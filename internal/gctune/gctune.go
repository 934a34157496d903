// Package gctune sets the garbage collector's percentage by whether mail
// is flowing.
//
// Collecting at +50 % of the live heap (GOGC=50) keeps a quiet daemon
// small: 1,000 idle TLS sessions fit in issue 19's 20 MB only then (their
// handshakes leave garbage that a laxer goal keeps resident). But while
// mail flows, collections are the relay's largest adjustable cost: at
// +100 % a 2 KiB message costs ~10 % less CPU and a 100 KiB one ~10–20 %
// less (bench/RESULTS.md, session 12). So while the store commits writes
// that callers wait for (mail, the API; not the history mover's)
// the daemon lets the heap grow to twice its live size, but to no more
// than HeapCap unless +50 % is already more: the peak RSS under load and
// with 100,000 messages queued stays within issue 19's 64 MB. QuietAfter
// without a write it returns to +50 %, which the next collection applies
// (no collection is forced: one at once lowered the quiet RSS, but the
// next burst of allocations, 1,000 TLS handshakes say, then faulted the
// same pages in again). The percentage in force is on /metrics
// (go_gc_gogc_percent). An operator's GOGC in the environment turns the
// tuner off (cmd/smtpmux).
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Tuner watches an activity counter and sets the GC percentage.
type Tuner struct {
	// Activity is a counter that moves while the daemon works (the
	// store's writes that callers wait for: not the history mover's).
	Activity func() int64
	// Busy and Quiet are the percentages while active (at most) and
	// once quiet; HeapCap bounds the heap goal while active, down to
	// Quiet's.
	Busy, Quiet int
	HeapCap     uint64
	// Interval is how often Activity is read; QuietAfter how long it
	// must stand still before the quiet percentage returns.
	Interval, QuietAfter time.Duration

	// Test seams: set the percentage, the live heap, the clock's ticks,
	// and a tick's end.
	setPercent func(int) int
	liveHeap   func() uint64
	ticks      func(time.Duration) (<-chan time.Time, func())
	tickDone   func()
}

// New returns a tuner with the daemon's settings: up to +100 % and a 24
// MiB heap while active, +50 % after 10 s without a write, activity read
// every second.
func New(activity func() int64) *Tuner {
	return &Tuner{Activity: activity, Busy: 100, Quiet: 50, HeapCap: 24 << 20,
		Interval: time.Second, QuietAfter: 10 * time.Second}
}

// busyPercent is the percentage while active for a live heap of live
// bytes: the goal live×(1+p/100) at most HeapCap, p within [Quiet, Busy].
func (t *Tuner) busyPercent(live uint64) int {
	p := t.Busy
	if live > 0 && t.HeapCap > 0 {
		p = min(p, int(t.HeapCap*100/live)-100)
	}
	return max(p, t.Quiet)
}

// Run sets the quiet percentage, then follows Activity until ctx ends.
func (t *Tuner) Run(ctx context.Context) {
	set, live, ticks := t.setPercent, t.liveHeap, t.ticks
	if set == nil {
		set = debug.SetGCPercent
	}
	if live == nil {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		live = func() uint64 {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0 // not in this runtime: no cap
			}
			return sample[0].Value.Uint64()
		}
	}
	if ticks == nil {
		ticks = func(d time.Duration) (<-chan time.Time, func()) {
			tk := time.NewTicker(d)
			return tk.C, tk.Stop
		}
	}
	current := t.Quiet
	set(current)
	c, stop := ticks(t.Interval)
	defer stop()
	last, busy := t.Activity(), false
	var still time.Duration // how long Activity has not moved
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
		}
		now := t.Activity()
		switch {
		case now != last:
			last, still, busy = now, 0, true
			// Each tick while active: the cap follows the live heap.
			if p := t.busyPercent(live()); p != current {
				current = p
				set(p)
			}
		case busy:
			if still += t.Interval; still >= t.QuietAfter {
				busy = false
				if current != t.Quiet {
					current = t.Quiet
					set(current)
				}
			}
		}
		if t.tickDone != nil {
			t.tickDone()
		}
	}
}
