package store

import (
	"sync"
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

// touchRecord rewrites record id of bucket with set applied, nothing else,
// in the next commit of another write (lazyUpdate): a last-use time is
// not worth an fsync of its own.
func touchRecord[T any](s *Store, bucket []byte, id string, set func(*T)) error {
	return s.lazyUpdate(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var v T
		if err := getJSON(b, id, &v); err != nil {
			return err
		}
		set(&v)
		return putJSON(b, id, &v)
	})
}

// LastUsedEvery is how stale a last_used_at may get: recording every use
// would add a write (an fsync) per message or request.
const LastUsedEvery = time.Minute

// LastUsed throttles last-use writes: at most one per LastUsedEvery per
// ID, in the background so the mail and request paths never wait for it.
// The SMTP relay (keys and providers) and the Management API (root keys)
// each hold one.
type LastUsed struct {
	mu    sync.Mutex
	last  map[string]time.Time
	write func(id string, at time.Time) error
}

// NewLastUsed throttles write, typically Store.TouchKey or TouchProvider.
func NewLastUsed(write func(id string, at time.Time) error) *LastUsed {
	return &LastUsed{last: map[string]time.Time{}, write: write}
}

// Touch records that id was used at now, unless it was recorded less than
// LastUsedEvery ago.
func (t *LastUsed) Touch(id string, now time.Time) {
	t.mu.Lock()
	if now.Sub(t.last[id]) < LastUsedEvery {
		t.mu.Unlock()
		return
	}
	t.last[id] = now
	t.mu.Unlock()
	go t.write(id, now.UTC()) // best effort: a lost touch only ages the figure
}
