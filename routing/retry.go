package routing

import "time"

// DefaultRetrySchedule is SPEC §5.5's 5 min → 2 h → 12 h.
var DefaultRetrySchedule = []time.Duration{5 * time.Minute, 2 * time.Hour, 12 * time.Hour}

// RetryJitter is the largest fraction of a step added to it as jitter.
//
// Why jitter: an upstream outage defers every message it touches within
// the same few seconds; without jitter they all come due at the same
// instant one step later and hit the recovering provider (and its quota
// windows) as one burst. chasquid adds up to a minute to each delay and
// mox a few seconds either side, for the same reason.
//
// Why only added, and why 10 %: the schedule is a promise of the
// *earliest* retry (the spec's 5 min is what an upstream asking us to
// back off is owed), so jitter never shortens a step; a tenth spreads a
// burst over 30 s at the first step and 72 min at the last, while a
// message still fails within 10 % of the schedule's total. Proportional,
// not a fixed amount, so that the sub-second schedules of the end-to-end
// tests stay sub-second.
const RetryJitter = 0.10

// NextRetry returns when a message that has already been deferred
// `retries` times (before this failure) should be tried again, and false
// when the schedule is exhausted and the message fails.
//
// u is a uniform random draw in [0, 1) from the caller (routing does no
// I/O and holds no random source); the step is lengthened by
// u·RetryJitter of itself. u outside [0, 1) is clamped.
func NextRetry(schedule []time.Duration, retries int, now time.Time, u float64) (time.Time, bool) {
	if retries < 0 || retries >= len(schedule) {
		return time.Time{}, false
	}
	step := schedule[retries]
	return now.Add(step + Jitter(step, u)), true
}

// Jitter is the amount NextRetry adds to a step for the draw u.
func Jitter(step time.Duration, u float64) time.Duration {
	switch {
	case u < 0 || u != u: // negative or NaN
		u = 0
	case u >= 1:
		u = 1
	}
	return time.Duration(u * RetryJitter * float64(step))
}
