package relay

import (
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// BreakerStore keeps the providers' breaker state beyond this process: in
// the node's bbolt file by default (a pulled provider stays pulled across
// a restart until its time), in etcd in cluster mode (a provider pulled
// on one node is pulled on all; cluster/health). The scheduler still keeps
// a copy in memory for every pick, and writes through this store only
// when the state changes: a failure that feeds the breaker, the first
// success after failures, an operator's reset.
type BreakerStore interface {
	// Breakers returns every stored state (at start).
	Breakers() (map[string]routing.Breaker, error)
	// UpdateBreaker applies fn to provider id's stored state atomically
	// and returns the result, which the scheduler then uses: in cluster
	// mode it holds the failures other nodes saw too.
	UpdateBreaker(id string, fn func(*routing.Breaker)) (routing.Breaker, error)
}

// StoreBreakers is the BreakerStore on the node's own store.
type StoreBreakers struct{ St *store.Store }

// Breakers implements BreakerStore.
func (s StoreBreakers) Breakers() (map[string]routing.Breaker, error) {
	recs, err := s.St.Breakers()
	out := make(map[string]routing.Breaker, len(recs))
	for id, r := range recs {
		out[id] = routing.Breaker{Failures: r.Failures, PulledUntil: r.PulledUntil, Reason: r.Reason}
	}
	return out, err
}

// UpdateBreaker implements BreakerStore.
func (s StoreBreakers) UpdateBreaker(id string, fn func(*routing.Breaker)) (routing.Breaker, error) {
	r, err := s.St.UpdateBreaker(id, func(r *store.BreakerRecord) {
		b := routing.Breaker{Failures: append([]time.Time(nil), r.Failures...), PulledUntil: r.PulledUntil, Reason: r.Reason}
		fn(&b)
		*r = store.BreakerRecord{Failures: b.Failures, PulledUntil: b.PulledUntil, Reason: b.Reason}
	})
	return routing.Breaker{Failures: r.Failures, PulledUntil: r.PulledUntil, Reason: r.Reason}, err
}

// loadBreakers restores the stored breaker states at start.
func (h *health) loadBreakers(bs map[string]routing.Breaker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, b := range bs {
		h.get(id).breaker = b
	}
}

// ApplyBreaker sets provider id's breaker state as another node stored it
// (cluster mode: the shared health's watch calls it).
func (s *Scheduler) ApplyBreaker(id string, b routing.Breaker) {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	s.health.get(id).breaker = b
}

// persistOutcome writes an attempt's effect on the breaker through the
// BreakerStore and adopts the stored result; it reports whether that
// result pulled the provider or brought it back from half-open, compared
// with before (the state before this outcome). A store that cannot write
// leaves the in-memory state in charge.
func (h *health) persistOutcome(id string, ok bool, class routing.Class, now time.Time, before routing.Breaker) (pulled, recovered bool, err error) {
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	b, err := h.breakers.UpdateBreaker(id, func(b *routing.Breaker) {
		if ok {
			b.Success(now)
		} else {
			b.Record(class, now)
		}
	})
	if err != nil {
		return false, false, err
	}
	h.mu.Lock()
	h.get(id).breaker = b
	h.mu.Unlock()
	pulled = !before.Pulled(now) && b.Pulled(now)
	recovered = ok && before.HalfOpen(now) && !b.HalfOpen(now) && !b.Pulled(now)
	return pulled, recovered, nil
}
