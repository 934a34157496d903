package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// v1Buckets are the buckets of a version 1 file as the builds before the
// data_sent bucket wrote it (commit dada97f).
var v1Buckets = []string{"meta", "teams", "keys", "cred_hash", "providers", "messages", "bodies", "due", "inflight", "usage",
	"groups", "mailboxes", "mailbox_addr", "mailbox_passwords",
	"idempotency", "idempotency_exp", "webhooks", "webhook_deliveries", "webhook_deliveries_by_hook", "webhook_due",
	"limit_requests", "limit_requests_by_team", "limit_requests_pending",
	"domains", "domain_names", "tracking_links"}

// rawUpdate runs fn in a write transaction on the bbolt file at path,
// below the store, the way an old build (or a test) writes it.
func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// rawVersion reads the schema version and the last transaction ID of the
// file at path (0 when unset).
func rawVersion(t *testing.T, path string) (version uint64, txid int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		txid = tx.ID()
		if b := tx.Bucket([]byte("meta")); b != nil {
			if v := b.Get([]byte("schema_version")); len(v) == 8 {
				version = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return version, txid
}

func be64(v uint64) []byte { var b [8]byte; binary.BigEndian.PutUint64(b[:], v); return b[:] }

// logTo returns a logger writing JSON lines into buf.
func logTo(buf *bytes.Buffer) Option {
	return WithLogger(slog.New(slog.NewJSONHandler(buf, nil)))
}

// withMigrations replaces the migration list for one test (the hook by
// which tests add steps past SchemaVersion).
func withMigrations(t *testing.T, steps []migration) {
	t.Helper()
	saved := migrations
	migrations = steps
	t.Cleanup(func() { migrations = saved })
}

func TestMigrationList(t *testing.T) {
	for i, m := range migrations {
		if m.to != uint64(i)+2 || (m.fn == nil) == (m.batch == nil) || m.name == "" {
			t.Fatalf("migration %d: %+v: steps go 1→2, 2→3, … in order, each named", i, m)
		}
	}
	if last := migrations[len(migrations)-1].to; last != SchemaVersion {
		t.Fatalf("the last migration ends at %d, SchemaVersion is %d", last, SchemaVersion)
	}
}

func TestFreshStoreIsCurrent(t *testing.T) {
	s, path := openTest(t)
	s.Close()
	if v, _ := rawVersion(t, path); v != SchemaVersion {
		t.Fatalf("a new file is at version %d, want %d", v, SchemaVersion)
	}
}

// TestOpenOfCurrentStoreDoesNotWrite: a current file is only read at Open,
// so a store on a full disk still opens.
func TestOpenOfCurrentStoreDoesNotWrite(t *testing.T) {
	s, path := openTest(t)
	s.Close()
	_, before := rawVersion(t, path)
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, after := rawVersion(t, path); after != before {
		t.Fatalf("Open of a current store committed (txid %d → %d)", before, after)
	}
}

// TestMigrateV1DataPhaseMarks builds a version 1 file the way the builds
// before the data_sent bucket wrote it — the data-phase mark as the
// data_started flag of the last attempt in the record — and opens it: the
// file is at version 2, the mark is where Recover reads it, and the rest
// of the data reads as before.
func TestMigrateV1DataPhaseMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	marked, unmarked, queued := NewID(PrefixMessage), NewID(PrefixMessage), NewID(PrefixMessage)
	due := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, name := range v1Buckets {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		put := func(bucket, key string, val []byte) {
			if err := tx.Bucket([]byte(bucket)).Put([]byte(key), val); err != nil {
				t.Fatal(err)
			}
		}
		put("meta", "schema_version", be64(1))
		// In flight, second attempt past the data phase: may have reached
		// the upstream.
		put("messages", marked, []byte(`{"id":"`+marked+`","team_id":"team_x","credential_id":"key_x","source":"smtp",`+
			`"scope":{"type":"all"},"from":"a@example.com","recipients":[{"address":"b@example.net","status":"pending"}],`+
			`"size":20,"status":"pending","state":"inflight","next_attempt_at":"2026-11-27T05:00:00Z","retries":1,`+
			`"attempts":[{"n":1,"provider_id":"dprov_x","started_at":"2026-11-27T04:55:00Z","duration_ms":3,"status":"deferred","data_started":true},`+
			`{"n":2,"provider_id":"dprov_x","started_at":"2026-11-27T05:00:00Z","duration_ms":0,"status":"in_progress","data_started":true}],`+
			`"created_at":"2026-11-27T04:55:00Z","updated_at":"2026-11-27T05:00:00Z"}`))
		put("inflight", marked, nil)
		put("bodies", marked, []byte("Subject: marked\r\n\r\nx\r\n"))
		// In flight, stopped before the data phase: to be resent.
		put("messages", unmarked, []byte(`{"id":"`+unmarked+`","team_id":"team_x","source":"smtp","from":"a@example.com",`+
			`"recipients":[{"address":"c@example.net","status":"pending"}],"status":"pending","state":"inflight",`+
			`"attempts":[{"n":1,"started_at":"2026-11-27T05:00:00Z","duration_ms":0,"status":"in_progress"}],`+
			`"created_at":"2026-11-27T05:00:00Z","updated_at":"2026-11-27T05:00:00Z"}`))
		put("inflight", unmarked, nil)
		put("bodies", unmarked, []byte("Subject: unmarked\r\n\r\nx\r\n"))
		// Queued, never tried.
		put("messages", queued, []byte(`{"id":"`+queued+`","team_id":"team_x","source":"http","from":"a@example.com",`+
			`"recipients":[{"address":"d@example.net","status":"pending"}],"status":"pending","state":"queued",`+
			`"next_attempt_at":"2026-11-27T05:00:00Z","created_at":"2026-11-27T05:00:00Z","updated_at":"2026-11-27T05:00:00Z"}`))
		put("due", string(dueKey(due, queued)), nil)
		put("bodies", queued, []byte("Subject: queued\r\n\r\nx\r\n"))
		return nil
	})

	var log bytes.Buffer
	s, err := Open(path, time.Second, logTo(&log))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.DataStarted(marked); err != nil || n != 2 {
		t.Fatalf("migrated mark of %s: attempt %d, %v; want 2", marked, n, err)
	}
	if n, _ := s.DataStarted(unmarked); n != 0 {
		t.Fatalf("%s was never past the data phase, migrated mark %d", unmarked, n)
	}
	if ids, err := s.Inflight(); err != nil || len(ids) != 2 {
		t.Fatalf("in flight after the migration: %v %v", ids, err)
	}
	if ids, _, err := s.Due(due, 10, nil); err != nil || len(ids) != 1 || ids[0] != queued {
		t.Fatalf("due after the migration: %v %v", ids, err)
	}
	m, err := s.Message(marked)
	if err != nil || m.State != StateInflight || len(m.Attempts) != 2 || m.Recipients[0].Address != "b@example.net" {
		t.Fatalf("migrated record: %+v %v", m, err)
	}
	if body, err := s.Body(queued); err != nil || string(body) != "Subject: queued\r\n\r\nx\r\n" {
		t.Fatalf("migrated body: %q %v", body, err)
	}
	// New writes work on the migrated file (buckets it lacked exist).
	if err := s.MarkDataStarted(unmarked, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, want := range []string{fmt.Sprintf(`"msg":"store schema upgrade","from":1,"to":%d`, SchemaVersion), `"msg":"store schema migrated","from":1,"to":2`} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("log lacks %s:\n%s", want, log.String())
		}
	}
	if v, _ := rawVersion(t, path); v != SchemaVersion {
		t.Fatalf("file at version %d after the migration, want %d", v, SchemaVersion)
	}
	// The next Open has nothing to do and says nothing.
	log.Reset()
	s, err = Open(path, time.Second, logTo(&log))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if log.Len() != 0 {
		t.Fatalf("second Open logged:\n%s", log.String())
	}
}

