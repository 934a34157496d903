package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// TouchProvider records when a provider last carried a message. It does
// not bump Version (it is not an edit: no If-Match conflict, no rebuilt
// connection pool) and callers throttle it.
func (s *Store) TouchProvider(id string, at time.Time) error {
	return touchRecord(s, bProviders, id, func(p *Provider) { p.LastUsedAt = &at })
}

// TouchKey records when a key was last used; callers throttle it.
func (s *Store) TouchKey(id string, at time.Time) error {
	return touchRecord(s, bKeys, id, func(k *APIKey) { k.LastUsedAt = &at })
}

// touchRecord rewrites record id of bucket with set applied, nothing else.
func touchRecord[T any](s *Store, bucket []byte, id string, set func(*T)) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var v T
		if err := getJSON(b, id, &v); err != nil {
			return err
		}
		set(&v)
		return putJSON(b, id, &v)
	})
}
