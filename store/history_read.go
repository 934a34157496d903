package store

// Reads that combine the main file and the day files (history.go): a
// record by ID, the counters of a window, and walks of a team index in
// ID order. A record may be in both files for the length of a move or a
// restore step, or after a crash until Open finishes the step; the main
// file's copy is the one read. Counters are summed over the files while
// holding history.rw, which the two-file steps hold from their first
// commit to their last, so a record counts once.

import (
	"bytes"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// findHistory returns a copy of message id's record in a day file and that
// file, acquired (the caller releases it); (nil, nil, nil) when it is in
// none. The caller holds history.rw.
func (s *Store) findHistory(id string) ([]byte, *dayFile, error) {
	for _, day := range idDays(id) {
		d, err := s.hist.acquire(day, false)
		if err != nil {
			return nil, nil, err
		}
		if d == nil {
			continue
		}
		var raw []byte
		d.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bMessages).Get([]byte(id)); v != nil {
				raw = bytes.Clone(v)
			}
			return nil
		})
		if raw != nil {
			return raw, d, nil
		}
		s.hist.release(d)
	}
	return nil, nil, nil
}

// historyMessage reads message id from the day files: ErrNotFound when
// it is in none.
func (s *Store) historyMessage(id string) (*Message, error) {
	s.hist.rw.RLock()
	raw, d, err := s.findHistory(id)
	s.hist.rw.RUnlock()
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, ErrNotFound
	}
	s.hist.release(d)
	var m Message
	return &m, jsonUnmarshal(raw, &m)
}

// countSpan is one counter key's total across the files.
type countSpan struct {
	at   time.Time
	rest string
	n    int64
}

// readCounts reads the counters of kind (with mid, the provider part of
// countProvider keys) for [from, to), both rounded down to their minute
// (a zero to is open), from the main file (its counters plus the changes
// pending in its counter log, count_log.go) and the days the window covers:
// the whole hours inside from the hour counters, the minutes before and
// after them from the minute counters. It reads at most 118 minute keys
// per key suffix and file, and one per hour. fn gets each span once, in
// time order, with the sum over the files.
func (s *Store) readCounts(teamID, kind, mid string, from, to time.Time, fn func(at time.Time, rest []byte, n int64)) error {
	from, to = from.Truncate(time.Minute), to.Truncate(time.Minute)
	hours, minutes := teamID+"\x00"+kind+mid, teamID+"\x00"+minuteKind(kind)+mid
	sums := map[countSpan]int64{}
	add := func(at time.Time, rest []byte, n int64) { sums[countSpan{at: at, rest: string(rest)}] += n }
	read := func(tx *bolt.Tx) error {
		pending := pendingCounts(tx, teamID)
		forCounts := func(tx *bolt.Tx, prefix string, from, to time.Time, fn func(time.Time, []byte, int64)) {
			forCounts(tx, pending, prefix, from, to, fn)
		}
		h0 := from.Truncate(time.Hour)
		if h0.Before(from) {
			h0 = h0.Add(time.Hour)
		}
		h1 := to.Truncate(time.Hour)
		if !to.IsZero() && !h0.Before(h1) {
			forCounts(tx, minutes, from, to, add)
			return nil
		}
		forCounts(tx, minutes, from, h0, add)
		if to.IsZero() {
			forCounts(tx, hours, h0, time.Time{}, add)
			return nil
		}
		forCounts(tx, hours, h0, h1, add)
		forCounts(tx, minutes, h1, to, add)
		return nil
	}
	last := time.Time{}
	if !to.IsZero() {
		last = to.Add(-time.Nanosecond)
	}
	s.hist.rw.RLock()
	err := s.view(read)
	for _, day := range s.hist.dayList(from, last) {
		if err != nil {
			break
		}
		var d *dayFile
		if d, err = s.hist.acquire(day, false); err != nil || d == nil {
			continue
		}
		err = d.db.View(read)
		s.hist.release(d)
	}
	s.hist.rw.RUnlock()
	if err != nil {
		return err
	}
	spans := make([]countSpan, 0, len(sums))
	for k, n := range sums {
		k.n = n
		spans = append(spans, k)
	}
	slices.SortFunc(spans, func(a, b countSpan) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.rest), []byte(b.rest))
	})
	for _, sp := range spans {
		if sp.n > 0 {
			fn(sp.at, []byte(sp.rest), sp.n)
		}
	}
	return nil
}

