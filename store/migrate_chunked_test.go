package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// historyBuckets are what step 5 → 6 builds.
var historyBuckets = []string{"msg_by_team", "msg_by_filter", "msg_counts"}

// schema5History writes n finished messages (three teams, two providers,
// sent, failed and pending recipients, spread over several hours) through
// the store, so that the history indexes and counters are the ones live
// writes keep, and returns a copy of those buckets. It then turns the file
// into one a schema-5 binary left: no history buckets, version 5.
func schema5History(t *testing.T, path string, n int) map[string]map[string]string {
	t.Helper()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	statuses := []state.Message{state.MessageSent, state.MessageFailed, state.MessagePending}
	var ms []*Message
	for i := range n {
		at := base.Add(time.Duration(i) * 7 * time.Minute)
		done := at.Add(time.Second)
		p := fmt.Sprintf("dprov_%d", i%2)
		st := statuses[i%3]
		ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, at), TeamID: fmt.Sprintf("team_%d", i%3), Source: "http",
			From: "a@example.com", Status: st, CreatedAt: at, UpdatedAt: done,
			Recipients: []Recipient{
				{Address: fmt.Sprintf("u%d@example.net", i), Status: st, ProviderID: p, UpdatedAt: &done},
				{Address: fmt.Sprintf("v%d@example.net", i), Status: state.MessageSent, ProviderID: "dprov_1", UpdatedAt: &done},
			},
			Attempts: []Attempt{{N: 1, ProviderID: p, StartedAt: at, Status: state.Attempt(st)}}})
	}
	if err := s.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	s.Close()
	live := dumpBuckets(t, path)
	if len(live["msg_counts"]) == 0 || len(live["msg_by_team"]) != n {
		t.Fatalf("live history: %d counters, %d index keys for %d messages", len(live["msg_counts"]), len(live["msg_by_team"]), n)
	}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, name := range append(historyBuckets, string(bMsgCountLog)) {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(5))
	})
	return live
}

// dumpBuckets copies the history buckets of the file at path.
func dumpBuckets(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string]string{}
	db.View(func(tx *bolt.Tx) error {
		for _, name := range historyBuckets {
			out[name] = map[string]string{}
			switch name {
			case "msg_counts":
				for k, n := range countsOf(tx) {
					out[name][k] = be64Key(n)
				}
				continue
			case "msg_by_filter":
				if tx.Bucket(bMsgByFilter) != nil {
					out[name] = filterIndexOf(tx)
				}
				continue
			case "msg_by_team":
				// The creation time; providers a main file's value lists
				// are in msg_by_filter's answer above.
				if b := tx.Bucket(bMsgByTeam); b != nil {
					b.ForEach(func(k, v []byte) error { out[name][string(k)] = string(v[:8]); return nil })
				}
				continue
			}
			if b := tx.Bucket([]byte(name)); b != nil {
				b.ForEach(func(k, v []byte) error { out[name][string(k)] = string(v); return nil })
			}
		}
		return nil
	})
	return out
}

func sameHistory(t *testing.T, what string, got, want map[string]map[string]string) {
	t.Helper()
	for _, name := range historyBuckets {
		if !maps.Equal(got[name], want[name]) {
			n := 0
			for k, v := range want[name] {
				if got[name][k] != v && n < 5 {
					t.Errorf("%s: %s[%q] = %x, want %x", what, name, k, got[name][k], v)
					n++
				}
			}
			t.Fatalf("%s: %s has %d keys, want %d (differences above)", what, name, len(got[name]), len(want[name]))
		}
	}
}

func copyStoreFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// withBatch sets the chunked steps' batch size and per-batch hook for one
// test.
func withBatch(t *testing.T, size int, hook func(to uint64, batches int) error) {
	t.Helper()
	savedSize, savedHook := migrationBatch, migrationBatchHook
	migrationBatch, migrationBatchHook = size, hook
	t.Cleanup(func() { migrationBatch, migrationBatchHook = savedSize, savedHook })
}

