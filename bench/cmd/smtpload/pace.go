package main

import "time"

// pace waits until message seq (1-based) is due when the run offers rate
// messages per second from t0, and returns how late its session got to it.
//
// The run is open-loop: a message that waited for a free session counts
// that wait in its latency (its due time, not its send, starts the clock),
// so a server that stalls shows its stall in p99 instead of slowing the
// driver down with it (coordinated omission). With rate 0 nothing waits.
func pace(rate float64, t0 time.Time, seq int64) (late time.Duration) {
	if rate <= 0 {
		return 0
	}
	due := t0.Add(dueAfter(rate, seq))
	if wait := time.Until(due); wait > 0 {
		time.Sleep(wait) // the schedule itself: the driver offers load at a set rate
		return 0
	}
	return time.Since(due)
}

// dueAfter is when message seq is due, counted from the run's start.
func dueAfter(rate float64, seq int64) time.Duration {
	return time.Duration(float64(seq-1) / rate * float64(time.Second))
}
