package relay

import (
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestProbeEndWakesHeldMessages: messages held behind a half-open probe
// park without a due time of their own (maxWait). When the probe ends
// without a success (here a permanent refusal of its message, which is
// not the provider's health, so the breaker stays half-open), the team is
// woken: the held messages go at once, not ten minutes later. The clock
// does not move after the probe starts, so only a wake can send them.
func TestProbeEndWakesHeldMessages(t *testing.T) {
	clock := &testClock{t: time.Now().UTC()}
	h := newHarnessClock(t, nil, func(c *SchedulerConfig) {
		c.RetrySchedule = routing.DefaultRetrySchedule
		c.MaxInflight = 4
	}, clock.now)
	var mu sync.Mutex
	down, probeID := true, ""
	probing, release := make(chan struct{}), make(chan struct{})
	h.fake.answer = func(_ int, env Envelope) (*Result, error) {
		mu.Lock()
		switch {
		case down:
			mu.Unlock()
			return nil, errRefused
		case probeID == "":
			probeID = env.MessageID
			mu.Unlock()
			close(probing)
			<-release
			return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseFinal, Code: 550, Enhanced: "5.7.1", Text: "spam"}}
		}
		mu.Unlock()
		return &Result{Reply: "250 2.0.0 Ok"}, nil
	}
	const n = 6
	ids := h.sendN(h.secret, n)
	waitFor(t, 5*time.Second, "every message held", func() bool {
		for _, id := range ids {
			if m, _ := h.store.Message(id); m.State != store.StateQueued || !m.NextAttemptAt.After(clock.now()) {
				return false
			}
		}
		return true
	})
	snap := h.sched.Health(h.provID)
	if snap.State != "open" || snap.PulledUntil == nil {
		t.Fatalf("health %+v, want open", snap)
	}
	end := *snap.PulledUntil
	clock.set(end.Add(-time.Second))
	waitFor(t, 5*time.Second, "every message parked at the pull's end", func() bool {
		for _, id := range ids {
			if m, _ := h.store.Message(id); m.State != store.StateQueued || m.NextAttemptAt.Before(end) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	down = false
	mu.Unlock()
	clock.set(end)
	<-probing
	mu.Lock()
	probe := probeID
	mu.Unlock()
	var rest []string
	for _, id := range ids {
		if id != probe {
			rest = append(rest, id)
		}
	}
	waitFor(t, 5*time.Second, "the others parked behind the probe", func() bool {
		for _, id := range rest {
			if m, _ := h.store.Message(id); m.State != store.StateQueued || m.NextAttemptAt.Before(end.Add(maxWait)) {
				return false
			}
		}
		return true
	})
	close(release)
	took := waitFor(t, wakeGuard, "the held messages sent once the probe ended", func() bool { return h.allSent(rest) })
	t.Logf("%d sent %v after the probe ended", len(rest), took)
	if m := h.waitMessage(probe); m.Status != state.MessageRejected {
		t.Fatalf("probe message %s (%s), want rejected", m.Status, m.Reason)
	}
}

// TestQuotaGiveBackWakesHeldMessage: a per-minute quota of one is taken
// by message A; B, picked meanwhile, waits for the next window. A's
// attempt fails before its body went out, so its unit goes back: B is
// woken and goes at once, not at the next window (the clock does not
// move).
func TestQuotaGiveBackWakesHeldMessage(t *testing.T) {
	clock := &testClock{t: time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)}
	h := newHarnessClock(t, nil, nil, clock.now)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerMinute = &store.Range{Min: 1, Max: 1} })
	started, release := make(chan struct{}), make(chan struct{})
	h.fake.answer = func(n int, _ Envelope) (*Result, error) {
		if n == 0 {
			close(started)
			<-release
			return nil, errRefused // before the body: nothing consumed
		}
		return &Result{Reply: "250 2.0.0 Ok"}, nil
	}
	a := h.sendN(h.secret, 1)[0]
	<-started
	b := h.sendN(h.secret, 1)[0]
	window := clock.now().Truncate(time.Minute).Add(time.Minute)
	waitFor(t, 5*time.Second, "B waiting for the next window", func() bool {
		m, _ := h.store.Message(b)
		return m.State == store.StateQueued && len(m.Waiting) > 0 && m.NextAttemptAt.Equal(window)
	})
	close(release)
	took := waitFor(t, wakeGuard, "B sent once A gave its unit back", func() bool { return h.allSent([]string{b}) })
	t.Logf("B sent %v after A's failure", took)
	if m, _ := h.store.Message(a); m.State == store.StateDone {
		t.Fatalf("A is done (%s), want it deferred", m.Status)
	}
}
