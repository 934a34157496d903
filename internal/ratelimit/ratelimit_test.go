package ratelimit

import (
	"sync"
	"testing"
	"time"
)

func TestRateLimiterWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rl := New(2, time.Minute, func() time.Time { return now })
	rl.Allow("a")
	rl.Allow("a")
	if ok, wait := rl.Allow("a"); ok || wait != time.Minute {
		t.Fatalf("3rd: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := rl.Allow("b"); !ok {
		t.Fatal("limits are per credential")
	}
	now = now.Add(time.Minute)
	if ok, _ := rl.Allow("a"); !ok {
		t.Fatal("new window must allow")
	}
}

// TestReserveCountsBeforeTheCheck: 60 attempts reserving at once against
// a limit of 20 get exactly 20 reservations, whatever the interleaving; a
// good attempt's give-back frees its count once, and only in its own
// window.
func TestReserveCountsBeforeTheCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := New(20, time.Minute, clock)

	var granted sync.WaitGroup
	results := make(chan func(), 60)
	start := make(chan struct{})
	for i := 0; i < 60; i++ {
		granted.Add(1)
		go func() {
			defer granted.Done()
			<-start
			if ok, _, giveBack := r.Reserve("203.0.113.7"); ok {
				results <- giveBack
			}
		}()
	}
	close(start)
	granted.Wait()
	close(results)
	var backs []func()
	for gb := range results {
		backs = append(backs, gb)
	}
	if len(backs) != 20 {
		t.Fatalf("%d of 60 parallel reservations granted, want 20", len(backs))
	}
	ok, wait, _ := r.Reserve("203.0.113.7")
	if ok || wait <= 0 || wait > time.Minute {
		t.Fatalf("21st reservation: ok %v, wait %v; want refused with the rest of the window", ok, wait)
	}
	if ok, _, _ := r.Reserve("203.0.113.8"); !ok {
		t.Fatal("another address was refused")
	}

	// One attempt turned out good: its count comes back, once.
	backs[0]()
	backs[0]()
	if ok, _, _ := r.Reserve("203.0.113.7"); !ok {
		t.Fatal("after a give-back the address is still at the limit")
	}
	if ok, _, _ := r.Reserve("203.0.113.7"); ok {
		t.Fatal("a give-back called twice freed two counts")
	}

	// A give-back after the window ended does not eat into the next one.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	for i := 0; i < 20; i++ {
		if ok, _, _ := r.Reserve("203.0.113.7"); !ok {
			t.Fatalf("new window: reservation %d refused", i)
		}
	}
	backs[1]() // counted in the old window
	if ok, _, _ := r.Reserve("203.0.113.7"); ok {
		t.Fatal("a give-back from the previous window freed a count in this one")
	}
}
