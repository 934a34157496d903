package main

import (
	"testing"
	"time"
)

func TestDueAfter(t *testing.T) {
	for _, c := range []struct {
		rate float64
		seq  int64
		want time.Duration
	}{
		{1000, 1, 0},
		{1000, 2, time.Millisecond},
		{1000, 1001, time.Second},
		{2500, 5001, 2 * time.Second},
		{0.5, 3, 4 * time.Second},
	} {
		if got := dueAfter(c.rate, c.seq); got != c.want {
			t.Errorf("dueAfter(%v, %d) = %v, want %v", c.rate, c.seq, got, c.want)
		}
	}
}

// A message whose due time has passed is sent at once and reports how late
// it is; with no rate nothing is late.
func TestPaceLate(t *testing.T) {
	t0 := time.Now().Add(-time.Second)
	if late := pace(10, t0, 1); late < time.Second {
		t.Errorf("message due a second ago: late %v, want ≥ 1s", late)
	}
	if late := pace(0, t0, 1); late != 0 {
		t.Errorf("no rate: late %v, want 0", late)
	}
}
