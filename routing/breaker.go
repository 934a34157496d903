package routing

import "time"

// Breaker rules (SPEC §5.5).
const (
	BreakerThreshold   = 3
	BreakerSpan        = 5 * time.Minute
	PullAfterConnError = time.Hour
	PullAfterQuota     = 24 * time.Hour
)

// Breaker is one provider's health: recent failures and, once tripped,
// until when it is out of rotation. Plain data; the relay serialises access.
type Breaker struct {
	Failures    []time.Time `json:"recent_failures"`
	PulledUntil time.Time   `json:"pulled_until"`
	Reason      string      `json:"reason,omitempty"`
}

// State is "closed" (in rotation), "open" (pulled) or "half_open" (the
// pull is over, no attempt has succeeded since) at now.
func (b *Breaker) State(now time.Time) string {
	switch {
	case b.Pulled(now):
		return "open"
	case b.HalfOpen(now):
		return "half_open"
	}
	return "closed"
}

// HalfOpen reports whether a pull ended at or before now and no attempt
// has succeeded since. The provider is back in rotation, but the relay
// lets one attempt at a time through (a probe) until one succeeds or
// BreakerThreshold failures pull it again: when a pull ends with the
// upstream still down, a few attempts find out, not every message that
// fell due at that moment (each spending a step of its retry schedule).
func (b *Breaker) HalfOpen(now time.Time) bool { return b.Reason != "" && !b.Pulled(now) }

// Pulled reports whether the provider is out of rotation at now.
func (b *Breaker) Pulled(now time.Time) bool { return now.Before(b.PulledUntil) }

// Record notes a failed attempt of class c and reports whether this
// failure pulled the provider. Only connection failures and quota blocks
// count (Class.FeedsBreaker): a refused recipient, a message too big or a
// temporary reply is not the account's health.
func (b *Breaker) Record(c Class, now time.Time) bool {
	if !c.FeedsBreaker() {
		return false
	}
	cut := now.Add(-BreakerSpan)
	kept := b.Failures[:0]
	for _, t := range b.Failures {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	b.Failures = append(kept, now)
	if len(b.Failures) < BreakerThreshold || b.Pulled(now) {
		return false
	}
	if c == Quota {
		b.PulledUntil, b.Reason = now.Add(PullAfterQuota), "quota_block"
	} else {
		b.PulledUntil, b.Reason = now.Add(PullAfterConnError), "connection_failures"
	}
	b.Failures = nil
	return true
}

// Success clears the failure history (SPEC: a success clears the history)
// and ends a half-open state, reporting whether it did: the provider proved
// it is back after a pull.
func (b *Breaker) Success(now time.Time) (recovered bool) {
	b.Failures = nil
	if b.HalfOpen(now) {
		b.PulledUntil, b.Reason = time.Time{}, ""
		return true
	}
	return false
}

// Reset puts the provider back in rotation with no history: an operator's
// successful connection test proved the upstream works again, so waiting
// out the rest of a pull would only hold mail back (SPEC §3: the test is
// the manual recovery; §5: a success clears the history).
func (b *Breaker) Reset() {
	*b = Breaker{}
}
