package store

import (
	"testing"
	"time"
)

// TestDueSkipsWithoutCopies: the scheduler's dispatch walks past every
// message it has started and not yet claimed; Due must not copy the ID of
// each of those (it did: one string per skipped entry, per dispatch).
func TestDueSkipsWithoutCopies(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	active := map[string]bool{}
	for range 200 {
		m := newMsg(now)
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		active[m.ID] = true
	}
	skip := func(id []byte) bool { return active[string(id)] }
	n := testing.AllocsPerRun(20, func() {
		ids, _, err := s.Due(now.Add(time.Second), 10, skip)
		if err != nil || len(ids) != 0 {
			t.Fatalf("due %v, %v", ids, err)
		}
	})
	if n > 50 {
		t.Errorf("%v allocations to walk past 200 started messages, want at most 50", n)
	}
}
