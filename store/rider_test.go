package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMoverRidesOtherCommits: while other writes flow, a write of the
// history mover waits for the next one and shares its commit (no fsync of
// its own for an acceptance arriving meanwhile to wait through); when
// nothing else was written lately it commits at once.
func TestMoverRidesOtherCommits(t *testing.T) {
	s, _ := openTest(t)
	// Idle: no other write yet, so no wait.
	c0, _, _ := s.CommitStats()
	if err := s.moverUpdate(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if c1, _, _ := s.CommitStats(); c1-c0 != 1 || s.heldLazy.Load() != 0 {
		t.Fatalf("an idle store's mover write: %d commits, want 1 at once", c1-c0)
	}

	// Writes flowing (windows long enough that timing plays no part).
	w0, r0 := riderWindow, riderWait
	riderWindow, riderWait = time.Minute, time.Minute
	t.Cleanup(func() { riderWindow, riderWait = w0, r0 })
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c0, _, _ = s.CommitStats()
	moved := make(chan error, 1)
	go func() { moved <- s.moverUpdate(func(*bolt.Tx) error { return nil }) }()
	for deadline := time.Now().Add(5 * time.Second); s.heldLazy.Load() == 0; time.Sleep(time.Millisecond) {
		select {
		case err := <-moved:
			t.Fatalf("the mover's write committed alone (err %v) while writes flow", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the mover's write never reached the committer")
		}
	}
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	if c1, _, _ := s.CommitStats(); c1-c0 != 1 {
		t.Errorf("a mover write and an acceptance write took %d commits, want 1", c1-c0)
	}
}
