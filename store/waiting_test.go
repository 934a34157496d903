package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dueTimes reads the due index: message ID → time of its entry. A message
// with two entries fails the test (the index must never hold strays).
func dueTimes(t *testing.T, s *Store) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bDue).ForEach(func(k, _ []byte) error {
			id := string(k[8:])
			if _, dup := out[id]; dup {
				t.Errorf("message %s has two due entries", id)
			}
			out[id] = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitingOf lists a team's waiting index in ID order.
func waitingOf(t *testing.T, s *Store, team string) []string {
	t.Helper()
	var ids []string
	prefix := waitingKey(team, "")
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

var why = json.RawMessage(`{"waiting":true}`)

// park parks message id until `until` with the team's current generation.
func park(t *testing.T, s *Store, id string, until time.Time) {
	t.Helper()
	gen, err := s.WakeGen("team_x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ParkMessage(id, gen, time.Now(), func(m *Message) error {
		m.Waiting, m.NextAttemptAt = why, until
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func enqueueN(t *testing.T, s *Store, n int, now time.Time) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		m := newMsg(now)
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

// TestWaitingIndexFollowsRecords: a queued message with Waiting set is in
// its team's waiting index, whatever write put it there or took it out
// (claim, defer without waiting, finish).
func TestWaitingIndexFollowsRecords(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	ids := enqueueN(t, s, 5, now)
	if _, err := s.UpdateMessage(ids[4], func(m *Message) error { m.TeamID = "team_y"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := waitingOf(t, s, "team_x"); len(got) != 0 {
		t.Fatalf("nothing waits yet: %v", got)
	}
	for _, id := range ids {
		park(t, s, id, now.Add(time.Hour))
	}
	if got := waitingOf(t, s, "team_x"); !slices.Equal(got, ids[:4]) {
		t.Fatalf("waiting team_x = %v, want %v", got, ids[:4])
	}
	if teams, err := s.WaitingTeams(); err != nil || !slices.Equal(teams, []string{"team_x", "team_y"}) {
		t.Fatalf("teams = %v, %v", teams, err)
	}

	// Claimed: out. Deferred without waiting: stays out. Waiting again: in.
	// Done: out.
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error { m.State, m.Waiting = StateInflight, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error { m.State = StateQueued; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ids[1], func(m *Message) error { m.State = StateDone; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := waitingOf(t, s, "team_x"); !slices.Equal(got, ids[2:4]) {
		t.Fatalf("after claim and finish: %v, want %v", got, ids[2:4])
	}
	park(t, s, ids[0], now.Add(time.Hour))
	if got := waitingOf(t, s, "team_x"); !slices.Equal(got, []string{ids[0], ids[2], ids[3]}) {
		t.Fatalf("waiting again: %v", got)
	}
}

// TestWakeMovesIndexOnly: a wake makes the team's waiting messages due now
// without rewriting a record (other teams' stay put); a claim of a woken
// message leaves no stray due entry; Repark puts a woken message back at
// its own time, unless a newer wake came.
func TestWakeMovesIndexOnly(t *testing.T) {
	s, _ := openTest(t)
	defer func(n int) { wakeChunk = n }(wakeChunk)
	wakeChunk = 2 // several transactions for one wake
	now := time.Now().Truncate(time.Second)
	later := now.Add(time.Hour)
	ids := enqueueN(t, s, 6, now)
	if _, err := s.UpdateMessage(ids[5], func(m *Message) error { m.TeamID = "team_y"; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		park(t, s, id, later)
	}
	before := map[string]*Message{}
	for _, id := range ids {
		before[id], _ = s.Message(id)
	}
	gen0, _ := s.WakeGen("team_x")
	moved, err := s.WakeTeam("team_x", now)
	if err != nil || moved != 5 {
		t.Fatalf("wake moved %d, %v; want 5", moved, err)
	}
	if gen, _ := s.WakeGen("team_x"); gen != gen0+1 {
		t.Fatalf("wake generation %d after one wake from %d", gen, gen0)
	}
	due := dueTimes(t, s)
	for _, id := range ids[:5] {
		if !due[id].Equal(now) {
			t.Fatalf("woken %s due at %v, want now", id, due[id])
		}
		if m, _ := s.Message(id); !m.NextAttemptAt.Equal(later) || !m.UpdatedAt.Equal(before[id].UpdatedAt) {
			t.Fatalf("a wake rewrote the record: %+v", m)
		}
	}
	if !due[ids[5]].Equal(later) {
		t.Fatalf("another team's message moved to %v", due[ids[5]])
	}
	// Waking again moves nothing more (they are due already).
	if moved, _ := s.WakeTeam("team_x", now); moved != 0 {
		t.Fatalf("second wake moved %d", moved)
	}

	gen, _ := s.WakeGen("team_x")
	if err := s.Repark("team_x", ids[0], gen); err != nil {
		t.Fatal(err)
	}
	if err := s.Repark("team_x", ids[1], gen-1); err != nil { // a wake came since its look
		t.Fatal(err)
	}
	// Claimed while woken, then back in the queue: exactly one entry.
	if _, err := s.UpdateMessage(ids[2], func(m *Message) error { m.State, m.Waiting = StateInflight, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ids[2], func(m *Message) error { m.State, m.NextAttemptAt = StateQueued, later; return nil }); err != nil {
		t.Fatal(err)
	}
	// Parked again after a woken look that saw the newest wake: its time.
	park(t, s, ids[3], later.Add(time.Minute))
	due = dueTimes(t, s)
	want := map[string]time.Time{ids[0]: later, ids[1]: now, ids[2]: later, ids[3]: later.Add(time.Minute), ids[4]: now, ids[5]: later}
	for id, at := range want {
		if !due[id].Equal(at) {
			t.Errorf("%s due at %v, want %v", id, due[id], at)
		}
	}
	if len(due) != len(want) {
		t.Fatalf("due index holds %v", slices.Collect(maps.Keys(due)))
	}
	if d, _ := s.Depths(); d.Queued != 6 {
		t.Fatalf("queue depth %d, want 6", d.Queued)
	}
}

// TestParkRacingWakeIsNotStranded: many goroutines park messages while
// wakes run. A message whose pick read the wake generation before some
// wake must end up due now (the wake moved it, or its park saw the new
// generation); none may be left at its safety-net time. Half the messages
// read the generation just before their park, racing the wakes; the rest
// read it before any wake, and a tenth of all park only after the last
// wake, so the park's own check is always exercised.
func TestParkRacingWakeIsNotStranded(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().Truncate(time.Second)
	later := now.Add(time.Hour)
	ids := enqueueN(t, s, 300, now)
	seen := make([]uint64, len(ids))
	g0, _ := s.WakeGen("team_x")
	parkOne := func(i int, readNow bool) {
		gen := g0
		if readNow {
			var err error
			if gen, err = s.WakeGen("team_x"); err != nil {
				t.Error(err)
				return
			}
		}
		seen[i] = gen
		if _, err := s.ParkMessage(ids[i], gen, now, func(m *Message) error {
			m.Waiting, m.NextAttemptAt = why, later
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	const workers = 10
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(ids); i += workers {
				if i%10 != 9 {
					parkOne(i, i%2 == 0)
				}
			}
		}(w)
	}
	for i := 0; i < 40; i++ {
		if _, err := s.WakeTeam("team_x", now); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := 9; i < len(ids); i += 10 {
		parkOne(i, false) // picked before the wakes, parked after all of them
	}
	final, _ := s.WakeGen("team_x")
	due := dueTimes(t, s)
	for i, id := range ids {
		if seen[i] == final {
			continue // its pick came after the last wake: its time holds
		}
		if !due[id].Equal(now) {
			t.Fatalf("message %s parked with generation %d (a wake followed, last %d) is due at %v, not now",
				id, seen[i], final, due[id])
		}
	}
}

// TestMigrateWaitingDue: a version 3 file's waiting entries (no value) get
// their due times, an entry whose message no longer waits is dropped, and
// a wake then moves the migrated entry.
func TestMigrateWaitingDue(t *testing.T) {
	s, path := openTest(t)
	now := time.Now().Truncate(time.Second)
	later := now.Add(time.Hour)
	ids := enqueueN(t, s, 2, now)
	park(t, s, ids[0], later)
	s.Close()
	// As a version 3 build left it: ids[0] waiting with an empty value,
	// and a stray entry for ids[1], which does not wait.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if err := b.Put(waitingKey("team_x", ids[0]), nil); err != nil {
			return err
		}
		if err := b.Put(waitingKey("team_x", ids[1]), nil); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(3))
	})
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := waitingOf(t, s2, "team_x"); !slices.Equal(got, ids[:1]) {
		t.Fatalf("waiting after the migration: %v, want %v", got, ids[:1])
	}
	if moved, err := s2.WakeTeam("team_x", now); err != nil || moved != 1 {
		t.Fatalf("wake of the migrated entry moved %d, %v", moved, err)
	}
	if due := dueTimes(t, s2); !due[ids[0]].Equal(now) || !due[ids[1]].Equal(now) || len(due) != 2 {
		t.Fatalf("due index after the wake: %v", due)
	}
	s2.Close()
	if v, _ := rawVersion(t, path); v != SchemaVersion {
		t.Fatalf("version %d after the migration", v)
	}
}
