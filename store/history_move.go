package store

// Moving finished messages from the main file to their day file, and back
// when one must change again (a bounce or complaint arriving late, a
// failure report). Two files cannot commit together, so each direction is
// three steps, each idempotent, with a journal entry in the main file that
// says which step a record is between:
//
//	move:    main: journal 'm'  →  day: put  →  main: delete, journal cleared
//	restore: main: put, journal 'r'  →  day: delete  →  main: journal cleared
//
// Until the last step the record is in both files; the main file's copy is
// the one read (history_read.go). After a crash, Open finishes what the
// journal names before anything reads (recoverHistory), so a record is
// never lost, never counted twice, and no queue entry is touched: only
// finished messages move, and the queue, its bodies and the due index never
// leave the main file.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// bFinished (main file) is be64(unix nanos it finished) ‖ id → nil
	// for each finished message still in the main file: the mover's
	// work list, oldest first. It is written in the commit that finishes
	// a message, so a crash never leaves a finished message unlisted.
	bFinished = []byte("finished")
	// bHistJournal (main file) is id → 'm' (moving to its day file) or
	// 'r' (restoring from it).
	bHistJournal = []byte("history_journal")
)

const (
	// historyMoveDelay is how long a finished message stays in the main
	// file: most late changes (a DSN a few seconds after the reply, a
	// failure report) find it there and need no restore.
	historyMoveDelay = time.Minute
	// historyMoveBatch is how many records one move step takes: one
	// journal commit and one day-file commit for all of them, then the
	// main file's deletes in chunks (historyDeleteChunk). A larger step
	// shares each index and counter page among more records: 1,024 moved
	// 2.2× faster than 256 (BenchmarkAcceptanceWithMover, bench/RESULTS.md).
	historyMoveBatch = 1024
)

// historyDeleteChunk is how many records one main-file commit of a move
// step deletes (a variable for the crash tests).
var historyDeleteChunk = 256

// historyStepHook, when set (tests only), runs between the day-file step
// and the main-file step of a move ("moved") or a restore ("restored"),
// between two journal commits of a move ("journaled") and between two
// main-file delete chunks of a move ("deleted"); an error stops there, as
// a crash would.
var historyStepHook func(step string) error

func finishedKey(at time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at.UnixNano()))
	return append(k, id...)
}

// markFinished lists m, finished in this transaction, for the mover.
func markFinished(tx *bolt.Tx, m *Message) error {
	return tx.Bucket(bFinished).Put(finishedKey(m.UpdatedAt, m.ID), nil)
}

// putHistory writes raw, message m's record, in a day file's transaction
// with its index keys and counters, replacing a copy already there.
func putHistory(tx *bolt.Tx, m *Message, raw []byte) error {
	b := tx.Bucket(bMessages)
	if old := b.Get([]byte(m.ID)); old != nil {
		var prev Message
		if err := jsonUnmarshal(old, &prev); err != nil {
			return err
		}
		if err := unindexMessage(tx, &prev); err != nil {
			return err
		}
	} else if err := addDayCount(tx, 1); err != nil {
		return err
	}
	if err := b.Put([]byte(m.ID), raw); err != nil {
		return err
	}
	if err := indexNewMessage(tx, m); err != nil {
		return err
	}
	up := tx.Bucket(hUpstream)
	for k := range upstreamIDs(m) {
		if err := up.Put([]byte(k), []byte(m.ID)); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bMeta)
	if v := meta.Get(keyMaxUpdated); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < m.UpdatedAt.UnixNano() {
		return meta.Put(keyMaxUpdated, []byte(be64Key(m.UpdatedAt.UnixNano())))
	}
	return nil
}

// deleteHistory removes message id and its keys and counters from a day
// file's transaction, if there.
func deleteHistory(tx *bolt.Tx, id string) error {
	b := tx.Bucket(bMessages)
	old := b.Get([]byte(id))
	if old == nil {
		return nil
	}
	var m Message
	if err := jsonUnmarshal(old, &m); err != nil {
		return err
	}
	if err := unindexMessage(tx, &m); err != nil {
		return err
	}
	for k := range upstreamIDs(&m) {
		if err := tx.Bucket(hUpstream).Delete([]byte(k)); err != nil {
			return err
		}
	}
	if err := addDayCount(tx, -1); err != nil {
		return err
	}
	return b.Delete([]byte(id))
}

