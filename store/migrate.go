package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout this code reads and writes. Open migrates
// older files forward, one step at a time, and refuses newer ones.
//
// Changing the layout (where something is stored, how a key or value is
// encoded, an index that existing records must be entered in) takes a
// step in migrations and this constant one higher. A new bucket that
// starts empty needs neither: Open creates missing buckets.
const SchemaVersion = 10

// ErrSchemaTooNew is returned by Open for a file written by a newer
// smtpmux: its layout is unknown here, and reading it could lose mail.
var ErrSchemaTooNew = errors.New("store schema is newer than this binary supports")

// migration moves a store from version to-1 to version to. A step has
// either fn (the whole step in one transaction) or batch (the step in
// chunks, see migrateChunked).
type migration struct {
	to    uint64
	name  string // what it does, for the log
	fn    func(tx *bolt.Tx) error
	batch batchFn
	total func(tx *bolt.Tx) int // records batch walks, for the progress log
}

// batchFn does the part of a chunked step that follows the record key
// after (nil: from the start), at most limit records, in tx. It returns
// the last key it did and how many records, and done once nothing
// follows. Its writes must be exactly the records' contribution, so that
// the chunks add up to the whole step: a counter increment commits with
// the cursor that says it was made, and is never made twice.
type batchFn func(tx *bolt.Tx, after []byte, limit int) (last []byte, n int, done bool, err error)

// migrations are the forward steps, in order, the last one ending at
// SchemaVersion. The contract:
//
//   - A step with fn runs in one transaction together with the version
//     bump, so a crash or a failure mid-step leaves the file at the
//     version before it, whole, and the next Open runs the step again.
//     Only steps whose work is bounded by something small (the messages
//     in flight, the teams' records) may do that: one transaction holds
//     every page it dirties in memory until it commits.
//   - A step that walks every message (the history) or the queue (which
//     may hold a whole outage's mail) has batch instead: it commits every migrationBatch records, each batch's writes together
//     with the resume cursor (step and last key done) in the meta bucket;
//     only the last batch's transaction bumps the version and deletes the
//     cursor. A crash or failure mid-step leaves the file at the version
//     before it with the cursor: the next Open resumes after the cursor,
//     so no record is counted twice and the version never claims an index
//     that is half built. Between two runs of such a step, the file must
//     be opened only by a binary that knows the step (one before it would
//     change messages without moving the half-built indexes): downgrading
//     means restoring a backup in any case.
//
// Migrations are forward-only: downgrading means restoring a backup.
var migrations = []migration{
	{to: 2, name: "copy data-phase marks from attempt records into the data_sent bucket", fn: migrateDataSentMarks},
	{to: 3, name: "index queued messages holding managed-account reservations", batch: migrateManagedReserved, total: countDue},
	{to: 4, name: "index team-owned records and mailbox passwords by team", fn: migrateTeamIndexes},
	{to: 5, name: "record the due times of waiting messages in their waiting entries", batch: migrateWaitingDue, total: countWaiting},
	{to: 6, name: "index messages by team and count them by team, provider and hour", batch: migrateTeamHistory, total: countMessages},
	{to: 7, name: "index teams by name", fn: migrateTeamNames},
	{to: 8, name: "list finished messages for the move to the history day files", batch: migrateFinishedList, total: countMessages},
	// The counter log (count_log.go) starts empty, the folded counters
	// keep their layout, and provider keys a file has stay readable until
	// their message is next written (msg_providers.go), so the step has
	// nothing to rewrite; it exists so that a binary before it, which
	// would neither read the log nor the providers in team index values,
	// refuses the file instead of answering without them.
	{to: 9, name: "keep history counter changes in a log folded in bulk, a message's providers in its team index value", fn: func(*bolt.Tx) error { return nil }},
	// Bodies of bodyBucketMin bytes or more go in a bucket of their own
	// (body_bucket.go); bodies already stored stay values and are read
	// and deleted as they are, so nothing is rewritten. A binary before
	// the step would find no body for a message queued after it.
	{to: 10, name: "large inline bodies in buckets of their own", fn: func(*bolt.Tx) error { return nil }},
}

var keySchemaVersion = []byte("schema_version")