// idxWalk is a walk of one team index (prefix ‖ message id → be64
// creation nanos) over the main file and the day files, in ID order.
type idxWalk struct {
	bucket, prefix []byte
	// low (inclusive) and high (exclusive, "" open) bound the IDs still
	// to visit; each chunk moves one of them.
	low, high string
	desc      bool
	// keep decides on an entry from its index value and, if need be,
	// its stored record (get), without decoding it: the record to take,
	// or nil; check decides on
	// the decoded record, outside any transaction, when fn would get it.
	keep  func(v []byte, get func() []byte) (rec []byte)
	check func(m *Message) bool
	// chunks counts the chunks read: the first ones are small (a log
	// page is the common request), later ones up to scanChunk.
	chunks int
	// provider, when set, is the provider of a provider walk (bucket
	// bMsgByFilter, prefix its provider prefix): the main file's part is
	// also read from the team index (msg_providers.go), the team's keys
	// whose value names it.
	provider, team string
}

// walkEntry is one index entry a chunk visited, with a copy of its record
// when keep took it.
type walkEntry struct {
	id  string
	raw []byte
}

// walkSource is one index's cursor in a chunk: keys prefix ‖ message id
// in [lower, upper), those match (when set) takes.
type walkSource struct {
	c                    *bolt.Cursor
	msgs                 *bolt.Bucket
	prefix, lower, upper []byte
	match                func(v []byte) bool
	k, v                 []byte
}

func (src *walkSource) in() bool {
	return src.k != nil && bytes.HasPrefix(src.k, src.prefix) && bytes.Compare(src.k, src.lower) >= 0 && bytes.Compare(src.k, src.upper) < 0
}

func (src *walkSource) id() []byte { return src.k[len(src.prefix):] }

// step moves to the next entry in the walk's order that match takes.
func (src *walkSource) step(desc, first bool) {
	for {
		if !first {
			if desc {
				src.k, src.v = src.c.Prev()
			} else {
				src.k, src.v = src.c.Next()
			}
		}
		first = false
		if src.match == nil || !src.in() || src.match(src.v) {
			return
		}
	}
}

