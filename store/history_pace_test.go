package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMoverPacing: the mover rests only when other writes reached the
// committer during its step; then its share of time is historyMoveDuty
// while it is on time, and grows with how far behind it is up to
// historyMoveMaxDuty, so a sustained intake above its base rate cannot
// leave it behind for good.
func TestMoverPacing(t *testing.T) {
	step := 100 * time.Millisecond
	share := func(rest time.Duration) float64 { return float64(step) / float64(step+rest) }
	for _, c := range []struct {
		name        string
		othersWrote bool
		lag         time.Duration
		want        float64 // share of time the steps take
	}{
		{"nobody waits", false, 0, 1},
		{"nobody waits, far behind", false, time.Hour, 1},
		{"on time", true, 0, historyMoveDuty},
		{"a minute behind", true, historyLagFree, historyMoveDuty},
		{"half way", true, (historyLagFree + historyLagMax) / 2, (historyMoveDuty + historyMoveMaxDuty) / 2},
		{"far behind", true, historyLagMax, historyMoveMaxDuty},
		{"further behind", true, 10 * historyLagMax, historyMoveMaxDuty},
	} {
		got := share(moverRest(step, c.othersWrote, c.lag))
		if got < c.want-0.001 || got > c.want+0.001 {
			t.Errorf("%s: the mover takes %.3f of the time, want %.3f", c.name, got, c.want)
		}
	}
}

// TestMoverCountsOthersWrites: the pacing's signal counts the writes
// someone waits on, not the mover's own commits nor lazy writes.
func TestMoverCountsOthersWrites(t *testing.T) {
	s, _ := openTest(t)
	n0 := s.foreignWrites.Load()
	if err := s.moverUpdate(func(tx *bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := s.foreignWrites.Load(); n != n0 {
		t.Fatalf("the mover's own commit counted as another write (%d → %d)", n0, n)
	}
	if err := s.update(func(tx *bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := s.foreignWrites.Load(); n != n0+1 {
		t.Fatalf("another write not counted (%d → %d)", n0, n)
	}
}
