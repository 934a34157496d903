package relay

import (
	"fmt"
	"github.com/smtpmux/smtpmux/internal/state"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// wakeGuard is the deadline of the wait for a held message to go once
// what held it is gone. It is not a speed promise (that is a benchmark's
// business, and a loaded machine would make a tight one flaky): the
// injected clock stands still at the moment the test set, so a message
// that waited for anything later (its own later due time, the next
// window, the end of a pull) would never go, however long the wait.
const wakeGuard = 5 * time.Second

// waitFor polls cond until it holds, failing after limit with what.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// allSent reports whether every message is done and sent.
func (h *harness) allSent(ids []string) bool {
	for _, id := range ids {
		m, err := h.store.Message(id)
		if err != nil {
			h.t.Fatal(err)
		}
		if m.State != store.StateDone {
			return false
		}
		if m.Status != state.MessageSent {
			h.t.Fatalf("message %s: %s (%s)", id, m.Status, m.Reason)
		}
	}
	return true
}

// TestQuotaHeldMessageGoesWhenWindowRolls: a message held by a per-minute
// quota is due at the next window, and goes once the clock reaches it,
// without any wake.
func TestQuotaHeldMessageGoesWhenWindowRolls(t *testing.T) {
	clock := &testClock{t: time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)}
	h := newHarnessClock(t, nil, nil, clock.now)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerMinute = &store.Range{Min: 1, Max: 1} })
	ids := h.sendN(h.secret, 2)
	var held *store.Message
	waitFor(t, 5*time.Second, "one sent, one waiting for the quota", func() bool {
		held = nil
		sent := 0
		for _, id := range ids {
			m, _ := h.store.Message(id)
			switch {
			case m.State == store.StateDone:
				sent++
			case m.State == store.StateQueued && len(m.Waiting) > 0:
				held = m
			}
		}
		return sent == 1 && held != nil
	})
	window := clock.now().Truncate(time.Minute).Add(time.Minute)
	if !held.NextAttemptAt.Equal(window) || len(held.Attempts) != 0 {
		t.Fatalf("held message: next attempt %v (want the next window %v), %d attempts", held.NextAttemptAt, window, len(held.Attempts))
	}
	clock.set(window)
	took := waitFor(t, wakeGuard, "the held message sent once the window rolled", func() bool { return h.allSent(ids) })
	t.Logf("sent %v after the window rolled", took)
}

// TestBreakerHeldMessagesGoWhenPullEnds: messages held by a pulled
// provider go once the clock reaches the pull's end: their due times bring
// one probe through the half-open breaker, and its success wakes the
// rest (not their own later due times).
func TestBreakerHeldMessagesGoWhenPullEnds(t *testing.T) {
	clock := &testClock{t: time.Now().UTC()}
	h := newHarnessClock(t, nil, func(c *SchedulerConfig) {
		c.RetrySchedule = routing.DefaultRetrySchedule
		c.MaxInflight = 4
	}, clock.now)
	var mu sync.Mutex
	down := true
	h.fake.answer = func(int, Envelope) (*Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return nil, errRefused
		}
		return &Result{Reply: "250 2.0.0 Ok"}, nil
	}
	const n = 12
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
	// Held until just before the pull ends: each waiting message looks
	// again (at most every maxWait) and is parked at the pull's end.
	end := *snap.PulledUntil
	clock.set(end.Add(-time.Second))
	waitFor(t, 5*time.Second, "every message parked at the pull's end", func() bool {
		for _, id := range ids {
			m, _ := h.store.Message(id)
			if m.State != store.StateQueued || m.NextAttemptAt.Before(end) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	down = false
	mu.Unlock()
	clock.set(end)
	took := waitFor(t, wakeGuard, "every held message sent once the pull ended", func() bool { return h.allSent(ids) })
	t.Logf("all %d sent %v after the pull ended", n, took)
	if snap := h.sched.Health(h.provID); snap.State != "closed" {
		t.Fatalf("health after the probe %+v, want closed", snap)
	}
}

// TestParkingWhileWakingStrandsNothing: messages keep arriving from
// several sessions and being parked (the managed account's hourly limit
// is reached) when the team's limit is raised and the team woken, as a
// limit decision does. Many attempts are between their pick (which saw
// the old limit) and their park when the wake runs; every message must
// go within seconds, none left at its safety-net time ten minutes away.
// (Nothing else wakes the team: no provider changes.)
func TestParkingWhileWakingStrandsNothing(t *testing.T) {
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) { c.Managed = ManagedLimits{Hourly: 1, Daily: 1000} })
	if err := h.store.PutTeam(&store.Team{ID: h.team, Name: "t"}); err != nil {
		t.Fatal(err)
	}
	h.updateProvider(func(p *store.Provider) { p.Managed = true })
	const sessions, each = 4, 20
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			c := h.dial(h.secret)
			for i := 0; i < each; i++ {
				if s == 0 && i == each/2 {
					raised := 1000
					if err := h.store.PutTeam(&store.Team{ID: h.team, Name: "t", ManagedHourlyLimit: &raised}); err != nil {
						t.Error(err)
						return
					}
					h.sched.Wake(h.team)
				}
				reply, err := send(c, "a@example.com", []string{fmt.Sprintf("s%d-%d@example.com", s, i)}, testBody)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, queuedRe.FindStringSubmatch(reply)[1])
				mu.Unlock()
			}
		}(s)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("all %d messages sent", len(ids)), func() bool { return h.allSent(ids) })
}
