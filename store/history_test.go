package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// histNow is the tests' clock: half an hour past midnight, so that the
// fixture's nine days of mail cross several UTC day boundaries and the
// newest day is a partial one.
var histNow = time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC)

// edgeMessages adds finished messages whose ID and CreatedAt fall on two
// sides of a UTC midnight (the ID a little before, the record after, and
// the reverse): the ID says one day, the file is the other's.
func edgeMessages(t *testing.T, s *Store, teams []string) {
	t.Helper()
	var ms []*Message
	for i, team := range teams {
		mid := utcDay(histNow).Add(-time.Duration(i+1) * 24 * time.Hour)
		for j, pair := range [][2]time.Duration{{-time.Second, time.Second}, {time.Second, -time.Second}, {-30 * time.Minute, 10 * time.Minute}} {
			id, at := NewIDAt(PrefixMessage, mid.Add(pair[0])), mid.Add(pair[1])
			ms = append(ms, &Message{ID: id, TeamID: team, Status: state.MessageFailed, From: "e@example.com",
				Recipients: []Recipient{{Address: fmt.Sprintf("edge%d@example.net", j), Status: state.MessageFailed, ProviderID: "dprov_2"}},
				Attempts:   []Attempt{{N: 1, ProviderID: "dprov_2", Status: state.AttemptFailed}},
				CreatedAt:  at, UpdatedAt: at})
		}
	}
	if err := s.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
}

// histSnapshot is everything the history reads answer for the fixture's
// teams, as text: ID lists of every walk (whole, paged by cursor, bounded
// with resume), every counter read over windows with and without whole
// hours, and every record by ID.
func histSnapshot(t *testing.T, s *Store, teams, ids []string) string {
	t.Helper()
	var b strings.Builder
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	windows := []struct{ from, to time.Time }{{}, {histNow.Add(-48 * time.Hour), time.Time{}},
		{histNow.Add(-72 * time.Hour), histNow.Add(-24 * time.Hour)}, {histNow.Add(-50*time.Hour - 13*time.Minute), histNow.Add(-3*time.Hour - 7*time.Minute)},
		{utcDay(histNow).Add(-24*time.Hour - 20*time.Minute), utcDay(histNow).Add(-24*time.Hour + 20*time.Minute)}}
	for _, team := range teams {
		for _, w := range windows {
			fmt.Fprintf(&b, "\n%s %v–%v\nasc:", team, w.from, w.to)
			must(s.MessagesBetween(team, w.from, w.to, func(m *Message) bool { b.WriteString(" " + m.ID); return true }))
			b.WriteString("\ndesc:")
			for before := ""; ; {
				n := 0
				must(s.MessagesDesc(team, before, w.from, w.to, func(m *Message) bool {
					b.WriteString(" " + m.ID)
					before, n = m.ID, n+1
					return n < 7
				}))
				if n < 7 {
					break
				}
				b.WriteString(" |")
			}
			b.WriteString("\nfailed:")
			must(s.MessagesDescByStatus(team, string(state.MessageFailed), "", w.from, w.to, func(m *Message) bool { b.WriteString(" " + m.ID); return true }))
			b.WriteString("\ndprov_2:")
			must(s.MessagesDescByProvider(team, "dprov_2", "", w.from, w.to, func(m *Message) bool { b.WriteString(" " + m.ID); return true }))
			b.WriteString("\nsearch:")
			for walk := (LogWalk{TeamID: team, Text: "edge", From: w.from, To: w.to, MaxScan: 5}); ; {
				resume, err := s.WalkLogBounded(walk, func(m *Message) bool { b.WriteString(" " + m.ID); return true })
				must(err)
				if resume == "" {
					break
				}
				b.WriteString(" @" + resume)
				walk.Before = resume
			}
			b.WriteString("\ncounts:")
			must(s.StatusCounts(team, "", w.from, w.to, func(at time.Time, st string, n int64) { fmt.Fprintf(&b, " %s/%s=%d", at.Format("02T15:04"), st, n) }))
			must(s.StatusCounts(team, "dprov_1", w.from, w.to, func(at time.Time, st string, n int64) { fmt.Fprintf(&b, " p1:%s/%s=%d", at.Format("02T15:04"), st, n) }))
			must(s.RecipientCountsBetween(team, w.from, w.to, func(at time.Time, p, st string, n int64) {
				fmt.Fprintf(&b, " r:%s/%s/%s=%d", at.Format("02T15:04"), p, st, n)
			}))
			must(s.FeedbackCounts(team, w.from, w.to, func(at time.Time, p, typ string, n int64) {
				fmt.Fprintf(&b, " f:%s/%s/%s=%d", at.Format("02T15:04"), p, typ, n)
			}))
		}
		must(s.SentCounts(team, histNow.Add(-100*time.Hour), func(at time.Time, p string, day time.Time, n int64) {
			fmt.Fprintf(&b, " s:%s/%s/%s=%d", at.Format("02T15:04"), p, day.Format("02"), n)
		}))
	}
	for _, id := range ids {
		m, err := s.Message(id)
		must(err)
		raw, _ := json.Marshal(m)
		b.WriteString("\n" + string(raw))
	}
	return b.String()
}

