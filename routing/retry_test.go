package routing

import (
	"math"
	"testing"
	"time"
)

// TestNextRetrySpecSchedule pins SPEC §5.5 with literal durations (not
// DefaultRetrySchedule, so that changing the table cannot pass by
// itself): 5 min → 2 h → 12 h, each lengthened by at most 10 % and never
// shortened, then failed.
func TestNextRetrySpecSchedule(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := []struct {
		step, maxJitter time.Duration
	}{
		{5 * time.Minute, 30 * time.Second},
		{2 * time.Hour, 12 * time.Minute},
		{12 * time.Hour, 72 * time.Minute},
	}
	for i, s := range spec {
		for _, u := range []float64{0, 0.25, 0.5, 0.999999, 1, -0.5, 7, math.NaN()} {
			got, ok := NextRetry(DefaultRetrySchedule, i, now, u)
			if !ok {
				t.Fatalf("retry %d (u=%v): schedule ended early", i, u)
			}
			d := got.Sub(now)
			if d < s.step || d > s.step+s.maxJitter {
				t.Fatalf("retry %d (u=%v): after %v, want within [%v, %v]", i, u, d, s.step, s.step+s.maxJitter)
			}
		}
		// The draw is used: the lowest draw gives the step itself, the
		// highest spreads to the bound (within a nanosecond's rounding).
		if lo, _ := NextRetry(DefaultRetrySchedule, i, now, 0); !lo.Equal(now.Add(s.step)) {
			t.Fatalf("retry %d: u=0 gives %v, want the step %v", i, lo.Sub(now), s.step)
		}
		hi, _ := NextRetry(DefaultRetrySchedule, i, now, 0.999999)
		if d := hi.Sub(now); d < s.step+s.maxJitter-s.maxJitter/1000 {
			t.Fatalf("retry %d: u≈1 gives %v, want about %v", i, d, s.step+s.maxJitter)
		}
	}
	if _, ok := NextRetry(DefaultRetrySchedule, 3, now, 0); ok {
		t.Fatal("the spec's schedule of 3 steps must fail the message after 3 retries")
	}
	if _, ok := NextRetry(DefaultRetrySchedule, -1, now, 0); ok {
		t.Fatal("negative retries must not schedule")
	}
}

// TestNextRetryJitterProportional: the end-to-end suite runs 300 ms
// schedules; jitter must scale with the step so they stay within 30 ms.
func TestNextRetryJitterProportional(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	got, _ := NextRetry([]time.Duration{300 * time.Millisecond}, 0, now, 0.999999)
	if d := got.Sub(now); d < 300*time.Millisecond || d > 330*time.Millisecond {
		t.Fatalf("300ms step with the highest draw: %v, want within [300ms, 330ms]", d)
	}
}