// TestMigrateCurrentLayoutV1IsNoop: a version 1 file that already has the
// data_sent bucket (builds after it came in, before the version bump) has
// no in-flight data_started flags; the step changes nothing but the version.
func TestMigrateCurrentLayoutV1IsNoop(t *testing.T) {
	s, path := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(m.ID, func(m *Message) error {
		m.State = StateInflight
		m.Attempts = append(m.Attempts, Attempt{N: 1, Status: state.AttemptInProgress})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(keySchemaVersion, be64(1)) })
	var log bytes.Buffer
	s, err := Open(path, time.Second, logTo(&log))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.DataStarted(m.ID)
	s.Close()
	if n != 0 {
		t.Fatalf("an attempt before its data phase got mark %d", n)
	}
	if v, _ := rawVersion(t, path); v != SchemaVersion {
		t.Fatalf("version %d", v)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, path := openTest(t)
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(keySchemaVersion, be64(SchemaVersion+1)) })
	_, txid := rawVersion(t, path)
	_, err := Open(path, time.Second)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a version %d file: %v, want ErrSchemaTooNew", SchemaVersion+1, err)
	}
	for _, want := range []string{fmt.Sprintf("version %d", SchemaVersion+1), fmt.Sprintf("up to %d", SchemaVersion), "restore the backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Refused without touching it, and the lock is released.
	if v, after := rawVersion(t, path); v != SchemaVersion+1 || after != txid {
		t.Fatalf("the refused file changed: version %d, txid %d → %d", v, txid, after)
	}
}