// migrate brings the file at db to the version steps end at (1 if there
// are none): it creates a fresh file's buckets, refuses a newer file, runs
// the steps an older file lacks, and creates buckets a file lacks. A file
// that is current and complete is only read, so that a store on a full
// disk still opens.
func migrate(db *bolt.DB, steps []migration, log *slog.Logger) error {
	latest := uint64(1)
	for i, m := range steps {
		if m.to != uint64(i)+2 || (m.fn == nil) == (m.batch == nil) {
			return fmt.Errorf("store migrations out of order: step %d goes to version %d", i, m.to)
		}
		latest = m.to
	}
	var (
		version  uint64
		fresh    bool
		complete = true
	)
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			fresh = true
			return nil
		}
		version = 1 // every file has had a version since the first layout
		if v := meta.Get(keySchemaVersion); len(v) == 8 {
			version = binary.BigEndian.Uint64(v)
		} else if v != nil {
			return fmt.Errorf("store schema version is %d bytes long, not 8: not an smtpmux store?", len(v))
		}
		for _, name := range allBuckets {
			complete = complete && tx.Bucket(name) != nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case fresh:
		return db.Update(func(tx *bolt.Tx) error {
			if err := createBuckets(tx); err != nil {
				return err
			}
			return putVersion(tx, latest)
		})
	case version > latest:
		return fmt.Errorf("%w: the file is at version %d, this binary knows up to %d; "+
			"run the newer binary again, or restore the backup taken before the upgrade", ErrSchemaTooNew, version, latest)
	case version == latest && complete:
		return nil
	case version == latest:
		return db.Update(createBuckets)
	}
	log.Info("store schema upgrade", "from", version, "to", latest)
	for _, m := range steps {
		if m.to <= version {
			continue
		}
		start := time.Now()
		if m.batch != nil {
			if err := migrateChunked(db, m, log); err != nil {
				log.Error("store schema migration failed; the file stays at the previous version, the next start resumes it",
					"from", m.to-1, "to", m.to, "step", m.name, "err", err)
				return fmt.Errorf("migrating the store from schema version %d to %d (%s): %w", m.to-1, m.to, m.name, err)
			}
			log.Info("store schema migrated", "from", m.to-1, "to", m.to, "step", m.name,
				"took_ms", time.Since(start).Milliseconds())
			continue
		}
		err := db.Update(func(tx *bolt.Tx) error {
			// Steps may rely on every current bucket existing; the
			// creation commits (or not) with the step.
			if err := createBuckets(tx); err != nil {
				return err
			}
			if err := m.fn(tx); err != nil {
				return err
			}
			return putVersion(tx, m.to)
		})
		if err != nil {
			log.Error("store schema migration failed; the file stays at the previous version",
				"from", m.to-1, "to", m.to, "step", m.name, "err", err)
			return fmt.Errorf("migrating the store from schema version %d to %d (%s): %w", m.to-1, m.to, m.name, err)
		}
		log.Info("store schema migrated", "from", m.to-1, "to", m.to, "step", m.name,
			"took_ms", time.Since(start).Milliseconds())
	}
	return nil
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

func putVersion(tx *bolt.Tx, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return tx.Bucket(bMeta).Put(keySchemaVersion, buf[:])
}

// migrateDataSentMarks is step 1 → 2. Builds before the data_sent bucket
// (version 1 files, layout unchanged otherwise) recorded the start of an
// attempt's data phase as the data_started flag of the attempt in the
// message record. Recover now reads only the bucket, so a message that
// was in flight past that point when such a build stopped would be sent
// again, although the upstream may already have it. The step gives each
// in-flight message whose last attempt carries the flag its data_sent
// key, so Recover flags it uncertain instead. Files written after the
// bucket came in never have the flag on an in-flight attempt (Recover sets
// it only as it finishes the message): for them the step changes nothing.
func migrateDataSentMarks(tx *bolt.Tx) error {
	msgs, sent := tx.Bucket(bMessages), tx.Bucket(bDataSent)
	return tx.Bucket(bInflight).ForEach(func(id, _ []byte) error {
		if sent.Get(id) != nil {
			return nil
		}
		var m Message
		if err := getJSON(msgs, string(id), &m); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // an index entry without a record: nothing to mark
			}
			return fmt.Errorf("message %s: %w", id, err)
		}
		n := len(m.Attempts)
		if n == 0 || !m.Attempts[n-1].DataStarted {
			return nil
		}
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(n))
		return sent.Put(id, v[:])
	})
}

// migrateTeamIndexes is step 3 → 4. Team lists used to walk a whole bucket
// and keep the team's records; they now read the team index (see
// teamKind). The step enters every existing provider, key, group,
// mailbox, webhook and domain in its kind's team index, and every mailbox
// password in the password index. It only adds index keys: no record is
// rewritten, moved or dropped, and it touches no message.
func migrateTeamIndexes(tx *bolt.Tx) error {
	var owner struct {
		TeamID    string `json:"team_id"`
		MailboxID string `json:"mailbox_id"`
	}
	for _, k := range teamKinds {
		idx := tx.Bucket(k.byTeam)
		err := tx.Bucket(k.bucket).ForEach(func(id, v []byte) error {
			owner.TeamID = ""
			if err := jsonUnmarshal(v, &owner); err != nil {
				return fmt.Errorf("%s record %s: %w", k.bucket, id, err)
			}
			return idx.Put(teamIndexKey(owner.TeamID, string(id)), nil)
		})
		if err != nil {
			return err
		}
	}
	idx := tx.Bucket(bMailboxPwByMailbox)
	return tx.Bucket(bMailboxPasswords).ForEach(func(id, v []byte) error {
		owner.TeamID, owner.MailboxID = "", ""
		if err := jsonUnmarshal(v, &owner); err != nil {
			return fmt.Errorf("mailbox password %s: %w", id, err)
		}
		return idx.Put(passwordIndexKey(&MailboxPassword{ID: string(id), TeamID: owner.TeamID, MailboxID: owner.MailboxID}), nil)
	})
}
