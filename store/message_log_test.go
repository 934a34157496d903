package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// finished stores a message that finished at done (zero: still queued).
func finished(t *testing.T, s *Store, team string, created, done time.Time) *Message {
	t.Helper()
	m := newMsg(created)
	m.ID, m.TeamID = NewIDAt(PrefixMessage, created), team
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if done.IsZero() {
		return m
	}
	// A finished message keeps its body in the main file until the body
	// retention's sweep (SweepBodies), or the log's (SweepMessages).
	got, err := s.UpdateMessage(m.ID, func(x *Message) error {
		x.State, x.Status, x.UpdatedAt = StateDone, state.MessageSent, done
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bBodies).Put([]byte(m.ID), []byte("left")) }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSweepMessages(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	oldDone := finished(t, s, "team_a", t0, t0.Add(time.Minute))
	oldQueued := finished(t, s, "team_a", t0.Add(time.Second), time.Time{})
	lateDone := finished(t, s, "team_a", t0.Add(2*time.Second), t0.Add(40*24*time.Hour)) // finished recently
	recent := finished(t, s, "team_b", t0.Add(35*24*time.Hour), t0.Add(35*24*time.Hour))
	more := []*Message{}
	for i := range 5 {
		more = append(more, finished(t, s, "team_a", t0.Add(time.Hour+time.Duration(i)*time.Second), t0.Add(2*time.Hour)))
	}
	cut := t0.Add(31 * 24 * time.Hour)
	total, after := 0, ""
	for calls := 0; ; calls++ {
		n, next, err := s.SweepMessages(cut, after, 2)
		if err != nil || calls > 10 {
			t.Fatal(err)
		}
		total += n
		if next == "" {
			break
		}
		after = next
	}
	if total != 6 {
		t.Fatalf("swept %d, want 6", total)
	}
	for _, m := range append(more, oldDone) {
		if _, err := s.Message(m.ID); err != ErrNotFound {
			t.Fatalf("%s survived: %v", m.ID, err)
		}
		if _, err := s.Body(m.ID); err != ErrNotFound {
			t.Fatalf("body of %s survived", m.ID)
		}
	}
	for _, m := range []*Message{oldQueued, lateDone, recent} {
		if _, err := s.Message(m.ID); err != nil {
			t.Fatalf("%s was swept: %v", m.ID, err)
		}
	}
	if b, err := s.Body(oldQueued.ID); err != nil || string(b) != "body" {
		t.Fatal("a queued message lost its body")
	}
}

func TestSweepBodies(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queued := finished(t, s, "team_a", t0, time.Time{})
	old := finished(t, s, "team_a", t0, t0.Add(time.Hour))
	fresh := finished(t, s, "team_a", t0, t0.Add(100*time.Hour))
	// A spooled leftover of a finished message, and a spool file that may
	// belong to a DATA still streaming.
	spooled, _ := s.UpdateMessage(old.ID, func(x *Message) error { x.Spooled = true; return nil })
	os.WriteFile(filepath.Join(s.spoolDir, spooled.ID), []byte("big"), 0o600)
	streaming := NewID(PrefixMessage)
	os.WriteFile(filepath.Join(s.spoolDir, streaming), []byte("partial"), 0o600)

	cut := t0.Add(72 * time.Hour)
	n, next, err := s.SweepBodies(cut, "", 100)
	if err != nil || n != 1 || next != "" {
		t.Fatalf("inline: %d %q %v", n, next, err)
	}
	if n, err := s.SweepSpooled(cut); err != nil || n != 1 {
		t.Fatalf("spooled: %d %v", n, err)
	}
	if _, err := s.Body(old.ID); err != ErrNotFound {
		t.Fatal("old body kept")
	}
	for _, id := range []string{queued.ID, fresh.ID} {
		if _, err := s.Body(id); err != nil {
			t.Fatalf("body %s swept", id)
		}
	}
	if _, err := os.Stat(filepath.Join(s.spoolDir, streaming)); err != nil {
		t.Fatal("a spool file without a record was removed")
	}
}

func TestMessagesDesc(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var mine []string
	byMinute := map[int]string{}
	for i := range scanChunk + 40 { // more than one chunk
		team := "team_a"
		if i%3 == 0 {
			team = "team_b"
		}
		m := finished(t, s, team, t0.Add(time.Duration(i)*time.Minute), time.Time{})
		if team == "team_a" {
			mine = append([]string{m.ID}, mine...)
			byMinute[i] = m.ID
		}
	}
	var got []string
	if err := s.MessagesDesc("team_a", "", time.Time{}, time.Time{}, func(m *Message) bool {
		got = append(got, m.ID)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(mine, ",") {
		t.Fatalf("desc scan: %d ids, want %d", len(got), len(mine))
	}
	// A window and a cursor.
	from, to := t0.Add(100*time.Minute), t0.Add(110*time.Minute)
	got = nil
	s.MessagesDesc("team_a", byMinute[104], from, to, func(m *Message) bool {
		got = append(got, m.CreatedAt.Sub(t0).String())
		return true
	})
	if strings.Join(got, " ") != "1h43m0s 1h41m0s 1h40m0s" {
		t.Fatalf("window below cursor: %v", got)
	}
}

// TestSweepBodiesOfMovedRecords: in a steady store the records have moved
// to their day files and the bodies wait in the main file for the body
// retention. A call deletes at most limit of them (it deleted up to
// sweepVisitMax in one commit), and the walk ends at the cutoff's IDs
// (it walked, and looked up in the day files, every body of the window).
func TestSweepBodiesOfMovedRecords(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var old []string
	for i := range 30 {
		old = append(old, finished(t, s, "team_a", t0.Add(time.Duration(i)*time.Second), t0.Add(time.Hour)).ID)
	}
	cut := t0.Add(72 * time.Hour)
	// More than one visit's worth of bodies accepted after the cutoff.
	var newer []*Message
	var newerIDs []string
	for i := range sweepVisitMax + 100 {
		at := cut.Add(time.Duration(i) * time.Millisecond)
		m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", From: "a@example.com", Status: state.MessageSent,
			Recipients: []Recipient{{Address: "b@example.net", Status: state.MessageSent}}, CreatedAt: at, UpdatedAt: at}
		newer, newerIDs = append(newer, m), append(newerIDs, m.ID)
	}
	if err := s.LoadHistory(newer); err != nil {
		t.Fatal(err)
	}
	if err := s.LoadBodies(newerIDs, []byte("body")); err != nil {
		t.Fatal(err)
	}
	moveAll(t, s, cut.Add(time.Hour), 1024)

	n, next, err := s.SweepBodies(cut, "", 10)
	if err != nil || n != 10 || next == "" {
		t.Fatalf("first call: %d bodies, next %q, %v; want 10 and more to come", n, next, err)
	}
	n2, next, err := s.SweepBodies(cut, next, 64)
	if err != nil || n2 != 20 || next != "" {
		t.Fatalf("second call: %d bodies, next %q, %v; want the other 20 and the walk ended at the cutoff", n2, next, err)
	}
	for _, id := range old {
		if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("body %s of a message finished before the cutoff: %v, want gone", id, err)
		}
	}
	for _, id := range []string{newerIDs[0], newerIDs[len(newerIDs)-1]} {
		if _, err := s.Body(id); err != nil {
			t.Fatalf("body %s accepted after the cutoff: %v", id, err)
		}
	}
}

// TestSweepBodiesKeepsRequeuedBody: a moved message queued again between
// the sweep's reads (its day copy said done and old) and its delete keeps
// its body: the write looks at the main file again.
func TestSweepBodiesKeepsRequeuedBody(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := finished(t, s, "team_a", t0, t0.Add(time.Hour))
	moveAll(t, s, t0.Add(2*time.Hour), 1024)
	if got, err := s.Message(m.ID); err != nil || got.State != StateDone {
		t.Fatalf("moved message: %v %v", got, err)
	}
	sweepBodiesHook = func() {
		if _, err := s.UpdateMessage(m.ID, func(x *Message) error {
			x.State, x.Status = StateQueued, state.MessagePending
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { sweepBodiesHook = nil })
	if n, _, err := s.SweepBodies(t0.Add(72*time.Hour), "", 64); err != nil || n != 0 {
		t.Fatalf("sweep: %d bodies, %v; want none (the message is queued again)", n, err)
	}
	if _, err := s.Body(m.ID); err != nil {
		t.Fatalf("the queued message's body: %v", err)
	}
}