// TestFailedMigrationKeepsVersion injects steps past SchemaVersion through
// the migrations hook: a failing step rolls back whole (its own writes and
// the version bump), earlier steps stay committed, Open returns the error,
// and a later Open with a working step completes the upgrade.
func TestFailedMigrationKeepsVersion(t *testing.T) {
	s, path := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(keySchemaVersion, be64(1)) })

	next := uint64(SchemaVersion + 1)
	boom := errors.New("the injected step cannot convert a record")
	injected := func(fail bool) migration {
		return migration{to: next, name: "test step", fn: func(tx *bolt.Tx) error {
			if err := tx.Bucket(bMeta).Put([]byte("test_injected_step"), []byte("half done")); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		}}
	}
	withMigrations(t, append(append([]migration{}, migrations...), injected(true)))
	var log bytes.Buffer
	_, err := Open(path, time.Second, logTo(&log))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprintf("from schema version %d to %d", SchemaVersion, next)) {
		t.Fatalf("Open with a failing step: %v", err)
	}
	v, _ := rawVersion(t, path)
	if v != SchemaVersion {
		t.Fatalf("after a failed step to %d the file is at version %d, want %d (the real steps committed, the injected one rolled back)", next, v, SchemaVersion)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("the lock was not released: %v", err)
	}
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bMeta).Get([]byte("test_injected_step")) != nil {
			t.Error("the failed step's write was committed")
		}
		return nil
	})
	db.Close()
	if !strings.Contains(log.String(), `"msg":"store schema migration failed; the file stays at the previous version"`) {
		t.Fatalf("log:\n%s", log.String())
	}

	migrations[len(migrations)-1] = injected(false)
	log.Reset()
	s, err = Open(path, time.Second, logTo(&log))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Message(m.ID)
	s.Close()
	if err != nil || got.From != m.From {
		t.Fatalf("message after the upgrade: %+v %v", got, err)
	}
	if !strings.Contains(log.String(), fmt.Sprintf(`"msg":"store schema migrated","from":%d,"to":%d`, SchemaVersion, next)) {
		t.Fatalf("log:\n%s", log.String())
	}
	if v, _ := rawVersion(t, path); v != next {
		t.Fatalf("version %d, want %d", v, next)
	}
}

func TestMigrationsOutOfOrderRefused(t *testing.T) {
	withMigrations(t, []migration{{to: 3, name: "gap", fn: func(*bolt.Tx) error { return nil }}})
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), time.Second); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("a list starting at 3: %v", err)
	}
}
