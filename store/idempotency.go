package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Idempotency records (SPEC §3: Idempotency-Key on POSTs) live in two
// buckets: the records, keyed by credential and key, and an index by
// creation time so that expiry is a range walk instead of a scan of every
// record.
var (
	bIdempotency    = []byte("idempotency")     // credID 0x00 key → IdempotencyRecord
	bIdempotencyExp = []byte("idempotency_exp") // be64(created nanos) || record key → nil
)

// IdempotencyTTL is how long an Idempotency-Key stands for its first
// request (SPEC §3: 24 hours): the Sending and Management APIs replay
// within it, and the retention sweep deletes records older than it.
const IdempotencyTTL = 24 * time.Hour

// Idempotency record states.
const (
	IdemInFlight = "in_flight" // the first request is still being served
	IdemDone     = "done"      // Status, Header and Body hold its answer
)

// IdempotencyRecord is what one Idempotency-Key stands for: the first
// request's fingerprint and, once it finished, its answer, replayed byte for
// byte to every retry within the record's lifetime.
type IdempotencyRecord struct {
	Key          string `json:"key"`
	CredentialID string `json:"credential_id"`
	// RequestHash fingerprints method, path and body; a retry with another
	// fingerprint is a conflict, not a replay.
	RequestHash []byte `json:"request_hash"`
	State       string `json:"state"`
	// Owner names the process serving an in-flight record. A record left
	// in flight by a process that died (another owner) is abandoned: its
	// client never got an answer, so a retry may run the request again.
	Owner  string            `json:"owner,omitempty"`
	Status int               `json:"status,omitempty"`
	Header map[string]string `json:"header,omitempty"`
	// Body is the answer's body as the caller stored it (admin seals it:
	// an answer may hold a secret that is shown once).
	Body      []byte    `json:"body,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func idemKey(credID, key string) []byte {
	return append(append([]byte(credID), 0), key...)
}

func idemExpKey(created time.Time, k []byte) []byte {
	out := make([]byte, 8, 8+len(k))
	binary.BigEndian.PutUint64(out, uint64(created.UnixNano()))
	return append(out, k...)
}

// BeginIdempotent claims key for credID. When it returns nil, the caller
// owns a fresh in-flight record and must end it with FinishIdempotent or
// ReleaseIdempotent. Otherwise it returns the live record (in flight in
// this process, or done) for the caller to compare and replay.
//
// A record older than ttl no longer exists as far as callers can tell, even
// before the sweep deletes it; so does one left in flight by another owner.
// The read and the claim happen in one write transaction, and the store
// serialises those, so two concurrent requests can never both own a key.
func (s *Store) BeginIdempotent(credID, key string, hash []byte, owner string, now time.Time, ttl time.Duration) (*IdempotencyRecord, error) {
	var live *IdempotencyRecord
	err := s.update(func(tx *bolt.Tx) error {
		live = nil // the function may run again
		b, exp := tx.Bucket(bIdempotency), tx.Bucket(bIdempotencyExp)
		k := idemKey(credID, key)
		var old IdempotencyRecord
		if raw := b.Get(k); raw != nil {
			if err := jsonUnmarshal(raw, &old); err != nil {
				return err
			}
			expired := !now.Before(old.CreatedAt.Add(ttl))
			abandoned := old.State == IdemInFlight && old.Owner != owner
			if !expired && !abandoned {
				live = &old
				return nil
			}
			if err := exp.Delete(idemExpKey(old.CreatedAt, k)); err != nil {
				return err
			}
		}
		rec := IdempotencyRecord{Key: key, CredentialID: credID, RequestHash: hash, State: IdemInFlight,
			Owner: owner, CreatedAt: now}
		if err := exp.Put(idemExpKey(now, k), nil); err != nil {
			return err
		}
		return putJSON(b, string(k), &rec)
	})
	return live, err
}

// FinishIdempotent stores the answer of the in-flight record owner holds.
// A record that is gone or taken over meanwhile is left alone.
func (s *Store) FinishIdempotent(credID, key, owner string, status int, header map[string]string, body []byte) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bIdempotency)
		k := idemKey(credID, key)
		var rec IdempotencyRecord
		if err := getJSON(b, string(k), &rec); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		if rec.State != IdemInFlight || rec.Owner != owner {
			return nil
		}
		rec.State, rec.Owner, rec.Status, rec.Header, rec.Body = IdemDone, "", status, header, body
		return putJSON(b, string(k), &rec)
	})
}

// ReleaseIdempotent drops the in-flight record owner holds, so that a retry
// runs the request again: used when the answer must not be replayed (a
// transient failure, a rate limit).
func (s *Store) ReleaseIdempotent(credID, key, owner string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bIdempotency)
		k := idemKey(credID, key)
		var rec IdempotencyRecord
		if err := getJSON(b, string(k), &rec); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		if rec.State != IdemInFlight || rec.Owner != owner {
			return nil
		}
		if err := tx.Bucket(bIdempotencyExp).Delete(idemExpKey(rec.CreatedAt, k)); err != nil {
			return err
		}
		return b.Delete(k)
	})
}

// IdempotencyRecordOf returns the stored record of credID's key, expired or
// not; for tests and diagnostics.
func (s *Store) IdempotencyRecordOf(credID, key string) (*IdempotencyRecord, error) {
	var rec IdempotencyRecord
	err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bIdempotency), string(idemKey(credID, key)), &rec) })
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// SweepIdempotency deletes up to limit records created at or before cutoff
// (a record expires when its age reaches the TTL) and
// reports how many index entries it removed and whether more remain. It
// walks the time index from its oldest entry, so it never reads a live
// record.
func (s *Store) SweepIdempotency(cutoff time.Time, limit int) (n int, more bool, err error) {
	end := uint64(cutoff.UnixNano())
	var keys [][]byte
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bIdempotencyExp).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k[:8]) > end {
				return nil
			}
			if len(keys) == limit {
				more = true
				return nil
			}
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return 0, false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b, exp := tx.Bucket(bIdempotency), tx.Bucket(bIdempotencyExp)
		for _, ek := range keys {
			if err := exp.Delete(ek); err != nil {
				return err
			}
			// The record may have been replaced by a newer claim of the
			// same key (with its own index entry); only an expired one
			// goes.
			rk := ek[8:]
			raw := b.Get(rk)
			if raw == nil {
				continue
			}
			var rec IdempotencyRecord
			if jsonUnmarshal(raw, &rec) == nil && uint64(rec.CreatedAt.UnixNano()) != binary.BigEndian.Uint64(ek[:8]) {
				continue
			}
			if err := b.Delete(rk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return len(keys), more, nil
}
