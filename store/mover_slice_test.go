package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMoverSlicesWhileWritesFlow: the mover's commit leaves the rest of
// its chunk to the next one after its slice whenever other writes flow
// (a commit carried one within flowWindow), even if none waits at that
// moment; while none flows it deletes on (an idle daemon moves fast).
func TestMoverSlicesWhileWritesFlow(t *testing.T) {
	s, _ := openTest(t)
	past := time.Now().Add(-time.Second) // its slice is over
	if s.writesFlowing() || moverYield(s, past) {
		t.Fatal("a store nothing was written to counts as busy")
	}
	// The mover's own and lazy writes are not a flow.
	if err := s.moverUpdate(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s.writesFlowing() {
		t.Fatal("the mover's own commit counts as other writes flowing")
	}
	w0 := flowWindow
	flowWindow = time.Hour // no timing in the test
	t.Cleanup(func() { flowWindow = w0 })
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !s.writesFlowing() || !moverYield(s, past) {
		t.Fatal("after another write the mover does not keep to its slice")
	}
	if moverYield(s, time.Now().Add(time.Hour)) {
		t.Fatal("the mover yields before its slice is over")
	}
	flowWindow = 0
	if s.writesFlowing() || moverYield(s, past) {
		t.Fatal("writes count as flowing after flowWindow")
	}
}
