package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// flushFixture enqueues n messages of team_f created from at on, a
// second apart, and finishes each (sent, a provider named): every one
// journaled for its day file and in the main file until a flush.
func flushFixture(t *testing.T, s *Store, at time.Time, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		c := at.Add(time.Duration(i) * time.Second)
		m := &Message{ID: NewIDAt(PrefixMessage, c), TeamID: "team_f", From: "a@example.com", Subject: fmt.Sprint("m", i),
			Recipients: []Recipient{{Address: fmt.Sprintf("r%d@example.net", i), Status: state.MessagePending}},
			Status:     state.MessagePending, NextAttemptAt: c, CreatedAt: c}
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		finishMsg(t, s, m.ID, "")
		ids = append(ids, m.ID)
	}
	return ids
}

// finishMsg records message id as sent by dprov_f (with reason, a late
// write's mark).
func finishMsg(t *testing.T, s *Store, id, reason string) {
	t.Helper()
	if _, err := s.UpdateMessage(id, func(m *Message) error {
		m.Attempts = append(m.Attempts, Attempt{N: len(m.Attempts) + 1, ProviderID: "dprov_f", Status: state.AttemptSent})
		m.Recipients[0].Status, m.Recipients[0].ProviderID = state.MessageSent, "dprov_f"
		m.State, m.Status, m.UpdatedAt, m.Reason = StateDone, state.MessageSent, m.CreatedAt, reason
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// flushReads is what the combined reads say of team_f: its counters by
// status, its log newest first, and its provider's log.
func flushReads(t *testing.T, s *Store, from time.Time) string {
	t.Helper()
	out := ""
	if err := s.StatusCounts("team_f", "", from.Add(-time.Hour), time.Time{}, func(at time.Time, st string, n int64) {
		out += fmt.Sprintf("%s %s %d\n", at.Format(time.RFC3339), st, n)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.MessagesDesc("team_f", "", time.Time{}, time.Time{}, func(m *Message) bool {
		out += fmt.Sprintf("%s %s %s %q\n", m.ID, m.State, m.Status, m.Reason)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	out += "by provider:"
	if err := s.MessagesDescByProvider("team_f", "dprov_f", "", time.Time{}, time.Time{}, func(m *Message) bool {
		out += " " + m.ID
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func journalKinds(s *Store) map[byte]int {
	n := map[byte]int{}
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bHistJournal).ForEach(func(_, v []byte) error { n[v[0]]++; return nil })
	})
	return n
}

// TestFinishedMessagesGoToDayFiles: a finishing message leaves the main
// file's indexes and counters in the commit that finishes it and is
// journaled; the reads count and list it from the journal meanwhile; the
// flush takes it to its day file, and the reads are unchanged throughout.
func TestFinishedMessagesGoToDayFiles(t *testing.T) {
	s, _ := openTest(t)
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	ids := flushFixture(t, s, at, 20)
	if got := journalKinds(s)[journalFinished]; got != 20 {
		t.Fatalf("%d journaled for the flusher, want 20", got)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 20 || inDays != 0 {
		t.Fatalf("before the flush: main %d, days %d", inMain, inDays)
	}
	before := flushReads(t, s, at)
	if n := len(ids); before == "" || !containsAll(before, ids) {
		t.Fatalf("the reads miss journaled messages (%d finished):\n%s", n, before)
	}
	if err := s.FlushHistory(); err != nil {
		t.Fatal(err)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 20 {
		t.Fatalf("after the flush: main %d, days %d", inMain, inDays)
	}
	if got := flushReads(t, s, at); got != before {
		t.Fatalf("the reads changed with the flush:\n%s", firstDiff(before, got))
	}
	if len(journalKinds(s)) != 0 {
		t.Fatalf("journal left: %v", journalKinds(s))
	}
	// A late write after the flush brings the record back (a restore),
	// the mover's list takes it out again.
	if _, err := s.UpdateMessage(ids[3], func(m *Message) error { m.Reason = "late"; return nil }); err != nil {
		t.Fatal(err)
	}
	moveAll(t, s, time.Now().Add(time.Hour), 10)
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 20 {
		t.Fatalf("after the late write: main %d, days %d", inMain, inDays)
	}
}

func containsAll(s string, ids []string) bool {
	for _, id := range ids {
		if !contains(s, id) {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestJournaledMessageWrittenAgain: a journaled record written again
// before the flush stays journaled (the flush takes the new version); one
// queued again is back in the main file's indexes ('u') and the flush
// leaves no day copy of it; and both while the flush is between its day
// commit and its main commit, which then sets the day copies right before
// it lets readers in.
func TestJournaledMessageWrittenAgain(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(fmt.Sprint("during the flush=", during), func(t *testing.T) {
			s, _ := openTest(t)
			at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
			ids := flushFixture(t, s, at, 6)
			write := func() {
				finishMsg(t, s, ids[1], "late")
				if _, err := s.UpdateMessage(ids[2], func(m *Message) error {
					m.State, m.Status, m.NextAttemptAt = StateQueued, state.MessagePending, at
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			if during {
				once := false
				historyStepHook = func(step string) error {
					if step == "flushed" && !once {
						once = true
						write()
					}
					return nil
				}
				defer func() { historyStepHook = nil }()
			} else {
				write()
				if k := journalKinds(s); k[journalFinished] != 5 || k[journalUnfinished] != 1 {
					t.Fatalf("journal %v", k)
				}
				checkFiles(t, s)
			}
			want := func() string {
				t.Helper()
				r := flushReads(t, s, at)
				if !contains(r, `"late"`) || !contains(r, ids[2]+" queued") {
					t.Fatalf("the reads miss the writes:\n%s", r)
				}
				return r
			}
			var before string
			if !during {
				before = want()
			}
			if err := s.FlushHistory(); err != nil {
				t.Fatal(err)
			}
			if inMain, inDays := checkFiles(t, s); inMain != 1 || inDays != 5 {
				t.Fatalf("main %d (the queued one), days %d", inMain, inDays)
			}
			if len(journalKinds(s)) != 0 {
				t.Fatalf("journal left: %v", journalKinds(s))
			}
			if got := want(); !during && got != before {
				t.Fatalf("the reads changed with the flush:\n%s", firstDiff(before, got))
			}
			// Finished again: through the journal once more.
			finishMsg(t, s, ids[2], "again")
			if err := s.FlushHistory(); err != nil {
				t.Fatal(err)
			}
			if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 6 {
				t.Fatalf("main %d, days %d", inMain, inDays)
			}
		})
	}
}

// TestFlushCrashIsIdempotent: a flush stopped between its day-file commit
// and its main-file commit (a crash: each record in both files, the
// journal saying so) is finished by the next Open: every record in
// exactly one file, indexes and counters exact, the reads as before.
func TestFlushCrashIsIdempotent(t *testing.T) {
	s, path := openTest(t)
	at := time.Now().UTC().Add(-26 * time.Hour).Truncate(time.Second) // over two days
	flushFixture(t, s, at, 40)
	before := flushReads(t, s, at)
	crash := errors.New("crash")
	historyStepHook = func(step string) error {
		if step == "flushed" {
			return crash
		}
		return nil
	}
	defer func() { historyStepHook = nil }()
	if err := s.FlushHistory(); !errors.Is(err, crash) {
		t.Fatalf("flush: %v", err)
	}
	historyStepHook = nil
	s.Close()
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if inMain, inDays := checkFiles(t, s2); inMain != 0 || inDays != 40 {
		t.Fatalf("after the crash and a restart: main %d, days %d", inMain, inDays)
	}
	if got := flushReads(t, s2, at); got != before {
		t.Fatalf("after the crash and a restart, the reads differ:\n%s", firstDiff(before, got))
	}
}
