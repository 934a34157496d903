package store

// Retention of the day files: a day goes whole, file and all, once every
// message ever written to it finished before the cutoff.

import (
	"bytes"
	"encoding/binary"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// upstreamDropBatch is how many SES upstream-id entries one main-file
// commit of DropHistory deletes.
const upstreamDropBatch = 1024

// DropHistory closes and unlinks the day files whose messages all finished
// before cutoff (the latest UpdatedAt written to the day is before it),
// first deleting their SES upstream ids from the main file's index. It
// returns how many files and messages went. A message is so kept at least
// as long as [retention] log says, and at most until the last message of
// its creation day has been finished that long.
func (s *Store) DropHistory(cutoff time.Time) (files, messages int, err error) {
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	for _, day := range s.hist.dayList(time.Time{}, time.Time{}) {
		n, ok, err := s.dropDay(day, cutoff)
		if err != nil {
			return files, messages, err
		}
		if ok {
			files, messages = files+1, messages+n
		}
	}
	return files, messages, nil
}

// dropDay drops the file of day if it is past cutoff.
func (s *Store) dropDay(day, cutoff time.Time) (n int, dropped bool, err error) {
	d, err := s.hist.acquire(day, false)
	if err != nil || d == nil {
		return 0, false, err
	}
	if s.hist.maxUpdatedOf(d) >= cutoff.UnixNano() {
		s.hist.release(d)
		return 0, false, nil
	}
	var ups [][2][]byte
	err = d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(hUpstream).ForEach(func(k, v []byte) error {
			ups = append(ups, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
	})
	s.hist.release(d)
	if err != nil {
		return 0, false, err
	}
	for len(ups) > 0 {
		chunk := ups[:min(len(ups), upstreamDropBatch)]
		ups = ups[len(chunk):]
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bUpstreamIDs)
			for _, kv := range chunk {
				if bytes.Equal(b.Get(kv[0]), kv[1]) {
					if err := b.Delete(kv[0]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, false, err
		}
	}
	h := s.hist
	h.rw.Lock()
	defer h.rw.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	d = h.days[utcDay(day).Unix()]
	if d == nil {
		return 0, false, nil
	}
	if d.db != nil {
		// A message moved in since the check: keep the day.
		if d.maxUpdated >= cutoff.UnixNano() {
			return 0, false, nil
		}
		d.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bMeta).Get(keyDayCount); len(v) == 8 {
				n = int(binary.BigEndian.Uint64(v))
			}
			return nil
		})
		// No reader holds it: readers hold history.rw, which is ours.
		d.db.Close()
		d.db = nil
	}
	if err := os.Remove(d.path); err != nil && !os.IsNotExist(err) {
		return 0, false, err
	}
	delete(h.days, utcDay(day).Unix())
	return n, true, syncDir(h.dir)
}

// maxUpdatedOf is the latest UpdatedAt written to d (read once, then kept
// up to date by writeDays). d is acquired.
func (h *history) maxUpdatedOf(d *dayFile) int64 {
	h.mu.Lock()
	v := d.maxUpdated
	h.mu.Unlock()
	if v != 0 {
		return v
	}
	d.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMeta).Get(keyMaxUpdated); len(b) == 8 {
			v = int64(binary.BigEndian.Uint64(b))
		}
		return nil
	})
	h.mu.Lock()
	d.maxUpdated = max(d.maxUpdated, v)
	v = d.maxUpdated
	h.mu.Unlock()
	return v
}
