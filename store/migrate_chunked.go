package store

// Chunked migration steps: a step over every message commits a batch at a
// time with a resume cursor, so that an upgrade of a large store needs
// memory for one batch, not for the whole history, reports progress, and
// a crash or a kill mid-step loses at most one batch's work.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// migrationBatch is the number of records a chunked step does per write
// transaction. A transaction keeps every page it dirties in memory until
// it commits; 5,000 messages dirty a few MB of index and counter pages
// (measured in bench/RESULTS.md, issue 18), while a commit costs an fsync
// and a freelist write, so batches much smaller would spend the time in
// commits. A variable so that tests can use tiny batches.
var migrationBatch = 5000

// migrationBatchHook, when set (tests only), runs after each committed
// batch of a chunked step with the step's version and the number of
// batches committed by this Open; an error stops the migration there, as
// a crash would.
var migrationBatchHook func(to uint64, batches int) error

// keyMigrationCursor is the meta key of a chunked step under way:
// be64(step's version) ‖ be64(records done) ‖ the last record key done.
var keyMigrationCursor = []byte("migration_cursor")

// progressEvery bounds the time between two progress lines when batches
// are quick.
const progressEvery = 5 * time.Second

// migrateChunked runs the chunked step m from its cursor (or the start)
// to its end, one transaction per batch.
func migrateChunked(db *bolt.DB, m migration, log *slog.Logger) error {
	var after []byte
	var done, total int
	err := db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bMeta); meta != nil {
			if c := meta.Get(keyMigrationCursor); c != nil {
				if len(c) < 16 || binary.BigEndian.Uint64(c) != m.to {
					return fmt.Errorf("the store has a migration cursor %x that is not for this step: "+
						"written by another binary? restore the backup taken before the upgrade", c)
				}
				done = int(binary.BigEndian.Uint64(c[8:]))
				after = bytes.Clone(c[16:])
			}
		}
		if m.total != nil {
			total = m.total(tx)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if after != nil {
		log.Info("store schema migration resumes", "to", m.to, "step", m.name, "done", done, "total", total)
	}
	last := time.Now()
	for batches := 0; ; {
		var finished bool
		err := db.Update(func(tx *bolt.Tx) error {
			// As for one-transaction steps: the step may rely on every
			// current bucket existing.
			if err := createBuckets(tx); err != nil {
				return err
			}
			key, n, end, err := m.batch(tx, after, migrationBatch)
			if err != nil {
				return err
			}
			finished = end
			meta := tx.Bucket(bMeta)
			if end {
				// The last batch: the version says the step is whole.
				if err := meta.Delete(keyMigrationCursor); err != nil {
					return err
				}
				return putVersion(tx, m.to)
			}
			if n == 0 || key == nil {
				return fmt.Errorf("a batch did nothing and did not finish")
			}
			c := make([]byte, 16, 16+len(key))
			binary.BigEndian.PutUint64(c, m.to)
			binary.BigEndian.PutUint64(c[8:], uint64(done+n))
			if err := meta.Put(keyMigrationCursor, append(c, key...)); err != nil {
				return err
			}
			after, done = bytes.Clone(key), done+n
			return nil
		})
		if err != nil {
			return err
		}
		if finished {
			return nil
		}
		batches++
		if time.Since(last) >= progressEvery || batches == 1 {
			log.Info("store schema migration progress", "to", m.to, "step", m.name, "done", done, "total", total)
			last = time.Now()
		}
		if migrationBatchHook != nil {
			if err := migrationBatchHook(m.to, batches); err != nil {
				return err
			}
		}
	}
}

// seekAfter positions c on the first key after after (the first key when
// after is nil): where a chunked step's next batch starts.
func seekAfter(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
		return c.Next()
	}
	return k, v
}

// keyCount is the number of keys in the bucket (0 if an old file lacks it:
// the total is read before the step's first batch creates it).
func keyCount(tx *bolt.Tx, name []byte) int {
	if b := tx.Bucket(name); b != nil {
		return b.Stats().KeyN
	}
	return 0
}
