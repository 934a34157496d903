package main

import (
	"testing"
	"time"
)

// TestSplitWindows: each latency lands in the window its reply came in,
// empty windows are kept (a stall shows as a zero), and the last window's
// rate is over its own length.
func TestSplitWindows(t *testing.T) {
	ms := time.Millisecond
	lats := [][]time.Duration{{1 * ms, 2 * ms, 9 * ms}, {3 * ms, 4 * ms}}
	ends := [][]time.Duration{{100 * ms, 900 * ms, 2500 * ms}, {1100 * ms, 2100 * ms}}
	got := splitWindows(time.Second, lats, ends)
	if len(got) != 3 {
		t.Fatalf("windows: %+v", got)
	}
	want := []Window{
		{StartS: 0, Accepted: 2, AcceptedPerS: 2, P50ms: 2, P99ms: 2},
		{StartS: 1, Accepted: 1, AcceptedPerS: 1, P50ms: 3, P99ms: 3},
		{StartS: 2, Accepted: 2, AcceptedPerS: 4, P50ms: 9, P99ms: 9},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("window %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := splitWindows(time.Second, [][]time.Duration{{ms}}, [][]time.Duration{{3500 * ms}}); len(got) != 4 || got[1].Accepted != 0 || got[3].Accepted != 1 {
		t.Errorf("a stall's empty windows: %+v", got)
	}
}