// fileState is what one file holds: its records, and whether its index
// keys and counters are exactly those records' contributions.
func fileState(t *testing.T, tx *bolt.Tx) (recs map[string]bool, consistent bool) {
	t.Helper()
	recs = map[string]bool{}
	wantIdx, want := map[string]bool{}, map[string]int64{}
	tx.Bucket(bMessages).ForEach(func(k, v []byte) error {
		var m Message
		if err := jsonUnmarshal(v, &m); err != nil {
			t.Fatal(err)
		}
		recs[m.ID] = true
		wantIdx[string(teamIndexKey(m.TeamID, m.ID))] = true
		for k := range filterKeys(&m) {
			wantIdx[k] = true
		}
		for k, n := range messageCounts(&m) {
			want[k] += n
		}
		return nil
	})
	gotIdx, got := map[string]bool{}, map[string]int64{}
	tx.Bucket(bMsgByTeam).ForEach(func(k, _ []byte) error { gotIdx[string(k)] = true; return nil })
	for k := range filterIndexOf(tx) {
		gotIdx[k] = true
	}
	got = countsOf(tx)
	return recs, maps.Equal(wantIdx, gotIdx) && maps.Equal(want, got)
}

// checkFiles fails unless every file (main and days) is consistent and no
// record is in two files; it returns how many records each holds.
func checkFiles(t *testing.T, s *Store) (inMain, inDays int) {
	t.Helper()
	seen := map[string]string{}
	check := func(name string, tx *bolt.Tx) int {
		recs, ok := fileState(t, tx)
		if !ok {
			t.Fatalf("%s: index keys or counters differ from its records", name)
		}
		for id := range recs {
			if other, dup := seen[id]; dup {
				t.Fatalf("%s is in %s and %s", id, other, name)
			}
			seen[id] = name
		}
		return len(recs)
	}
	s.view(func(tx *bolt.Tx) error { inMain = check("main", tx); return nil })
	for _, day := range s.hist.dayList(time.Time{}, time.Time{}) {
		d, err := s.hist.acquire(day, false)
		if err != nil || d == nil {
			t.Fatal(day, err)
		}
		d.db.View(func(tx *bolt.Tx) error { inDays += check(day.Format(dayLayout), tx); return nil })
		s.hist.release(d)
	}
	return inMain, inDays
}

// moveAll runs the mover's step until nothing that finished before cutoff
// is left, in batches of limit.
func moveAll(t *testing.T, s *Store, cutoff time.Time, limit int) int {
	t.Helper()
	total := 0
	for {
		n, more, err := s.MoveHistory(cutoff, limit)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if !more {
			return total
		}
	}
}

func mainIDs(s *Store) (ids []string, done int) {
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bMessages).ForEach(func(k, v []byte) error {
			ids = append(ids, string(k))
			if strings.Contains(string(v), `"state":"done"`) {
				done++
			}
			return nil
		})
	})
	return ids, done
}

