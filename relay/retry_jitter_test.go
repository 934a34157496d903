package relay

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestTransientRetryIsJittered: a transient failure defers the message by
// the schedule's step lengthened by the scheduler's jitter draw — here
// the spec's first step (5 min) with a draw of 0.5, i.e. 5 % longer —
// on the injected clock, with the numbers written out rather than read
// from the schedule.
func TestTransientRetryIsJittered(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	h := newHarnessClock(t, nil, func(c *SchedulerConfig) { c.RetrySchedule = routing.DefaultRetrySchedule }, clock.now)
	h.sched.jitter = func() float64 { return 0.5 }
	h.fake.answer = func(int, Envelope) (*Result, error) {
		return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseFinal, Code: 451, Enhanced: "4.3.0", Text: "try later"}}
	}
	id := h.sendN(h.secret, 1)[0]
	var m *store.Message
	waitFor(t, 5*time.Second, "the message deferred once", func() bool {
		m, _ = h.store.Message(id)
		return m.State == store.StateQueued && m.Retries == 1
	})
	want := clock.now().Add(5*time.Minute + 15*time.Second)
	if !m.NextAttemptAt.Equal(want) {
		t.Fatalf("next attempt %v after the failure, want %v (5 min + 5 %%)", m.NextAttemptAt.Sub(clock.now()), want.Sub(clock.now()))
	}
}
