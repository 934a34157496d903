package store

import (
	"bytes"
	"maps"
	"slices"
	"sync"
)

// recCache keeps the decoded form of queued message records as the
// scheduler read them (Store.Message), keyed by ID and checked against the
// exact stored bytes, so that the claim that follows (updateMessage on
// the same, unchanged record) copies the decoded record instead of
// decoding the JSON a second time (issue 19: JSON decoding was 7 % of the
// relay's CPU per message, the claim's a third of it). Only a byte-for-byte
// match is used: a record rewritten by anyone, or restored, decodes again.
// A write of a record not yet finished (the claim) keeps what it encoded
// (keep), so that the attempt's result starts from it without a decode.
type recCache struct {
	mu   sync.Mutex
	recs map[string]cachedRec
	hits int64 // under mu; for tests
}

type cachedRec struct {
	raw []byte   // the stored record the decoded form came from
	m   *Message // never handed out: callers get clones
}

// recCacheMax bounds the cache: entries live from the scheduler's read to
// the claim, so a few hundred are in use at a time.
const recCacheMax = 1024

// get returns a copy of the decoded record of id if raw is what it was
// decoded from, else nil.
func (c *recCache) get(id string, raw []byte) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.recs[id]; ok && bytes.Equal(r.raw, raw) {
		c.hits++
		return r.m.clone()
	}
	return nil
}

// take is get for a writer that replaces the record: it hands over the
// cached form itself, no copy, and forgets it (the write keeps its own
// result). nil if raw is not what it was decoded from.
func (c *recCache) take(id string, raw []byte) *Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.recs[id]; ok && bytes.Equal(r.raw, raw) {
		c.hits++
		delete(c.recs, id)
		return r.m
	}
	return nil
}

// put remembers m, decoded from raw (a value of a read transaction, so it
// is copied), for the next get of id.
func (c *recCache) put(id string, raw []byte, m *Message) {
	c.keep(id, bytes.Clone(raw), m.clone())
}

// keep is put for a record this process just encoded: raw and m are
// the caller's to give away (neither is used by it again).
func (c *recCache) keep(id string, raw []byte, m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recs == nil {
		c.recs = make(map[string]cachedRec)
	}
	if _, ok := c.recs[id]; !ok && len(c.recs) >= recCacheMax {
		for k := range c.recs { // any one: each is at most one decode
			delete(c.recs, k)
			break
		}
	}
	c.recs[id] = cachedRec{raw: raw, m: m}
}

// drop forgets id (its record was rewritten).
func (c *recCache) drop(id string) {
	c.mu.Lock()
	delete(c.recs, id)
	c.mu.Unlock()
}

// clone is a deep copy of m: nothing reachable from the copy is shared
// with m except strings (immutable) and time locations.
// TestMessageCloneSharesNothing fills every field to keep this complete.
func (m *Message) clone() *Message {
	c := *m
	c.Scope = m.Scope.clone()
	c.Recipients = slices.Clone(m.Recipients)
	for i := range c.Recipients {
		r := &c.Recipients[i]
		if r.UpdatedAt != nil {
			t := *r.UpdatedAt
			r.UpdatedAt = &t
		}
		r.Feedback = slices.Clone(r.Feedback)
	}
	c.AuthFailed = maps.Clone(m.AuthFailed)
	c.Avoid = maps.Clone(m.Avoid)
	c.Waiting = bytes.Clone(m.Waiting)
	c.Attempts = slices.Clone(m.Attempts)
	for i := range c.Attempts {
		c.Attempts[i].Routing = bytes.Clone(c.Attempts[i].Routing)
	}
	return &c
}

func (s Scope) clone() Scope {
	s.ProviderPublicIDs = slices.Clone(s.ProviderPublicIDs)
	s.GroupPublicIDs = slices.Clone(s.GroupPublicIDs)
	return s
}