// TestHistoryReadsAcrossDayFiles: every history read (the log walks with
// each filter, cursor pages and bounded resumes, both directions, the
// counters of windows with and without whole hours, records by ID) gives
// the same answer with every finished message in the main file, with part
// of them moved to their day files, and with all of them moved, including
// messages whose ID and creation time are on two sides of a midnight.
func TestHistoryReadsAcrossDayFiles(t *testing.T) {
	s, _ := openTest(t)
	teams := historyFixture(t, s, histNow)
	edgeMessages(t, s, teams)
	ids, done := mainIDs(s)
	before := histSnapshot(t, s, teams, ids)

	if n := moveAll(t, s, histNow.Add(-4*24*time.Hour), 16); n == 0 || n == done {
		t.Fatalf("moved %d of %d finished messages: want some", n, done)
	}
	checkFiles(t, s)
	if got := histSnapshot(t, s, teams, ids); got != before {
		t.Fatalf("with part of the history moved, the reads differ:\n%s", firstDiff(before, got))
	}
	moveAll(t, s, histNow.Add(time.Hour), 50)
	inMain, inDays := checkFiles(t, s)
	if _, left := mainIDs(s); left != 0 || inDays != done || inMain != len(ids)-done {
		t.Fatalf("after moving all: %d finished left in main, %d in day files (want %d), %d in main", left, inDays, done, inMain)
	}
	// The fixture's retention sweep kept five days and a bit.
	if days := s.hist.dayList(time.Time{}, time.Time{}); len(days) < 5 {
		t.Fatalf("%d day files, want one per day of the fixture", len(days))
	}
	if got := histSnapshot(t, s, teams, ids); got != before {
		t.Fatalf("with the history in day files, the reads differ:\n%s", firstDiff(before, got))
	}
	// The mover never holds more than maxOpenDays files open.
	open := 0
	for _, d := range s.hist.days {
		if d.db != nil {
			open++
		}
	}
	if open > maxOpenDays {
		t.Fatalf("%d day files open, cap %d", open, maxOpenDays)
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\nwant %s\ngot  %s", i, al[i], bl[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(bl), len(al))
}

// TestHistoryMoveCrashIsIdempotent: a move stopped between two of its
// journal commits (some records journaled, none in a day file), between
// the day file's commit and the main file's (a crash: the record is in
// both), or between two of the main file's delete chunks, and a restore stopped between its
// main-file and day-file commits, are finished by the next Open: every
// record in exactly one file, indexes and counters exact, every read as
// before.
func TestHistoryMoveCrashIsIdempotent(t *testing.T) {
	defer func(n, m int, y func(*Store, time.Time) bool) {
		historyDeleteChunk, moverSubChunk, moverYield = n, m, y
	}(historyDeleteChunk, moverSubChunk, moverYield)
	// Commits of two records each: journal and deletes as while other
	// writes flow.
	historyDeleteChunk, moverSubChunk = 4, 2
	moverYield = func(*Store, time.Time) bool { return true }
	for _, step := range []string{"journaled", "moved", "deleted", "restored"} {
		t.Run(step, func(t *testing.T) {
			s, path := openTest(t)
			teams := historyFixture(t, s, histNow)
			ids, _ := mainIDs(s)
			before := histSnapshot(t, s, teams, ids)
			crash := errors.New("crash")
			if step == "restored" {
				moveAll(t, s, histNow.Add(time.Hour), 64)
			}
			historyStepHook = func(got string) error {
				if got == step {
					return crash
				}
				return nil
			}
			defer func() { historyStepHook = nil }()
			var victim string
			if step != "restored" {
				if _, _, err := s.MoveHistory(histNow.Add(time.Hour), 64); !errors.Is(err, crash) {
					t.Fatalf("move: %v", err)
				}
			} else {
				for _, id := range ids {
					if m, err := s.Message(id); err == nil && m.State == StateDone {
						victim = id
						break
					}
				}
				_, err := s.UpdateMessage(victim, func(m *Message) error { return nil })
				if !errors.Is(err, crash) {
					t.Fatalf("restore: %v", err)
				}
			}
			historyStepHook = nil
			s.Close()
			s2, err := Open(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			checkFiles(t, s2)
			if got := histSnapshot(t, s2, teams, ids); got != before {
				t.Fatalf("after the crash and a restart, the reads differ:\n%s", firstDiff(before, got))
			}
			if step == "restored" {
				if _, err := s2.UpdateMessage(victim, func(m *Message) error { m.Reason = "late"; return nil }); err != nil {
					t.Fatal(err)
				}
			}
			moveAll(t, s2, time.Now().Add(time.Hour), 64) // the restore listed it by the store's clock
			if _, left := mainIDs(s2); left != 0 {
				t.Fatalf("%d finished messages left in the main file", left)
			}
			checkFiles(t, s2)
		})
	}
}

// TestHistoryLateUpdate: a write to a message already in its day file (a
// late bounce) brings it back to the main file, applies, and the next move
// takes it to its day file again, the counters following each step.
func TestHistoryLateUpdate(t *testing.T) {
	s, _ := openTest(t)
	at := histNow.Add(-30 * time.Hour)
	m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", From: "a@example.com", Status: state.MessageSent,
		Recipients: []Recipient{{Address: "b@example.net", Status: state.MessageSent, ProviderID: "dprov_1"}},
		CreatedAt:  at, UpdatedAt: at}
	if err := s.LoadHistory([]*Message{m}); err != nil {
		t.Fatal(err)
	}
	if n := moveAll(t, s, histNow, 10); n != 1 {
		t.Fatalf("moved %d", n)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 1 {
		t.Fatalf("main %d, days %d", inMain, inDays)
	}
	later := histNow.Add(time.Minute)
	if _, err := s.UpdateMessage(m.ID, func(x *Message) error {
		x.Recipients[0].Feedback = append(x.Recipients[0].Feedback, Feedback{Kind: FeedbackBounce, Type: BounceHard, Source: "dsn", At: later})
		x.UpdatedAt = later
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 1 || inDays != 0 {
		t.Fatalf("after the late write: main %d, days %d", inMain, inDays)
	}
	var hard int64
	s.FeedbackCounts("team_a", at.Add(-time.Hour), time.Time{}, func(_ time.Time, _, typ string, n int64) {
		if typ == BounceHard {
			hard += n
		}
	})
	if hard != 1 {
		t.Fatalf("hard bounces counted %d", hard)
	}
	// It is listed for the mover as of its restore (the store's clock),
	// so further late writes find it in the main file for a while.
	if n := moveAll(t, s, histNow, 10); n != 0 {
		t.Fatalf("moved %d before its delay", n)
	}
	if n := moveAll(t, s, time.Now().Add(time.Hour), 10); n != 1 {
		t.Fatalf("moved %d", n)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 1 {
		t.Fatalf("main %d, days %d", inMain, inDays)
	}
	got, err := s.Message(m.ID)
	if err != nil || len(got.Recipients[0].Feedback) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
}

// TestDropHistory: retention unlinks the day files whose messages all
// finished before the cutoff (file gone from disk, records gone, their SES
// upstream ids gone from the main file) and keeps the others whole.
func TestDropHistory(t *testing.T) {
	s, path := openTest(t)
	var ms []*Message
	for i := range 4 {
		at := utcDay(histNow).Add(-time.Duration(10-i)*24*time.Hour + time.Hour)
		ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", Status: state.MessageSent,
			Recipients: []Recipient{{Address: "b@example.net", Status: state.MessageSent, ProviderID: "dprov_1"}},
			Attempts:   []Attempt{{N: 1, ProviderID: "dprov_1", ProviderType: TypeSES, UpstreamID: fmt.Sprintf("ses-%d", i), Status: state.AttemptSent}},
			CreatedAt:  at, UpdatedAt: at})
	}
	// Day 3's message finished late: its day stays until that is old.
	ms[3].UpdatedAt = utcDay(histNow).Add(-2 * 24 * time.Hour)
	if err := s.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, m := range ms {
			if err := syncUpstreamIDs(tx, nil, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	moveAll(t, s, histNow, 10)
	cutoff := utcDay(histNow).Add(-8*24*time.Hour - time.Minute) // days 0 and 1 (the 27th, 28th) are past it
	files, msgs, err := s.DropHistory(cutoff)
	if err != nil || files != 2 || msgs != 2 {
		t.Fatalf("dropped %d files, %d messages, %v", files, msgs, err)
	}
	for i, m := range ms {
		_, statErr := os.Stat(filepath.Join(filepath.Dir(path), "history", utcDay(m.CreatedAt).Format(dayLayout)+".db"))
		_, err := s.Message(m.ID)
		_, sesErr := s.MessageBySESID(fmt.Sprintf("ses-%d", i))
		gone := i < 2
		if gone != errors.Is(err, ErrNotFound) || gone != os.IsNotExist(statErr) || gone != errors.Is(sesErr, ErrNotFound) {
			t.Fatalf("message %d (gone %v): record %v, file %v, SES id %v", i, gone, err, statErr, sesErr)
		}
	}
	checkFiles(t, s)
	// Nothing more to drop at the same cutoff; day 3 goes once its late
	// finish is old enough.
	if files, _, _ := s.DropHistory(cutoff); files != 0 {
		t.Fatalf("dropped %d again", files)
	}
	if files, msgs, _ := s.DropHistory(histNow); files != 2 || msgs != 2 {
		t.Fatalf("at now: dropped %d files, %d messages", files, msgs)
	}
	if days := s.hist.dayList(time.Time{}, time.Time{}); len(days) != 0 {
		t.Fatalf("days left: %v", days)
	}
}

// TestMigrateFinishedList: a version 7 file (finished messages in the main
// file, no mover list) gets every finished message listed by the step to
// 8, and the mover then moves exactly those, the reads unchanged.
func TestMigrateFinishedList(t *testing.T) {
	s, path := openTest(t)
	teams := historyFixture(t, s, histNow)
	ids, done := mainIDs(s)
	before := histSnapshot(t, s, teams, ids)
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bFinished); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(7))
	})
	old := migrationBatch
	migrationBatch = 7
	defer func() { migrationBatch = old }()
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	listed := 0
	s2.view(func(tx *bolt.Tx) error { listed = tx.Bucket(bFinished).Stats().KeyN; return nil })
	if listed != done {
		t.Fatalf("%d listed, %d finished", listed, done)
	}
	if n := moveAll(t, s2, histNow.Add(time.Hour), 100); n != done {
		t.Fatalf("moved %d of %d", n, done)
	}
	checkFiles(t, s2)
	if got := histSnapshot(t, s2, teams, ids); got != before {
		t.Fatalf("after the migration and the move, the reads differ:\n%s", firstDiff(before, got))
	}
}

// TestHistoryMoveTwoListEntries: a record listed twice for the mover (it
// finished, was queued again and finished again) moves once and is not
// lost: the second entry is dropped as stale.
func TestHistoryMoveTwoListEntries(t *testing.T) {
	s, _ := openTest(t)
	at := histNow.Add(-30 * time.Hour)
	m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", From: "a@example.com", Status: state.MessageSent,
		Recipients: []Recipient{{Address: "b@example.net", Status: state.MessageSent}}, CreatedAt: at, UpdatedAt: at}
	if err := s.LoadHistory([]*Message{m}); err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bFinished).Put(finishedKey(at.Add(time.Minute), m.ID), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if n := moveAll(t, s, histNow, 10); n != 1 {
		t.Fatalf("moved %d", n)
	}
	if _, err := s.Message(m.ID); err != nil {
		t.Fatalf("the record is lost: %v", err)
	}
	if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 1 {
		t.Fatalf("main %d, days %d", inMain, inDays)
	}
	s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bFinished).Stats().KeyN; n != 0 {
			t.Fatalf("%d list entries left", n)
		}
		return nil
	})
}
