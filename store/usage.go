package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

var bUsage = []byte("usage") // provider id → UsageRecord

// UsageRecord is a provider's consumption in the current UTC hour and day,
// persisted so that hourly and daily quotas hold across restarts.
type UsageRecord struct {
	HourStart time.Time `json:"hour_start"`
	Hour      int       `json:"hour"`
	DayStart  time.Time `json:"day_start"`
	Day       int       `json:"day"`
}

// merge keeps, per window, the newer window, or the larger count of the
// same window: snapshots taken concurrently may commit out of order, and
// a count that is too high only makes the relay more careful.
func (r UsageRecord) merge(o UsageRecord) UsageRecord {
	switch {
	case o.HourStart.After(r.HourStart):
		r.HourStart, r.Hour = o.HourStart, o.Hour
	case o.HourStart.Equal(r.HourStart):
		r.Hour = max(r.Hour, o.Hour)
	}
	switch {
	case o.DayStart.After(r.DayStart):
		r.DayStart, r.Day = o.DayStart, o.Day
	case o.DayStart.Equal(r.DayStart):
		r.Day = max(r.Day, o.Day)
	}
	return r
}

// Usage returns every provider's persisted usage.
func (s *Store) Usage() (map[string]UsageRecord, error) {
	out := map[string]UsageRecord{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bUsage).ForEach(func(k, v []byte) error {
			var r UsageRecord
			if err := jsonUnmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

func putUsage(tx *bolt.Tx, providerID string, rec UsageRecord) error {
	b := tx.Bucket(bUsage)
	var cur UsageRecord
	if err := getJSON(b, providerID, &cur); err != nil && err != ErrNotFound {
		return err
	}
	return putJSON(b, providerID, cur.merge(rec))
}

// ClaimMessage is UpdateMessage that also records providerID's usage in
// the same transaction, so the quota counters are durable exactly when the
// attempt that consumed them is.
func (s *Store) ClaimMessage(id string, fn func(*Message) error, providerID string, usage UsageRecord) (*Message, error) {
	return s.updateMessage(id, fn, func(tx *bolt.Tx) error { return putUsage(tx, providerID, usage) }, nil)
}