// oneTxTeamHistory is the 5 → 6 step as it was before it was chunked (one
// transaction over every message, counts summed in memory): the reference
// the chunked step must equal.
func oneTxTeamHistory(tx *bolt.Tx) error {
	byTeam, byFilter := map[string][]byte{}, map[string][]byte{}
	total := map[string]int64{}
	err := tx.Bucket(bMessages).ForEach(func(id, v []byte) error {
		var m Message
		if err := jsonUnmarshal(v, &m); err != nil {
			return err
		}
		for k, n := range messageCounts(&m) {
			total[k] += n
		}
		for k := range filterKeys(&m) {
			byFilter[k] = createdValue(&m)
		}
		byTeam[string(teamIndexKey(m.TeamID, string(id)))] = createdValue(&m)
		return nil
	})
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		b    []byte
		keys map[string][]byte
	}{{bMsgByTeam, byTeam}, {bMsgByFilter, byFilter}} {
		for _, k := range slices.Sorted(maps.Keys(kv.keys)) {
			if err := tx.Bucket(kv.b).Put([]byte(k), kv.keys[k]); err != nil {
				return err
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(total)) {
		if err := tx.Bucket(bMsgCounts).Put([]byte(k), []byte(be64Key(total[k]))); err != nil {
			return err
		}
	}
	return nil
}

// TestChunkedHistoryMigrationMatchesOneTransaction: a schema-5 file's
// 5 → 6 step in batches of 1, 7 and more than the messages builds the
// same indexes and counters as the one-transaction step did and as live
// writes keep, and the file ends current without a cursor.
func TestChunkedHistoryMigrationMatchesOneTransaction(t *testing.T) {
	dir := t.TempDir()
	v5 := filepath.Join(dir, "v5.db")
	live := schema5History(t, v5, 60)

	ref := filepath.Join(dir, "ref.db")
	copyStoreFile(t, v5, ref)
	rawUpdate(t, ref, func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return oneTxTeamHistory(tx)
	})
	oneTx := dumpBuckets(t, ref)
	sameHistory(t, "one-transaction step vs live writes", oneTx, live)

	for _, size := range []int{1, 7, 1000} {
		path := filepath.Join(dir, fmt.Sprintf("batch%d.db", size))
		copyStoreFile(t, v5, path)
		batches := 0
		withBatch(t, size, func(to uint64, n int) error { batches = n; return nil })
		s, err := Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if want := (60 - 1) / size; batches != want { // the last batch commits with the version, not counted
			t.Errorf("batch size %d: %d intermediate batches, want %d", size, batches, want)
		}
		sameHistory(t, fmt.Sprintf("batch size %d", size), dumpBuckets(t, path), oneTx)
		assertNoCursor(t, path, SchemaVersion)
	}
}

// assertNoCursor checks the file's version and that no cursor is left.
func assertNoCursor(t *testing.T, path string, version uint64) {
	t.Helper()
	if v, _ := rawVersion(t, path); v != version {
		t.Fatalf("version %d, want %d", v, version)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if c := tx.Bucket(bMeta).Get(keyMigrationCursor); c != nil {
			t.Errorf("cursor %x left after the step", c)
		}
		return nil
	})
}

// TestInterruptedHistoryMigrationResumes stops the 5 → 6 step after k
// committed batches, for every k the step has (as a crash there would):
// Open fails, the file stays at version 5 with the cursor, and the next
// Open resumes from it and ends with exactly the counters of the whole
// step — nothing counted twice, nothing skipped. A second interruption of
// the resumed run changes nothing either.
func TestInterruptedHistoryMigrationResumes(t *testing.T) {
	dir := t.TempDir()
	v5 := filepath.Join(dir, "v5.db")
	live := schema5History(t, v5, 60)
	crash := errors.New("injected crash after a batch")
	const size = 7 // 60 messages: 8 intermediate batches, the 9th bumps the version
	for k := 1; k <= 8; k++ {
		path := filepath.Join(dir, fmt.Sprintf("k%d.db", k))
		copyStoreFile(t, v5, path)
		stopAt := func(at int) func(uint64, int) error {
			return func(to uint64, n int) error {
				if to == 6 && n == at {
					return crash
				}
				return nil
			}
		}
		withBatch(t, size, stopAt(k))
		if _, err := Open(path, time.Second); !errors.Is(err, crash) {
			t.Fatalf("k=%d: Open: %v, want the injected crash", k, err)
		}
		if v, _ := rawVersion(t, path); v != 5 {
			t.Fatalf("k=%d: version %d after an interrupted step, want 5 (bumped only by the last batch)", k, v)
		}
		partial := dumpBuckets(t, path)
		if got := len(partial["msg_by_team"]); got != k*size {
			t.Fatalf("k=%d: %d messages indexed after the interruption, want %d", k, got, k*size)
		}
		// Resume; interrupt once more one batch in when there is room.
		if k < 8 {
			withBatch(t, size, stopAt(1))
			if _, err := Open(path, time.Second); !errors.Is(err, crash) {
				t.Fatalf("k=%d: second Open: %v", k, err)
			}
			if got := len(dumpBuckets(t, path)["msg_by_team"]); got != (k+1)*size {
				t.Fatalf("k=%d: %d indexed after the second interruption, want %d", k, got, (k+1)*size)
			}
		}
		withBatch(t, size, nil)
		s, err := Open(path, time.Second)
		if err != nil {
			t.Fatalf("k=%d: resumed Open: %v", k, err)
		}
		s.Close()
		sameHistory(t, fmt.Sprintf("interrupted after %d batches, resumed", k), dumpBuckets(t, path), live)
		assertNoCursor(t, path, SchemaVersion)
	}
}

