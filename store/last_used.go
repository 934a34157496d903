package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// TouchProvider records when a provider last carried a message. It does
// not bump Version (it is not an edit: no If-Match conflict, no rebuilt
// connection pool) and callers throttle it.
func (s *Store) TouchProvider(id string, at time.Time) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bProviders)
		var p Provider
		if err := getJSON(b, id, &p); err != nil {
			return err
		}
		p.LastUsedAt = &at
		return putJSON(b, id, &p)
	})
}

// TouchKey records when a key was last used; callers throttle it.
func (s *Store) TouchKey(id string, at time.Time) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKeys)
		var k APIKey
		if err := getJSON(b, id, &k); err != nil {
			return err
		}
		k.LastUsedAt = &at
		return putJSON(b, id, &k)
	})
}