// walkChunk visits the next up to scanChunk entries of w in order, under
// history.rw and in one read transaction per file, so that fn callbacks
// run outside both. done is set once nothing follows.
//
// Which day files: a day file holds records created that UTC day, with
// IDs up to seekSlack either side. Walking down from high, the newest day
// d that may hold an ID below high and the day before are read, down to
// the first ID day d−2 may hold; then the next chunk goes on below. So a
// chunk reads the main file and at most two day files, and a window opens
// only the days it covers.
func (s *Store) walkChunk(w *idxWalk) (out []walkEntry, done bool, err error) {
	s.hist.rw.RLock()
	defer s.hist.rw.RUnlock()
	lo, hi := w.low, w.high
	var loT, hiT time.Time
	if t, ok := idTime(PrefixMessage, lo); ok {
		loT = t
	}
	if t, ok := idTime(PrefixMessage, hi); ok {
		hiT = t
	}
	days := s.hist.dayList(time.Time{}, time.Time{})
	days = slices.DeleteFunc(days, func(d time.Time) bool {
		// The IDs day d may hold: [d − slack, d + 24h + slack).
		return (hi != "" && d.Add(-seekSlack).After(hiT)) || !d.Add(24*time.Hour+seekSlack).After(loT)
	})
	var use []time.Time
	if len(days) > 0 {
		if w.desc {
			d1 := days[len(days)-1]
			use = []time.Time{d1, d1.Add(-24 * time.Hour)}
			if f := idFloor(PrefixMessage, d1.Add(-24*time.Hour+seekSlack)); f > lo {
				lo = f
			}
		} else {
			d1 := days[0]
			use = []time.Time{d1, d1.Add(24 * time.Hour)}
			if c := idFloor(PrefixMessage, d1.Add(48*time.Hour-seekSlack)); hi == "" || c < hi {
				hi = c
			}
		}
	}
	var txs []*bolt.Tx
	var held []*dayFile
	defer func() {
		for _, tx := range txs {
			tx.Rollback()
		}
		for _, d := range held {
			s.hist.release(d)
		}
	}()
	mtx, err := s.db.Begin(false)
	if err != nil {
		return nil, false, err
	}
	txs = append(txs, mtx)
	for _, day := range use {
		d, err := s.hist.acquire(day, false)
		if err != nil {
			return nil, false, err
		}
		if d == nil {
			continue
		}
		held = append(held, d)
		tx, err := d.db.Begin(false)
		if err != nil {
			return nil, false, err
		}
		txs = append(txs, tx)
	}
	srcs := make([]*walkSource, 0, len(txs)+1)
	add := func(tx *bolt.Tx, bucket, prefix []byte, match func([]byte) bool) {
		src := &walkSource{c: tx.Bucket(bucket).Cursor(), msgs: tx.Bucket(bMessages), prefix: prefix, match: match,
			lower: append(bytes.Clone(prefix), lo...), upper: append(bytes.Clone(prefix), hi...)}
		if hi == "" {
			// Prefixes end in 0x00: the same with 0x01 is just past them.
			src.upper[len(src.upper)-1] = 1
		}
		if w.desc {
			if src.k, src.v = src.c.Seek(src.upper); src.k == nil {
				src.k, src.v = src.c.Last()
			} else {
				src.k, src.v = src.c.Prev()
			}
		} else {
			src.k, src.v = src.c.Seek(src.lower)
		}
		src.step(w.desc, true)
		srcs = append(srcs, src)
	}
	for i, tx := range txs {
		add(tx, w.bucket, w.prefix, nil)
		if i == 0 && w.provider != "" && isMainTx(tx) {
			add(tx, bMsgByTeam, teamIndexKey(w.team, ""), func(v []byte) bool { return namesProvider(v, w.provider) })
		}
	}
	limit := min(scanChunk, 64<<min(w.chunks, 3))
	w.chunks++
	for len(out) < limit {
		// The next ID in order among the indexes; the main file's
		// (srcs[0]) wins a tie, and the others' copies are passed.
		var best *walkSource
		for _, src := range srcs {
			if !src.in() {
				continue
			}
			if best == nil {
				best = src
				continue
			}
			if c := bytes.Compare(src.id(), best.id()); (w.desc && c > 0) || (!w.desc && c < 0) {
				best = src
			}
		}
		if best == nil {
			// This window is walked: the next one starts where it ended.
			if w.desc {
				w.high = lo
				return out, lo == w.low, nil
			}
			w.low = hi
			return out, hi == w.high, nil
		}
		id, v := best.id(), best.v
		if len(v) > 8 {
			v = v[:8] // a main file's team index value: the creation time, then providers
		}
		e := walkEntry{id: string(id)}
		if rec := w.keep(v, func() []byte { return best.msgs.Get(id) }); rec != nil {
			e.raw = bytes.Clone(rec)
		}
		out = append(out, e)
		for _, src := range srcs {
			if src.in() && string(src.id()) == e.id {
				src.step(w.desc, false)
			}
		}
	}
	last := out[len(out)-1].id
	if w.desc {
		w.high = last
	} else {
		w.low = last + "\x00"
	}
	return out, false, nil
}

// walkIndex runs w to its end, calling visit (when not nil) with each
// entry's ID and fn with each record keep and check took, in order,
// outside any transaction (records are decoded only as fn gets to them);
// either returning false stops the walk.
func (s *Store) walkIndex(w *idxWalk, visit func(id []byte) bool, fn func(*Message) bool) error {
	for {
		out, done, err := s.walkChunk(w)
		if err != nil {
			return err
		}
		for _, e := range out {
			if visit != nil && !visit([]byte(e.id)) {
				return nil
			}
			if e.raw == nil {
				continue
			}
			var m Message
			if err := jsonUnmarshal(e.raw, &m); err != nil {
				return err
			}
			if w.check(&m) && !fn(&m) {
				return nil
			}
		}
		if done {
			return nil
		}
	}
}
