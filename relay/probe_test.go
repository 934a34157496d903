package relay

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// endPull ends the provider's pull now, as if its hour had passed, and
// wakes the team, as the waiting messages' due time would. The stored
// state (BreakerStore) ends too: the next outcome is recorded on it.
func (h *harness) endPull() {
	now := time.Now()
	if _, err := h.sched.health.breakers.UpdateBreaker(h.provID, func(b *routing.Breaker) { b.PulledUntil = now }); err != nil {
		h.t.Fatal(err)
	}
	h.sched.health.mu.Lock()
	h.sched.health.get(h.provID).breaker.PulledUntil = now
	h.sched.health.mu.Unlock()
	h.sched.Wake(h.team)
}

// TestHalfOpenBreakerProbes: when a pull ends, one message at a time goes
// to the provider until one gets through. With the upstream still down
// that costs one attempt, not one per message that fell due; with it back,
// the probe's success sends everything that waited at once.
func TestHalfOpenBreakerProbes(t *testing.T) {
	h, down := newDeadUpstreamHarness(t, 8)
	const n = 30
	ids := h.sendN(h.secret, n)
	h.waitSettled(ids, time.Minute)
	before := h.fake.count()

	h.endPull()
	// Probes go one at a time; BreakerThreshold failed ones pull it again.
	// Wait for that end, and for nothing to be in flight, rather than a
	// fixed while: counting then sees every attempt the pull's end caused.
	waitFor(t, 5*time.Second, "the provider pulled again by failed probes, nothing in flight", func() bool {
		return h.sched.Health(h.provID).State == "open" && len(h.sched.slot) == 0
	})
	h.settledAfter()
	if got := h.fake.count() - before; got < 1 || got > routing.BreakerThreshold {
		t.Fatalf("after the pull ended with the upstream still down, it saw %d attempts, want 1 to %d probes (of %d messages due)",
			got, routing.BreakerThreshold, n)
	}
	if snap := h.sched.Health(h.provID); snap.State == "closed" {
		t.Fatalf("health after failed probes %+v, want half_open or open", snap)
	}

	down.Store(false)
	before = h.fake.count()
	h.endPull()
	deadline := time.Now().Add(3 * time.Second)
	sent, failedHere := 0, 0
	for _, id := range ids {
		for {
			m, _ := h.store.Message(id)
			if m.State == store.StateDone && m.Status == state.MessageSent {
				sent++
				break
			}
			if len(m.Avoid) > 0 {
				failedHere++ // failed on the dead upstream itself: its retry step holds
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s still waits 3 s after the upstream came back and the pull ended: %+v", id, m)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if snap := h.sched.Health(h.provID); snap.State != "closed" {
		t.Fatalf("health after a successful probe %+v, want closed", snap)
	}
	if sent+failedHere != n || sent < n-before {
		t.Fatalf("%d sent and %d holding their retry step of %d; %d attempts had failed", sent, failedHere, n, before)
	}
}
