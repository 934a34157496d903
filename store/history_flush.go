package store

// A message that finishes goes to its day file at once, not a minute
// later through the mover (issue 18). The commit that finishes it drops
// its index keys and counters from the main file and journals it 'f'
// (history_journal); the flusher then writes the record, with its keys
// and counters, to its day file in one commit per day, and deletes it from
// the main file in one more. The main file so never indexes a finished
// message: a finish costs it a key delete per index entry instead of a
// put now and a delete a minute later, and nothing runs behind acceptance
// to clean up.
//
// Between the finish and the flush the record is in the main file, read
// by ID there, and the reads that combine the files take it from the
// journal: its counters (journaledCounts) and its would-be index keys
// (journaledIndex) join the main file's. A flush holds history.rw from its
// day-file commit to its main-file commit, as the mover does, so a read
// sees each message once; a record written again meanwhile (its day copy
// stale, or to undo: journaled 'u', queued again and back in the main
// file's indexes) is dealt with before the flush lets go. A crash between
// the steps leaves the journal entries, which Open finishes.
//
// Messages that were written again after they moved (a late bounce: a
// restore) and histories of earlier versions still go through the mover's
// list (history_move.go), as do records written finished at once.

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	// journalFinished: finished, unindexed in the main file, on its way
	// to its day file.
	journalFinished = 'f'
	// journalUnfinished: was journalFinished, then queued again: indexed
	// in the main file again, and a day copy may exist, to be removed.
	journalUnfinished = 'u'
	// flushRounds bounds one flush: rounds of up to historyMoveBatch
	// records, while each round makes progress or has a record written
	// again since its day copy to set right.
	flushRounds = 8
	// flushGap is how long the flusher lets finishes gather after the
	// first one wakes it: at 2,000 finishes/s, 50 records a flush, and
	// that many journaled records for the reads to take from the journal.
	flushGap = 25 * time.Millisecond
	// flushErrorLogEvery spaces the flusher's error lines.
	flushErrorLogEvery = 10 * time.Second
)

// reindexHistory moves message m's index keys and counters in the main
// file for a write that changed it from a version with oldKeys and
// oldCounts in state oldState, journaled as journaled (nil: not). It
// reports whether m is now journaled for its day file.
func reindexHistory(tx *bolt.Tx, m *Message, oldState string, journaled []byte, oldKeys, oldCounts *histKeys) (toDay bool, err error) {
	j := tx.Bucket(bHistJournal)
	unindexed := len(journaled) == 1 && journaled[0] == journalFinished
	done := m.State == StateDone
	switch {
	case unindexed && done:
		// Written again before the flush: the flush takes this version.
		return true, nil
	case unindexed:
		// Queued again before or after the flush: indexed here again,
		// and its day copy, if any, goes.
		if err := indexNewMessage(tx, m); err != nil {
			return false, err
		}
		return false, j.Put([]byte(m.ID), []byte{journalUnfinished})
	case done && oldState != StateDone && (journaled == nil || journaled[0] == journalUnfinished):
		if err := dropIndexKeys(tx, m.TeamID, m.ID, oldKeys, oldCounts); err != nil {
			return false, err
		}
		return true, j.Put([]byte(m.ID), []byte{journalFinished})
	}
	newCounts := countKeys(m)
	defer newCounts.release()
	if err := moveCountKeys(tx, oldCounts, newCounts); err != nil {
		return false, err
	}
	return false, moveIndexKeys(tx, m.TeamID, m.ID, oldKeys, m)
}

// flushersRecord reports whether journal entry v is the flusher's.
func flushersRecord(v []byte) bool {
	return len(v) == 1 && (v[0] == journalFinished || v[0] == journalUnfinished)
}

// kickFlusher wakes the flusher (after a commit that journaled a record).
func (s *Store) kickFlusher() {
	select {
	case s.flushKick <- struct{}{}:
	default:
	}
}

// runFlusher flushes journaled records to their day files until ctx ends,
// whenever a finish commits (kickFlusher) and once a second.
func (s *Store) runFlusher(ctx context.Context) {
	defer s.moverGroup.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.flushKick:
		case <-t.C:
		}
		// Let the finishes of flushGap gather: one day commit (fsync)
		// for all of them rather than one for each few.
		gap := time.NewTimer(flushGap)
		select {
		case <-ctx.Done():
			gap.Stop()
			return
		case <-gap.C:
		}
		// A failure (a full disk) repeats at every finish: logged once
		// in a while; the journal keeps the records meanwhile.
		if err := s.FlushHistory(); err != nil && ctx.Err() == nil && time.Since(logged) >= flushErrorLogEvery {
			logged = time.Now()
			s.log.Error("writing finished messages to the history files failed; they wait in the main file", "err", err)
		}
	}
}

