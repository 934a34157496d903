package store

// The backup of a store with day files: one store file, as before, with
// the day files' records folded back into it, so that a restore (or a
// downgrade by restore) needs nothing else; the mover of the restored
// daemon moves them out again.

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// backupFoldBatch is how many day-file records one write to the snapshot
// carries.
const backupFoldBatch = 5000

// Backup writes a consistent copy of the whole store to w while the
// daemon keeps running: the main file as one read transaction sees it
// and, folded into that copy, every record of the day files. Moves,
// restores and retention drops wait meanwhile (history.pause), so no
// record is in neither copy nor counted twice; reads and the queue go on.
// With day files the copy is built in a temporary file next to the store
// first (as large as the store and its history).
func (s *Store) Backup(w io.Writer) (int64, error) {
	s.hist.pause.Lock()
	defer s.hist.pause.Unlock()
	days := s.hist.dayList(time.Time{}, time.Time{})
	if len(days) == 0 {
		var n int64
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			n, err = tx.WriteTo(w)
			return err
		})
		return n, err
	}
	f, err := os.CreateTemp(filepath.Dir(s.hist.dir), ".backup-*.db")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = s.db.View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(f); return err })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	snap, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, err
	}
	for _, day := range days {
		if err = s.foldDay(snap, day); err != nil {
			break
		}
	}
	if cerr := snap.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	in, err := os.Open(tmp)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return io.Copy(w, in)
}

// foldDay copies the records of day's file into snap's main buckets, with
// their index keys, counters and mover list entries; a record snap has
// already (the main file's copy of a record in both) is left as it is.
func (s *Store) foldDay(snap *bolt.DB, day time.Time) error {
	d, err := s.hist.acquire(day, false)
	if err != nil || d == nil {
		return err
	}
	defer s.hist.release(d)
	var after []byte
	for {
		var batch [][2][]byte
		d.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bMessages).Cursor()
			for k, v := seekAfter(c, after); k != nil && len(batch) < backupFoldBatch; k, v = c.Next() {
				batch = append(batch, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
		if len(batch) == 0 {
			return nil
		}
		after = batch[len(batch)-1][0]
		err := snap.Update(func(tx *bolt.Tx) error {
			msgs := tx.Bucket(bMessages)
			for _, kv := range batch {
				if msgs.Get(kv[0]) != nil {
					continue
				}
				var m Message
				if err := jsonUnmarshal(kv[1], &m); err != nil {
					return err
				}
				if err := msgs.Put(kv[0], kv[1]); err != nil {
					return err
				}
				if err := indexNewMessage(tx, &m); err != nil {
					return err
				}
				if err := markFinished(tx, &m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}
