package store

import (
	"sync"
	"testing"
	"time"
)

func TestIDAtSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, b := NewIDAt(PrefixMessage, t0), NewIDAt(PrefixMessage, t0.Add(time.Millisecond))
	if !ValidID(PrefixMessage, a) || !ValidID(PrefixMessage, b) || a >= b {
		t.Fatalf("ids %q %q", a, b)
	}
	if f := idFloor(PrefixMessage, t0); f > a || f <= idFloor(PrefixMessage, t0.Add(-time.Millisecond)) {
		t.Fatalf("floor %q vs %q", f, a)
	}
	if NewIDAt(PrefixMessage, t0) == a {
		t.Fatal("random part is not random")
	}
}

// TestMessagesSince checks the window, the team filter, the order, early
// stop, and that chunked scanning visits every message exactly once.
func TestMessagesSince(t *testing.T) {
	s, _ := openTest(t)
	now := time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)
	since := now.Add(-7 * 24 * time.Hour)
	// Concurrent enqueues share commits (one fsync per batch), which
	// keeps the thousand-message setup fast.
	var wg sync.WaitGroup
	enqueue := func(team string, at time.Time) *Message {
		m := newMsg(at)
		m.ID, m.TeamID, m.CreatedAt = NewIDAt(PrefixMessage, at), team, at
		wg.Go(func() {
			if err := s.Enqueue(m, []byte("x")); err != nil {
				t.Error(err)
			}
		})
		return m
	}
	enqueue("t1", since.Add(-time.Minute)) // just too old
	enqueue("t1", now.Add(-30*24*time.Hour))
	want := map[string]bool{}
	n := scanChunk*2 + 7 // more than two chunks
	for i := 0; i < n; i++ {
		at := since.Add(time.Duration(i) * time.Minute)
		want[enqueue("t1", at).ID] = true
		if i%3 == 0 {
			enqueue("t2", at) // interleaved other team
		}
	}
	wg.Wait()
	var got []string
	if err := s.MessagesSince("t1", since, func(m *Message) bool {
		if m.TeamID != "t1" || m.CreatedAt.Before(since) {
			t.Fatalf("unexpected message %+v", m)
		}
		got = append(got, m.ID)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("visited %d, want %d", len(got), n)
	}
	for i, id := range got {
		if !want[id] {
			t.Fatalf("unexpected id %s", id)
		}
		delete(want, id)
		if i > 0 && got[i-1] >= id {
			t.Fatal("not in ID order")
		}
	}
	count := 0
	if err := s.MessagesSince("t1", since, func(*Message) bool { count++; return count < 3 }); err != nil || count != 3 {
		t.Fatalf("early stop: %d, %v", count, err)
	}
	if err := s.MessagesSince("t3", since, func(*Message) bool { t.Fatal("other team"); return true }); err != nil {
		t.Fatal(err)
	}
}

// TestMessagesSinceEdges: the slack around ID time, a zero since, and
// times before the epoch.
func TestMessagesSinceEdges(t *testing.T) {
	s, _ := openTest(t)
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	put := func(idAt, createdAt time.Time) string {
		m := newMsg(createdAt)
		m.ID, m.TeamID, m.CreatedAt = NewIDAt(PrefixMessage, idAt), "t1", createdAt
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	// ID taken a minute before since, created (by CreatedAt) after it:
	// inside the slack, so found.
	early := put(since.Add(-time.Minute), since.Add(time.Second))
	// ID inside the window but CreatedAt before since: CreatedAt decides.
	put(since.Add(time.Minute), since.Add(-time.Second))
	old := put(since.Add(-48*time.Hour), since.Add(-48*time.Hour))
	collect := func(since time.Time) []string {
		var ids []string
		if err := s.MessagesSince("t1", since, func(m *Message) bool { ids = append(ids, m.ID); return true }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := collect(since); len(got) != 1 || got[0] != early {
		t.Fatalf("since: %v", got)
	}
	if got := collect(time.Time{}); len(got) != 3 || got[0] != old {
		t.Fatalf("zero since must visit everything: %v", got)
	}
	if got := collect(time.Unix(-1000, 0)); len(got) != 3 {
		t.Fatalf("pre-epoch since: %v", got)
	}
}
