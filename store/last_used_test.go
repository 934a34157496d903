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