// TestForeignMigrationCursorRefused: a cursor for another step (a file
// written by some other binary) is not trusted: Open fails, the file is
// left as it was.
func TestForeignMigrationCursorRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v5.db")
	schema5History(t, path, 3)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bMeta).Put(keyMigrationCursor, append(append(be64(9), be64(1)...), "x"...))
	})
	if _, err := Open(path, time.Second); err == nil || !bytes.Contains([]byte(err.Error()), []byte("not for this step")) {
		t.Fatalf("Open with a foreign cursor: %v", err)
	}
	if v, _ := rawVersion(t, path); v != 5 {
		t.Fatalf("version %d", v)
	}
}

// TestInterruptedReservationMigrationResumes: step 2 → 3 walks the queue
// in batches too; stopped after two batches it leaves the file at version
// 2, and the next Open finishes the index (every queued message holding a
// reservation, none other).
func TestInterruptedReservationMigrationResumes(t *testing.T) {
	s, path := openTest(t)
	now := time.Now().UTC()
	held := map[string]bool{}
	for i := range 25 {
		m := newMsg(now.Add(time.Duration(i) * time.Second))
		if i%5 != 0 { // every fifth holds none
			m.ManagedReserved, m.ManagedProviderID = 1+i%3, "dprov_managed"
			held[m.ID] = true
		}
		if err := s.Enqueue(m, []byte("body")); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bManagedReserved); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(2))
	})
	crash := errors.New("injected crash after a batch")
	withBatch(t, 4, func(to uint64, n int) error {
		if to == 3 && n == 2 {
			return crash
		}
		return nil
	})
	if _, err := Open(path, time.Second); !errors.Is(err, crash) {
		t.Fatalf("Open: %v, want the injected crash", err)
	}
	if v, _ := rawVersion(t, path); v != 2 {
		t.Fatalf("version %d after an interrupted step 2 → 3, want 2", v)
	}
	withBatch(t, 4, nil)
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := reservationsByID(t, s)
	s.Close()
	if len(got) != len(held) {
		t.Fatalf("%d reservations after resuming, want %d", len(got), len(held))
	}
	for id := range held {
		if _, ok := got[id]; !ok {
			t.Errorf("%s holds a reservation and is not in the index", id)
		}
	}
	assertNoCursor(t, path, SchemaVersion)
}

// TestInterruptedWaitingMigrationResumes: step 4 → 5 walks the waiting
// index in batches, writing the bucket it walks; stopped after a batch it
// leaves the file at version 4, and the next Open gives every entry its
// due value and drops the stray one, whichever batch it fell in.
func TestInterruptedWaitingMigrationResumes(t *testing.T) {
	s, path := openTest(t)
	due := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 10 {
		m := newMsg(due.Add(time.Duration(i) * time.Minute))
		m.Waiting = why
		if err := s.Enqueue(m, []byte("body")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	s.Close()
	stray := waitingKey("team_x", ids[4]+"_gone") // sorts between two real entries
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bWaiting)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := b.Put(waitingKey("team_x", id), nil); err != nil { // as version 4 wrote them
				return err
			}
		}
		if err := b.Put(stray, nil); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(4))
	})
	crash := errors.New("injected crash after a batch")
	withBatch(t, 3, func(to uint64, n int) error {
		if to == 5 && n == 2 {
			return crash
		}
		return nil
	})
	if _, err := Open(path, time.Second); !errors.Is(err, crash) {
		t.Fatalf("Open: %v, want the injected crash", err)
	}
	if v, _ := rawVersion(t, path); v != 4 {
		t.Fatalf("version %d after an interrupted step 4 → 5, want 4", v)
	}
	withBatch(t, 3, nil)
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	assertNoCursor(t, path, SchemaVersion)
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if b.Get(stray) != nil || b.Stats().KeyN != len(ids) {
			t.Errorf("%d waiting entries, want %d (the stray dropped)", b.Stats().KeyN, len(ids))
		}
		for i, id := range ids {
			at := due.Add(time.Duration(i) * time.Minute)
			if got := b.Get(waitingKey("team_x", id)); !bytes.Equal(got, waitingValue(at, at)) {
				t.Errorf("entry of %s: %x, want %x", id, got, waitingValue(at, at))
			}
		}
		return nil
	})
}
