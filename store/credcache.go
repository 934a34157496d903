package store

import (
	"bytes"
	"encoding/json"
	"sync"
)

// rawCache keeps the decoded form of stored JSON records keyed by ID and
// checked against the exact stored bytes, for records read far more often
// than written. An open SMTP session re-reads its credential before every
// transaction (relay Authenticator.Recheck), which decoded the key's JSON
// once per message: 3 % of the relay's CPU at 2 KiB (issue 19). Only a
// byte-for-byte match is used, so any write (a revocation, a rotation, a
// scope change, a last-use time) decodes afresh: the cache can be stale
// by nothing. Values are shared between callers: read-only.
type rawCache[T any] struct {
	mu   sync.Mutex
	recs map[string]rawEntry[T]
	hits int64 // under mu; for tests
}

type rawEntry[T any] struct {
	raw []byte // the stored bytes v was decoded from
	v   T
}

// rawCacheMax bounds a cache: one entry per credential in use.
const rawCacheMax = 1024

// decode sets *dst to raw decoded, from the cache when raw is what id's
// entry was decoded from. raw may be a value of a bbolt transaction: the
// cache keeps a copy. dst's slices and pointers may be shared with the
// cache and other callers: never modify them.
func (c *rawCache[T]) decode(id string, raw []byte, dst *T) error {
	c.mu.Lock()
	if e, ok := c.recs[id]; ok && bytes.Equal(e.raw, raw) {
		*dst = e.v
		c.hits++
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	*dst = v
	e := rawEntry[T]{raw: bytes.Clone(raw), v: v}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recs == nil {
		c.recs = make(map[string]rawEntry[T])
	}
	if _, ok := c.recs[id]; !ok && len(c.recs) >= rawCacheMax {
		for k := range c.recs { // any one: each is at most one decode
			delete(c.recs, k)
			break
		}
	}
	c.recs[id] = e
	return nil
}
