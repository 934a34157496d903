package routing

import "time"

// DefaultRetrySchedule is SPEC §5.5's 5 min → 2 h → 12 h.
var DefaultRetrySchedule = []time.Duration{5 * time.Minute, 2 * time.Hour, 12 * time.Hour}

// NextRetry returns when a message that has already been deferred
// `retries` times (before this failure) should be tried again, and false
// when the schedule is exhausted and the message fails.
func NextRetry(schedule []time.Duration, retries int, now time.Time) (time.Time, bool) {
	if retries < 0 || retries >= len(schedule) {
		return time.Time{}, false
	}
	return now.Add(schedule[retries]), true
}
