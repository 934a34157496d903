package store

// Tests of the day files as a whole store uses them: backup and restore,
// the size at a steady rate with retention, the mover running while mail
// flows. Helpers are in history_test.go.

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// TestBackupHoldsHistory: a backup of a store whose history is in day
// files is one store file holding every record, with the same reads; a
// restore puts the old day files aside, and the restored store's mover
// takes the history to day files again.
func TestBackupHoldsHistory(t *testing.T) {
	s, path := openTest(t)
	teams := historyFixture(t, s, histNow)
	ids, done := mainIDs(s)
	before := histSnapshot(t, s, teams, ids)
	moveAll(t, s, histNow.Add(-3*24*time.Hour), 64) // part moved, part not
	snapPath := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s.Close()
	if err := CheckFile(snapPath); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(snapPath, path, histNow); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "history.before-restore-20261207T003000Z")); err != nil {
		t.Fatalf("the replaced store's day files were not kept aside: %v", err)
	}
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, left := mainIDs(s2); left != done {
		t.Fatalf("the backup holds %d finished messages, want %d", left, done)
	}
	checkFiles(t, s2)
	if got := histSnapshot(t, s2, teams, ids); got != before {
		t.Fatalf("the restored backup reads differently:\n%s", firstDiff(before, got))
	}
	moveAll(t, s2, histNow.Add(time.Hour), 64)
	if _, left := mainIDs(s2); left != 0 {
		t.Fatalf("%d finished left after the move", left)
	}
	checkFiles(t, s2)
}

// TestStoreStopsGrowing: at a steady rate with retention in force (the
// mover, then whole days dropped, bodies swept), the main file stops
// growing once its freed pages are reused, and the history holds only the
// retained days' files: the space of the dropped ones is given back.
func TestStoreStopsGrowing(t *testing.T) {
	s, path := openTest(t)
	body := make([]byte, 2048)
	var sizes []int64
	for round := range 10 {
		day := histNow.Add(time.Duration(round) * 24 * time.Hour)
		for i := range 300 {
			at := day.Add(time.Duration(i) * time.Second)
			m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", From: "a@example.com",
				Recipients: []Recipient{{Address: "b@example.net", Status: state.MessagePending}},
				Status:     state.MessagePending, NextAttemptAt: at, CreatedAt: at}
			if err := s.Enqueue(m, body); err != nil {
				t.Fatal(err)
			}
			if _, err := s.UpdateMessage(m.ID, func(m *Message) error {
				m.State, m.Status, m.UpdatedAt = StateDone, state.MessageSent, at.Add(time.Minute)
				m.Recipients[0].Status, m.Recipients[0].ProviderID = state.MessageSent, "dprov_1"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		end := day.Add(24 * time.Hour)
		moveAll(t, s, end, 256)
		for after := ""; ; { // [retention] body: one day
			_, next, err := s.SweepBodies(end.Add(-24*time.Hour), after, 256)
			if err != nil {
				t.Fatal(err)
			}
			if after = next; next == "" {
				break
			}
		}
		if _, _, err := s.DropHistory(end.Add(-2 * 24 * time.Hour)); err != nil { // [retention] log: two days
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
		if days := s.hist.dayList(time.Time{}, time.Time{}); len(days) > 3 {
			t.Fatalf("round %d: %d day files kept, retention keeps 3 at most", round, len(days))
		}
	}
	if sizes[9] > sizes[4] {
		t.Fatalf("the main file kept growing: %v", sizes)
	}
	t.Logf("main file size by round: %v", sizes)
}

// TestHistoryMoverConcurrent: with the mover running (no delay) while
// messages are accepted, finished and written again late (restores), every
// read meanwhile counts each message exactly once, and once the mover is
// done every finished message is in exactly one file, consistent.
func TestHistoryMoverConcurrent(t *testing.T) {
	s, _ := openTest(t)
	s.histDelay = 0
	ctx, cancel := context.WithCancel(context.Background())
	s.moverGroup.Add(1)
	go s.runMover(ctx)
	defer cancel()
	// started counts enqueues begun, committed those returned: a read
	// sees between committed (before it) and started (after it).
	var started, committed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().UTC()
	ids := make(chan string, 1000)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				at := start.Add(time.Duration(w*100+i) * time.Millisecond)
				m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", From: "a@example.com",
					Recipients: []Recipient{{Address: "b@example.net", Status: state.MessagePending}},
					Status:     state.MessagePending, NextAttemptAt: at, CreatedAt: at}
				started.Add(1)
				if err := s.Enqueue(m, []byte("x")); err != nil {
					t.Error(err)
					return
				}
				committed.Add(1)
				if _, err := s.UpdateMessage(m.ID, func(m *Message) error {
					m.State, m.Status, m.UpdatedAt = StateDone, state.MessageSent, time.Now()
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
				ids <- m.ID
			}
		}()
	}
	// Late writes to finished messages, moved or not.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < 100; n++ {
			id := <-ids
			if _, err := s.UpdateMessage(id, func(m *Message) error { m.Reason = "late"; return nil }); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	reads := 0
	for stop := false; !stop; reads++ {
		select {
		case <-done:
			stop = true
		default:
		}
		low := committed.Load()
		var counted int64
		if err := s.StatusCounts("team_a", "", start.Add(-time.Hour), time.Time{}, func(_ time.Time, _ string, n int64) { counted += n }); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		if err := s.MessagesBetween("team_a", start.Add(-time.Hour), time.Time{}, func(m *Message) bool {
			if seen[m.ID] {
				t.Fatalf("%s read twice", m.ID)
			}
			seen[m.ID] = true
			return true
		}); err != nil {
			t.Fatal(err)
		}
		high := started.Load()
		if counted < low || counted > high || int64(len(seen)) < low || int64(len(seen)) > high {
			t.Fatalf("read %d counted, %d walked, with %d–%d messages stored", counted, len(seen), low, high)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, left := mainIDs(s); left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mover did not empty the main file of finished messages")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 400 {
		t.Fatalf("main %d, days %d", inMain, inDays)
	}
	t.Logf("%d reads during the moves", reads)
}
