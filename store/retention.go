package store

import (
	"bytes"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The retention sweeps delete old data in small batches: each call reads
// candidates in one short read transaction and deletes at most limit of them
// in one grouped write, so SMTP and HTTP enqueues waiting on the committer
// get through between two batches. Callers loop while more is true.

// sweepVisitMax bounds how many records one sweep call reads, so that a
// history full of records it may not delete (not finished yet) cannot turn
// one call into a scan of everything.
const sweepVisitMax = 4 * scanChunk

// SweepMessages deletes up to limit message records (with any body left)
// of finished messages that finished before cutoff, oldest first. Messages
// still queued or in flight are never touched, however old.
//
// Message IDs start with their acceptance time and a message finishes after
// it was accepted, so the walk starts at the oldest ID and ends at the first
// ID accepted at or after cutoff.
func (s *Store) SweepMessages(cutoff time.Time, limit int) (n int, more bool, err error) {
	floor := []byte(idFloor(PrefixMessage, cutoff))
	var ids []string
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMessages).Cursor()
		visited := 0
		for k, v := c.Seek([]byte(PrefixMessage)); k != nil && bytes.Compare(k, floor) < 0; k, v = c.Next() {
			if visited == sweepVisitMax || len(ids) == limit {
				more = true
				return nil
			}
			visited++
			var m Message
			if err := jsonUnmarshal(v, &m); err != nil {
				return err
			}
			if m.State == StateDone && m.UpdatedAt.Before(cutoff) {
				ids = append(ids, m.ID)
			}
		}
		return nil
	})
	if err != nil || len(ids) == 0 {
		return 0, more, err
	}
	deleted := 0
	o := &op{done: make(chan error, 1)}
	o.fn = func(tx *bolt.Tx) error {
		o.after, deleted = o.after[:0], 0 // the function may run again
		b := tx.Bucket(bMessages)
		for _, id := range ids {
			var m Message
			if err := getJSON(b, id, &m); err != nil {
				continue // already gone
			}
			// Re-checked inside the write: the read above is a snapshot.
			if m.State != StateDone || !m.UpdatedAt.Before(cutoff) {
				continue
			}
			if err := s.dropBody(tx, &m, &o.after); err != nil {
				return err
			}
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
			deleted++
		}
		return nil
	}
	if err := s.submit(o); err != nil {
		return 0, false, err
	}
	return deleted, more, nil
}

// SweepBodies deletes up to limit message bodies (inline or spooled) of
// messages that finished before cutoff, and inline bodies whose record is
// gone. Finishing a message already drops its body, so this collects what a
// crash between the commit and a spool file's removal left behind — and it
// is what enforces [retention] body should finished bodies ever be kept
// for display. A spool file without a record is left alone: it may belong
// to a message whose DATA is still streaming (SweepSpool clears those at
// start).
func (s *Store) SweepBodies(cutoff time.Time, limit int) (n int, err error) {
	var inline []string
	err = s.view(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bMessages)
		c := tx.Bucket(bBodies).Cursor()
		visited := 0
		for k, _ := c.First(); k != nil && visited < sweepVisitMax && len(inline) < limit; k, _ = c.Next() {
			visited++
			var m Message
			err := getJSON(msgs, string(k), &m)
			if err == ErrNotFound || err == nil && m.State == StateDone && m.UpdatedAt.Before(cutoff) {
				inline = append(inline, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(inline) > 0 {
		err = s.update(func(tx *bolt.Tx) error {
			for _, id := range inline {
				if err := tx.Bucket(bBodies).Delete([]byte(id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		n = len(inline)
	}
	entries, err := os.ReadDir(s.spoolDir)
	if err != nil {
		return n, err
	}
	for _, e := range entries {
		if n >= limit {
			break
		}
		if !ValidID(PrefixMessage, e.Name()) {
			continue
		}
		m, err := s.Message(e.Name())
		if err != nil || m.State != StateDone || !m.UpdatedAt.Before(cutoff) {
			continue
		}
		if os.Remove(filepath.Join(s.spoolDir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
