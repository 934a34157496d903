package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// bBreakers keeps each provider's breaker state (provider id →
// BreakerRecord JSON), so that a provider the breaker pulled stays pulled
// across a restart until its time, and recent failures keep counting. An
// empty state has no entry. It is written only when the state changes: a
// failure that feeds the breaker, the first success after failures, an
// operator's reset — never per message sent.
var bBreakers = []byte("breakers")

// BreakerRecord is a provider's breaker state as stored (routing.Breaker's
// fields; store imports nothing of the project).
type BreakerRecord struct {
	Failures    []time.Time `json:"recent_failures,omitempty"`
	PulledUntil time.Time   `json:"pulled_until"`
	Reason      string      `json:"reason,omitempty"`
}

// Empty reports whether r holds nothing worth keeping.
func (r BreakerRecord) Empty() bool {
	return len(r.Failures) == 0 && r.PulledUntil.IsZero() && r.Reason == ""
}

// Breakers returns every stored breaker state.
func (s *Store) Breakers() (map[string]BreakerRecord, error) {
	out := map[string]BreakerRecord{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bBreakers).ForEach(func(k, v []byte) error {
			var r BreakerRecord
			if err := jsonUnmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// UpdateBreaker applies fn to provider id's stored breaker state in one
// write transaction and returns the result; an empty result deletes the
// entry. fn may run more than once (grouped commits), each time on the
// state read in that transaction.
func (s *Store) UpdateBreaker(id string, fn func(*BreakerRecord)) (BreakerRecord, error) {
	var out BreakerRecord
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bBreakers)
		var r BreakerRecord
		if err := getJSON(b, id, &r); err != nil && err != ErrNotFound {
			return err
		}
		fn(&r)
		out = r
		if r.Empty() {
			return b.Delete([]byte(id))
		}
		return putJSON(b, id, r)
	})
	return out, err
}