// addDayCount moves a day file's record count (keyDayCount), which
// DropHistory reports without walking the file's pages.
func addDayCount(tx *bolt.Tx, d int64) error {
	meta := tx.Bucket(bMeta)
	var n int64
	if v := meta.Get(keyDayCount); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return meta.Put(keyDayCount, []byte(be64Key(max(n+d, 0))))
}

// moving is one record of a move step.
type moving struct {
	key []byte // its bFinished key
	raw []byte // the record as copied
	m   Message
}

// writeDays puts each record in its day file (one commit per day), its
// work paced by p (nil: not paced).
func (s *Store) writeDays(ms []*moving, p *moverPacer) error {
	byDay := map[int64][]*moving{}
	for _, mv := range ms {
		d := utcDay(mv.m.CreatedAt).Unix()
		byDay[d] = append(byDay[d], mv)
	}
	// Charged for its work, not its pauses: the charge starts later by
	// as long as it paused.
	start, rested := time.Now(), p.rested()
	defer func() { s.chargeMover(start.Add(p.rested() - rested)) }()
	for day, group := range byDay {
		d, err := s.hist.acquire(time.Unix(day, 0), true)
		if err != nil {
			return err
		}
		var latest int64
		err = d.db.Update(func(tx *bolt.Tx) error {
			packAppends(tx) // a step's keys go in in key order (putHistories)
			if err := putHistories(tx, group, p); err != nil {
				return err
			}
			latest = int64(binary.BigEndian.Uint64(tx.Bucket(bMeta).Get(keyMaxUpdated)))
			return nil
		})
		if err == nil {
			s.hist.mu.Lock()
			d.maxUpdated = max(d.maxUpdated, latest)
			s.hist.mu.Unlock()
			// The pages this step faulted into the day file's map would
			// stay resident (the process's RSS) until the file is
			// closed: nothing reads them again soon, and the committer's
			// trim (trimMapped) drops only the main file's map.
			d.db.View(func(tx *bolt.Tx) error { dropMap(tx); return nil })
		}
		s.hist.release(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// undoDays removes records from their day files (a move whose record
// changed in the main file meanwhile: the main copy stays, the day copy
// must not count twice).
func (s *Store) undoDays(ms []*moving) error {
	for _, mv := range ms {
		d, err := s.hist.acquire(mv.m.CreatedAt, false)
		if err != nil {
			return err
		}
		if d == nil {
			continue
		}
		err = d.db.Update(func(tx *bolt.Tx) error { return deleteHistory(tx, mv.m.ID) })
		s.hist.release(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// MoveHistory moves up to limit messages that finished before cutoff
// from the main file to their day files, oldest first; more reports that
// others are waiting. It is the mover's step (runMover), exported for
// tests and tools.
func (s *Store) MoveHistory(cutoff time.Time, limit int) (n int, more bool, err error) {
	return s.moveHistory(cutoff, limit, nil)
}

// moveHistory is MoveHistory with its own CPU work paced by p (nil: not
// paced). The list is read in one read transaction per burst: a pause
// inside one would keep the pages freed meanwhile from reuse, and hold
// up a remap of the main file (which waits for every reader).
func (s *Store) moveHistory(cutoff time.Time, limit int, p *moverPacer) (n int, more bool, err error) {
	s.moving.Lock()
	defer s.moving.Unlock()
	var ms []*moving
	var stale [][]byte // list entries whose record is gone or not done
	seen := map[string]bool{}
	end := uint64(cutoff.UnixNano())
	// list reads the list from k on until a stop (the cutoff, the limit)
	// or the burst's end; k is the entry to go on from after a pause.
	list := func(tx *bolt.Tx, c *bolt.Cursor, k []byte) (next []byte, err error) {
		msgs := tx.Bucket(bMessages)
		for read := 0; k != nil; k, _ = c.Next() {
			if len(k) >= 8 && len(ms)+len(stale) == 0 {
				s.moverOldest.Store(int64(binary.BigEndian.Uint64(k[:8])))
			}
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) >= end {
				return nil, nil
			}
			if len(ms)+len(stale) == limit {
				more = true
				return nil, nil
			}
			if read > 0 && p.due() { // at least one per read: progress
				return bytes.Clone(k), nil
			}
			read++
			raw := msgs.Get(k[8:])
			var m Message
			if raw != nil {
				if err := jsonUnmarshal(raw, &m); err != nil {
					return nil, err
				}
			}
			// A second entry of one record (listed again after it was
			// queued again) is stale too: moving it twice in one step
			// would find it gone from the main file the second time and
			// take that for a deletion.
			if raw == nil || m.State != StateDone || seen[m.ID] {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			seen[m.ID] = true
			ms = append(ms, &moving{key: bytes.Clone(k), raw: bytes.Clone(raw), m: m})
		}
		return nil, nil
	}
	var next []byte // where the read goes on after a pause (nil: the first entry)
	for {
		err = s.view(func(tx *bolt.Tx) error {
			defer s.chargeMover(time.Now())
			// Entries before next are read; one added meanwhile (a
			// restore lists as of now) is newer.
			c := tx.Bucket(bFinished).Cursor()
			k, _ := c.Seek(next)
			next, err = list(tx, c, k)
			return err
		})
		if err != nil || next == nil {
			break
		}
		p.pause()
	}
	if err != nil || len(ms)+len(stale) == 0 {
		if err == nil {
			s.moverOldest.Store(0)
		}
		return 0, false, err
	}
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	s.hist.rw.Lock()
	defer s.hist.rw.Unlock()
	// The journal goes in commits of at most about moverSlice each while
	// other writes flow, as the deletes do: acceptance writes share the
	// commit. (Commits of a fixed moverSubChunk entries took a step's
	// 1,024 records 128 commits, most of the step's time.) A crash
	// between two leaves some records journaled and none in a day file;
	// recoverHistory moves those.
	for rest := ms; len(rest) > 0; {
		if len(rest) < len(ms) && historyStepHook != nil {
			if err := historyStepHook("journaled"); err != nil {
				return 0, false, err
			}
		}
		var took int
		if err := s.moverUpdate(func(tx *bolt.Tx) (err error) {
			j := tx.Bucket(bHistJournal)
			took, err = s.moverSlices(time.Now(), len(rest), func(lo, hi int) error {
				for _, mv := range rest[lo:hi] {
					if err := j.Put([]byte(mv.m.ID), []byte{'m'}); err != nil {
						return err
					}
				}
				return nil
			})
			return err
		}); err != nil {
			// What is journaled already is recoverHistory's.
			s.recoverPending.Store(true)
			return 0, false, err
		}
		rest = rest[took:]
	}
	if err := s.writeDays(ms, p); err != nil {
		return 0, false, err
	}
	if historyStepHook != nil {
		if err := historyStepHook("moved"); err != nil {
			return 0, false, err
		}
	}
	// The main file's deletes go in chunks, each its own grouped commit:
	// the acceptance writes that share a commit with one wait for its
	// deletes and their index and counter pages, so one chunk must stay
	// short however large the step (issue 18): at most historyDeleteChunk
	// records, and no longer than moverSlice while other writes wait
	// (deleteMoved). Each chunk clears its own journal entries; a crash
	// between chunks leaves the rest journaled, and recoverHistory
	// finishes them.
	var changed []*moving
	for rest, first := ms, true; first || len(rest) > 0; first = false {
		if !first && historyStepHook != nil {
			if err := historyStepHook("deleted"); err != nil {
				return n, false, err
			}
		}
		k, took, ch, err := s.deleteMoved(rest[:min(len(rest), historyDeleteChunk)], stale)
		if err != nil {
			// The journal names what is left: the mover finishes it
			// before its next step.
			s.recoverPending.Store(true)
			return n, false, err
		}
		n, changed, stale, rest = n+k, append(changed, ch...), nil, rest[took:]
	}
	if len(changed) == 0 {
		return n, more, nil
	}
	// The changed records' journal entries stay until their day copies
	// are gone, so that a crash in between leaves recoverHistory the
	// work, not a record counted in both files.
	err = s.undoDays(changed)
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error {
			for _, mv := range changed {
				if err := tx.Bucket(bHistJournal).Delete([]byte(mv.m.ID)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		s.recoverPending.Store(true)
	}
	return n, more, err
}

// moverSlice bounds the time one main-file commit spends on the mover's
// deletes while other writes wait for the committer: they wait for all of
// it (a 256-record chunk took ~10 ms, and doubled acceptance's p99).
const moverSlice = 100 * time.Microsecond

// moverSubChunk is how many records the mover's journal and delete
// commits write between two looks at the time (a variable for the crash
// tests).
var moverSubChunk = 8

// moverYield reports whether the mover's commit that started at start
// should leave the rest of its chunk to the next commit: it has had its
// slice, and other writes wait or flow (a variable for tests). Waiting
// writes alone were not enough: at a steady intake the mover often found
// the committer free, deleted up to a whole chunk of 256 records in one
// commit, and the acceptances that arrived during it waited for its
// write and fsync (in process at 3,000 enqueues/s, p99 15–19 ms against
// 3.2–4.0 without the mover; 6.5–6.7 with this).
var moverYield = func(s *Store, start time.Time) bool {
	return time.Since(start) > moverSlice && (len(s.ops) > 0 || s.writesFlowing())
}

// moverSlices runs fn over [0, n) in sub-ranges of moverSubChunk, in one
// of the mover's commits that started at start, until the commit has had
// its slice (moverYield; at least one sub-range) or all are done: it
// returns how far it got.
func (s *Store) moverSlices(start time.Time, n int, fn func(lo, hi int) error) (took int, err error) {
	for took < n && (took == 0 || !moverYield(s, start)) {
		hi := min(n, took+moverSubChunk)
		if err := fn(took, hi); err != nil {
			return took, err
		}
		took = hi
	}
	return took, nil
}

// deleteMoved is a move's last step for a prefix of ms, whose day copies
// are durable: in one main-file commit, each record of it still as copied
// leaves the main file with its list entry and journal entry, and the
// stale list entries go. The prefix is all of ms unless other writes wait
// for the committer, then what fits in about moverSlice (at least
// moverSubChunk records). It returns how many left the main file, the
// prefix's length, and the records of it written since they were copied
// (their day copies must go).
func (s *Store) deleteMoved(ms []*moving, stale [][]byte) (n, took int, changed []*moving, err error) {
	err = s.moverUpdate(func(tx *bolt.Tx) error {
		changed, n, took = changed[:0], 0, 0
		start := time.Now()
		msgs, fin := tx.Bucket(bMessages), tx.Bucket(bFinished)
		for _, k := range stale {
			if err := fin.Delete(k); err != nil {
				return err
			}
		}
		gone := make([]*moving, 0, moverSubChunk)
		sums := map[string]map[string]int64{}
		var err error
		took, err = s.moverSlices(start, len(ms), func(lo, hi int) error {
			gone = gone[:0]
			for _, mv := range ms[lo:hi] {
				if !bytes.Equal(msgs.Get([]byte(mv.m.ID)), mv.raw) {
					// Written since it was copied (or gone): the main
					// copy stays the record, and keeps its list entry;
					// its journal entry stays until the day copy is gone.
					changed = append(changed, mv)
					continue
				}
				gone = append(gone, mv)
			}
			n += len(gone)
			return dropMains(tx, gone, sums)
		})
		if err != nil {
			return err
		}
		return logSums(tx, sums)
	})
	if err != nil {
		return 0, 0, nil, err
	}
	return n, took, changed, nil
}

// dropMain deletes message m from the main file's records, indexes and
// counters (its SES upstream ids stay: they name it wherever it is).
func dropMain(tx *bolt.Tx, m *Message) error {
	if err := unindexMessage(tx, m); err != nil {
		return err
	}
	return tx.Bucket(bMessages).Delete([]byte(m.ID))
}

// restoreHistory brings message id back from its day file into the main
// file, where every write of a message happens: (false, nil) when it is in
// no day file.
func (s *Store) restoreHistory(id string) (bool, error) {
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	s.hist.rw.Lock()
	defer s.hist.rw.Unlock()
	raw, d, err := s.findHistory(id)
	if err != nil || raw == nil {
		return false, err
	}
	defer s.hist.release(d)
	var m Message
	if err := jsonUnmarshal(raw, &m); err != nil {
		return false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bMessages).Get([]byte(id)) != nil {
			return nil // already back (a restore that crashed): journal says the rest
		}
		if err := tx.Bucket(bMessages).Put([]byte(id), raw); err != nil {
			return err
		}
		if err := indexNewMessage(tx, &m); err != nil {
			return err
		}
		// Listed as of now, not of when it finished: a message that
		// got one late write may get more soon (the rest of a DSN's
		// recipients), and it stays here historyMoveDelay for them.
		if err := tx.Bucket(bFinished).Put(finishedKey(time.Now(), id), nil); err != nil {
			return err
		}
		return tx.Bucket(bHistJournal).Put([]byte(id), []byte{'r'})
	})
	if err != nil {
		return false, err
	}
	if historyStepHook != nil {
		if err := historyStepHook("restored"); err != nil {
			return false, err
		}
	}
	err = d.db.Update(func(tx *bolt.Tx) error { return deleteHistory(tx, id) })
	if err == nil {
		err = s.update(func(tx *bolt.Tx) error { return tx.Bucket(bHistJournal).Delete([]byte(id)) })
	}
	if err != nil {
		// The record is in both files, the journal says so: the mover
		// finishes the step (recoverHistory) rather than the next Open.
		s.recoverPending.Store(true)
		return false, err
	}
	return true, nil
}

// recoverHistory finishes the moves and restores a crash interrupted,
// before the store is read: for 'm', the record goes (again) to its day
// file and leaves the main file; for 'r', the day copy goes.
func (s *Store) recoverHistory() error {
	type entry struct {
		id   string
		kind byte
		raw  []byte
		m    Message
	}
	// At Open nothing else runs; from the mover (a retry), readers and
	// the other steps must not see the steps half done.
	s.moving.Lock()
	defer s.moving.Unlock()
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	s.hist.rw.Lock()
	defer s.hist.rw.Unlock()
	var es []*entry
	err := s.view(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bMessages)
		return tx.Bucket(bHistJournal).ForEach(func(k, v []byte) error {
			e := &entry{id: string(k), kind: 'm'}
			if len(v) == 1 {
				e.kind = v[0]
			}
			if raw := msgs.Get(k); raw != nil {
				e.raw = bytes.Clone(raw)
				if err := jsonUnmarshal(raw, &e.m); err != nil {
					return err
				}
			}
			es = append(es, e)
			return nil
		})
	})
	if err != nil || len(es) == 0 {
		return err
	}
	var moves, undo []*moving
	for _, e := range es {
		switch {
		case e.raw == nil:
			// Deleted from the main file while journaled (a move's
			// last commit clears the journal entry with the record, so
			// this was another delete: retention, a team's deletion):
			// a day copy must not outlive it.
			for _, d := range idDays(e.id) {
				undo = append(undo, &moving{m: Message{ID: e.id, CreatedAt: d}})
			}
		case e.kind == 'm' && e.m.State == StateDone:
			moves = append(moves, &moving{raw: e.raw, m: e.m})
		default: // a restore, or a record no longer finished: the main copy wins
			undo = append(undo, &moving{raw: e.raw, m: e.m})
		}
	}
	if err := s.writeDays(moves, nil); err != nil {
		return err
	}
	if err := s.undoDays(undo); err != nil {
		return err
	}
	// From the mover, writes go on meanwhile (updateMain takes no history
	// lock): a record written since it was read stays in the main file,
	// its stale day copy goes, and its journal entry stays until then.
	var changed []*moving
	err = s.update(func(tx *bolt.Tx) error {
		changed = changed[:0]
		j, msgs := tx.Bucket(bHistJournal), tx.Bucket(bMessages)
		keep := map[string]bool{}
		for _, mv := range moves {
			if !bytes.Equal(msgs.Get([]byte(mv.m.ID)), mv.raw) {
				changed, keep[mv.m.ID] = append(changed, mv), true
				continue
			}
			if err := dropMain(tx, &mv.m); err != nil {
				return err
			}
			// Its list entry's time is not known here: the mover drops
			// the entry as stale when it reaches it.
		}
		for _, e := range es {
			if keep[e.id] {
				continue
			}
			if err := j.Delete([]byte(e.id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(changed) == 0 {
		return err
	}
	if err := s.undoDays(changed); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		j := tx.Bucket(bHistJournal)
		for _, mv := range changed {
			if v := j.Get([]byte(mv.m.ID)); len(v) == 1 && v[0] == 'm' {
				if err := j.Delete([]byte(mv.m.ID)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// migrateFinishedList is step 7 → 8, chunked (batchFn): every finished
// message after the cursor, up to limit, enters the mover's list
// (bFinished) by the time it finished. The step only adds list keys; the
// mover then moves the old history to its day files in the background,
// at its own pace and with its own crash-safe steps, so an upgrade of a
// large store is ready as soon as the list is written (a key per message,
// no record rewritten) and reads see every record throughout (in the main
// file until moved).
func migrateFinishedList(tx *bolt.Tx, after []byte, limit int) (last []byte, n int, done bool, err error) {
	fin := tx.Bucket(bFinished)
	c := tx.Bucket(bMessages).Cursor()
	k, v := seekAfter(c, after)
	var m struct {
		State     string    `json:"state"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	for ; k != nil && n < limit; k, v = c.Next() {
		m.State, m.UpdatedAt = "", time.Time{}
		if err := jsonUnmarshal(v, &m); err != nil {
			return nil, 0, false, fmt.Errorf("message %s: %w", k, err)
		}
		if m.State == StateDone {
			if err := fin.Put(finishedKey(m.UpdatedAt, string(k)), nil); err != nil {
				return nil, 0, false, err
			}
		}
		last, n = k, n+1
	}
	return bytes.Clone(last), n, k == nil, nil
}
