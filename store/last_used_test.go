package store

import (
	"sync"
	"testing"
	"time"
)

// TestLastUsedThrottles: one write per ID per LastUsedEvery, in UTC;
// other IDs are independent.
func TestLastUsedThrottles(t *testing.T) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	writes := map[string][]time.Time{}
	lu := NewLastUsed(func(id string, at time.Time) error {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		writes[id] = append(writes[id], at)
		return nil
	})
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))
	wg.Add(3) // a at t0, b at t0, a again after LastUsedEvery
	lu.Touch("a", t0)
	lu.Touch("a", t0.Add(LastUsedEvery-time.Nanosecond))
	lu.Touch("b", t0.Add(time.Second))
	lu.Touch("a", t0.Add(LastUsedEvery))
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(writes["a"]) != 2 || len(writes["b"]) != 1 {
		t.Fatalf("writes %v, want 2 for a and 1 for b", writes)
	}
	for _, at := range writes["a"] {
		if at.Location() != time.UTC {
			t.Errorf("write at %v, want UTC", at)
		}
	}
}

// TestTouchJoinsNextCommit: a last-use write waits for another write and
// shares its commit (one fsync for both) instead of committing alone; with
// nothing else written it still commits, after lazyWait (issue 18: one
// extra commit per team when one client creates teams one after another).
func TestTouchJoinsNextCommit(t *testing.T) {
	s, _ := openTest(t)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "team_a", Type: KeyRoot, Hash: HashSecret("smx_root_touch_secret_00")}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	c0, _, _ := s.CommitStats()
	touched := make(chan error, 1)
	go func() { touched <- s.TouchKey(k.ID, at) }()
	for deadline := time.Now().Add(5 * time.Second); s.heldLazy.Load() == 0; time.Sleep(time.Millisecond) {
		select {
		case err := <-touched:
			t.Fatalf("the touch committed alone (err %v) instead of waiting for a commit to join", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the touch never reached the committer")
		}
	}
	other := &APIKey{ID: NewID(PrefixKey), TeamID: "team_a", Type: KeySending, Hash: HashSecret("smx_send_touch_secret_00")}
	if err := s.CreateKey(other); err != nil {
		t.Fatal(err)
	}
	if err := <-touched; err != nil {
		t.Fatal(err)
	}
	if c1, _, _ := s.CommitStats(); c1-c0 != 1 {
		t.Errorf("a touch and a write took %d commits, want 1", c1-c0)
	}
	if got, err := s.Key(k.ID); err != nil || got.LastUsedAt == nil || !got.LastUsedAt.Equal(at) {
		t.Fatalf("last used %v (%v), want %v", got.LastUsedAt, err, at)
	}
	// Alone, it commits once lazyWait has passed.
	if err := s.TouchKey(k.ID, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Key(k.ID); !got.LastUsedAt.Equal(at.Add(time.Hour)) {
		t.Errorf("last used %v after a lone touch, want %v", got.LastUsedAt, at.Add(time.Hour))
	}
}
