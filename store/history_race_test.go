package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// Races of the two-file steps with writes, which take no history lock
// (found by a review of the history code, branch h-review).

// pauseNextDecode makes the next jsonUnmarshal call block until release
// is called: entered is closed when it does. The caller arranges that the
// next decode is the one it means to stop.
func pauseNextDecode(t *testing.T) (entered chan struct{}, release func()) {
	t.Helper()
	entered = make(chan struct{})
	gate := make(chan struct{})
	var armed atomic.Bool
	armed.Store(true)
	orig := jsonUnmarshal
	jsonUnmarshal = func(data []byte, v any) error {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-gate
		}
		return orig(data, v)
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); jsonUnmarshal = orig })
	return entered, release
}

// growMain grows the main file and frees the pages again, so that the
// commits of a test that holds a read transaction open (pauseNextDecode)
// need no remap, which would wait for that transaction.
func growMain(t *testing.T, s *Store) {
	t.Helper()
	filler := []byte("test_filler")
	if err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(filler)
		if err != nil {
			return err
		}
		return b.Put([]byte("x"), make([]byte, 8<<20))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(tx *bolt.Tx) error { return tx.DeleteBucket(filler) }); err != nil {
		t.Fatal(err)
	}
}

// finishedFixture enqueues n messages created from at on and finishes
// each (sent): in the main file and on the mover's list.
func finishedFixture(t *testing.T, s *Store, at time.Time, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		c := at.Add(time.Duration(i) * time.Second)
		m := &Message{ID: NewIDAt(PrefixMessage, c), TeamID: "team_r", From: "a@example.com",
			Recipients: []Recipient{{Address: "b@example.net", Status: state.MessagePending}},
			Status:     state.MessagePending, NextAttemptAt: c, CreatedAt: c}
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateMessage(m.ID, func(m *Message) error {
			m.Recipients[0].Status = state.MessageSent
			m.State, m.Status, m.UpdatedAt = StateDone, state.MessageSent, m.CreatedAt
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

// TestRecoverHistoryRetryKeepsRewrittenRecord: the mover retries a move
// step that failed (recoverHistory, recoverPending) while writes go on. A
// record queued again between the retry's read of the journal and its
// commit stays in the main file, queued, and its stale day copy goes:
// it must not be deleted as the finished record it was.
func TestRecoverHistoryRetryKeepsRewrittenRecord(t *testing.T) {
	s, _ := openTest(t)
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	ids := finishedFixture(t, s, at, 2)
	failed := errors.New("day file step failed")
	historyStepHook = func(step string) error {
		if step == "moved" {
			return failed
		}
		return nil
	}
	if _, _, err := s.MoveHistory(time.Now().Add(time.Hour), 10); !errors.Is(err, failed) {
		t.Fatalf("move: %v", err)
	}
	historyStepHook = nil
	growMain(t, s)
	entered, release := pauseNextDecode(t)
	recovered := make(chan error, 1)
	go func() { recovered <- s.recoverHistory() }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("recoverHistory did not read the journal")
	}
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error {
		m.State, m.Status, m.NextAttemptAt = StateQueued, state.MessagePending, at
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	release()
	if err := <-recovered; err != nil {
		t.Fatal(err)
	}
	m, err := s.Message(ids[0])
	if err != nil || m.State != StateQueued {
		t.Fatalf("the message queued again during the recovery: %+v, %v", m, err)
	}
	if due, _, err := s.Due(time.Now(), 10, nil); err != nil || len(due) != 1 || due[0] != ids[0] {
		t.Fatalf("due %v, %v", due, err)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 1 || inDays != 1 {
		t.Fatalf("main %d, days %d", inMain, inDays)
	}
}

// TestMessageReadDuringRestore: a restore (a late write to a moved
// message) that runs whole between Message's miss in the main file and
// its look in the day files leaves the record in the main file only:
// Message finds it there, not "not found" (which the SES hook answers by
// dropping the notification).
func TestMessageReadDuringRestore(t *testing.T) {
	s, _ := openTest(t)
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	ids := finishedFixture(t, s, at, 1)
	moveAll(t, s, time.Now().Add(time.Hour), 10)
	messageMissHook = func(id string) {
		messageMissHook = nil
		if _, err := s.UpdateMessage(id, func(m *Message) error { m.Reason = "late"; return nil }); err != nil {
			t.Error(err)
		}
	}
	defer func() { messageMissHook = nil }()
	m, err := s.Message(ids[0])
	if err != nil || m.Reason != "late" {
		t.Fatalf("message %s read during its restore: %+v, %v", ids[0], m, err)
	}
}
