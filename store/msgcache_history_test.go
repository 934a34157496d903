package store

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// TestClaimCacheAcrossHistoryMove: the decoded-record cache (msgcache.go)
// and the history mover (history_move.go) together. A finished record is
// never cached; once moved, the main file has no bytes for it, so no entry
// can match; a record brought back from its day file by a write (here a
// requeue) is decoded from the restored bytes, and the claim after the
// next read of it, queued again, uses that read and sees the write.
func TestClaimCacheAcrossHistoryMove(t *testing.T) {
	s, _ := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(m.ID); err != nil { // the scheduler's read: cached
		t.Fatal(err)
	}
	finish := func(reason string) {
		t.Helper()
		if _, err := s.UpdateMessage(m.ID, func(r *Message) error {
			r.State, r.Status, r.UpdatedAt, r.Reason = StateDone, state.MessageSent, time.Now(), reason
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Message(m.ID); err != nil { // a finished read: not cached
			t.Fatal(err)
		}
		if _, ok := s.recs.recs[m.ID]; ok {
			t.Fatal("a finished record is in the cache")
		}
		if n := moveAll(t, s, time.Now().Add(time.Hour), 10); n != 1 {
			t.Fatalf("moved %d, want 1", n)
		}
		if inMain, inDays := checkFiles(t, s); inMain != 0 || inDays != 1 {
			t.Fatalf("main %d, days %d", inMain, inDays)
		}
	}
	finish("first")
	// Enqueue kept what it wrote: the read and the write after it hit.
	if s.recs.hits != 2 {
		t.Fatalf("the read after Enqueue or the claim after the read decoded again (%d hits, want 2)", s.recs.hits)
	}
	// Read from the day file: not cached either.
	if got, err := s.Message(m.ID); err != nil || got.Reason != "first" {
		t.Fatalf("%+v %v", got, err)
	}
	// A write brings it back (restore) and queues it again.
	if _, err := s.UpdateMessage(m.ID, func(r *Message) error {
		r.State, r.Status, r.NextAttemptAt, r.Reason = StateQueued, state.MessagePending, time.Now(), "requeued"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.recs.hits != 2 {
		t.Fatalf("the write to a moved record was served from the cache (%d hits, want 2)", s.recs.hits)
	}
	read, err := s.Message(m.ID)
	if err != nil || read.Reason != "requeued" || read.State != StateQueued {
		t.Fatalf("%+v %v", read, err)
	}
	var seen string
	if _, err := s.UpdateMessage(m.ID, func(r *Message) error { seen = r.Reason; return nil }); err != nil {
		t.Fatal(err)
	}
	// The requeue kept what it wrote: the read and the claim hit.
	if seen != "requeued" || s.recs.hits != 4 {
		t.Fatalf("the claim of the restored record saw %q with %d cache hits (want requeued, 4)", seen, s.recs.hits)
	}
	if _, err := s.Message(m.ID); err != nil { // cached again, then finished and moved
		t.Fatal(err)
	}
	finish("second")
	if got, err := s.Message(m.ID); err != nil || got.Reason != "second" || got.State != StateDone {
		t.Fatalf("after the second move: %+v %v", got, err)
	}
}
