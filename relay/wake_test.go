package relay

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// sendN sends n messages over one session and returns their IDs.
func (h *harness) sendN(secret string, n int) []string {
	h.t.Helper()
	c := h.dial(secret)
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		reply, err := send(c, "a@example.com", []string{fmt.Sprintf("r%d@example.com", i)}, testBody)
		if err != nil {
			h.t.Fatalf("send %d: %v", i, err)
		}
		ids = append(ids, queuedRe.FindStringSubmatch(reply)[1])
	}
	return ids
}

// waitSettled waits until every message is queued with its next look at
// least `ahead` away, i.e. the scheduler has handled each and nothing is
// due or in flight; it returns the records.
func (h *harness) waitSettled(ids []string, ahead time.Duration) []*store.Message {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []*store.Message
		for _, id := range ids {
			m, err := h.store.Message(id)
			if err != nil {
				h.t.Fatal(err)
			}
			if m.State != store.StateQueued || time.Until(m.NextAttemptAt) < ahead {
				break
			}
			out = append(out, m)
		}
		if len(out) == len(ids) {
			return out
		}
		if time.Now().After(deadline) {
			m, _ := h.store.Message(ids[len(out)])
			h.t.Fatalf("%d of %d messages settled; first unsettled: %+v", len(out), len(ids), m)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledAfter waits until the scheduler has run a full turn that
// started after this call (its wake round and dispatch) and no attempt is
// in flight: whatever an event before the call could make the scheduler
// do has been done. It replaces "sleep, then check nothing happened".
func (h *harness) settledAfter() {
	h.t.Helper()
	from := h.sched.turns.Load()
	waitFor(h.t, 5*time.Second, "a scheduler turn after the event, nothing in flight", func() bool {
		return h.sched.turns.Load() >= from+2 && len(h.sched.slot) == 0
	})
}

// sendOneGoesRestWait sends n messages to a provider whose quota lets one
// through: it returns the one sent and the records of the others, settled
// waiting (see waitSettled). Which one goes is the scheduler's choice: the
// attempts run concurrently, so it need not be the first sent.
func (h *harness) sendOneGoesRestWait(secret string, n int) (sent string, waiting []*store.Message) {
	h.t.Helper()
	ids := h.sendN(secret, n)
	deadline := time.Now().Add(5 * time.Second)
	for sent == "" {
		for _, id := range ids {
			if m, _ := h.store.Message(id); m != nil && m.State == store.StateDone {
				sent = id
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("none of %d messages was sent", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var rest []string
	for _, id := range ids {
		if id != sent {
			rest = append(rest, id)
		}
	}
	waiting = h.waitSettled(rest, time.Minute)
	for _, m := range waiting {
		if len(m.Waiting) == 0 || len(m.Attempts) != 0 {
			h.t.Fatalf("over quota: %+v", m)
		}
	}
	return sent, waiting
}

var errRefused = &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseConnect}, Err: errors.New("dial tcp: connection refused")}

// newDeadUpstreamHarness is a harness on the default retry schedule whose
// only upstream refuses connections until down is set to false.
func newDeadUpstreamHarness(t *testing.T, maxInflight int) (*harness, *atomic.Bool) {
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) {
		c.RetrySchedule = routing.DefaultRetrySchedule
		c.MaxInflight = maxInflight
	})
	down := new(atomic.Bool)
	down.Store(true)
	h.fake.answer = func(int, Envelope) (*Result, error) {
		if down.Load() {
			return nil, errRefused
		}
		return &Result{Reply: "250 2.0.0 Ok"}, nil
	}
	return h, down
}

// TestRecoveredProviderDrainsWaitingQueue: the only provider's upstream is
// down while mail arrives. Each message costs at most one attempt (the
// breaker pulls the provider after 3 connection failures and the rest
// wait without trying), and when the operator's connection test succeeds
// the breaker is cleared and every message goes at once, exactly once,
// instead of an hour later (pull) or on the retry schedule (the messages
// whose own attempt failed).
func TestRecoveredProviderDrainsWaitingQueue(t *testing.T) {
	h, down := newDeadUpstreamHarness(t, 4)
	const n = 40
	ids := h.sendN(h.secret, n)
	msgs := h.waitSettled(ids, time.Minute)
	if snap := h.sched.Health(h.provID); snap.State != "open" {
		t.Fatalf("health after the outage %+v, want open", snap)
	}
	tried := h.fake.count()
	if tried < routing.BreakerThreshold || tried > 4+routing.BreakerThreshold {
		t.Fatalf("the dead upstream saw %d attempts, want %d to %d (threshold + those in flight)",
			tried, routing.BreakerThreshold, 4+routing.BreakerThreshold)
	}
	for _, m := range msgs {
		if len(m.Attempts) > 1 || m.Retries > 1 {
			t.Fatalf("message %s burnt %d attempts, %d retries during the outage", m.ID, len(m.Attempts), m.Retries)
		}
		if len(m.Waiting) == 0 {
			t.Fatalf("message %s waits without saying why: %+v", m.ID, m)
		}
	}

	down.Store(false)
	h.sched.ProviderRecovered(h.team, h.provID)
	deadline := time.Now().Add(3 * time.Second)
	for _, id := range ids {
		for {
			m, _ := h.store.Message(id)
			if m != nil && m.State == store.StateDone {
				if m.Status != state.MessageSent {
					t.Fatalf("message %s: %s", id, m.Status)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s still queued 3 s after the provider was tested good: %+v", id, m)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	seen := map[string]int{}
	for _, env := range h.fake.sent[tried:] {
		seen[env.MessageID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("message %s reached the upstream %d times after recovery", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages after recovery, want %d", len(seen), n)
	}
	if snap := h.sched.Health(h.provID); snap.State != "closed" || snap.RecentFailures != 0 {
		t.Fatalf("health after the test %+v, want closed with no history", snap)
	}
}

// TestNewProviderWakesWaitingMessages: messages waiting for the next day's
// quota go as soon as another provider is added, not at the next periodic
// look.
func TestNewProviderWakesWaitingMessages(t *testing.T) {
	h := newHarness(t, nil)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerDay = &store.Range{Min: 1, Max: 1} })
	_, waiting := h.sendOneGoesRestWait(h.secret, 3)
	other := h.addProvider("fake", nil)
	for _, w := range waiting {
		if m := h.waitMessage(w.ID); m.Status != state.MessageSent || m.Recipients[0].ProviderID != other {
			t.Fatalf("message %s: %s via %s", w.ID, m.Status, m.Recipients[0].ProviderID)
		}
	}
}

// TestWakeLeavesOthersUntouched: waking a team whose usable provider is
// outside a waiting message's scope neither sends nor rewrites it.
func TestWakeLeavesOthersUntouched(t *testing.T) {
	h := newHarness(t, nil)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerDay = &store.Range{Min: 1, Max: 1} })
	other := h.addProvider("fake", nil)
	secret := store.NewSecret(store.SecretPrefixSending)
	if err := h.store.CreateKey(&store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: h.team, Type: store.KeySending,
		Hash: store.HashSecret(secret), CreatedAt: time.Now(),
		SendScope: store.Scope{Type: "providers", ProviderPublicIDs: []string{h.provID}}}); err != nil {
		t.Fatal(err)
	}
	_, before := h.sendOneGoesRestWait(secret, 3)
	h.sched.ProviderRecovered(h.team, other)
	h.sched.Wake(h.team)
	if _, err := h.store.UpdateProvider("", other, 0, func(p *store.Provider) error { p.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	// The rename moved the store's provider counter: the turn that sees
	// it wakes every waiting team (wakeOnProviderChange).
	h.settledAfter()
	for _, b := range before {
		m, _ := h.store.Message(b.ID)
		if m.State != store.StateQueued || !m.UpdatedAt.Equal(b.UpdatedAt) || !m.NextAttemptAt.Equal(b.NextAttemptAt) {
			t.Fatalf("message %s was touched by a wake that could not help it: before %+v, after %+v", b.ID, b, m)
		}
	}
	if n := h.upstream(other).count(); n != 0 {
		t.Fatalf("a provider outside the scope got %d messages", n)
	}
}

// TestRecoveryKeepsTransientSchedule: a message deferred by a temporary
// upstream reply keeps its retry time when the provider is tested good;
// only messages waiting for a usable provider are woken.
func TestRecoveryKeepsTransientSchedule(t *testing.T) {
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) { c.RetrySchedule = []time.Duration{time.Hour} })
	h.fake.answer = func(int, Envelope) (*Result, error) {
		return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseMail, Code: 451, Enhanced: "4.3.0", Text: "temporary local problem"}}
	}
	ids := h.sendN(h.secret, 1)
	m := h.waitSettled(ids, 50*time.Minute)[0]
	if len(m.Attempts) != 1 || m.Attempts[0].Class != routing.Transient.String() || len(m.Waiting) != 0 {
		t.Fatalf("after a 451: %+v", m)
	}
	h.sched.ProviderRecovered(h.team, h.provID)
	h.settledAfter()
	if n := h.fake.count(); n != 1 {
		t.Fatalf("the upstream saw %d attempts; the retry schedule (1 h) must hold", n)
	}
	if after, _ := h.store.Message(ids[0]); !after.NextAttemptAt.Equal(m.NextAttemptAt) || after.State != store.StateQueued {
		t.Fatalf("message changed: %+v", after)
	}
}