// FlushHistory writes the records journaled 'f' to their day files and
// drops them from the main file, and removes the day copies of records
// journaled 'u': the flusher's work (runFlusher), exported for tests and
// tools that open the store without it. It goes on, round after round under history.rw, until
// no record it wrote to a day file has changed since (flushRounds at
// most), so that readers find no record in two files' counters.
func (s *Store) FlushHistory() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	s.hist.rw.Lock()
	defer s.hist.rw.Unlock()
	for range flushRounds {
		put, undo, err := s.journaledRecords()
		if err != nil || len(put)+len(undo) == 0 {
			return err
		}
		if err := s.writeDays(put); err != nil {
			return err
		}
		if err := s.undoDays(undo); err != nil {
			return err
		}
		if historyStepHook != nil {
			if err := historyStepHook("flushed"); err != nil {
				return err
			}
		}
		var gone, stale int
		err = s.moverUpdate(func(tx *bolt.Tx) error {
			gone, stale = 0, 0
			msgs, j := tx.Bucket(bMessages), tx.Bucket(bHistJournal)
			for _, mv := range put {
				// Written since it was read: the next round takes the
				// new version (or, queued again, undoes the day copy).
				if !bytes.Equal(msgs.Get([]byte(mv.m.ID)), mv.raw) {
					stale++
					continue
				}
				if err := msgs.Delete([]byte(mv.m.ID)); err != nil {
					return err
				}
				if err := j.Delete([]byte(mv.m.ID)); err != nil {
					return err
				}
				gone++
			}
			for _, mv := range undo {
				if v := j.Get([]byte(mv.m.ID)); len(v) == 1 && v[0] == mv.kind {
					if err := j.Delete([]byte(mv.m.ID)); err != nil {
						return err
					}
					gone++
				}
			}
			return nil
		})
		if err != nil || gone == 0 && stale == 0 {
			return err
		}
	}
	return nil
}

// journaledFinished calls fn with each record journaled 'f' in tx (the
// main file's), decoded: finished, not in the main file's indexes and
// counters, not yet in its day file's. It is a handful of records: those
// of the commits since the flusher last ran.
func journaledFinished(tx *bolt.Tx, fn func(m *Message)) error {
	msgs := tx.Bucket(bMessages)
	c := tx.Bucket(bHistJournal).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) != 1 || v[0] != journalFinished {
			continue
		}
		raw := msgs.Get(k)
		if raw == nil {
			continue
		}
		var m Message
		if err := jsonUnmarshal(raw, &m); err != nil {
			return err
		}
		fn(&m)
	}
	return nil
}

// journaledCounts adds the counters of teamID's records journaled 'f' to
// pending (counter key → change, as pendingCounts returns), allocating it
// if need be.
func journaledCounts(tx *bolt.Tx, teamID string, pending map[string]int64) (map[string]int64, error) {
	err := journaledFinished(tx, func(m *Message) {
		if m.TeamID != teamID {
			return
		}
		if pending == nil {
			pending = map[string]int64{}
		}
		h := countKeys(m)
		for k, n := range h.all() {
			pending[k] += n
		}
		h.release()
	})
	return pending, err
}

// journaledIndex returns the keys bucket (bMsgByTeam or bMsgByFilter)
// would hold under prefix for the records journaled 'f', with their
// values, in key order: a walk's source for them (walkChunk).
func journaledIndex(tx *bolt.Tx, bucket, prefix []byte) (*sliceCursor, error) {
	c := &sliceCursor{}
	err := journaledFinished(tx, func(m *Message) {
		add := func(k []byte) {
			if bytes.HasPrefix(k, prefix) {
				c.keys, c.vals = append(c.keys, k), append(c.vals, createdValue(m))
			}
		}
		if bytes.Equal(bucket, bMsgByTeam) {
			add(teamIndexKey(m.TeamID, m.ID))
			return
		}
		h := indexKeys(m)
		for i := range h.len() {
			add(bytes.Clone(h.key(i)))
		}
		h.release()
	})
	c.sort()
	return c, err
}

// journaledRecords reads up to historyMoveBatch records journaled 'f'
// (put: to write to their day files) or 'u' (undo: their day copies to
// remove; also an 'f' whose record is gone).
func (s *Store) journaledRecords() (put, undo []*moving, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bMessages)
		c := tx.Bucket(bHistJournal).Cursor()
		for k, v := c.First(); k != nil && len(put)+len(undo) < historyMoveBatch; k, v = c.Next() {
			if !flushersRecord(v) {
				continue
			}
			mv := &moving{kind: v[0]}
			raw := msgs.Get(k)
			if raw == nil {
				// Deleted while journaled: no day copy may outlive it,
				// on any day its ID may have been filed under.
				for _, d := range idDays(string(k)) {
					undo = append(undo, &moving{kind: v[0], m: Message{ID: string(k), CreatedAt: d}})
				}
				continue
			}
			mv.raw = bytes.Clone(raw)
			if err := jsonUnmarshal(raw, &mv.m); err != nil {
				return err
			}
			if v[0] == journalFinished && mv.m.State == StateDone {
				put = append(put, mv)
			} else {
				undo = append(undo, mv)
			}
		}
		return nil
	})
	return put, undo, err
}
